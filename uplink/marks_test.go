package uplink

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"holdfast/internal/packet"
)

// markedDownlink is a MarkedDownlink in memory; it outlives the Clients of
// a test as a store outlives a restart.
type markedDownlink struct {
	mu    sync.Mutex
	marks map[uint16]bool
	got   []string
	// unmarkErr, when set, is what Unmark returns (removing nothing).
	unmarkErr error
	// entered, when set, is told of each DeliverMarked call, which then
	// waits for its ctx to end, or 2 seconds; like the agent's, a call
	// whose ctx ended meanwhile stores the message and still reports ctx's
	// error.
	entered chan struct{}
}

func newMarkedDownlink() *markedDownlink { return &markedDownlink{marks: make(map[uint16]bool)} }

func (d *markedDownlink) Deliver(ctx context.Context, m *Message) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.got = append(d.got, string(m.Payload))
	return nil
}

func (d *markedDownlink) DeliverMarked(ctx context.Context, m *Message, id uint16) error {
	if d.entered != nil {
		d.entered <- struct{}{}
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Second):
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.got = append(d.got, string(m.Payload))
	d.marks[id] = true
	return ctx.Err()
}

func (d *markedDownlink) Marks() ([]uint16, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var ids []uint16
	for id := range d.marks {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids, nil
}

func (d *markedDownlink) Unmark(ids ...uint16) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.unmarkErr != nil {
		return d.unmarkErr
	}
	for _, id := range ids {
		delete(d.marks, id)
	}
	return nil
}

func (d *markedDownlink) delivered() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.got)
}

func (d *markedDownlink) marked(id uint16) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.marks[id]
}

// connectDownlink accepts the next connection of a client with one QoS 2
// subscription and answers its CONNACK and SUBACK.
func connectDownlink(t *testing.T, f *fakeServer, sessionPresent bool) *fakeConn {
	t.Helper()
	fc := f.accept()
	fc.connack(sessionPresent, packet.Properties{})
	sp, ok := fc.read().(*packet.Subscribe)
	if !ok {
		t.Fatalf("got %+v, want SUBSCRIBE", sp)
	}
	fc.send(&packet.Suback{PacketID: sp.PacketID, ReasonCodes: []packet.ReasonCode{packet.GrantedQoS2}})
	return fc
}

func expectPubrec(t *testing.T, fc *fakeConn, id uint16) {
	t.Helper()
	if rec, ok := fc.read().(*packet.Pubrec); !ok || rec.PacketID != id || rec.ReasonCode != 0 {
		t.Fatalf("got %+v, want PUBREC %d", rec, id)
	}
}

func expectPubcomp(t *testing.T, fc *fakeConn, id uint16) {
	t.Helper()
	if comp, ok := fc.read().(*packet.Pubcomp); !ok || comp.PacketID != id || comp.ReasonCode != 0 {
		t.Fatalf("got %+v, want PUBCOMP %d", comp, id)
	}
}

// TestDownlinkQoS2OnceAcrossRestart: a QoS 2 downlink message stored
// locally by one Client, whose PUBREC the server never saw, is answered
// with PUBREC and not delivered again when a new Client (holdfast
// restarted) gets the server's resend; its PUBREL removes the mark.
func TestDownlinkQoS2OnceAcrossRestart(t *testing.T) {
	f := startFake(t)
	down := newMarkedDownlink()
	o := Options{URL: f.URL(), ClientID: "dl", KeepAlive: -1, Subscriptions: []Subscription{{Filter: "cmd/#", QoS: 2}}}
	stop := run(t, newClient(t, o, newMemSource(), down))
	fc := connectDownlink(t, f, false)
	fc.send(&packet.Publish{QoS: 2, PacketID: 5, Topic: "cmd/a", Payload: []byte("a")})
	expectPubrec(t, fc, 5) // sent, and lost with the restart
	stop()
	fc.nc.Close()
	if !down.marked(5) {
		t.Fatal("no mark stored with the delivery")
	}

	stop = run(t, newClient(t, o, newMemSource(), down))
	defer stop()
	fc = connectDownlink(t, f, true)
	fc.send(&packet.Publish{QoS: 2, PacketID: 5, Dup: true, Topic: "cmd/a", Payload: []byte("a")})
	expectPubrec(t, fc, 5)
	fc.send(&packet.Pubrel{PacketID: 5})
	expectPubcomp(t, fc, 5)
	if got := down.delivered(); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("delivered %q, want a once", got)
	}
	if down.marked(5) {
		t.Fatal("PUBCOMP sent before the mark was removed")
	}

	// The id is free again: a new message under it is delivered.
	fc.send(&packet.Publish{QoS: 2, PacketID: 5, Topic: "cmd/a", Payload: []byte("b")})
	expectPubrec(t, fc, 5)
	if got := down.delivered(); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("delivered %q, want a, b", got)
	}
}

// TestDownlinkMarksAndSessions: while the server keeps the session, a
// re-delivery (DUP) under a mark found at start is answered PUBREC without
// a delivery, and a first transmission (DUP clear) under one is a new
// message: the mark was left by a crash while a lost session's ids were
// being forgotten. A server without the session has every mark dropped
// before anything else happens on the connection.
func TestDownlinkMarksAndSessions(t *testing.T) {
	for _, present := range []bool{true, false} {
		name := map[bool]string{true: "session present", false: "new session"}[present]
		t.Run(name, func(t *testing.T) {
			f := startFake(t)
			down := newMarkedDownlink()
			down.marks[5], down.marks[9] = true, true
			o := Options{URL: f.URL(), ClientID: "dl", KeepAlive: -1, Subscriptions: []Subscription{{Filter: "cmd/#", QoS: 2}}}
			defer run(t, newClient(t, o, newMemSource(), down))()
			fc := connectDownlink(t, f, present)
			if !present && (down.marked(5) || down.marked(9)) {
				t.Fatal("the old session's marks kept")
			}
			fc.send(&packet.Publish{QoS: 2, PacketID: 5, Topic: "cmd/a", Payload: []byte("m5")})
			expectPubrec(t, fc, 5)
			fc.send(&packet.Publish{QoS: 2, PacketID: 9, Dup: true, Topic: "cmd/a", Payload: []byte("m9")})
			expectPubrec(t, fc, 9)
			want := []string{"m5"}
			if !present {
				want = []string{"m5", "m9"} // messages of the new session
			}
			if got := down.delivered(); !slices.Equal(got, want) {
				t.Fatalf("delivered %q, want %q", got, want)
			}
			if !down.marked(5) || !down.marked(9) {
				t.Fatal("marks missing for flows awaiting PUBREL")
			}
			fc.send(&packet.Pubrel{PacketID: 5})
			expectPubcomp(t, fc, 5)
			if down.marked(5) {
				t.Fatal("PUBCOMP sent before the mark was removed")
			}
		})
	}
}

// TestDownlinkMarkedDeliveryNotCancelled: a connection that ends while a
// QoS 2 message is being stored with its mark does not abandon it: the
// stored message counts as delivered, and the server's resend on the next
// connection gets PUBREC without a second delivery.
func TestDownlinkMarkedDeliveryNotCancelled(t *testing.T) {
	f := startFake(t)
	down := newMarkedDownlink()
	down.entered = make(chan struct{}, 1)
	o := Options{URL: f.URL(), ClientID: "dl", KeepAlive: -1, Subscriptions: []Subscription{{Filter: "cmd/#", QoS: 2}}}
	defer run(t, newClient(t, o, newMemSource(), down))()
	fc := connectDownlink(t, f, false)
	fc.send(&packet.Publish{QoS: 2, PacketID: 5, Topic: "cmd/a", Payload: []byte("a")})
	select {
	case <-down.entered:
	case <-time.After(30 * time.Second):
		t.Fatal("DeliverMarked not called")
	}
	fc.nc.Close() // the connection ends while the message is being stored

	fc = connectDownlink(t, f, true)
	fc.send(&packet.Publish{QoS: 2, PacketID: 5, Dup: true, Topic: "cmd/a", Payload: []byte("a")})
	expectPubrec(t, fc, 5)
	if got := down.delivered(); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("delivered %q, want a once", got)
	}
}

// TestDownlinkForgetSurvivesUnmarkFailure: when the marks of a session the
// server lost cannot be removed, the ids are still forgotten (a message of
// the new session under one is delivered, even as a re-delivery), and the
// removal is retried at the next connect.
func TestDownlinkForgetSurvivesUnmarkFailure(t *testing.T) {
	f := startFake(t)
	down := newMarkedDownlink()
	down.marks[5], down.marks[7] = true, true
	down.unmarkErr = errors.New("store unavailable")
	o := Options{URL: f.URL(), ClientID: "dl", KeepAlive: -1, Subscriptions: []Subscription{{Filter: "cmd/#", QoS: 2}}}
	defer run(t, newClient(t, o, newMemSource(), down))()
	fc := connectDownlink(t, f, false) // the server lost the session: forget 5
	fc.nc.Close()

	fc = connectDownlink(t, f, true) // the session made by the last CONNECT
	if !down.marked(5) {
		t.Fatal("the failing store removed the mark anyway")
	}
	// The new session's message 5, whose first copy was lost on the way.
	fc.send(&packet.Publish{QoS: 2, PacketID: 5, Dup: true, Topic: "cmd/a", Payload: []byte("new")})
	expectPubrec(t, fc, 5)
	if got := down.delivered(); !slices.Equal(got, []string{"new"}) {
		t.Fatalf("delivered %q, want the new session's message", got)
	}
	down.mu.Lock()
	down.unmarkErr = nil // the store works again
	down.mu.Unlock()
	fc.send(&packet.Pubrel{PacketID: 5})
	expectPubcomp(t, fc, 5)
	fc.nc.Close()
	connectDownlink(t, f, true)
	if down.marked(7) {
		t.Fatal("the forgotten mark 7 not removed at the next connect")
	}
}

// gateDownlink records deliveries; the first Deliver waits until open is
// closed.
type gateDownlink struct {
	entered chan struct{}
	open    chan struct{}
	once    sync.Once
	mu      sync.Mutex
	got     []string
}

func (d *gateDownlink) Deliver(ctx context.Context, m *Message) error {
	first := false
	d.once.Do(func() { first = true })
	if first {
		close(d.entered)
		<-d.open
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.got = append(d.got, string(m.Payload))
	return nil
}

func (d *gateDownlink) delivered() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.got)
}

// TestDownlinkDuplicateWhileDelivering: the server resends a QoS 2 PUBLISH
// (same packet id, DUP) while the first copy is still being delivered; the
// resend is neither queued nor delivered, and PUBREC goes out once the
// first copy is stored.
func TestDownlinkDuplicateWhileDelivering(t *testing.T) {
	f := startFake(t)
	down := &gateDownlink{entered: make(chan struct{}), open: make(chan struct{})}
	o := Options{URL: f.URL(), ClientID: "dl", KeepAlive: -1, Subscriptions: []Subscription{{Filter: "cmd/#", QoS: 2}}}
	run(t, newClient(t, o, newMemSource(), down))
	fc := connectDownlink(t, f, false)
	fc.send(&packet.Publish{QoS: 2, PacketID: 5, Topic: "cmd/a", Payload: []byte("a")})
	select {
	case <-down.entered:
	case <-time.After(30 * time.Second):
		t.Fatal("Deliver not called")
	}
	fc.send(&packet.Publish{QoS: 2, PacketID: 5, Dup: true, Topic: "cmd/a", Payload: []byte("a")})
	// The client handles packets in order: once PUBREL 99 is answered,
	// the resend has been seen.
	fc.send(&packet.Pubrel{PacketID: 99})
	expectPubcomp(t, fc, 99)
	close(down.open)
	expectPubrec(t, fc, 5)
	fc.send(&packet.Pubrel{PacketID: 5})
	expectPubcomp(t, fc, 5)
	// A new message under the id, after PUBCOMP, is delivered.
	fc.send(&packet.Publish{QoS: 2, PacketID: 5, Topic: "cmd/a", Payload: []byte("b")})
	expectPubrec(t, fc, 5)
	if got := down.delivered(); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("delivered %q, want a once, then b", got)
	}
}
