package localbus

import (
	"context"
	"net"
	"path/filepath"
	"testing"

	"holdfast/internal/auth"
	"holdfast/internal/packet"
	"holdfast/internal/testclient"
	"holdfast/internal/testenv"
	"holdfast/internal/transport"
)

// serveOn serves an existing broker on a transport listener.
func serveOn(t *testing.T, b *Broker, lo transport.ListenOptions, opts ListenerOptions) net.Listener {
	t.Helper()
	lo.Address = "127.0.0.1:0"
	lo.Logger = testLogger()
	ln, err := transport.Listen(lo)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { b.Serve(ctx, ln, opts); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return ln
}

// TestTLSAndWebSocket serves one broker on TLS with required client
// certificates (the certificate's common name is the username the ACL sees)
// and on WebSocket, and passes a message between the two.
func TestTLSAndWebSocket(t *testing.T) {
	certs := testenv.GenerateCerts(t)
	tb := startBroker(t, Options{}, nil, nil)
	serverTLS, err := transport.ServerTLS(transport.ServerTLSOptions{
		CertFile: certs.ServerCertFile, KeyFile: certs.ServerKeyFile,
		ClientCAFile: certs.CAFile, RequireClientCert: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	aclFile := filepath.Join(t.TempDir(), "acl")
	writeFile(t, aclFile, "pattern readwrite certs/%u/#\n")
	acl, err := auth.LoadACL(aclFile)
	if err != nil {
		t.Fatal(err)
	}
	tlsLn := serveOn(t, tb.Broker, transport.ListenOptions{Type: "tls", TLS: serverTLS}, ListenerOptions{Name: "tls", ACL: acl})
	wsLn := serveOn(t, tb.Broker, transport.ListenOptions{Type: "ws"}, ListenerOptions{Name: "ws", AllowAnonymous: true})

	dialURL := func(url string, tc transport.ClientTLSOptions, o testclient.Options) (*testclient.Client, error) {
		var do transport.DialOptions
		if tc.CAFile != "" {
			cfg, err := transport.ClientTLS(tc)
			if err != nil {
				t.Fatal(err)
			}
			do.TLS = cfg
		}
		nc, err := transport.Dial(context.Background(), url, do)
		if err != nil {
			return nil, err
		}
		c, err := testclient.DialConn(nc, o)
		if c != nil {
			t.Cleanup(func() { c.Close() })
		}
		return c, err
	}
	// Without a client certificate the handshake fails.
	if c, err := dialURL("mqtts://"+tlsLn.Addr().String(), transport.ClientTLSOptions{CAFile: certs.CAFile}, testclient.Options{ClientID: "nocert", CleanStart: true}); err == nil {
		c.Close()
		t.Fatal("TLS connection without a client certificate accepted")
	}
	tlsOpts := transport.ClientTLSOptions{CAFile: certs.CAFile, CertFile: certs.ClientCertFile, KeyFile: certs.ClientKeyFile}
	sec, err := dialURL("mqtts://"+tlsLn.Addr().String(), tlsOpts, testclient.Options{ClientID: "sec", CleanStart: true})
	if err != nil {
		t.Fatal(err)
	}
	cn := testenv.ClientCommonName
	rcs, err := sec.Subscribe(packet.Subscription{Filter: "certs/" + cn + "/#", QoS: 1}, packet.Subscription{Filter: "certs/other/#", QoS: 1})
	if err != nil || rcs[0] != 1 || rcs[1] != packet.NotAuthorized {
		t.Fatalf("SUBACK %v %v: the certificate's common name must be the ACL username", rcs, err)
	}
	ws, err := dialURL("ws://"+wsLn.Addr().String()+"/mqtt", transport.ClientTLSOptions{}, testclient.Options{ClientID: "ws", Version: packet.V311, CleanStart: true})
	if err != nil {
		t.Fatal(err)
	}
	if rc, err := ws.Publish(&packet.Publish{Topic: "certs/" + cn + "/x", QoS: 1, Payload: []byte("over ws")}); err != nil || rc != 0 {
		t.Fatal(rc, err)
	}
	if p := recv(t, sec); string(p.Payload) != "over ws" {
		t.Fatalf("%+v", p)
	}
}
