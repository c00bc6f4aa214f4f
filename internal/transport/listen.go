package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// Listener types for ListenOptions.Type.
const (
	TypeTCP = "tcp"
	TypeTLS = "tls"
	TypeWS  = "ws"
	TypeWSS = "wss"
)

// DefaultReadHeaderTimeout bounds how long a WebSocket listener waits for the
// HTTP upgrade request of a new connection, so idle sockets that never send
// one do not pile up.
const DefaultReadHeaderTimeout = 10 * time.Second

// ListenOptions configures Listen.
type ListenOptions struct {
	// Type is tcp, tls, ws or wss.
	Type string
	// Address is host:port to listen on; port 0 picks a free port (see the
	// listener's Addr).
	Address string
	// Path is where a ws or wss listener upgrades requests; every other path
	// gets 404. Empty means DefaultWSPath.
	Path string
	// TLS is the server configuration for tls and wss (see ServerTLS).
	TLS *tls.Config
	// Logger receives the HTTP server's errors of a ws or wss listener (bad
	// requests, failed TLS handshakes) at debug level. Nil means
	// slog.Default().
	Logger *slog.Logger
}

// Listen opens a listener of the given type. Accept yields one net.Conn per
// device connection; its RemoteAddr is the peer's address.
//
// A tls listener returns conns whose handshake runs on their first Read or
// Write (so a slow client never holds up Accept). A ws or wss listener is an
// HTTP server that upgrades requests on Path offering the subprotocol
// "mqtt" (or "mqttv3.1"), answers 400 to upgrade requests offering neither,
// and 404 on other paths; WebSocket origins are not checked, since MQTT
// authenticates in CONNECT, not with cookies. Its Close stops the HTTP
// server, unblocks Accept and returns once the server has stopped. As with
// any net.Listener, closing it does not close conns already accepted.
func Listen(o ListenOptions) (net.Listener, error) {
	switch o.Type {
	case TypeTCP, TypeWS:
	case TypeTLS, TypeWSS:
		if o.TLS == nil {
			return nil, fmt.Errorf("transport: listen %s %s: %w", o.Type, o.Address, ErrNoTLSConfig)
		}
	default:
		return nil, fmt.Errorf("transport: listen %s: %w %q (want tcp, tls, ws or wss)", o.Address, ErrUnsupportedType, o.Type)
	}
	ln, err := net.Listen("tcp", o.Address)
	if err != nil {
		return nil, fmt.Errorf("transport: listen %s %s: %w", o.Type, o.Address, err)
	}
	switch o.Type {
	case TypeTCP:
		return ln, nil
	case TypeTLS:
		return tls.NewListener(ln, o.TLS), nil
	}
	var conf *tls.Config
	if o.Type == TypeWSS {
		conf = o.TLS.Clone()
		if len(conf.NextProtos) == 0 {
			conf.NextProtos = []string{"http/1.1"}
		}
		ln = tls.NewListener(ln, conf)
	}
	return newWSListener(ln, o), nil
}

// rawConnKey is the request context key of the connection a request came
// over.
type rawConnKey struct{}

// wsListener is an HTTP server handing upgraded WebSocket connections to
// Accept.
type wsListener struct {
	ln     net.Listener
	srv    *http.Server
	path   string
	log    *slog.Logger
	conns  chan net.Conn
	closed chan struct{} // closed by Close
	served chan struct{} // closed when Serve has returned

	closeOnce sync.Once
	closeErr  error
	serveErr  error // why Serve returned, read after served is closed
}

func newWSListener(ln net.Listener, o ListenOptions) *wsListener {
	l := &wsListener{
		ln:     ln,
		path:   o.Path,
		log:    o.Logger,
		conns:  make(chan net.Conn),
		closed: make(chan struct{}),
		served: make(chan struct{}),
	}
	if l.path == "" {
		l.path = DefaultWSPath
	}
	if l.log == nil {
		l.log = slog.Default()
	}
	l.srv = &http.Server{
		Handler:           l,
		ReadHeaderTimeout: DefaultReadHeaderTimeout,
		ErrorLog:          slog.NewLogLogger(l.log.Handler(), slog.LevelDebug),
		// A non-nil empty map turns HTTP/2 off: upgrades need HTTP/1.1.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, rawConnKey{}, c)
		},
	}
	go func() {
		defer close(l.served)
		l.serveErr = l.srv.Serve(ln)
	}()
	return l
}

// ServeHTTP upgrades requests on the listener's path and hands them to Accept.
func (l *wsListener) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != l.path {
		http.NotFound(w, r)
		return
	}
	if !offersMQTT(r.Header.Values("Sec-WebSocket-Protocol")) {
		http.Error(w, "websocket subprotocol mqtt required", http.StatusBadRequest)
		return
	}
	raw, ok := r.Context().Value(rawConnKey{}).(net.Conn)
	if !ok {
		http.Error(w, "no connection", http.StatusInternalServerError)
		return
	}
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		Subprotocols:       acceptedSubprotocols,
		InsecureSkipVerify: true, // no origin check: see Listen
		CompressionMode:    websocket.CompressionDisabled,
	})
	if err != nil {
		// Accept has answered the request already.
		l.log.Debug("websocket upgrade failed", "remote", r.RemoteAddr, "err", err)
		return
	}
	var state *tls.ConnectionState
	if r.TLS != nil {
		s := *r.TLS
		state = &s
	}
	c := newWSConn(ws, raw, state)
	select {
	case l.conns <- c:
	case <-l.closed:
		c.Close()
	}
}

// Accept waits for the next upgraded connection. After Close it returns an
// error wrapping net.ErrClosed.
func (l *wsListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, fmt.Errorf("transport: accept %s: %w", l.ln.Addr(), net.ErrClosed)
	case <-l.served:
		if errors.Is(l.serveErr, http.ErrServerClosed) {
			return nil, fmt.Errorf("transport: accept %s: %w", l.ln.Addr(), net.ErrClosed)
		}
		return nil, fmt.Errorf("transport: accept %s: %w", l.ln.Addr(), l.serveErr)
	}
}

// Close stops the HTTP server: it closes the listening socket and the
// connections not yet upgraded, unblocks Accept, and waits for the server to
// return. Upgraded connections, accepted or not, are left to their owners
// (those not yet accepted are closed by their handlers).
func (l *wsListener) Close() error {
	l.closeOnce.Do(func() {
		close(l.closed)
		l.closeErr = l.srv.Close()
		<-l.served
	})
	return l.closeErr
}

// Addr is the address the listener is bound to.
func (l *wsListener) Addr() net.Addr { return l.ln.Addr() }
