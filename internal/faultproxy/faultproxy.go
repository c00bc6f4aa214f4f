// Package faultproxy is a TCP proxy for tests that puts a failing network
// between holdfast and a real broker: it can add latency, cut connections
// cleanly (FIN), reset them (RST), blackhole them (bytes vanish, sockets stay
// open, as on a stalled cellular link), refuse new ones (target unreachable)
// and end each connection after a lifetime of its own (a flapping link).
//
// Each accepted connection is forwarded to the target by two goroutines, one
// per direction; faults apply to what is read after they are set. Close stops
// the listener and every connection, and waits for all goroutines.
package faultproxy

import (
	"net"
	"sync"
	"time"
)

// Proxy forwards TCP connections from its own loopback address to a target.
type Proxy struct {
	ln     net.Listener
	target string

	mu        sync.Mutex
	conns     map[*link]struct{}
	delay     time.Duration
	blackhole bool
	refuse    bool
	lifetime  func() (time.Duration, bool)
	accepted  int
	closed    bool

	wg sync.WaitGroup
}

type link struct {
	client, server net.Conn
}

// Start listens on a free port of 127.0.0.1 and forwards every connection to
// target (host:port).
func Start(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, target: target, conns: make(map[*link]struct{})}
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// Addr is the proxy's listening address (host:port).
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetDelay delays every chunk of data by d in both directions (0 removes it).
// Order is kept: chunks of one direction are delayed one after the other.
func (p *Proxy) SetDelay(d time.Duration) {
	p.mu.Lock()
	p.delay = d
	p.mu.Unlock()
}

// Blackhole makes data vanish in both directions while on: connections stay
// open and new ones are accepted, but nothing reaches the other side.
func (p *Proxy) Blackhole(on bool) {
	p.mu.Lock()
	p.blackhole = on
	p.mu.Unlock()
}

// Refuse closes new connections at once while on, as an unreachable target
// would; existing connections are not touched.
func (p *Proxy) Refuse(on bool) {
	p.mu.Lock()
	p.refuse = on
	p.mu.Unlock()
}

// SetLifetime makes every connection accepted from now on end a while after
// it was accepted: f, called when the connection is accepted, returns how
// long it lives and whether it ends with a reset (RST) rather than a normal
// close (FIN). f is called by the accepting goroutine only, one connection
// at a time, so it may draw from a random source of its own without a lock.
// nil (the default) lets connections live; those accepted before keep the
// lifetime they were given.
func (p *Proxy) SetLifetime(f func() (d time.Duration, reset bool)) {
	p.mu.Lock()
	p.lifetime = f
	p.mu.Unlock()
}

// Cut closes every current connection on both sides with a normal close (FIN).
func (p *Proxy) Cut() { p.closeAll(false) }

// Reset closes every current connection on both sides with a TCP reset (RST).
func (p *Proxy) Reset() { p.closeAll(true) }

// Accepted is the number of connections accepted so far (refused ones included).
func (p *Proxy) Accepted() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted
}

// Open is the number of connections currently forwarded.
func (p *Proxy) Open() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// Close stops accepting, closes every connection and waits for the proxy's
// goroutines to finish.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	err := p.ln.Close()
	p.closeAll(false)
	p.wg.Wait()
	return err
}

func (p *Proxy) closeAll(reset bool) {
	p.mu.Lock()
	links := make([]*link, 0, len(p.conns))
	for l := range p.conns {
		links = append(links, l)
	}
	p.mu.Unlock()
	for _, l := range links {
		l.close(reset)
	}
}

// close closes both sides of l, with a reset when reset is true.
func (l *link) close(reset bool) {
	for _, c := range []net.Conn{l.client, l.server} {
		if tc, ok := c.(*net.TCPConn); ok && reset {
			tc.SetLinger(0)
		}
		c.Close()
	}
}

func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.accepted++
		refuse, closed, lifetime := p.refuse, p.closed, p.lifetime
		p.mu.Unlock()
		if refuse || closed {
			c.Close()
			continue
		}
		var end time.Time
		var reset bool
		if lifetime != nil {
			var d time.Duration
			d, reset = lifetime()
			end = time.Now().Add(d)
		}
		p.wg.Add(1)
		go p.serve(c, end, reset)
	}
}

// serve forwards client to the target until either side ends, or until
// end when it is not zero (then closing both sides, with a reset when
// reset is true).
func (p *Proxy) serve(client net.Conn, end time.Time, reset bool) {
	defer p.wg.Done()
	server, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		client.Close()
		return
	}
	l := &link{client: client, server: server}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		client.Close()
		server.Close()
		return
	}
	p.conns[l] = struct{}{}
	p.mu.Unlock()
	if !end.IsZero() {
		t := time.AfterFunc(time.Until(end), func() { l.close(reset) })
		defer t.Stop()
	}

	var both sync.WaitGroup
	both.Add(2)
	go func() { defer both.Done(); p.pipe(server, client) }()
	go func() { defer both.Done(); p.pipe(client, server) }()
	both.Wait()

	p.mu.Lock()
	delete(p.conns, l)
	p.mu.Unlock()
}

// pipe copies src to dst chunk by chunk, applying the faults in force when each
// chunk is read. When either side ends, both are closed.
func (p *Proxy) pipe(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32*1024)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			delay, drop := p.delay, p.blackhole
			p.mu.Unlock()
			if delay > 0 {
				time.Sleep(delay)
			}
			if !drop {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
		}
		if err != nil {
			return
		}
	}
}
