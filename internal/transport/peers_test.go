package transport

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"holdfast/internal/testenv"
)

// connect311 is an MQTT 3.1.1 CONNECT with a clean session, keep alive 60s
// and the client id "hf-transport".
var connect311 = []byte{
	0x10, 24, // CONNECT, remaining length
	0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name
	0x04,       // protocol level 3.1.1
	0x02,       // flags: clean session
	0x00, 0x3c, // keep alive
	0x00, 0x0c, 'h', 'f', '-', 't', 'r', 'a', 'n', 's', 'p', 'o', 'r', 't',
}

// connackAccepted is CONNACK with session present 0 and return code 0.
var connackAccepted = []byte{0x20, 0x02, 0x00, 0x00}

// mqttConnect sends connect311 over c and checks the broker accepts it.
func mqttConnect(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetDeadline(time.Now().Add(waitTimeout))
	if _, err := c.Write(connect311); err != nil {
		t.Fatalf("write CONNECT: %v", err)
	}
	got := make([]byte, len(connackAccepted))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read CONNACK: %v", err)
	}
	if !bytes.Equal(got, connackAccepted) {
		t.Fatalf("broker answered % x, want CONNACK % x", got, connackAccepted)
	}
}

func TestMosquitto(t *testing.T) {
	c := testenv.GenerateCerts(t)
	wsPort, wssPort := testenv.FreePort(t), testenv.FreePort(t)
	m := testenv.StartMosquitto(t, testenv.MosquittoOptions{
		TLS: &testenv.MosquittoTLS{
			CAFile: c.CAFile, CertFile: c.ServerCertFile, KeyFile: c.ServerKeyFile,
			RequireClientCert: true,
		},
		Extra: fmt.Sprintf("listener %d 127.0.0.1\nprotocol websockets\n"+
			"listener %d 127.0.0.1\nprotocol websockets\ncafile %s\ncertfile %s\nkeyfile %s\nrequire_certificate true\n",
			wsPort, wssPort, c.CAFile, c.ServerCertFile, c.ServerKeyFile),
	})
	withCert, err := ClientTLS(ClientTLSOptions{CAFile: c.CAFile, CertFile: c.ClientCertFile, KeyFile: c.ClientKeyFile})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, url string
		opts      DialOptions
	}{
		{"mqtt", m.URL(), DialOptions{}},
		{"mqtts with client certificate", fmt.Sprintf("mqtts://localhost:%d", m.TLSPort), DialOptions{TLS: withCert}},
		{"ws", fmt.Sprintf("ws://127.0.0.1:%d", wsPort), DialOptions{}},
		{"wss with client certificate", fmt.Sprintf("wss://localhost:%d", wssPort), DialOptions{TLS: withCert}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := Dial(context.Background(), tt.url, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			mqttConnect(t, conn)
		})
	}

	t.Run("mqtts without client certificate", func(t *testing.T) {
		noCert, err := ClientTLS(ClientTLSOptions{CAFile: c.CAFile})
		if err != nil {
			t.Fatal(err)
		}
		conn, err := Dial(context.Background(), fmt.Sprintf("mqtts://127.0.0.1:%d", m.TLSPort), DialOptions{TLS: noCert})
		if err == nil {
			// With TLS 1.3 the client's handshake ends before the broker
			// checks; the refusal comes with the first read.
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(waitTimeout))
			conn.Write(connect311)
			var n int
			if n, err = io.ReadFull(conn, make([]byte, 4)); err == nil {
				t.Fatalf("mosquitto answered %d bytes to a client without a certificate", n)
			}
		}
		t.Logf("refused: %v", err)
		if !strings.Contains(err.Error(), "certificate") {
			t.Errorf("refused with %v, want an error about the certificate", err)
		}
	})
}

// pahoScript connects with Python's paho client over WebSocket, prints the
// CONNACK return code and disconnects.
const pahoScript = `
import sys
import paho.mqtt.client as mqtt

result = {}

def on_connect(client, userdata, flags, rc):
    result["rc"] = rc
    client.disconnect()

c = mqtt.Client(client_id="paho-ws", transport="websockets", protocol=mqtt.MQTTv311)
c.ws_set_options(path=sys.argv[2])
c.on_connect = on_connect
c.connect("127.0.0.1", int(sys.argv[1]), keepalive=30)
c.loop_forever(timeout=1.0)
print("rc=%s" % result.get("rc"))
`

func TestPahoWebSocket(t *testing.T) {
	python := "/usr/bin/python3"
	if _, err := os.Stat(python); err != nil {
		testenv.Missing(t, "/usr/bin/python3 not found: install the Debian packages python3 and python3-paho-mqtt")
	}
	if err := exec.Command(python, "-c", "import paho.mqtt.client").Run(); err != nil {
		testenv.Missing(t, "paho for Python not found: install the Debian package python3-paho-mqtt")
	}
	ln, err := Listen(ListenOptions{Type: TypeWS, Address: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	script := filepath.Join(t.TempDir(), "paho_ws.py")
	if err := os.WriteFile(script, []byte(pahoScript), 0o600); err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, script, port, DefaultWSPath)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	accepted := make(chan net.Conn, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			accepted <- c
		}
	}()
	var conn net.Conn
	select {
	case conn = <-accepted:
	case err := <-exited:
		t.Fatalf("paho exited before connecting: %v\n%s", err, out.String())
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(waitTimeout))

	// The CONNECT paho sent: fixed header, then the variable header and
	// payload of the length it announces.
	header := make([]byte, 2)
	if _, err := io.ReadFull(conn, header); err != nil {
		t.Fatalf("read CONNECT header: %v", err)
	}
	if header[0] != 0x10 || header[1] >= 0x80 {
		t.Fatalf("first bytes % x, want a short CONNECT", header)
	}
	body := make([]byte, header[1])
	if _, err := io.ReadFull(conn, body); err != nil {
		t.Fatalf("read CONNECT body: %v", err)
	}
	wantStart := []byte{0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04}
	if !bytes.HasPrefix(body, wantStart) {
		t.Fatalf("CONNECT body % x does not start with % x", body, wantStart)
	}
	if !bytes.HasSuffix(body, []byte{0x00, 0x07, 'p', 'a', 'h', 'o', '-', 'w', 's'}) {
		t.Fatalf("CONNECT body % x does not end with the client id paho-ws", body)
	}

	if _, err := conn.Write(connackAccepted); err != nil {
		t.Fatal(err)
	}
	disconnect := make([]byte, 2)
	if _, err := io.ReadFull(conn, disconnect); err != nil {
		t.Fatalf("read DISCONNECT: %v", err)
	}
	if !bytes.Equal(disconnect, []byte{0xe0, 0x00}) {
		t.Errorf("after CONNACK paho sent % x, want DISCONNECT e0 00", disconnect)
	}
	conn.Close()
	if err := <-exited; err != nil {
		t.Fatalf("paho: %v\n%s", err, out.String())
	}
	if got := strings.TrimSpace(out.String()); got != "rc=0" {
		t.Errorf("paho printed %q, want rc=0", got)
	}
}
