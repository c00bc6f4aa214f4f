package uplink

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"holdfast/internal/packet"
	"holdfast/internal/testenv"
	"holdfast/internal/transport"
)

// TestWebSocketMosquitto forwards over ws:// to a real mosquitto's own
// WebSocket listener. A mosquitto built without WebSocket support refuses
// that listener at start; only then is the WebSocket hop holdfast's own
// listener relaying the bytes to mosquitto's TCP listener (the uplink's
// WebSocket framing meets a real server-side implementation and its MQTT
// meets mosquitto), and the test says so.
func TestWebSocketMosquitto(t *testing.T) {
	bin := testenv.LookTool(t, "mosquitto", "mosquitto")
	var url string
	var m *testenv.Mosquitto
	wsPort := testenv.FreePort(t)
	wsConf := fmt.Sprintf("listener %d 127.0.0.1\nprotocol websockets\n", wsPort)
	if err := probeMosquittoConf(t, bin, wsConf, wsPort); err == nil {
		m = testenv.StartMosquitto(t, testenv.MosquittoOptions{Extra: wsConf})
		url = fmt.Sprintf("ws://127.0.0.1:%d/mqtt", wsPort)
	} else {
		m = testenv.StartMosquitto(t, testenv.MosquittoOptions{})
		t.Logf("%s refuses a WebSocket listener (%v); relaying holdfast's WebSocket listener to its TCP port", bin, err)
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

// probeMosquittoConf starts mosquitto with conf after a plain listener of
// its own (mosquitto 2.0 does not start with WebSocket listeners alone) and
// returns nil once it listens on port, or an error (with what it printed)
// when it exits first: it refused the configuration. The probe is stopped
// before returning.
func probeMosquittoConf(t *testing.T, bin, conf string, port int) error {
	t.Helper()
	file := filepath.Join(t.TempDir(), "probe.conf")
	conf = fmt.Sprintf("listener %d 127.0.0.1\n", testenv.FreePort(t)) + conf
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	var out testenv.LockedBuffer
	cmd := exec.Command(bin, "-c", file)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	defer func() {
		cmd.Process.Kill()
		<-exited
	}()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("mosquitto exited: %s", strings.TrimSpace(out.String()))
		default:
		}
		if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 200*time.Millisecond); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("mosquitto neither listened on %d nor exited: %s", port, out.String())
	return nil
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
