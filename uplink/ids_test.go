package uplink

import (
	"fmt"
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

// checkMarkNames fails unless a QoS 2 PUBLISH of seq under id is what its
// stored mark says: "pub:<id>", or no mark and the derived id. A restarted
// client resends under the id the mark names, so any other id would be one
// the server's session does not know the message by.
func checkMarkNames(t *testing.T, src *memSource, seq uint64, id uint16) {
	t.Helper()
	m := src.mark(seq)
	if m == fmt.Sprintf("pub:%d", id) || (m == "" && id == derivedID(seq)) {
		return
	}
	t.Fatalf("PUBLISH of seq %d under id %d while the stored mark says %q", seq, id, m)
}

// restart stops c while the fake connection fc is open and unanswered
// (Run drains until fc is closed) and returns a new Client on src.
func restart(t *testing.T, c *Client, stop func(), fc *fakeConn, o Options, src Source) *Client {
	t.Helper()
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	testenv.WaitFor(t, 30*time.Second, "client draining", func() bool { return c.Status().State == StateDraining })
	fc.nc.Close()
	<-stopped
	return newClient(t, o, src, nil)
}

// TestMarkNamesTheID: whenever a QoS 2 message goes out under an id, its
// stored mark says so before the PUBLISH is written: after a run without
// the server's session (the next run with one resends under the same id),
// and after refusals (0x97 keeps the id, 0x91 takes another).
func TestMarkNamesTheID(t *testing.T) {
	t.Run("session lost, then found after a restart", func(t *testing.T) {
		f := startFake(t)
		src := newMemSource()
		seq := src.add(Message{Topic: "mk/a", Payload: []byte("a"), QoS: 2})
		src.marks[seq] = []byte("pub:777") // from a run long ago
		o := Options{URL: f.URL(), ClientID: "mk", KeepAlive: -1}
		c := newClient(t, o, src, nil)
		stop := run(t, c)
		fc := f.accept()
		fc.connack(false, packet.Properties{})
		p, ok := fc.read().(*packet.Publish)
		if !ok || string(p.Payload) != "a" {
			t.Fatalf("got %+v, want PUBLISH a", p)
		}
		checkMarkNames(t, src, seq, p.PacketID)
		id := p.PacketID
		c = restart(t, c, stop, fc, o, src)
		run(t, c)
		fc = f.accept()
		fc.connack(true, packet.Properties{})
		p, ok = fc.read().(*packet.Publish)
		if !ok || string(p.Payload) != "a" || p.PacketID != id {
			t.Fatalf("got %+v, want PUBLISH a under id %d, as the server's session knows it", p, id)
		}
		checkMarkNames(t, src, seq, p.PacketID)
		fc.send(&packet.Pubrec{PacketID: id})
		if rel, ok := fc.read().(*packet.Pubrel); !ok || rel.PacketID != id {
			t.Fatalf("got %+v, want PUBREL %d", rel, id)
		}
		fc.send(&packet.Pubcomp{PacketID: id})
		testenv.WaitFor(t, 30*time.Second, "acked", func() bool { _, a, _, _ := src.counts(); return a == 1 })
	})
	t.Run("refusals", func(t *testing.T) {
		f := startFake(t)
		src := newMemSource()
		a := src.add(Message{Topic: "mk/a", Payload: []byte("a"), QoS: 2})
		b := src.add(Message{Topic: "mk/b", Payload: []byte("b"), QoS: 2})
		src.marks[a] = []byte("pub:777")
		c := newClient(t, Options{URL: f.URL(), ClientID: "mk", KeepAlive: -1,
			Backoff: Backoff{Initial: 20 * time.Millisecond, Max: 40 * time.Millisecond}}, src, nil)
		run(t, c)
		fc := f.accept()
		fc.connack(false, packet.Properties{})
		seqs := map[string]uint64{"a": a, "b": b}
		ids := map[string][]uint16{}
		// a: refused with 0x97 (same id again), then 0x91 (another id),
		// then accepted. b: 0x91, then accepted.
		codes := map[string][]packet.ReasonCode{
			"a": {packet.QuotaExceeded, packet.PacketIdentifierInUse, packet.Success},
			"b": {packet.PacketIdentifierInUse, packet.Success},
		}
		done := 0
		for done < 2 {
			switch p := fc.read().(type) {
			case *packet.Publish:
				s := string(p.Payload)
				checkMarkNames(t, src, seqs[s], p.PacketID)
				n := len(ids[s])
				ids[s] = append(ids[s], p.PacketID)
				if n > 0 {
					prev := codes[s][n-1]
					if prev == packet.QuotaExceeded && p.PacketID != ids[s][n-1] {
						t.Errorf("%s: id %d after 0x97, want %d again", s, p.PacketID, ids[s][n-1])
					}
					if prev == packet.PacketIdentifierInUse && p.PacketID == ids[s][n-1] {
						t.Errorf("%s: id %d again after 0x91 (packet identifier in use)", s, p.PacketID)
					}
				}
				fc.send(&packet.Pubrec{PacketID: p.PacketID, ReasonCode: codes[s][n]})
			case *packet.Pubrel:
				fc.send(&packet.Pubcomp{PacketID: p.PacketID})
				done++
			default:
				t.Fatalf("unexpected %v", p.Type())
			}
		}
		if len(ids["a"]) != 3 || len(ids["b"]) != 2 {
			t.Errorf("sent a under %v, b under %v; want 3 and 2 PUBLISHes", ids["a"], ids["b"])
		}
		testenv.WaitFor(t, 30*time.Second, "acked", func() bool { _, n, _, _ := src.counts(); return n == 2 })
	})
}

// TestMarksUnderMaximumQoS1: a server whose CONNACK says Maximum QoS 1 (AWS
// IoT Core does) gets a QoS 2 message with QoS 1, and a PUBLISH with QoS 1
// leaves no pub: or rec: mark behind; a mark of a QoS 2 flow is not resumed
// as QoS 2 with such a server (an MQTT 5 server answers a QoS 2 PUBLISH
// above its maximum with DISCONNECT 0x9B, and the message would be resent
// after every reconnect, blocking the queue): the message goes out anew
// with QoS 1, its mark removed first.
func TestMarksUnderMaximumQoS1(t *testing.T) {
	qos1 := packet.Properties{MaximumQoS: 1, HasMaximumQoS: true}
	// expectQoS1 reads the next packet: a PUBLISH of a with QoS 1, written
	// while seq has no mark.
	expectQoS1 := func(t *testing.T, fc *fakeConn, src *memSource, seq uint64) *packet.Publish {
		t.Helper()
		pk := fc.read()
		p, ok := pk.(*packet.Publish)
		if !ok {
			t.Fatalf("got %v, want PUBLISH a with QoS 1", pk.Type())
		}
		if string(p.Payload) != "a" || p.QoS != 1 {
			t.Fatalf("got PUBLISH %q with QoS %d (id %d, dup %v), want a with QoS 1", p.Payload, p.QoS, p.PacketID, p.Dup)
		}
		if m := src.mark(seq); m != "" {
			t.Fatalf("PUBLISH with QoS 1 under id %d while the stored mark is %q", p.PacketID, m)
		}
		return p
	}
	acked := func(t *testing.T, src *memSource) {
		t.Helper()
		testenv.WaitFor(t, 30*time.Second, "acked", func() bool { q, a, _, _ := src.counts(); return q == 0 && a == 1 })
	}

	t.Run("0x91 moves the id, then a restart with the session", func(t *testing.T) {
		f := startFake(t)
		src := newMemSource()
		seq := src.add(Message{Topic: "mq/a", Payload: []byte("a"), QoS: 2})
		o := Options{URL: f.URL(), ClientID: "mq", KeepAlive: -1,
			Backoff: Backoff{Initial: 20 * time.Millisecond, Max: 40 * time.Millisecond}}
		c := newClient(t, o, src, nil)
		stop := run(t, c)
		fc := f.accept()
		fc.connack(false, qos1)
		p := expectQoS1(t, fc, src, seq)
		fc.send(&packet.Puback{PacketID: p.PacketID, ReasonCode: packet.PacketIdentifierInUse})
		if p2 := expectQoS1(t, fc, src, seq); p2.PacketID == p.PacketID {
			t.Fatalf("id %d again after 0x91", p2.PacketID)
		}
		c = restart(t, c, stop, fc, o, src)
		run(t, c)
		fc = f.accept()
		fc.connack(true, qos1)
		p = expectQoS1(t, fc, src, seq)
		fc.send(&packet.Puback{PacketID: p.PacketID})
		acked(t, src)
	})

	for _, mark := range []string{"pub:777", "rec:777"} {
		for _, session := range []bool{true, false} {
			t.Run(fmt.Sprintf("mark %s, session present %v", mark, session), func(t *testing.T) {
				f := startFake(t)
				src := newMemSource()
				seq := src.add(Message{Topic: "mq/a", Payload: []byte("a"), QoS: 2})
				src.marks[seq] = []byte(mark) // from a run when the server took QoS 2
				run(t, newClient(t, Options{URL: f.URL(), ClientID: "mq", KeepAlive: -1}, src, nil))
				fc := f.accept()
				fc.connack(session, qos1)
				p := expectQoS1(t, fc, src, seq)
				fc.send(&packet.Puback{PacketID: p.PacketID})
				acked(t, src)
			})
		}
	}

	t.Run("maximum lowered between connections", func(t *testing.T) {
		f := startFake(t)
		src := newMemSource()
		seq := src.add(Message{Topic: "mq/a", Payload: []byte("a"), QoS: 2})
		run(t, newClient(t, Options{URL: f.URL(), ClientID: "mq", KeepAlive: -1,
			Backoff: Backoff{Initial: 10 * time.Millisecond, Max: 20 * time.Millisecond}}, src, nil))
		fc := f.accept()
		fc.connack(false, packet.Properties{})
		if p, ok := fc.read().(*packet.Publish); !ok || p.QoS != 2 {
			t.Fatalf("got %+v, want PUBLISH with QoS 2", p)
		}
		fc.nc.Close() // unanswered; the server's session holds it
		fc = f.accept()
		fc.connack(true, qos1)
		p := expectQoS1(t, fc, src, seq)
		fc.send(&packet.Puback{PacketID: p.PacketID})
		acked(t, src)
	})
}
