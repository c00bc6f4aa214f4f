package uplink

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"holdfast/internal/packet"
	"holdfast/internal/testclient"
	"holdfast/internal/testenv"
)

// memSource is an in-memory Source with the queue's semantics: lease in
// order, hide leased messages, release to the original position, durable
// marks that survive a "restart" (a new Client on the same memSource).
type memSource struct {
	mu      sync.Mutex
	next    uint64
	msgs    []Message // in seq order, not acked or dead-lettered
	leased  map[uint64]bool
	marks   map[uint64][]byte
	acked   []uint64
	dead    map[uint64]string
	changed chan struct{}
	markLog []string // "seq:data" in call order
}

func newMemSource() *memSource {
	return &memSource{next: 1, leased: map[uint64]bool{}, marks: map[uint64][]byte{},
		dead: map[uint64]string{}, changed: make(chan struct{})}
}

func (s *memSource) signal() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// add appends m and returns its seq.
func (s *memSource) add(m Message) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	m.Seq = s.next
	s.next++
	s.msgs = append(s.msgs, m)
	s.signal()
	return m.Seq
}

func (s *memSource) Lease(ctx context.Context, max int) ([]Message, error) {
	for {
		s.mu.Lock()
		var out []Message
		for _, m := range s.msgs {
			if len(out) == max {
				break
			}
			if s.leased[m.Seq] {
				continue
			}
			s.leased[m.Seq] = true
			m.Mark = append([]byte(nil), s.marks[m.Seq]...)
			if len(m.Mark) == 0 {
				m.Mark = nil
			}
			out = append(out, m)
		}
		ch := s.changed
		s.mu.Unlock()
		if len(out) > 0 {
			return out, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (s *memSource) remove(seq uint64) bool {
	for i, m := range s.msgs {
		if m.Seq == seq {
			s.msgs = append(s.msgs[:i], s.msgs[i+1:]...)
			delete(s.leased, seq)
			delete(s.marks, seq)
			return true
		}
	}
	return false
}

func (s *memSource) Ack(seqs ...uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, q := range seqs {
		if s.remove(q) {
			s.acked = append(s.acked, q)
		}
	}
	s.signal()
	return nil
}

func (s *memSource) Release(seqs ...uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, q := range seqs {
		delete(s.leased, q)
	}
	s.signal()
}

func (s *memSource) Mark(ctx context.Context, seq uint64, data []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range s.msgs {
		if m.Seq == seq {
			s.marks[seq] = append([]byte(nil), data...)
			s.markLog = append(s.markLog, fmt.Sprintf("%d:%s", seq, data))
			s.signal()
			return nil
		}
	}
	return fmt.Errorf("memsource: seq %d: %w", seq, ErrGone)
}

func (s *memSource) DeadLetter(ctx context.Context, seq uint64, reason string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.remove(seq) {
		return fmt.Errorf("memsource: seq %d: %w", seq, ErrGone)
	}
	s.dead[seq] = reason
	s.signal()
	return nil
}

// state returns (queued, acked, dead-lettered, leased) counts.
func (s *memSource) counts() (queued, acked, dead, leased int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.msgs), len(s.acked), len(s.dead), len(s.leased)
}

func (s *memSource) mark(seq uint64) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.marks[seq])
}

func (s *memSource) deadReason(seq uint64) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.dead[seq]
	return r, ok
}

// fill adds n messages "0".."n-1" on topics prefix/0..prefix/(topics-1).
func (s *memSource) fill(n, topics int, prefix string, qos byte) {
	for i := range n {
		s.add(Message{Topic: fmt.Sprintf("%s/%d", prefix, i%topics), Payload: []byte(strconv.Itoa(i)), QoS: qos})
	}
}

// testLogger logs to the test at debug level when -v, else discards.
func testLogger(t testing.TB) *slog.Logger {
	if t == nil || !testing.Verbose() {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
}

// run starts c.Run and returns a stop function that cancels it and checks
// that it returned nil.
func run(t testing.TB, c *Client) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run returned %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("Run did not return after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func newClient(t testing.TB, o Options, src Source, down Downlink) *Client {
	t.Helper()
	if o.Logger == nil {
		o.Logger = testLogger(t)
	}
	if o.Backoff.Initial == 0 {
		o.Backoff.Initial = 50 * time.Millisecond
		o.Backoff.Max = 500 * time.Millisecond
	}
	c, err := New(o, src, down)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// subscriber connects a test client to addr and subscribes to filter.
func subscriber(t testing.TB, addr, filter string, v packet.Version, qos byte) *testclient.Client {
	t.Helper()
	sub, err := testclient.Dial(addr, testclient.Options{ClientID: "sub-" + strconv.Itoa(testenv.FreePort(t)), Version: v, CleanStart: true, Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Close() })
	codes, err := sub.Subscribe(packet.Subscription{Filter: filter, QoS: qos})
	if err != nil || len(codes) != 1 || codes[0].IsError() {
		t.Fatalf("subscribe %s: %v %v", filter, codes, err)
	}
	return sub
}

// receive reads n publishes (or fails).
func receive(t testing.TB, sub *testclient.Client, n int) []*packet.Publish {
	t.Helper()
	out := make([]*packet.Publish, 0, n)
	for len(out) < n {
		p, err := sub.Receive(30 * time.Second)
		if err != nil {
			t.Fatalf("after %d of %d messages: %v", len(out), n, err)
		}
		out = append(out, p)
	}
	return out
}

// checkDelivery checks that every payload 0..n-1 arrived, that first
// arrivals are in order, and (exactly) that there are no duplicates.
func checkDelivery(t testing.TB, got []int, n int, exactly bool) {
	t.Helper()
	seen := map[int]int{}
	last := -1
	for _, v := range got {
		seen[v]++
		if seen[v] == 1 {
			if v < last {
				t.Fatalf("message %d arrived first after %d: out of order", v, last)
			}
			last = v
		}
	}
	var missing, dups []int
	for i := range n {
		switch c := seen[i]; {
		case c == 0:
			missing = append(missing, i)
		case c > 1:
			dups = append(dups, i)
		}
	}
	sort.Ints(missing)
	if len(missing) > 0 {
		t.Fatalf("%d messages missing, first %v", len(missing), missing[:min(len(missing), 10)])
	}
	if exactly && len(dups) > 0 {
		t.Fatalf("%d messages duplicated, first %v", len(dups), dups[:min(len(dups), 10)])
	}
}

// fakeServer is an in-process MQTT server for edge cases a real broker
// cannot be made to produce. Each test drives it packet by packet.
type fakeServer struct {
	t     testing.TB
	ln    net.Listener
	conns chan net.Conn
}

func startFake(t testing.TB) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeServer{t: t, ln: ln, conns: make(chan net.Conn, 16)}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(f.conns)
				return
			}
			f.conns <- c
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return f
}

func (f *fakeServer) URL() string { return "mqtt://" + f.ln.Addr().String() }

// fakeConn is one client connection to the fake server.
type fakeConn struct {
	t       testing.TB
	nc      net.Conn
	r       *packet.Reader
	w       *bufio.Writer
	connect *packet.Connect
	mu      sync.Mutex
}

// accept waits for the next connection and reads its CONNECT.
func (f *fakeServer) accept() *fakeConn {
	f.t.Helper()
	select {
	case nc := <-f.conns:
		f.t.Cleanup(func() { nc.Close() })
		fc := &fakeConn{t: f.t, nc: nc, r: packet.NewReader(nc, 0), w: bufio.NewWriter(nc)}
		p := fc.read()
		cp, ok := p.(*packet.Connect)
		if !ok {
			f.t.Fatalf("fake server: got %v instead of CONNECT", p.Type())
		}
		fc.connect = cp
		return fc
	case <-time.After(30 * time.Second):
		f.t.Fatal("fake server: no connection")
	}
	return nil
}

func (fc *fakeConn) connack(sessionPresent bool, pr packet.Properties) {
	fc.send(&packet.Connack{SessionPresent: sessionPresent, Properties: pr})
}

func (fc *fakeConn) send(p packet.Packet) {
	fc.t.Helper()
	fc.mu.Lock()
	defer fc.mu.Unlock()
	b, err := packet.Append(nil, p, fc.r.Version())
	if err != nil {
		fc.t.Fatalf("fake server: encode %v: %v", p.Type(), err)
	}
	fc.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	fc.nc.Write(b)
}

// read returns the next packet, failing the test on error or timeout.
func (fc *fakeConn) read() packet.Packet {
	fc.t.Helper()
	p, err := fc.tryRead(30 * time.Second)
	if err != nil {
		fc.t.Fatalf("fake server: read: %v", err)
	}
	return p
}

func (fc *fakeConn) tryRead(timeout time.Duration) (packet.Packet, error) {
	fc.nc.SetReadDeadline(time.Now().Add(timeout))
	return fc.r.ReadPacket()
}
