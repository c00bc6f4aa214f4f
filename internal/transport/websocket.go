package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// WebSocketCloseTimeout bounds how long Close on a WebSocket conn waits for
// the peer to answer its close frame before it closes the TCP connection
// anyway. A peer that reads answers within a round trip; a stuck one must
// not hold up the broker's shutdown.
const WebSocketCloseTimeout = time.Second

// wsConn is a WebSocket connection seen as a net.Conn, carrying the
// addresses and TLS state of the connection underneath.
type wsConn struct {
	net.Conn                      // from websocket.NetConn
	raw      net.Conn             // the connection the upgrade went over
	tls      *tls.ConnectionState // nil for ws

	readDeadline  atomic.Int64 // unix nanoseconds, 0 for none
	writeDeadline atomic.Int64

	closeOnce sync.Once
	closeErr  error
}

// Read reads the byte stream. A read stopped by the read deadline returns a
// *net.OpError wrapping os.ErrDeadlineExceeded, as a TCP conn's would
// (though the WebSocket connection is closed by then).
func (c *wsConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil && passed(&c.readDeadline) {
		err = &net.OpError{Op: "read", Net: "websocket", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.ErrDeadlineExceeded}
	}
	return n, err
}

// Write sends p as one binary message. A write stopped by the write
// deadline returns a *net.OpError wrapping os.ErrDeadlineExceeded.
func (c *wsConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if err != nil && passed(&c.writeDeadline) {
		err = &net.OpError{Op: "write", Net: "websocket", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.ErrDeadlineExceeded}
	}
	return n, err
}

// SetDeadline sets both deadlines; see SetReadDeadline.
func (c *wsConn) SetDeadline(t time.Time) error {
	c.SetReadDeadline(t)
	return c.SetWriteDeadline(t)
}

// SetReadDeadline sets the read deadline. Unlike on a TCP conn, a deadline
// that expires while a Read is blocked closes the WebSocket connection.
func (c *wsConn) SetReadDeadline(t time.Time) error {
	c.readDeadline.Store(unixNano(t))
	return c.Conn.SetReadDeadline(t)
}

// SetWriteDeadline sets the write deadline. Unlike on a TCP conn, a
// deadline that expires while a Write is blocked closes the WebSocket
// connection.
func (c *wsConn) SetWriteDeadline(t time.Time) error {
	c.writeDeadline.Store(unixNano(t))
	return c.Conn.SetWriteDeadline(t)
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// passed reports whether the deadline in d is set and has passed.
func passed(d *atomic.Int64) bool {
	v := d.Load()
	return v != 0 && time.Now().UnixNano() >= v
}

func (c *wsConn) LocalAddr() net.Addr  { return c.raw.LocalAddr() }
func (c *wsConn) RemoteAddr() net.Addr { return c.raw.RemoteAddr() }

// Close sends a close frame (normal closure) and waits up to
// WebSocketCloseTimeout for the peer's answer, then closes the TCP
// connection whether it came or not. It returns once the connection is
// closed and the WebSocket library's goroutines are gone.
func (c *wsConn) Close() error {
	c.closeOnce.Do(func() {
		done := make(chan error, 1)
		go func() { done <- c.Conn.Close() }()
		timer := time.NewTimer(WebSocketCloseTimeout)
		defer timer.Stop()
		var err error
		select {
		case err = <-done:
		case <-timer.C:
			// Closing the TCP connection underneath fails the wait for the
			// answer, so the close above returns at once.
			closeUnderlying(c.raw)
			<-done
		}
		if errors.Is(err, net.ErrClosed) {
			err = nil // the peer closed first
		}
		c.closeErr = err
	})
	return c.closeErr
}

// closeUnderlying closes the TCP connection under c, skipping the TLS
// close_notify, which could block on a peer that does not read.
func closeUnderlying(c net.Conn) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	c.Close()
}

// newWSConn turns an upgraded WebSocket connection into a net.Conn carrying
// binary messages. Its lifetime is not tied to any request or dial context:
// it lasts until Close or until the peer goes away. raw is the connection
// the upgrade went over.
func newWSConn(ws *websocket.Conn, raw net.Conn, state *tls.ConnectionState) *wsConn {
	nc := websocket.NetConn(context.Background(), ws, websocket.MessageBinary)
	// NetConn lifts the read limit; put a bound on a single message back.
	ws.SetReadLimit(MaxWebSocketMessage)
	return &wsConn{Conn: nc, raw: raw, tls: state}
}

// dialWebSocket connects to t.wsURL, upgrades with the subprotocol "mqtt"
// and returns the connection as a byte stream. ctx bounds the dial and
// upgrade only.
func dialWebSocket(ctx context.Context, t target, conf *tls.Config, header http.Header) (net.Conn, error) {
	var (
		mu  sync.Mutex
		raw net.Conn // the connection the upgrade went over
	)
	record := func(c net.Conn, err error) (net.Conn, error) {
		if err == nil {
			mu.Lock()
			raw = c
			mu.Unlock()
		}
		return c, err
	}
	tr := &http.Transport{
		Proxy:             nil,
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return record(dialStream(ctx, t.addr, nil))
		},
		DialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return record(dialStream(ctx, t.addr, conf))
		},
	}
	defer tr.CloseIdleConnections()
	ws, resp, err := websocket.Dial(ctx, t.wsURL, &websocket.DialOptions{
		HTTPClient:      &http.Client{Transport: tr},
		HTTPHeader:      header,
		Subprotocols:    []string{Subprotocol},
		CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			return nil, fmt.Errorf("websocket upgrade refused: http status %s", resp.Status)
		}
		return nil, fmt.Errorf("websocket upgrade: %w", err)
	}
	if got := ws.Subprotocol(); got != Subprotocol {
		ws.CloseNow()
		return nil, fmt.Errorf("%w: server chose %q", ErrSubprotocol, got)
	}
	mu.Lock()
	c := raw
	mu.Unlock()
	var state *tls.ConnectionState
	if tc, ok := c.(*tls.Conn); ok {
		s := tc.ConnectionState()
		state = &s
	}
	return newWSConn(ws, c, state), nil
}

// acceptedSubprotocols are the subprotocols a WebSocket listener agrees to:
// "mqtt" (MQTT 3.1.1 and 5.0) and "mqttv3.1", which MQTT 3.1 clients offer.
var acceptedSubprotocols = []string{Subprotocol, "mqttv3.1"}

// offersMQTT reports whether a Sec-WebSocket-Protocol request header (all
// its values, each a comma separated list) offers one of the accepted
// subprotocols.
func offersMQTT(values []string) bool {
	for _, v := range values {
		for p := range strings.SplitSeq(v, ",") {
			p = strings.TrimSpace(p)
			for _, a := range acceptedSubprotocols {
				if p == a {
					return true
				}
			}
		}
	}
	return false
}
