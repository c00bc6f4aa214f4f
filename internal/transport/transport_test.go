package transport

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/sync/errgroup"

	"holdfast/internal/testenv"
)

// waitTimeout bounds every wait in these tests; nothing should take close.
const waitTimeout = 20 * time.Second

var types = []string{TypeTCP, TypeTLS, TypeWS, TypeWSS}

var schemeOf = map[string]string{TypeTCP: "mqtt", TypeTLS: "mqtts", TypeWS: "ws", TypeWSS: "wss"}

func serverTLS(t *testing.T, c *testenv.Certs, o ServerTLSOptions) *tls.Config {
	t.Helper()
	if o.CertFile == "" {
		o.CertFile, o.KeyFile = c.ServerCertFile, c.ServerKeyFile
	}
	conf, err := ServerTLS(o)
	if err != nil {
		t.Fatal(err)
	}
	return conf
}

func clientTLS(t *testing.T, c *testenv.Certs, o ClientTLSOptions) *tls.Config {
	t.Helper()
	if o.CAFile == "" {
		o.CAFile = c.CAFile
	}
	conf, err := ClientTLS(o)
	if err != nil {
		t.Fatal(err)
	}
	return conf
}

// listen opens a listener of type typ on a free loopback port, closed at
// the end of the test, and returns it with the URL that dials it.
func listen(t *testing.T, c *testenv.Certs, typ string, conf *tls.Config) (net.Listener, string) {
	t.Helper()
	if conf == nil && (typ == TypeTLS || typ == TypeWSS) {
		conf = serverTLS(t, c, ServerTLSOptions{})
	}
	ln, err := Listen(ListenOptions{Type: typ, Address: "127.0.0.1:0", TLS: conf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln, schemeOf[typ] + "://" + ln.Addr().String()
}

// connect dials url and returns both ends: the client's conn and the one
// ln accepted.
func connect(t *testing.T, ln net.Listener, url string, opts DialOptions) (client, server net.Conn) {
	t.Helper()
	accepted := make(chan net.Conn, 1)
	acceptErr := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			// As the broker will: handshake first (a no-op without TLS).
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			err = Handshake(ctx, c)
			cancel()
		}
		if err != nil {
			acceptErr <- err
			return
		}
		accepted <- c
	}()
	client, err := Dial(context.Background(), url, opts)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(func() { client.Close() })
	select {
	case server = <-accepted:
	case err := <-acceptErr:
		t.Fatalf("accept: %v", err)
	case <-time.After(waitTimeout):
		t.Fatalf("no connection accepted within %v", waitTimeout)
	}
	t.Cleanup(func() { server.Close() })
	return client, server
}

// exchange sends n random bytes each way at once, written in chunks of
// random sizes (over WebSocket every Write is one message, so MQTT packets
// would be split across messages and coalesced in one) and read with
// buffers of random sizes, and checks both sides got exactly what was sent.
func exchange(t *testing.T, a, b net.Conn, n int, seed uint64) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	a.SetDeadline(deadline)
	b.SetDeadline(deadline)
	rng := rand.New(rand.NewPCG(seed, 1))
	ab, ba := randomBytes(rng, n), randomBytes(rng, n)
	var g errgroup.Group
	g.Go(func() error { return writeChunks(a, ab, rand.New(rand.NewPCG(seed, 2))) })
	g.Go(func() error { return writeChunks(b, ba, rand.New(rand.NewPCG(seed, 3))) })
	g.Go(func() error { return readExpect(b, ab, rand.New(rand.NewPCG(seed, 4)), "a to b") })
	g.Go(func() error { return readExpect(a, ba, rand.New(rand.NewPCG(seed, 5)), "b to a") })
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	a.SetDeadline(time.Time{})
	b.SetDeadline(time.Time{})
}

func randomBytes(rng *rand.Rand, n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(rng.Uint32())
	}
	return p
}

// chunkSize is 1 to 8 bytes half the time (a packet in pieces), else up to
// 5,000 bytes (several packets at once).
func chunkSize(rng *rand.Rand) int {
	if rng.IntN(2) == 0 {
		return 1 + rng.IntN(8)
	}
	return 1 + rng.IntN(5000)
}

func writeChunks(c net.Conn, data []byte, rng *rand.Rand) error {
	for len(data) > 0 {
		k := min(chunkSize(rng), len(data))
		if _, err := c.Write(data[:k]); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		data = data[k:]
	}
	return nil
}

func readExpect(c net.Conn, want []byte, rng *rand.Rand, dir string) error {
	got := make([]byte, 0, len(want))
	buf := make([]byte, 5000)
	for len(got) < len(want) {
		k := min(chunkSize(rng), len(want)-len(got))
		n, err := c.Read(buf[:k])
		got = append(got, buf[:n]...)
		if err != nil {
			return fmt.Errorf("%s: read after %d of %d bytes: %w", dir, len(got), len(want), err)
		}
	}
	if i := firstDiff(got, want); i >= 0 {
		return fmt.Errorf("%s: byte %d differs: got %#x, want %#x", dir, i, got[i], want[i])
	}
	return nil
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	return -1
}

func TestRoundTrip(t *testing.T) {
	c := testenv.GenerateCerts(t)
	for i, typ := range types {
		t.Run(typ, func(t *testing.T) {
			ln, url := listen(t, c, typ, nil)
			var opts DialOptions
			if typ == TypeTLS || typ == TypeWSS {
				opts.TLS = clientTLS(t, c, ClientTLSOptions{})
			}
			client, server := connect(t, ln, url, opts)
			// The dial context and the upgrade request are over by now: the
			// conns must outlive both.
			exchange(t, client, server, 256<<10, uint64(i))

			if got, want := server.RemoteAddr().String(), client.LocalAddr().String(); got != want {
				t.Errorf("server sees peer %s, client is %s", got, want)
			}
			if got, want := client.RemoteAddr().String(), ln.Addr().String(); got != want {
				t.Errorf("client sees peer %s, listener is %s", got, want)
			}
			_, clientTLS := TLSState(client)
			_, serverTLS := TLSState(server)
			wantTLS := typ == TypeTLS || typ == TypeWSS
			if clientTLS != wantTLS || serverTLS != wantTLS {
				t.Errorf("TLSState ok: client %v, server %v, want %v", clientTLS, serverTLS, wantTLS)
			}

			// Close on one side is EOF on the other.
			client.Close()
			server.SetReadDeadline(time.Now().Add(waitTimeout))
			if n, err := server.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
				t.Errorf("read after peer close: %d bytes, %v, want EOF", n, err)
			}
		})
	}
}

// TestWebSocketFrames writes with a plain WebSocket client so that one
// message spans several frames and one message holds two packets, and
// checks that the server conn reads the byte stream whole.
func TestWebSocketFrames(t *testing.T) {
	c := testenv.GenerateCerts(t)
	ln, url := listen(t, c, TypeWS, nil)
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, url+DefaultWSPath, &websocket.DialOptions{Subprotocols: []string{"mqtt"}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	var server net.Conn
	select {
	case server = <-accepted:
	case <-ctx.Done():
		t.Fatal("no connection accepted")
	}
	defer server.Close()

	pingreq := []byte{0xc0, 0x00}
	publish := []byte{0x30, 0x07, 0x00, 0x03, 'a', '/', 'b', 'h', 'i'}
	// One PUBLISH in three frames of one message.
	w, err := ws.Writer(ctx, websocket.MessageBinary)
	if err != nil {
		t.Fatal(err)
	}
	for _, part := range [][]byte{publish[:1], publish[1:4], publish[4:]} {
		if _, err := w.Write(part); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	// Two packets in one message.
	if err := ws.Write(ctx, websocket.MessageBinary, append(append([]byte{}, pingreq...), publish...)); err != nil {
		t.Fatal(err)
	}
	want := append(append(append([]byte{}, publish...), pingreq...), publish...)
	server.SetReadDeadline(time.Now().Add(waitTimeout))
	got := make([]byte, len(want))
	if _, err := io.ReadFull(server, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("server read % x, want % x", got, want)
	}

	// And a text message is refused, not read as stream bytes: the server
	// closes with status 1003 (unsupported data).
	if err := ws.Write(ctx, websocket.MessageText, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	peerErr := make(chan error, 1)
	go func() {
		_, _, err := ws.Read(ctx) // answers the server's close frame
		peerErr <- err
	}()
	if n, err := server.Read(make([]byte, 10)); err == nil {
		t.Fatalf("text message read as %d stream bytes", n)
	}
	if err := <-peerErr; websocket.CloseStatus(err) != websocket.StatusUnsupportedData {
		t.Errorf("client saw %v, want close status %v", err, websocket.StatusUnsupportedData)
	}
}

func TestMutualTLS(t *testing.T) {
	c := testenv.GenerateCerts(t)
	for _, typ := range []string{TypeTLS, TypeWSS} {
		t.Run(typ, func(t *testing.T) {
			conf := serverTLS(t, c, ServerTLSOptions{ClientCAFile: c.CAFile, RequireClientCert: true})
			ln, url := listen(t, c, typ, conf)

			t.Run("with certificate", func(t *testing.T) {
				opts := DialOptions{TLS: clientTLS(t, c, ClientTLSOptions{CertFile: c.ClientCertFile, KeyFile: c.ClientKeyFile})}
				client, server := connect(t, ln, url, opts)
				exchange(t, client, server, 1024, 7)
				st, ok := TLSState(server)
				if !ok || !st.HandshakeComplete {
					t.Fatalf("server TLSState: %+v, %v", st, ok)
				}
				if len(st.PeerCertificates) == 0 {
					t.Fatal("server sees no client certificate")
				}
				if cn := st.PeerCertificates[0].Subject.CommonName; cn != testenv.ClientCommonName {
					t.Errorf("client certificate CN %q, want %q", cn, testenv.ClientCommonName)
				}
			})

			t.Run("without certificate", func(t *testing.T) {
				serverErr := make(chan error, 1)
				go func() {
					sc, err := ln.Accept()
					if err != nil {
						serverErr <- err
						return
					}
					defer sc.Close()
					ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
					defer cancel()
					serverErr <- Handshake(ctx, sc)
				}()
				opts := DialOptions{TLS: clientTLS(t, c, ClientTLSOptions{})}
				err := refused(url, opts)
				if err == nil {
					t.Fatal("connection without a client certificate worked")
				}
				t.Logf("client error: %v", err)
				if typ == TypeTLS {
					// With TLS 1.3 the client finishes its handshake before
					// the server checks; the server refuses on its side.
					select {
					case err := <-serverErr:
						if err == nil || !strings.Contains(err.Error(), "certificate") {
							t.Errorf("server read error %v, want one about the missing certificate", err)
						}
					case <-time.After(waitTimeout):
						t.Fatal("server never refused the connection")
					}
				}
			})
		})
	}
}

// refused dials url and, if that works, tries a round trip, returning the
// first error.
func refused(url string, opts DialOptions) error {
	c, err := Dial(context.Background(), url, opts)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(waitTimeout))
	if _, err := c.Write([]byte{0xc0, 0x00}); err != nil {
		return err
	}
	_, err = c.Read(make([]byte, 1))
	return err
}

func TestSNIAndALPN(t *testing.T) {
	c := testenv.GenerateCerts(t)
	for _, typ := range []string{TypeTLS, TypeWSS} {
		t.Run(typ, func(t *testing.T) {
			seen := make(chan string, 2)
			conf := serverTLS(t, c, ServerTLSOptions{})
			if typ == TypeTLS {
				conf.NextProtos = []string{"mqtt"}
			} else {
				conf.NextProtos = []string{"http/1.1"}
			}
			conf.GetConfigForClient = func(h *tls.ClientHelloInfo) (*tls.Config, error) {
				seen <- h.ServerName
				return nil, nil
			}
			ln, url := listen(t, c, typ, conf)
			_, port, _ := net.SplitHostPort(ln.Addr().String())

			// SNI from the URL host when no ServerName is configured.
			client, server := connect(t, ln, schemeOf[typ]+"://localhost:"+port, DialOptions{TLS: clientTLS(t, c, ClientTLSOptions{})})
			exchange(t, client, server, 64, 1)
			if got := <-seen; got != "localhost" {
				t.Errorf("server saw SNI %q from URL host, want localhost", got)
			}

			// A configured ServerName wins over the URL's IP, with ALPN.
			alpn := conf.NextProtos[0]
			client, server = connect(t, ln, url, DialOptions{TLS: clientTLS(t, c, ClientTLSOptions{ServerName: "localhost", ALPN: []string{alpn}})})
			exchange(t, client, server, 64, 2)
			if got := <-seen; got != "localhost" {
				t.Errorf("server saw SNI %q, want localhost", got)
			}
			st, _ := TLSState(server)
			if st.ServerName != "localhost" || st.NegotiatedProtocol != alpn {
				t.Errorf("server state: SNI %q ALPN %q, want localhost %q", st.ServerName, st.NegotiatedProtocol, alpn)
			}
			cst, _ := TLSState(client)
			if cst.NegotiatedProtocol != alpn {
				t.Errorf("client negotiated ALPN %q, want %q", cst.NegotiatedProtocol, alpn)
			}
		})
	}
}

func TestWrongCA(t *testing.T) {
	c := testenv.GenerateCerts(t)
	other := testenv.GenerateCerts(t)
	for _, typ := range []string{TypeTLS, TypeWSS} {
		t.Run(typ, func(t *testing.T) {
			ln, url := listen(t, c, typ, nil)
			go func() {
				if c, err := ln.Accept(); err == nil {
					ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
					Handshake(ctx, c)
					cancel()
					c.Close()
				}
			}()
			_, err := Dial(context.Background(), url, DialOptions{TLS: clientTLS(t, c, ClientTLSOptions{CAFile: other.CAFile})})
			if err == nil {
				t.Fatal("dial verified a certificate from an unknown CA")
			}
			var unknown x509.UnknownAuthorityError
			if !errors.As(err, &unknown) {
				t.Errorf("error %v (%T) is not an x509.UnknownAuthorityError", err, err)
			}
			if msg := err.Error(); !strings.Contains(msg, url) || !strings.Contains(msg, "unknown authority") {
				t.Errorf("error %q does not name the URL and the unknown authority", msg)
			}
		})
	}
}

func TestUnsupportedScheme(t *testing.T) {
	for _, u := range []string{"tcp://127.0.0.1:1883", "http://example.com/mqtt", "127.0.0.1:1883"} {
		_, err := Dial(context.Background(), u, DialOptions{})
		if !errors.Is(err, ErrUnsupportedScheme) {
			t.Errorf("Dial(%q) = %v, want ErrUnsupportedScheme", u, err)
		}
	}
	_, err := Dial(context.Background(), "tcp://127.0.0.1:1883", DialOptions{})
	if want := `unsupported scheme "tcp"`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("error %v does not contain %s", err, want)
	}
}

func TestDialErrorHidesPassword(t *testing.T) {
	_, err := Dial(context.Background(), "mqtt://user:s3cret@broker/x", DialOptions{})
	if err == nil || strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "user") {
		t.Errorf("error %v shows the password or hides the URL", err)
	}
}

func TestParseTarget(t *testing.T) {
	tests := []struct {
		url, addr, wsURL, err string
	}{
		{url: "mqtt://broker", addr: "broker:1883"},
		{url: "MQTT://broker:1884/", addr: "broker:1884"},
		{url: "mqtts://broker", addr: "broker:8883"},
		{url: "mqtts://[::1]", addr: "[::1]:8883"},
		{url: "ws://broker", addr: "broker:80", wsURL: "ws://broker:80/mqtt"},
		{url: "ws://broker:9001/", addr: "broker:9001", wsURL: "ws://broker:9001/"},
		{url: "wss://broker/mqtt?x-amz-token=a%2Fb", addr: "broker:443", wsURL: "wss://broker:443/mqtt?x-amz-token=a%2Fb"},
		{url: "wss://[fe80::1]:8443/ws", addr: "[fe80::1]:8443", wsURL: "wss://[fe80::1]:8443/ws"},
		{url: "mqtt://", err: "no host"},
		{url: "mqtt://broker:0", err: "bad port"},
		{url: "mqtt://broker:70000", err: "bad port"},
		{url: "mqtt://broker/topic", err: "path"},
		{url: "ftp://broker", err: "unsupported scheme"},
		{url: "mqtt://bro ker", err: "invalid"},
		{url: "ws://]", err: "bad host"},
		{url: "ws://::", err: "bad host"},
		{url: "127.0.0.1:1883", err: "no scheme"},
	}
	for _, tt := range tests {
		got, err := parseTarget(tt.url)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("parseTarget(%q) error %v, want one containing %q", tt.url, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("parseTarget(%q): %v", tt.url, err)
			continue
		}
		if got.addr != tt.addr || got.wsURL != tt.wsURL {
			t.Errorf("parseTarget(%q) = addr %q ws %q, want %q %q", tt.url, got.addr, got.wsURL, tt.addr, tt.wsURL)
		}
	}
}

func TestWebSocketRefusals(t *testing.T) {
	c := testenv.GenerateCerts(t)
	ln, url := listen(t, c, TypeWS, nil)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()

	t.Run("other path", func(t *testing.T) {
		_, err := Dial(context.Background(), url+"/elsewhere", DialOptions{})
		if err == nil || !strings.Contains(err.Error(), "404") {
			t.Errorf("dial on another path: %v, want a 404", err)
		}
		resp, err := http.Get("http" + strings.TrimPrefix(url, "ws") + "/elsewhere")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("plain GET on another path: %s, want 404", resp.Status)
		}
	})

	t.Run("no mqtt subprotocol", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		_, resp, err := websocket.Dial(ctx, url+DefaultWSPath, &websocket.DialOptions{Subprotocols: []string{"chat"}})
		if err == nil || resp == nil || resp.StatusCode != http.StatusBadRequest {
			t.Errorf("upgrade without mqtt: %v, %v; want 400", err, resp)
		}
	})

	t.Run("server without mqtt", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, err := websocket.Accept(w, r, nil) // agrees to no subprotocol
			if err == nil {
				c.CloseNow()
			}
		}))
		defer srv.Close()
		_, err := Dial(context.Background(), "ws"+strings.TrimPrefix(srv.URL, "http"), DialOptions{})
		if !errors.Is(err, ErrSubprotocol) {
			t.Errorf("dial to a server without mqtt: %v, want ErrSubprotocol", err)
		}
	})
}

func TestCloseUnblocksAccept(t *testing.T) {
	c := testenv.GenerateCerts(t)
	for _, typ := range types {
		t.Run(typ, func(t *testing.T) {
			ln, url := listen(t, c, typ, nil)
			done := make(chan error, 1)
			go func() {
				_, err := ln.Accept()
				done <- err
			}()
			// Accept is blocked (or about to be); Close must end it.
			if err := ln.Close(); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-done:
				if !errors.Is(err, net.ErrClosed) {
					t.Errorf("Accept after Close: %v, want net.ErrClosed", err)
				}
			case <-time.After(waitTimeout):
				t.Fatal("Accept still blocked after Close")
			}
			if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
				t.Errorf("second Accept after Close: %v, want net.ErrClosed", err)
			}
			opts := DialOptions{ConnectTimeout: 5 * time.Second, TLS: clientTLS(t, c, ClientTLSOptions{})}
			if c, err := Dial(context.Background(), url, opts); err == nil {
				c.Close()
				t.Error("dial to a closed listener worked")
			}
		})
	}
}

// TestCloseKeepsAccepted checks that closing a WebSocket listener leaves
// conns already accepted working, as with any net.Listener.
func TestCloseKeepsAccepted(t *testing.T) {
	c := testenv.GenerateCerts(t)
	ln, url := listen(t, c, TypeWS, nil)
	client, server := connect(t, ln, url, DialOptions{})
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	exchange(t, client, server, 4096, 3)
}

func TestListenErrors(t *testing.T) {
	c := testenv.GenerateCerts(t)
	if _, err := Listen(ListenOptions{Type: "quic", Address: "127.0.0.1:0"}); !errors.Is(err, ErrUnsupportedType) {
		t.Errorf("type quic: %v, want ErrUnsupportedType", err)
	}
	for _, typ := range []string{TypeTLS, TypeWSS} {
		if _, err := Listen(ListenOptions{Type: typ, Address: "127.0.0.1:0"}); !errors.Is(err, ErrNoTLSConfig) {
			t.Errorf("type %s without TLS: %v, want ErrNoTLSConfig", typ, err)
		}
	}
	ln, _ := listen(t, c, TypeTCP, nil)
	if _, err := Listen(ListenOptions{Type: TypeWS, Address: ln.Addr().String()}); err == nil || !strings.Contains(err.Error(), ln.Addr().String()) {
		t.Errorf("listen on a busy address: %v, want an error naming it", err)
	}
}

func TestDialTimeout(t *testing.T) {
	// A listener that never answers the upgrade: the connect timeout ends it.
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	go func() {
		for {
			c, err := raw.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	for _, scheme := range []string{"ws", "mqtts"} {
		_, err := Dial(context.Background(), scheme+"://"+raw.Addr().String(), DialOptions{ConnectTimeout: 200 * time.Millisecond})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s dial to a silent server: %v, want a deadline error", scheme, err)
		}
	}
}

// TestReadDeadline checks that a read deadline ends a blocked Read with an
// error that says it is a timeout, on every transport, as MQTT keep alive
// needs.
func TestReadDeadline(t *testing.T) {
	c := testenv.GenerateCerts(t)
	for _, typ := range types {
		t.Run(typ, func(t *testing.T) {
			ln, url := listen(t, c, typ, nil)
			client, server := connect(t, ln, url, DialOptions{TLS: clientTLS(t, c, ClientTLSOptions{})})
			exchange(t, client, server, 16, 9)
			server.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			_, err := server.Read(make([]byte, 1))
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				t.Errorf("read past the deadline: %v, want a net.Error timeout", err)
			}
		})
	}
}
