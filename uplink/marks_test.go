package uplink

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"holdfast/internal/packet"
	"holdfast/internal/testenv"
)

// markedDownlink is a MarkedDownlink in memory; it outlives the Clients of
// a test as a store outlives a restart.
type markedDownlink struct {
	mu      sync.Mutex
	marks   map[uint16]bool
	got     []string
	unmarks int
}

func newMarkedDownlink() *markedDownlink { return &markedDownlink{marks: make(map[uint16]bool)} }

func (d *markedDownlink) Deliver(ctx context.Context, m *Message) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.got = append(d.got, string(m.Payload))
	return nil
}

func (d *markedDownlink) DeliverMarked(ctx context.Context, m *Message, id uint16) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.got = append(d.got, string(m.Payload))
	d.marks[id] = true
	return nil
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

func (d *markedDownlink) Unmark(ids ...uint16) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, id := range ids {
		delete(d.marks, id)
	}
	d.unmarks++
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
	testenv.WaitFor(t, 10*time.Second, "the mark removed", func() bool { return !down.marked(5) })

	// The id is free again: a new message under it is delivered.
	fc.send(&packet.Publish{QoS: 2, PacketID: 5, Topic: "cmd/a", Payload: []byte("b")})
	expectPubrec(t, fc, 5)
	if got := down.delivered(); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("delivered %q, want a, b", got)
	}
}

// TestDownlinkStaleMarks: a mark left behind (the unmark lost in a crash)
// does not swallow a new message the server sends under its packet id (DUP
// clear), and a server that lost the session has every mark dropped.
func TestDownlinkStaleMarks(t *testing.T) {
	for _, present := range []bool{true, false} {
		name := map[bool]string{true: "session present", false: "new session"}[present]
		t.Run(name, func(t *testing.T) {
			f := startFake(t)
			down := newMarkedDownlink()
			down.marks[5], down.marks[9] = true, true
			o := Options{URL: f.URL(), ClientID: "dl", KeepAlive: -1, Subscriptions: []Subscription{{Filter: "cmd/#", QoS: 2}}}
			defer run(t, newClient(t, o, newMemSource(), down))()
			fc := connectDownlink(t, f, present)
			if !present {
				testenv.WaitFor(t, 10*time.Second, "the old session's marks dropped", func() bool {
					return !down.marked(5) && !down.marked(9)
				})
			}
			fc.send(&packet.Publish{QoS: 2, PacketID: 5, Topic: "cmd/a", Payload: []byte("new")})
			expectPubrec(t, fc, 5)
			want := []string{"new"}
			if !present {
				// Even a DUP under a marked id is a message of the new
				// session: the old session's ids mean nothing now.
				fc.send(&packet.Publish{QoS: 2, PacketID: 9, Dup: true, Topic: "cmd/a", Payload: []byte("dup")})
				expectPubrec(t, fc, 9)
				want = append(want, "dup")
			}
			if got := down.delivered(); !slices.Equal(got, want) {
				t.Fatalf("delivered %q, want %q", got, want)
			}
			if !down.marked(5) {
				t.Fatal("the new message delivered without its mark")
			}
		})
	}
}
