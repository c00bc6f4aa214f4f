package uplink

import (
	"fmt"
	"io"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"holdfast/internal/packet"
	"holdfast/internal/testenv"
	"holdfast/internal/transport"
)

// TestWebSocketMosquitto forwards over ws:// to a real mosquitto. Debian's
// mosquitto is built without WebSocket support, so where it has none the
// WebSocket hop is holdfast's own listener relaying the bytes to
// mosquitto's TCP listener: the uplink's WebSocket framing meets a real
// server-side WebSocket implementation and its MQTT meets mosquitto.
func TestWebSocketMosquitto(t *testing.T) {
	bin := testenv.LookTool(t, "mosquitto", "mosquitto")
	var url string
	var m *testenv.Mosquitto
	if out, _ := exec.Command("ldd", bin).Output(); strings.Contains(string(out), "websockets") {
		wsPort := testenv.FreePort(t)
		m = testenv.StartMosquitto(t, testenv.MosquittoOptions{Extra: fmt.Sprintf("listener %d 127.0.0.1\nprotocol websockets\n", wsPort)})
		url = fmt.Sprintf("ws://127.0.0.1:%d/mqtt", wsPort)
	} else {
		m = testenv.StartMosquitto(t, testenv.MosquittoOptions{})
		t.Logf("%s has no WebSocket support; relaying holdfast's WebSocket listener to its TCP port", bin)
		url = "ws://" + wsRelay(t, m.Addr()) + "/mqtt"
	}
	sub := subscriber(t, m.Addr(), "ws/#", packet.V5, 2)
	src := newMemSource()
	src.fill(100, 3, "ws", 2)
	c := newClient(t, Options{URL: url, ClientID: "ws"}, src, nil)
	run(t, c)
	checkDelivery(t, payloads(t, receive(t, sub, 100)), 100, true)
	testenv.WaitFor(t, 30*time.Second, "acked", func() bool { _, a, _, _ := src.counts(); return a == 100 })
}

// wsRelay listens for MQTT over WebSocket on a loopback port and copies
// each connection's bytes to and from a TCP connection to upstream. It
// returns the listener's address.
func wsRelay(t *testing.T, upstream string) string {
	t.Helper()
	ln, err := transport.Listen(transport.ListenOptions{Type: transport.TypeWS, Address: "127.0.0.1:0", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", upstream)
			if err != nil {
				c.Close()
				continue
			}
			go func() { io.Copy(u, c); u.Close() }()
			go func() { io.Copy(c, u); c.Close() }()
		}
	}()
	return ln.Addr().String()
}

// TestWebSocketFake forwards over ws:// and wss:// to the fake server behind
// holdfast's own WebSocket listener.
func TestWebSocketFake(t *testing.T) {
	certs := testenv.GenerateCerts(t)
	stls, err := transport.ServerTLS(transport.ServerTLSOptions{CertFile: certs.ServerCertFile, KeyFile: certs.ServerKeyFile})
	if err != nil {
		t.Fatal(err)
	}
	ctls, err := transport.ClientTLS(transport.ClientTLSOptions{CAFile: certs.CAFile})
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range []string{transport.TypeWS, transport.TypeWSS} {
		t.Run(typ, func(t *testing.T) {
			ln, err := transport.Listen(transport.ListenOptions{Type: typ, Address: "127.0.0.1:0", TLS: stls, Logger: testLogger(t)})
			if err != nil {
				t.Fatal(err)
			}
			f := &fakeServer{t: t, ln: ln, conns: make(chan net.Conn, 4)}
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					f.conns <- c
				}
			}()
			t.Cleanup(func() { ln.Close() })
			port := ln.Addr().(*net.TCPAddr).Port
			src := newMemSource()
			src.fill(20, 2, "ws", 1)
			c := newClient(t, Options{URL: fmt.Sprintf("%s://localhost:%d/mqtt", typ, port), TLS: ctls, ClientID: "ws", KeepAlive: -1}, src, nil)
			run(t, c)
			fc := f.accept()
			fc.connack(false, packet.Properties{})
			for i := range 20 {
				p, ok := fc.read().(*packet.Publish)
				if !ok || string(p.Payload) != fmt.Sprint(i) {
					t.Fatalf("message %d: %+v", i, p)
				}
				fc.send(&packet.Puback{PacketID: p.PacketID})
			}
			testenv.WaitFor(t, 30*time.Second, "acked", func() bool { _, a, _, _ := src.counts(); return a == 20 })
		})
	}
}
