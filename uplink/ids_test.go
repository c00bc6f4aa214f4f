package uplink

import (
	"testing"
	"time"

	"holdfast/internal/packet"
	"holdfast/internal/testenv"
)

// TestControlIDsAvoidSessionIDs: after a restart, SUBSCRIBE and the birth
// message are sent before the queue is leased, so before the client knows
// which packet ids the server's session holds for its messages. A message
// marked rec:<id> whose id a control packet took waits for that packet's
// answer and then gets its PUBREL under its own id, never a second
// PUBLISH.
func TestControlIDsAvoidSessionIDs(t *testing.T) {
	f := startFake(t)
	down := make(chanDownlink, 1)
	src := newMemSource()
	a := src.add(Message{Topic: "ids/a", Payload: []byte("a"), QoS: 2})
	b := src.add(Message{Topic: "ids/b", Payload: []byte("b"), QoS: 2})
	// Marks a client that gave these ids to messages wrote: the server's
	// session holds both, awaiting PUBREL.
	src.marks[a], src.marks[b] = []byte("rec:65535"), []byte("rec:65534")
	c := newClient(t, Options{URL: f.URL(), ClientID: "ids", KeepAlive: -1,
		Birth:         &WillMessage{Topic: "ids/birth", Payload: []byte("up"), QoS: 1},
		Subscriptions: []Subscription{{Filter: "cmd/#", QoS: 1}}}, src, down)
	run(t, c)
	fc := f.accept()
	fc.connack(true, packet.Properties{})
	rel := map[uint16]bool{}
	for len(rel) < 2 {
		switch p := fc.read().(type) {
		case *packet.Subscribe:
			fc.send(&packet.Suback{PacketID: p.PacketID, ReasonCodes: []packet.ReasonCode{packet.GrantedQoS1}})
		case *packet.Publish:
			if p.Topic != "ids/birth" {
				t.Fatalf("PUBLISH %q id %d: a message whose PUBREC came is published again", p.Payload, p.PacketID)
			}
			fc.send(&packet.Puback{PacketID: p.PacketID})
		case *packet.Pubrel:
			if p.PacketID != 65535 && p.PacketID != 65534 {
				t.Fatalf("PUBREL %d, want 65535 and 65534", p.PacketID)
			}
			rel[p.PacketID] = true
			fc.send(&packet.Pubcomp{PacketID: p.PacketID})
		default:
			t.Fatalf("unexpected %v", p.Type())
		}
	}
	testenv.WaitFor(t, 30*time.Second, "both acked", func() bool { q, ak, _, _ := src.counts(); return q == 0 && ak == 2 })
}

// TestControlIDsOutsideMessageIDs: SUBSCRIBE and the birth message take
// ids above maxMsgID; a QoS 2 message whose sequence number would have
// derived such an id in a 1..65535 scheme goes out at once under its own
// derived id, without a mark.
func TestControlIDsOutsideMessageIDs(t *testing.T) {
	f := startFake(t)
	src := newMemSource()
	src.next = 65534
	seq := src.add(Message{Topic: "id/a", Payload: []byte("x"), QoS: 2})
	c := newClient(t, Options{URL: f.URL(), ClientID: "idw", KeepAlive: -1,
		Birth:         &WillMessage{Topic: "id/birth", Payload: []byte("up"), QoS: 1},
		Subscriptions: []Subscription{{Filter: "cmd/#", QoS: 1}}}, src, make(chanDownlink, 1))
	run(t, c)
	fc := f.accept()
	fc.connack(false, packet.Properties{})
	sp, ok := fc.read().(*packet.Subscribe)
	if !ok || sp.PacketID <= maxMsgID {
		t.Fatalf("first packet %+v, want SUBSCRIBE with an id above %d", sp, maxMsgID)
	}
	b, ok := fc.read().(*packet.Publish)
	if !ok || b.Topic != "id/birth" || b.PacketID <= maxMsgID || b.PacketID == sp.PacketID {
		t.Fatalf("second packet %+v, want the birth with another id above %d", b, maxMsgID)
	}
	// Neither is answered yet: the message does not wait for them.
	p, ok := fc.read().(*packet.Publish)
	if !ok || string(p.Payload) != "x" || p.PacketID != derivedID(seq) || p.PacketID > maxMsgID {
		t.Fatalf("got %+v, want the QoS 2 message with id %d", p, derivedID(seq))
	}
	if m := src.mark(seq); m != "" {
		t.Errorf("mark %q stored, want none (derived id)", m)
	}
	fc.send(&packet.Suback{PacketID: sp.PacketID, ReasonCodes: []packet.ReasonCode{packet.GrantedQoS1}})
	fc.send(&packet.Puback{PacketID: b.PacketID})
	fc.send(&packet.Pubrec{PacketID: p.PacketID})
	if rel, ok := fc.read().(*packet.Pubrel); !ok || rel.PacketID != p.PacketID {
		t.Fatalf("got %+v, want PUBREL", rel)
	}
	fc.send(&packet.Pubcomp{PacketID: p.PacketID})
	testenv.WaitFor(t, 30*time.Second, "acked", func() bool { _, a, _, _ := src.counts(); return a == 1 })
}
