package localbus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"holdfast/internal/auth"
	"holdfast/internal/packet"
	"holdfast/internal/testclient"
	"holdfast/internal/testenv"
)

const wait = 10 * time.Second

type testBroker struct {
	*Broker
	addr  string
	store *memStore
	stop  func()
}

func testLogger() *slog.Logger {
	if os.Getenv("LOCALBUS_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// startBroker serves a broker with retained messages available on a free
// loopback port; it is closed at the end of the test.
func startBroker(t testing.TB, opts Options, st *memStore, lo *ListenerOptions) *testBroker {
	t.Helper()
	opts.RetainAvailable = true
	return startBrokerRaw(t, opts, st, lo)
}

// startBrokerRaw is startBroker with opts as given.
func startBrokerRaw(t testing.TB, opts Options, st *memStore, lo *ListenerOptions) *testBroker {
	t.Helper()
	if st == nil {
		st = newMemStore(t)
	}
	if opts.Logger == nil {
		opts.Logger = testLogger()
	}
	b, err := New(opts, st)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if lo == nil {
		lo = &ListenerOptions{Name: "test", AllowAnonymous: true}
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- b.Serve(ctx, ln, *lo) }()
	tb := &testBroker{Broker: b, addr: ln.Addr().String(), store: st}
	var stopped bool
	tb.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
		b.Close()
		st.markClosed()
	}
	t.Cleanup(tb.stop)
	return tb
}

// testClock is a clock for Options.now and Options.afterFunc that moves only
// when a test advances it, so that message expiry, session expiry and will
// delay do not depend on how fast the machine is.
type testClock struct {
	mu     sync.Mutex
	t      time.Time
	timers []*clockTimer
}

func newTestClock() *testClock { return &testClock{t: time.Now()} }

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// advance moves the clock by d and runs, in deadline order, the function of
// every timer due by then, on the caller's goroutine (the broker's only
// post an event, which never blocks).
func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	var due []*clockTimer
	keep := c.timers[:0]
	for _, tm := range c.timers {
		if tm.at.After(c.t) {
			keep = append(keep, tm)
		} else {
			due = append(due, tm)
		}
	}
	c.timers = keep
	c.mu.Unlock()
	slices.SortStableFunc(due, func(a, b *clockTimer) int { return a.at.Compare(b.at) })
	for _, tm := range due {
		tm.f()
	}
}

// afterFunc is Options.afterFunc on the test clock: f runs when advance
// reaches now + d (at once for d <= 0, as time.AfterFunc).
func (c *testClock) afterFunc(d time.Duration, f func()) timer {
	c.mu.Lock()
	tm := &clockTimer{c: c, at: c.t.Add(d), f: f}
	if d > 0 {
		c.timers = append(c.timers, tm)
	}
	c.mu.Unlock()
	if d <= 0 {
		go f()
	}
	return tm
}

// clockTimer is a timer of a testClock.
type clockTimer struct {
	c  *testClock
	at time.Time
	f  func()
}

// Stop removes the timer; false if it had fired or was stopped.
func (tm *clockTimer) Stop() bool {
	tm.c.mu.Lock()
	defer tm.c.mu.Unlock()
	i := slices.Index(tm.c.timers, tm)
	if i < 0 {
		return false
	}
	tm.c.timers = slices.Delete(tm.c.timers, i, i+1)
	return true
}

// settle waits until every event the broker has posted has run, and those
// that running them posted: a will's publish, then (the in-memory store
// completing at once) its delivery. After it, a PINGREQ round trip
// (noPublish) shows whether anything was sent.
func (tb *testBroker) settle() {
	for {
		tb.flushEvents()
		tb.evMu.Lock()
		n := len(tb.events)
		tb.evMu.Unlock()
		if n == 0 {
			return
		}
	}
}

// waitSession waits until cond holds for the session of client id (nil
// when there is none), looked at under the broker's lock; what names the
// condition in the failure.
func (tb *testBroker) waitSession(t testing.TB, id, what string, cond func(s *session) bool) {
	t.Helper()
	testenv.WaitFor(t, wait, id+" "+what, func() bool {
		tb.mu.Lock()
		defer tb.mu.Unlock()
		return cond(tb.sessions[id])
	})
}

// waitOffline waits until client id has no connection the broker knows of:
// its session is offline or gone.
func (tb *testBroker) waitOffline(t testing.TB, id string) {
	t.Helper()
	tb.waitSession(t, id, "offline", func(s *session) bool { return s == nil || s.conn == nil })
}

// authFiles writes a password file holding user with password (bcrypt cost
// 4) and an ACL file with the rules acl, and loads both.
func authFiles(t testing.TB, user, password, acl string) (*auth.Passwords, *auth.ACL) {
	t.Helper()
	dir := t.TempDir()
	hash, err := auth.HashPassword(password, 4)
	if err != nil {
		t.Fatal(err)
	}
	if err := auth.CreatePasswordFile(filepath.Join(dir, "passwd"), user, hash); err != nil {
		t.Fatal(err)
	}
	pw, err := auth.LoadPasswords(filepath.Join(dir, "passwd"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "acl"), acl)
	a, err := auth.LoadACL(filepath.Join(dir, "acl"))
	if err != nil {
		t.Fatal(err)
	}
	return pw, a
}

func dial(t testing.TB, addr string, o testclient.Options) *testclient.Client {
	t.Helper()
	c, err := testclient.Dial(addr, o)
	if err != nil {
		t.Fatalf("dial %q: %v", o.ClientID, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// publish sends p and fails the test unless its flow completes with reason
// code 0x00 (for QoS 0: unless it is written).
func publish(t testing.TB, c *testclient.Client, p *packet.Publish) {
	t.Helper()
	if rc, err := c.Publish(p); err != nil || rc != 0 {
		t.Fatalf("publish %q QoS %d: reason code %v, %v", p.Topic, p.QoS, rc, err)
	}
}

// subscribe subscribes and fails the test unless every subscription is
// granted the QoS it asks for.
func subscribe(t testing.TB, c *testclient.Client, subs ...packet.Subscription) {
	t.Helper()
	rcs, err := c.Subscribe(subs...)
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	for i, sb := range subs {
		if i >= len(rcs) || rcs[i] != packet.ReasonCode(sb.QoS) {
			t.Fatalf("SUBACK %v for %+v, want each subscription granted its QoS", rcs, subs)
		}
	}
}

// send writes p and fails the test if that fails.
func send(t testing.TB, c *testclient.Client, p packet.Packet) {
	t.Helper()
	if err := c.Send(p); err != nil {
		t.Fatalf("send %v: %v", p.Type(), err)
	}
}

// disconnect sends DISCONNECT and fails the test if that fails.
func disconnect(t testing.TB, c *testclient.Client) {
	t.Helper()
	if err := c.Disconnect(); err != nil {
		t.Fatalf("disconnect: %v", err)
	}
}

// rawConn opens a plain TCP connection to addr, closed at the end of the
// test, and writes data on it (nothing when data is empty).
func rawConn(t testing.TB, addr string, data []byte) net.Conn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	if _, err := nc.Write(data); err != nil {
		t.Fatal(err)
	}
	return nc
}

// readToClose reads what arrives on nc until the broker closes it, and fails
// the test if it is still open after wait.
func readToClose(t testing.TB, nc net.Conn) []byte {
	t.Helper()
	nc.SetReadDeadline(time.Now().Add(wait))
	got, err := io.ReadAll(nc)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("connection left open after % x", got)
	}
	return got
}

func recv(t testing.TB, c *testclient.Client) *packet.Publish {
	t.Helper()
	p, err := c.Receive(wait)
	if err != nil {
		t.Fatalf("receive: %v", err)
	}
	return p
}

// noPublish asserts that nothing arrives within a short while; used only
// after something else that was sent later has arrived, or with a round trip
// (PINGREQ) that proves the broker has handled everything before it.
func noPublish(t testing.TB, c *testclient.Client) {
	t.Helper()
	untilPingresp(t, c, func(p packet.Packet) {
		switch q := p.(type) {
		case *packet.Pubrel:
			send(t, c, &packet.Pubcomp{PacketID: q.PacketID})
		case *packet.Publish:
			t.Fatalf("unexpected PUBLISH %q %q", q.Topic, q.Payload)
		}
	})
}

// untilPingresp sends PINGREQ and hands each packet that arrives before the
// PINGRESP to each: the broker answers PINGREQ at once, after everything it
// had to send before.
func untilPingresp(t testing.TB, c *testclient.Client, each func(packet.Packet)) {
	t.Helper()
	if err := c.Send(&packet.Pingreq{}); err != nil {
		t.Fatal(err)
	}
	for {
		p, err := c.ReadPacket(wait)
		if err != nil {
			t.Fatalf("waiting for PINGRESP: %v", err)
		}
		if _, ok := p.(*packet.Pingresp); ok {
			return
		}
		each(p)
	}
}

func versions() []packet.Version { return []packet.Version{packet.V311, packet.V5} }

func TestPublishSubscribeQoS(t *testing.T) {
	for _, v := range versions() {
		t.Run(v.String(), func(t *testing.T) {
			tb := startBroker(t, Options{}, nil, nil)
			sub := dial(t, tb.addr, testclient.Options{ClientID: "sub", Version: v, CleanStart: true})
			rcs, err := sub.Subscribe(packet.Subscription{Filter: "a/+/c", QoS: 2}, packet.Subscription{Filter: "x/#", QoS: 1})
			if err != nil {
				t.Fatal(err)
			}
			if rcs[0] != packet.GrantedQoS2 || rcs[1] != packet.GrantedQoS1 {
				t.Fatalf("SUBACK %v", rcs)
			}
			pub := dial(t, tb.addr, testclient.Options{ClientID: "pub", Version: v, CleanStart: true})
			for qos := byte(0); qos <= 2; qos++ {
				payload := []byte(fmt.Sprintf("q%d", qos))
				rc, err := pub.Publish(&packet.Publish{Topic: "a/b/c", QoS: qos, Payload: payload})
				if err != nil || rc != 0 {
					t.Fatalf("publish qos %d: %v %v", qos, rc, err)
				}
				got := recv(t, sub)
				if got.Topic != "a/b/c" || !bytes.Equal(got.Payload, payload) || got.QoS != qos || got.Retain {
					t.Fatalf("got %+v", got)
				}
				// x/# is granted QoS 1: a QoS 2 message is downgraded.
				publish(t, pub, &packet.Publish{Topic: "x", QoS: qos, Payload: payload})
				got = recv(t, sub)
				if got.Topic != "x" || got.QoS != min(qos, 1) {
					t.Fatalf("x/# got %+v", got)
				}
			}
			if n := len(tb.store.messages()); n != 6 {
				t.Fatalf("%d messages ingested, want 6", n)
			}
			if m := tb.store.messages()[0]; m.ClientID != "pub" || m.Topic != "a/b/c" {
				t.Fatalf("ingested %+v", m)
			}
			st := tb.Stats()
			if st.Connections != 2 || st.Subscriptions != 2 || st.MessagesIn != 6 || st.MessagesOut != 6 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

// A publisher with a window keeps sending while the store holds every
// commit: the broker must read them all and call Ingest for each before any
// is durable, then acknowledge in order once they land.
func TestPipelinedAcks(t *testing.T) {
	for _, v := range versions() {
		t.Run(v.String(), func(t *testing.T) {
			st := newMemStore(t)
			tb := startBroker(t, Options{ReceiveMaximum: 64}, st, nil)
			pub := dial(t, tb.addr, testclient.Options{ClientID: "pub", Version: v, CleanStart: true})
			st.setHold(true)
			const n = 40
			for i := 1; i <= n; i++ {
				if err := pub.Send(&packet.Publish{Topic: "t", QoS: byte(1 + i%2), PacketID: uint16(i), Payload: []byte{byte(i)}}); err != nil {
					t.Fatal(err)
				}
			}
			testenv.WaitFor(t, wait, "all publishes ingested while none is durable", func() bool { return st.ingestCount() == n })
			// Nothing is acknowledged before the store answers.
			if err := pub.Send(&packet.Pingreq{}); err != nil {
				t.Fatal(err)
			}
			p, err := pub.ReadPacket(wait)
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := p.(*packet.Pingresp); !ok {
				t.Fatalf("got %T before PINGRESP while commits are held", p)
			}
			st.setHold(false)
			st.release()
			for i := 1; i <= n; i++ {
				p, err := pub.ReadPacket(wait)
				if err != nil {
					t.Fatal(err)
				}
				var id uint16
				switch q := p.(type) {
				case *packet.Puback:
					id = q.PacketID
				case *packet.Pubrec:
					id = q.PacketID
				default:
					t.Fatalf("got %T", p)
				}
				if id != uint16(i) {
					t.Fatalf("ack %d for packet %d: out of order", id, i)
				}
			}
		})
	}
}

// Beyond ReceiveMaximum outstanding Ingest calls the connection stops
// reading (3.1.1) or, for a 5.0 client that ignores the announced Receive
// Maximum, is closed with 0x93.
func TestReceiveMaximum(t *testing.T) {
	st := newMemStore(t)
	tb := startBroker(t, Options{ReceiveMaximum: 4}, st, nil)

	c3 := dial(t, tb.addr, testclient.Options{ClientID: "c3", Version: packet.V311, CleanStart: true})
	st.setHold(true)
	for i := 1; i <= 6; i++ {
		send(t, c3, &packet.Publish{Topic: "t", QoS: 1, PacketID: uint16(i)})
	}
	testenv.WaitFor(t, wait, "4 ingests", func() bool { return st.ingestCount() == 4 })
	st.release()
	testenv.WaitFor(t, wait, "6 ingests", func() bool { return st.ingestCount() == 6 })
	st.setHold(false)
	st.release()
	for i := 1; i <= 6; i++ {
		p, err := c3.ReadPacket(wait)
		if err != nil {
			t.Fatal(err)
		}
		if a, ok := p.(*packet.Puback); !ok || a.PacketID != uint16(i) {
			t.Fatalf("got %#v", p)
		}
	}

	c5 := dial(t, tb.addr, testclient.Options{ClientID: "c5", CleanStart: true})
	if c5.Connack.Properties.ReceiveMaximum != 4 {
		t.Fatalf("CONNACK Receive Maximum %d", c5.Connack.Properties.ReceiveMaximum)
	}
	st.setHold(true)
	for i := 1; i <= 5; i++ {
		send(t, c5, &packet.Publish{Topic: "t", QoS: 1, PacketID: uint16(i)})
	}
	p, err := c5.ReadPacket(wait)
	if err != nil {
		t.Fatal(err)
	}
	if d, ok := p.(*packet.Disconnect); !ok || d.ReasonCode != packet.ReceiveMaximumExceeded {
		t.Fatalf("got %#v, want DISCONNECT 0x93", p)
	}
	st.setHold(false)
	st.release()
}

func TestRefusedByStore(t *testing.T) {
	st := newMemStore(t)
	tb := startBroker(t, Options{}, st, nil)
	c5 := dial(t, tb.addr, testclient.Options{ClientID: "c5", CleanStart: true})
	st.setRefuse(fmt.Errorf("queue full: %w", ErrRefused))
	for qos := byte(1); qos <= 2; qos++ {
		rc, err := c5.Publish(&packet.Publish{Topic: "t", QoS: qos})
		if err != nil || rc != packet.QuotaExceeded {
			t.Fatalf("qos %d: rc %v err %v, want 0x97", qos, rc, err)
		}
	}
	st.setRefuse(errors.New("disk on fire"))
	if rc, err := c5.Publish(&packet.Publish{Topic: "t", QoS: 1}); err != nil || rc != packet.UnspecifiedError {
		t.Fatalf("rc %v err %v, want 0x80", rc, err)
	}
	// After a refused QoS 2 PUBREC the packet id is free again and a new
	// message with it is stored.
	st.setRefuse(nil)
	if rc, err := c5.Publish(&packet.Publish{Topic: "t", QoS: 2, PacketID: 2}); err != nil || rc != 0 {
		t.Fatalf("rc %v err %v", rc, err)
	}
	if n := len(st.messages()); n != 1 {
		t.Fatalf("%d stored", n)
	}

	c3 := dial(t, tb.addr, testclient.Options{ClientID: "c3", Version: packet.V311, CleanStart: true})
	st.setRefuse(ErrRefused)
	if _, err := c3.Publish(&packet.Publish{Topic: "t", QoS: 1}); err == nil {
		t.Fatal("3.1.1 publish refused by the store was acknowledged")
	}

	// 3.1.1 QoS 2, persistent session: closed without PUBREC, and the
	// packet id is not left awaiting PUBREL, so the device's resend after
	// reconnecting is stored (once).
	o := testclient.Options{ClientID: "q2", Version: packet.V311}
	c := dial(t, tb.addr, o)
	if _, err := c.Publish(&packet.Publish{Topic: "t", QoS: 2, PacketID: 9, Payload: []byte("again")}); err == nil {
		t.Fatal("3.1.1 QoS 2 publish refused by the store got PUBREC")
	}
	tb.waitSession(t, "q2", "offline", func(s *session) bool { return s != nil && s.conn == nil })
	tb.mu.Lock()
	_, awaiting := tb.sessions["q2"].inbound[9]
	tb.mu.Unlock()
	if awaiting || len(st.keys("lb/i/")) != 0 {
		t.Fatalf("refused QoS 2 message left awaiting PUBREL (stored: %v)", st.keys("lb/i/"))
	}
	st.setRefuse(nil)
	before := len(st.messages())
	c = dial(t, tb.addr, o)
	if !c.Connack.SessionPresent {
		t.Fatal("session lost")
	}
	publish(t, c, &packet.Publish{Topic: "t", QoS: 2, PacketID: 9, Dup: true, Payload: []byte("again")})
	if ms := st.messages(); len(ms) != before+1 || string(ms[len(ms)-1].Payload) != "again" {
		t.Fatalf("%d messages stored by the resend, want it once", len(ms)-before)
	}
	if tb.Stats().Refused != 5 {
		t.Fatalf("stats %+v", tb.Stats())
	}
}

func writeFile(t testing.TB, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}
