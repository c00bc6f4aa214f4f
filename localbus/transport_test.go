package localbus

import (
	"context"
	"log/slog"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

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

// TestMosquittoTLS runs mosquitto_pub and mosquitto_sub, both protocol
// versions, against three TLS listeners of one broker (certificates made by
// the test): one without client certificates, one that requires them (the
// certificate's common name is the username its ACL sees), and one where
// they are optional (a password or a certificate authenticates; a
// certificate that does not verify is refused at the handshake).
func TestMosquittoTLS(t *testing.T) {
	subTool := testenv.LookTool(t, "mosquitto_sub", "mosquitto-clients")
	pubTool := testenv.LookTool(t, "mosquitto_pub", "mosquitto-clients")
	certs := testenv.GenerateCerts(t)
	alien := testenv.GenerateCerts(t) // another CA: its client certificate must not verify
	// The broker's debug log tells a refused handshake from a refused
	// CONNECT.
	log := &syncBuffer{}
	tb := startBroker(t, Options{Logger: slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug}))}, nil, nil)
	handshakesFailed := func() int { return strings.Count(log.String(), "tls handshake failed") }
	tlsListener := func(o transport.ServerTLSOptions, lo ListenerOptions) string {
		o.CertFile, o.KeyFile = certs.ServerCertFile, certs.ServerKeyFile
		conf, err := transport.ServerTLS(o)
		if err != nil {
			t.Fatal(err)
		}
		return serveOn(t, tb.Broker, transport.ListenOptions{Type: "tls", TLS: conf}, lo).Addr().String()
	}
	pw, acl := authFiles(t, "dev", "pw", "pattern readwrite certs/%u/#\n")
	plain := tlsListener(transport.ServerTLSOptions{}, ListenerOptions{Name: "tls", AllowAnonymous: true})
	required := tlsListener(transport.ServerTLSOptions{ClientCAFile: certs.CAFile, RequireClientCert: true}, ListenerOptions{Name: "mtls", ACL: acl})
	optional := tlsListener(transport.ServerTLSOptions{ClientCAFile: certs.CAFile}, ListenerOptions{Name: "tls-optional", Auth: pw})

	ca := []string{"--cafile", certs.CAFile}
	withCert := append(slices.Clone(ca), "--cert", certs.ClientCertFile, "--key", certs.ClientKeyFile)
	alienCert := append(slices.Clone(ca), "--cert", alien.ClientCertFile, "--key", alien.ClientKeyFile)
	cnTopic := "certs/" + testenv.ClientCommonName + "/x"
	for _, v := range []string{"mqttv311", "mqttv5"} {
		t.Run(v, func(t *testing.T) {
			args := func(addr string, tls []string, more ...string) []string {
				return append(append(append([]string{"-V", v}, hostPort(addr)...), tls...), more...)
			}
			// roundTrip subscribes and publishes on addr and checks the
			// message arrives.
			roundTrip := func(addr string, subTLS, pubTLS []string, topic string, cred ...string) {
				t.Helper()
				subs := tb.Stats().Subscriptions
				_, out, done := mosqSub(t, subTool, args(addr, subTLS, append([]string{"-t", topic, "-q", "1", "-C", "1", "-F", "%t %p"}, cred...)...)...)
				testenv.WaitFor(t, wait, "mosquitto_sub subscribed", func() bool { return tb.Stats().Subscriptions > subs })
				mosqPub(t, pubTool, args(addr, pubTLS, append([]string{"-t", topic, "-q", "1", "-m", "over tls"}, cred...)...)...)
				expectPrinted(t, done, out, topic+" over tls\n")
				testenv.WaitFor(t, wait, "mosquitto_sub gone", func() bool { return tb.Stats().Subscriptions == subs })
			}
			// refused checks that mosquitto_pub cannot publish on addr,
			// that the broker refused it at the TLS handshake (atTLS) or at
			// CONNECT, and that nothing reached the store.
			refused := func(why, addr string, atTLS bool, tls []string, cred ...string) {
				t.Helper()
				stored, failed, connRefused := len(tb.store.messages()), handshakesFailed(), tb.Stats().ConnectionsRefused
				out, err := runTool(pubTool, "", args(addr, tls, append([]string{"-t", cnTopic, "-q", "1", "-m", "refused"}, cred...)...)...)
				if err == nil {
					t.Fatalf("%s: mosquitto_pub published:\n%s", why, out)
				}
				if atTLS {
					testenv.WaitFor(t, wait, why+": the broker's handshake failed", func() bool { return handshakesFailed() == failed+1 })
				} else if n := tb.Stats().ConnectionsRefused; n != connRefused+1 || handshakesFailed() != failed {
					t.Fatalf("%s: want the CONNECT refused after a good handshake", why)
				}
				if n := len(tb.store.messages()); n != stored {
					t.Fatalf("%s: %d messages stored", why, n-stored)
				}
				t.Logf("%s: %v: %s", why, err, strings.TrimSpace(out))
			}

			roundTrip(plain, ca, ca, "tls/plain")

			roundTrip(required, withCert, withCert, cnTopic)
			refused("no client certificate where one is required", required, true, ca)
			refused("a certificate of another CA where one is required", required, true, alienCert)

			roundTrip(optional, ca, ca, "tls/optional", "-u", "dev", "-P", "pw")
			roundTrip(optional, withCert, withCert, cnTopic)
			refused("optional, no certificate and no password", optional, false, ca)
			refused("optional, a certificate of another CA", optional, true, alienCert, "-u", "dev", "-P", "pw")
		})
	}
}

// TestPahoWebSocket runs python3 paho (the Debian package) with
// transport="websockets", both protocol versions, against a ws listener and
// a wss listener that requires a client certificate (paho presents one).
func TestPahoWebSocket(t *testing.T) {
	py := "/usr/bin/python3" // Debian's, where python3-paho-mqtt installs
	if out, err := exec.Command(py, "-c", "import paho.mqtt.client").CombinedOutput(); err != nil {
		testenv.Missing(t, "python3-paho-mqtt not installed: %s", out)
	}
	certs := testenv.GenerateCerts(t)
	tb := startBroker(t, Options{}, nil, nil)
	conf, err := transport.ServerTLS(transport.ServerTLSOptions{
		CertFile: certs.ServerCertFile, KeyFile: certs.ServerKeyFile,
		ClientCAFile: certs.CAFile, RequireClientCert: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	ws := serveOn(t, tb.Broker, transport.ListenOptions{Type: "ws"}, ListenerOptions{Name: "ws", AllowAnonymous: true})
	wss := serveOn(t, tb.Broker, transport.ListenOptions{Type: "wss", TLS: conf}, ListenerOptions{Name: "wss"})
	for _, c := range []struct {
		name string
		ln   net.Listener
		tls  []string
	}{
		{"ws", ws, nil},
		{"wss with a client certificate", wss, []string{certs.CAFile, certs.ClientCertFile, certs.ClientKeyFile}},
	} {
		t.Run(c.name, func(t *testing.T) {
			stored := len(tb.store.messages())
			host, port, _ := net.SplitHostPort(c.ln.Addr().String())
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			args := append([]string{"testdata/paho_ws.py", host, port, transport.DefaultWSPath}, c.tls...)
			out, err := exec.CommandContext(ctx, py, args...).CombinedOutput()
			if err != nil || !strings.Contains(string(out), "ALL OK") {
				t.Fatalf("paho over %s: %v\n%s", c.name, err, out)
			}
			// Per version: QoS 1, QoS 2 and the retained message.
			if n := len(tb.store.messages()) - stored; n != 6 {
				t.Fatalf("%d messages stored, want 6", n)
			}
		})
	}
}

// TestWebSocketFramesAtBroker: over WebSocket the broker reads MQTT packets
// whatever the message boundaries (a CONNECT split over two binary
// messages, a PUBLISH and a PINGREQ in one; 3.1.1 and 5.0 MQTT-6.0.0-2),
// and closes a connection that sends a text message (MQTT-6.0.0-1).
func TestWebSocketFramesAtBroker(t *testing.T) {
	tb := startBroker(t, Options{}, nil, nil)
	ln := serveOn(t, tb.Broker, transport.ListenOptions{Type: "ws"}, ListenerOptions{Name: "ws", AllowAnonymous: true})
	for _, v := range versions() {
		t.Run(v.String(), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			c, resp, err := websocket.Dial(ctx, "ws://"+ln.Addr().String()+transport.DefaultWSPath, &websocket.DialOptions{Subprotocols: []string{"mqtt"}})
			if err != nil {
				t.Fatal(err)
			}
			defer c.CloseNow()
			if got := resp.Header.Get("Sec-WebSocket-Protocol"); got != "mqtt" {
				t.Fatalf("subprotocol %q, want mqtt (MQTT-6.0.0-4)", got)
			}
			encode := func(ps ...packet.Packet) []byte {
				var b []byte
				for _, p := range ps {
					var err error
					if b, err = packet.Append(b, p, v); err != nil {
						t.Fatal(err)
					}
				}
				return b
			}
			write := func(b []byte) {
				if err := c.Write(ctx, websocket.MessageBinary, b); err != nil {
					t.Fatal(err)
				}
			}
			r := packet.NewReader(websocket.NetConn(ctx, c, websocket.MessageBinary), 0)
			r.SetVersion(v)
			read := func(want packet.Type) {
				t.Helper()
				p, err := r.ReadPacket()
				if err != nil || p.Type() != want {
					t.Fatalf("got %v %v, want %v", p, err, want)
				}
			}
			connect := encode(&packet.Connect{ProtocolName: "MQTT", Version: v, ClientID: "frames" + v.String(), CleanStart: true})
			write(connect[:5])
			write(connect[5:])
			read(packet.CONNACK)
			write(encode(&packet.Publish{Topic: "ws/frames", QoS: 1, PacketID: 1, Payload: []byte("x")}, &packet.Pingreq{}))
			// PINGRESP may overtake the PUBACK, which waits for the store.
			got := map[packet.Type]bool{}
			for range 2 {
				p, err := r.ReadPacket()
				if err != nil {
					t.Fatal(err)
				}
				got[p.Type()] = true
			}
			if !got[packet.PUBACK] || !got[packet.PINGRESP] {
				t.Fatalf("got %v, want PUBACK and PINGRESP", got)
			}
			if err := c.Write(ctx, websocket.MessageText, encode(&packet.Pingreq{})); err != nil {
				t.Fatal(err)
			}
			if p, err := r.ReadPacket(); err == nil {
				t.Fatalf("got %v after a text message, want the connection closed", p.Type())
			} else if websocket.CloseStatus(err) != websocket.StatusUnsupportedData {
				t.Fatalf("closed with %v, want close status %v", err, websocket.StatusUnsupportedData)
			}
			testenv.WaitFor(t, wait, "the broker closed the connection", func() bool { return tb.Stats().Connections == 0 })
		})
	}
}
