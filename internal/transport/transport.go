// Package transport gives both MQTT sides of holdfast their byte streams: the
// local broker listens for devices and the uplink dials the upstream broker
// over plain TCP, TLS, MQTT over WebSocket, or WebSocket over TLS, and gets a
// net.Conn or net.Listener either way. It knows nothing about MQTT packets.
//
// Client side, Dial takes a URL:
//
//	mqtt://host[:port]        TCP, default port 1883
//	mqtts://host[:port]       TLS, default port 8883
//	ws://host[:port][/path]   WebSocket, default port 80, default path /mqtt
//	wss://host[:port][/path]  WebSocket over TLS, default port 443, default path /mqtt
//
// Server side, Listen opens a listener of type "tcp", "tls", "ws" or "wss".
// A WebSocket listener is an HTTP server that upgrades requests on one path
// (default /mqtt) and answers 404 on every other path.
//
// WebSocket connections negotiate the subprotocol "mqtt" (RFC 6455 with the
// MQTT 3.1.1 and 5.0 WebSocket bindings) and carry the MQTT byte stream in
// binary messages: every Write on the conn sends one message, and Read
// returns the bytes of consecutive messages as one stream, so an MQTT packet
// split across messages or several packets in one message read the same as
// over TCP. The framing is github.com/coder/websocket. Two differences from a
// TCP conn are worth knowing: a read or write deadline that expires while a
// Read or Write is blocked closes the WebSocket connection (fine for MQTT keep
// alive, which closes it anyway), and a single message may not exceed
// MaxWebSocketMessage bytes.
//
// For TLS conns (tls and wss, on either side) TLSState returns the
// connection state, so the broker can take a device's identity from its
// client certificate. ClientTLS and ServerTLS build the *tls.Config from PEM
// files; both require TLS 1.2 or later.
package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Default ports and path for URLs that do not name them.
const (
	DefaultMQTTPort  = 1883
	DefaultMQTTSPort = 8883
	DefaultWSPort    = 80
	DefaultWSSPort   = 443
	DefaultWSPath    = "/mqtt"
)

// DefaultConnectTimeout bounds Dial (TCP connect, TLS handshake and WebSocket
// upgrade together) when DialOptions.ConnectTimeout is zero.
const DefaultConnectTimeout = 30 * time.Second

// MaxWebSocketMessage is the largest WebSocket message a conn accepts: the
// largest MQTT packet (a fixed header byte, four bytes of remaining length and
// 268,435,455 bytes of body). Messages are streamed, never buffered whole, so
// the limit costs no memory; the MQTT codec enforces the real packet size
// limit of each connection.
const MaxWebSocketMessage = 1 + 4 + 268435455

// Subprotocol is the WebSocket subprotocol MQTT requires.
const Subprotocol = "mqtt"

// Errors callers branch on.
var (
	// ErrUnsupportedScheme is returned by Dial for a URL scheme other than
	// mqtt, mqtts, ws or wss.
	ErrUnsupportedScheme = errors.New("unsupported scheme")
	// ErrUnsupportedType is returned by Listen for a listener type other than
	// tcp, tls, ws or wss.
	ErrUnsupportedType = errors.New("unsupported listener type")
	// ErrNoTLSConfig is returned by Listen for a tls or wss listener without a
	// TLS configuration.
	ErrNoTLSConfig = errors.New("no tls configuration")
	// ErrSubprotocol is returned by Dial when a WebSocket server does not
	// agree to the subprotocol "mqtt".
	ErrSubprotocol = errors.New("websocket subprotocol mqtt not agreed")
)

// DialOptions configures Dial. The zero value dials with system roots, TLS 1.2
// or later, SNI from the URL host and DefaultConnectTimeout.
type DialOptions struct {
	// TLS is the configuration for mqtts and wss (see ClientTLS). Nil means
	// the system roots. When its ServerName is empty the URL host is used for
	// SNI and verification. Ignored for mqtt and ws.
	TLS *tls.Config
	// ConnectTimeout bounds the whole dial: TCP connect, TLS handshake and
	// WebSocket upgrade. Zero means DefaultConnectTimeout. The context passed
	// to Dial can end it sooner; neither affects the conn once returned.
	ConnectTimeout time.Duration
	// Header is added to the WebSocket upgrade request (for brokers that
	// authenticate there). Ignored for mqtt and mqtts.
	Header http.Header
}

// target is a parsed, defaulted dial URL.
type target struct {
	scheme string // mqtt, mqtts, ws or wss
	host   string // host name or IP, without brackets
	addr   string // host:port
	wsURL  string // for ws and wss: the URL with port and path filled in
}

func (t target) secure() bool { return t.scheme == "mqtts" || t.scheme == "wss" }

// parseTarget checks rawURL and fills in the default port and path.
func parseTarget(rawURL string) (target, error) {
	if !strings.Contains(rawURL, "://") {
		return target{}, fmt.Errorf("%w: no scheme (want mqtt://, mqtts://, ws:// or wss://)", ErrUnsupportedScheme)
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return target{}, err
	}
	scheme := strings.ToLower(u.Scheme)
	var port int
	switch scheme {
	case "mqtt":
		port = DefaultMQTTPort
	case "mqtts":
		port = DefaultMQTTSPort
	case "ws":
		port = DefaultWSPort
	case "wss":
		port = DefaultWSSPort
	default:
		return target{}, fmt.Errorf("%w %q (want mqtt, mqtts, ws or wss)", ErrUnsupportedScheme, u.Scheme)
	}
	host := u.Hostname()
	if host == "" {
		return target{}, errors.New("no host")
	}
	if strings.ContainsAny(host, "[]/\\@?# \t\r\n") {
		return target{}, fmt.Errorf("bad host %q", host)
	}
	if strings.Contains(host, ":") {
		if _, err := netip.ParseAddr(host); err != nil {
			return target{}, fmt.Errorf("bad host %q", host)
		}
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return target{}, fmt.Errorf("bad port %q", p)
		}
		port = n
	}
	t := target{scheme: scheme, host: host, addr: net.JoinHostPort(host, strconv.Itoa(port))}
	if scheme == "ws" || scheme == "wss" {
		w := *u
		w.Scheme = scheme
		w.Host = t.addr
		if w.Path == "" && w.RawPath == "" {
			w.Path = DefaultWSPath
		}
		w.Fragment, w.RawFragment = "", ""
		t.wsURL = w.String()
	} else if (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return target{}, fmt.Errorf("%s url has a path or query", scheme)
	}
	return t, nil
}

// Dial connects to the MQTT server at rawURL (mqtt, mqtts, ws or wss; see the
// package comment for default ports and path) and returns the byte stream.
// For mqtts and wss the server's certificate is verified against opts.TLS
// (system roots when nil). For ws and wss it fails with ErrSubprotocol
// unless the server agrees to the subprotocol "mqtt". The conn's RemoteAddr
// and LocalAddr are those of the underlying TCP connection, and TLSState
// works on it for mqtts and wss.
func Dial(ctx context.Context, rawURL string, opts DialOptions) (net.Conn, error) {
	t, err := parseTarget(rawURL)
	if err != nil {
		return nil, fmt.Errorf("transport: dial %s: %w", redact(rawURL), err)
	}
	timeout := opts.ConnectTimeout
	if timeout <= 0 {
		timeout = DefaultConnectTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	var tlsConf *tls.Config
	if t.secure() {
		tlsConf = clientConfigFor(opts.TLS, t.host)
	}
	var c net.Conn
	switch t.scheme {
	case "mqtt", "mqtts":
		c, err = dialStream(ctx, t.addr, tlsConf)
	case "ws", "wss":
		c, err = dialWebSocket(ctx, t, tlsConf, opts.Header)
	}
	if err != nil {
		return nil, fmt.Errorf("transport: dial %s: %w", redact(rawURL), err)
	}
	return c, nil
}

// clientConfigFor returns a copy of base (or a fresh config) with SNI and a
// TLS 1.2 minimum filled in.
func clientConfigFor(base *tls.Config, host string) *tls.Config {
	var c *tls.Config
	if base != nil {
		c = base.Clone()
	} else {
		c = &tls.Config{}
	}
	if c.ServerName == "" {
		c.ServerName = host
	}
	if c.MinVersion < tls.VersionTLS12 {
		c.MinVersion = tls.VersionTLS12
	}
	return c
}

// dialStream opens a TCP connection to addr and, when conf is not nil, runs
// the TLS handshake on it before returning.
func dialStream(ctx context.Context, addr string, conf *tls.Config) (net.Conn, error) {
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if conf == nil {
		return raw, nil
	}
	tc := tls.Client(raw, conf)
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("tls handshake: %w", err)
	}
	return tc, nil
}

// redact drops the password from a URL for error messages.
func redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil || u.User == nil {
		return rawURL
	}
	return u.Redacted()
}
