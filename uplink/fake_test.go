package uplink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"holdfast/internal/packet"
	"holdfast/internal/testenv"
)

// TestQoS2ResumeAfterRestart shows exactly-once across a restart of the
// uplink: the first client gets PUBREC and stores it before PUBREL; the
// restarted client, on the same Source, sends PUBREL (not a second PUBLISH)
// when the session survived. When it did not, the message is published
// again as a new message: mosquitto delivers a QoS 2 message at PUBREL, so
// a server that lost the session between PUBREC and PUBREL never delivered
// it.
func TestQoS2ResumeAfterRestart(t *testing.T) {
	for _, session := range []bool{true, false} {
		t.Run(fmt.Sprintf("session_present=%v", session), func(t *testing.T) {
			f := startFake(t)
			src := newMemSource()
			seq := src.add(Message{Topic: "q2/a", Payload: []byte("x"), QoS: 2})
			next := src.add(Message{Topic: "q2/a", Payload: []byte("y"), QoS: 2})
			opts := Options{URL: f.URL(), ClientID: "q2", KeepAlive: -1}

			c1 := newClient(t, opts, src, nil)
			stop1 := run(t, c1)
			fc := f.accept()
			if fc.connect.CleanStart || !fc.connect.Properties.HasSessionExpiry || fc.connect.Properties.SessionExpiry != 7*24*3600 {
				t.Fatalf("CONNECT not persistent: clean start %v, session expiry %v %d", fc.connect.CleanStart,
					fc.connect.Properties.HasSessionExpiry, fc.connect.Properties.SessionExpiry)
			}
			fc.connack(false, packet.Properties{})
			p, ok := fc.read().(*packet.Publish)
			if !ok || string(p.Payload) != "x" || p.QoS != 2 || p.PacketID != derivedID(seq) || p.Dup {
				t.Fatalf("first packet %+v, want PUBLISH x QoS 2 id %d", p, derivedID(seq))
			}
			id := p.PacketID
			// The second message also goes out; leave it unanswered.
			if p2, ok := fc.read().(*packet.Publish); !ok || string(p2.Payload) != "y" {
				t.Fatalf("second packet %+v", p2)
			}
			fc.send(&packet.Pubrec{PacketID: id})
			rel, ok := fc.read().(*packet.Pubrel)
			if !ok || rel.PacketID != id {
				t.Fatalf("got %+v, want PUBREL %d", rel, id)
			}
			if got, want := src.mark(seq), fmt.Sprintf("rec:%d", id); got != want {
				t.Fatalf("PUBREL sent before the mark was stored: mark %q, want %q", got, want)
			}
			// holdfast goes away before PUBCOMP: stop the client while the
			// link breaks under it.
			stopped := make(chan struct{})
			go func() { stop1(); close(stopped) }()
			testenv.WaitFor(t, 30*time.Second, "client draining", func() bool { return c1.Status().State == StateDraining })
			fc.nc.Close()
			<-stopped
			if _, a, _, l := src.counts(); a != 0 || l != 0 {
				t.Fatalf("after stop: %d acked, %d still leased", a, l)
			}

			c2 := newClient(t, opts, src, nil)
			run(t, c2)
			fc2 := f.accept()
			fc2.connack(session, packet.Properties{})
			if session {
				pk := fc2.read()
				rel, ok := pk.(*packet.Pubrel)
				if !ok || rel.PacketID != id {
					t.Fatalf("restarted client sent %v %+v, want PUBREL %d", pk.Type(), pk, id)
				}
				// y was sent but not acknowledged: resent with the same id
				// (the restarted client cannot know it went out, so DUP
				// stays clear; the server's session knows the id).
				p, ok := fc2.read().(*packet.Publish)
				if !ok || string(p.Payload) != "y" || p.PacketID != derivedID(next) {
					t.Fatalf("got %+v, want PUBLISH y with id %d", p, derivedID(next))
				}
				fc2.send(&packet.Pubcomp{PacketID: id})
				fc2.send(&packet.Pubrec{PacketID: p.PacketID})
			} else {
				// The session is gone: x and y go out as new messages.
				var ids []uint16
				for _, want := range []string{"x", "y"} {
					p, ok := fc2.read().(*packet.Publish)
					if !ok || string(p.Payload) != want || p.Dup {
						t.Fatalf("got %+v, want PUBLISH %s without DUP", p, want)
					}
					checkMarkNames(t, src, map[string]uint64{"x": seq, "y": next}[want], p.PacketID)
					ids = append(ids, p.PacketID)
				}
				for _, id := range ids {
					fc2.send(&packet.Pubrec{PacketID: id})
					rel, ok := fc2.read().(*packet.Pubrel)
					if !ok || rel.PacketID != id {
						t.Fatalf("got %+v, want PUBREL %d", rel, id)
					}
					fc2.send(&packet.Pubcomp{PacketID: id})
				}
			}
			if session {
				rel2, ok := fc2.read().(*packet.Pubrel)
				if !ok || rel2.PacketID != derivedID(next) {
					t.Fatalf("got %+v, want PUBREL for y", rel2)
				}
				fc2.send(&packet.Pubcomp{PacketID: rel2.PacketID})
			}
			testenv.WaitFor(t, 30*time.Second, "both acked", func() bool {
				q, a, _, _ := src.counts()
				return q == 0 && a == 2
			})
		})
	}
}

// TestReceiveMaximum checks that no more than the server's Receive Maximum
// QoS 1/2 messages are ever unacknowledged, though Inflight allows more.
func TestReceiveMaximum(t *testing.T) {
	f := startFake(t)
	src := newMemSource()
	const n = 40
	for i := range n {
		src.add(Message{Topic: "rm", Payload: []byte{byte(i)}, QoS: byte(1 + i%2)})
	}
	c := newClient(t, Options{URL: f.URL(), ClientID: "rm", KeepAlive: -1, Inflight: 32}, src, nil)
	run(t, c)
	fc := f.accept()
	fc.connack(false, packet.Properties{ReceiveMaximum: 3, HasReceiveMaximum: true})
	var open []uint16 // unanswered, in arrival order
	got := 0
	for got < n || len(open) > 0 {
		switch p := fc.read().(type) {
		case *packet.Publish:
			if int(p.Payload[0]) != got {
				t.Fatalf("message %d arrived as number %d", p.Payload[0], got)
			}
			got++
			open = append(open, p.PacketID)
			if len(open) > 3 {
				t.Fatalf("%d messages in flight with Receive Maximum 3", len(open))
			}
			if p.QoS == 2 {
				fc.send(&packet.Pubrec{PacketID: p.PacketID}) // in flight until PUBCOMP
			}
		case *packet.Pubrel:
			fc.send(&packet.Pubcomp{PacketID: p.PacketID})
			open = removeID(open, p.PacketID)
			continue
		default:
			t.Fatalf("unexpected %v", p.Type())
		}
		// Answer the oldest QoS 1 message only once the window is full
		// (all of them at the end).
		for i := 0; i < len(open) && (len(open) == 3 || got == n); i++ {
			if id := open[i]; isQoS1(src, id) {
				fc.send(&packet.Puback{PacketID: id})
				open = append(open[:i], open[i+1:]...)
				if got < n {
					break
				}
				i--
			}
		}
	}
	if w := c.Status().Window; w != 3 {
		t.Errorf("status window %d, want 3", w)
	}
	testenv.WaitFor(t, 30*time.Second, "all acked", func() bool { _, a, _, _ := src.counts(); return a == n })
}

func removeID(ids []uint16, id uint16) []uint16 {
	for i, x := range ids {
		if x == id {
			return append(ids[:i], ids[i+1:]...)
		}
	}
	return ids
}

// isQoS1 tells from the derived id (seq = id - 1 here) whether the
// message was QoS 1 (odd seq: i even).
func isQoS1(_ *memSource, id uint16) bool { return (id-2)%2 == 0 }

// TestNegativeAcks checks each kind of refusal: dead letter for good
// (0x87, 0x99), pause and retry (0x97), dead letter after MaxRefusals for
// reasons of no known kind (0x80), and that retries are paced (exactly one
// resend per pause, no storm).
func TestNegativeAcks(t *testing.T) {
	f := startFake(t)
	src := newMemSource()
	seqs := map[string]uint64{}
	for _, s := range []string{"a", "b", "c", "d"} {
		seqs[s] = src.add(Message{Topic: "na/" + s, Payload: []byte(s), QoS: 1})
	}
	seqs["e"] = src.add(Message{Topic: "na/e", Payload: []byte("e"), QoS: 2})
	c := newClient(t, Options{URL: f.URL(), ClientID: "na", KeepAlive: -1,
		Backoff: Backoff{Initial: 20 * time.Millisecond, Max: 40 * time.Millisecond}}, src, nil)
	run(t, c)
	fc := f.accept()
	fc.connack(false, packet.Properties{})
	attempts := map[string]int{}
	var order []string
	for attempts["e"] < MaxRefusals || attempts["b"] < 2 {
		pk, err := fc.tryRead(30 * time.Second)
		if err != nil {
			t.Fatalf("read: %v (attempts %v)", err, attempts)
		}
		p, ok := pk.(*packet.Publish)
		if !ok {
			t.Fatalf("unexpected %v", pk.Type())
		}
		s := string(p.Payload)
		attempts[s]++
		order = append(order, s)
		if p.Dup {
			t.Errorf("resend of %s after a refusal has DUP set (the flow ended: it is a new message)", s)
		}
		switch s {
		case "a":
			fc.send(&packet.Puback{PacketID: p.PacketID, ReasonCode: packet.NotAuthorized})
		case "b":
			code := packet.QuotaExceeded
			if attempts[s] > 1 {
				code = packet.Success
			}
			fc.send(&packet.Puback{PacketID: p.PacketID, ReasonCode: code})
		case "c":
			fc.send(&packet.Puback{PacketID: p.PacketID, ReasonCode: packet.NoMatchingSubscribers})
		case "d":
			fc.send(&packet.Puback{PacketID: p.PacketID, ReasonCode: packet.PayloadFormatInvalid})
		case "e":
			fc.send(&packet.Pubrec{PacketID: p.PacketID, ReasonCode: packet.UnspecifiedError})
		}
		if attempts[s] > MaxRefusals {
			t.Fatalf("%s sent %d times", s, attempts[s])
		}
	}
	testenv.WaitFor(t, 30*time.Second, "all settled", func() bool {
		q, a, d, _ := src.counts()
		return q == 0 && a == 2 && d == 3
	})
	want := map[string]int{"a": 1, "b": 2, "c": 1, "d": 1, "e": MaxRefusals}
	for s, n := range want {
		if attempts[s] != n {
			t.Errorf("%s sent %d times, want %d (order %v)", s, attempts[s], n, order)
		}
	}
	if got := strings.Join(order[:6], ""); got != "abcdeb" {
		t.Errorf("send order %v, want a b c d e, then b again first", order)
	}
	for s, code := range map[string]string{"a": "0x87", "d": "0x99", "e": "0x80"} {
		r, ok := src.deadReason(seqs[s])
		if !ok || !strings.Contains(r, code) {
			t.Errorf("%s: dead letter %v, reason %q; want one with %s", s, ok, r, code)
		}
	}
	st := c.Status()
	if st.DeadLettered != 3 || st.Refused != 1+1+1+MaxRefusals || st.Forwarded != 2 {
		t.Errorf("status: dead-lettered %d, refused %d, forwarded %d", st.DeadLettered, st.Refused, st.Forwarded)
	}
}

// eventLog records what happened, in order, across goroutines.
type eventLog struct {
	mu sync.Mutex
	ev []string
}

func (l *eventLog) add(s string) {
	l.mu.Lock()
	l.ev = append(l.ev, s)
	l.mu.Unlock()
}

func (l *eventLog) index(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, e := range l.ev {
		if e == s {
			return i
		}
	}
	return -1
}

func (l *eventLog) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, e := range l.ev {
		if e == s {
			n++
		}
	}
	return n
}

// flakyDownlink fails the first failures calls per payload, then records.
type flakyDownlink struct {
	log      *eventLog
	failures int
	mu       sync.Mutex
	calls    map[string]int
	got      chan *Message
}

func (d *flakyDownlink) Deliver(ctx context.Context, m *Message) error {
	d.mu.Lock()
	d.calls[string(m.Payload)]++
	n := d.calls[string(m.Payload)]
	d.mu.Unlock()
	if n <= d.failures {
		d.log.add("deliver-fail " + string(m.Payload))
		return errors.New("local store unavailable")
	}
	d.log.add("deliver-ok " + string(m.Payload))
	d.got <- m
	return nil
}

// TestDownlinkAckAfterDeliver checks that a downlink QoS 1/2 message is
// acknowledged upstream only after Deliver returned nil, that a failing
// Deliver is retried without an acknowledgement, and that a QoS 2
// duplicate (DUP resend before PUBREL) is not delivered twice.
func TestDownlinkAckAfterDeliver(t *testing.T) {
	f := startFake(t)
	log := &eventLog{}
	down := &flakyDownlink{log: log, failures: 2, calls: map[string]int{}, got: make(chan *Message, 10)}
	c := newClient(t, Options{URL: f.URL(), ClientID: "dl", KeepAlive: -1,
		Subscriptions: []Subscription{{Filter: "cmd/dl/#", QoS: 2}}}, newMemSource(), down)
	run(t, c)
	fc := f.accept()
	fc.connack(false, packet.Properties{})
	sp, ok := fc.read().(*packet.Subscribe)
	if !ok || len(sp.Subscriptions) != 1 || sp.Subscriptions[0].Filter != "cmd/dl/#" || sp.Subscriptions[0].QoS != 2 ||
		sp.Subscriptions[0].RetainHandling != 1 {
		t.Fatalf("SUBSCRIBE %+v", sp)
	}
	fc.send(&packet.Suback{PacketID: sp.PacketID, ReasonCodes: []packet.ReasonCode{packet.GrantedQoS2}})
	fc.send(&packet.Publish{QoS: 1, PacketID: 7, Topic: "cmd/dl/1", Payload: []byte("c1")})
	fc.send(&packet.Publish{QoS: 2, PacketID: 8, Topic: "cmd/dl/2", Payload: []byte("c2"),
		Properties: packet.Properties{MessageExpiry: 60, HasMessageExpiry: true, ContentType: "text/plain", HasContentType: true}})
	ack, ok := fc.read().(*packet.Puback)
	if !ok || ack.PacketID != 7 {
		t.Fatalf("got %+v, want PUBACK 7", ack)
	}
	log.add("puback 7")
	rec, ok := fc.read().(*packet.Pubrec)
	if !ok || rec.PacketID != 8 {
		t.Fatalf("got %+v, want PUBREC 8", rec)
	}
	log.add("pubrec 8")
	// As if PUBREC was lost: the server resends the PUBLISH with DUP.
	fc.send(&packet.Publish{QoS: 2, PacketID: 8, Dup: true, Topic: "cmd/dl/2", Payload: []byte("c2")})
	rec, ok = fc.read().(*packet.Pubrec)
	if !ok || rec.PacketID != 8 {
		t.Fatalf("got %+v, want PUBREC 8 again", rec)
	}
	fc.send(&packet.Pubrel{PacketID: 8})
	if comp, ok := fc.read().(*packet.Pubcomp); !ok || comp.PacketID != 8 || comp.ReasonCode != 0 {
		t.Fatalf("got %+v, want PUBCOMP 8", comp)
	}
	if i, j := log.index("deliver-ok c1"), log.index("puback 7"); i < 0 || i > j {
		t.Errorf("PUBACK before delivery: %v", log.ev)
	}
	if i, j := log.index("deliver-ok c2"), log.index("pubrec 8"); i < 0 || i > j {
		t.Errorf("PUBREC before delivery: %v", log.ev)
	}
	if log.count("deliver-fail c1") != 2 || log.count("deliver-ok c2") != 1 {
		t.Errorf("deliveries: %v", log.ev)
	}
	m1, m2 := <-down.got, <-down.got
	if m1.Topic != "cmd/dl/1" || m1.QoS != 1 || m2.QoS != 2 || m2.ContentType != "text/plain" ||
		m2.Expires.IsZero() || time.Until(m2.Expires) > time.Minute {
		t.Errorf("delivered %+v and %+v", m1, m2)
	}
	if st := c.Status(); st.Delivered != 2 {
		t.Errorf("status delivered %d", st.Delivered)
	}
}

// TestServerKeepAliveAndAssignedID: the CONNACK's Server Keep Alive
// replaces the client's, PINGREQ keeps an idle link alive, a link that stops
// answering PINGREQ is dropped, and the Assigned Client Identifier is used
// for the next connect so the session is found again.
func TestServerKeepAliveAndAssignedID(t *testing.T) {
	f := startFake(t)
	c := newClient(t, Options{URL: f.URL(), KeepAlive: time.Hour}, newMemSource(), nil)
	run(t, c)
	fc := f.accept()
	if fc.connect.ClientID != "" || fc.connect.KeepAlive != 3600 {
		t.Fatalf("CONNECT client id %q keep alive %d", fc.connect.ClientID, fc.connect.KeepAlive)
	}
	fc.connack(false, packet.Properties{AssignedClientID: "assigned-1", HasAssignedClientID: true,
		ServerKeepAlive: 1, HasServerKeepAlive: true})
	// Idle: PINGREQ within the server's keep alive, answered.
	for range 2 {
		if p, ok := fc.read().(*packet.Pingreq); !ok {
			t.Fatalf("got %v, want PINGREQ", p)
		}
		fc.send(&packet.Pingresp{})
	}
	if st := c.Status(); st.ClientID != "assigned-1" || st.Connects != 1 {
		t.Fatalf("status %+v", st)
	}
	// Stop answering: the client gives up on the link and reconnects
	// with the assigned id.
	if p, ok := fc.read().(*packet.Pingreq); !ok {
		t.Fatalf("got %v, want PINGREQ", p)
	}
	fc2 := f.accept()
	if fc2.connect.ClientID != "assigned-1" {
		t.Fatalf("reconnect with client id %q, want the assigned one", fc2.connect.ClientID)
	}
	if err := c.Status().LastError; !strings.Contains(err, "keep alive") {
		t.Errorf("last error %q", err)
	}
}

// TestServerProtocolErrors: a server that breaks the protocol gets a
// DISCONNECT with the reason (5.0), and the client reconnects.
func TestServerProtocolErrors(t *testing.T) {
	f := startFake(t)
	c := newClient(t, Options{URL: f.URL(), ClientID: "pe", KeepAlive: -1}, newMemSource(), nil)
	run(t, c)
	for i, tc := range []struct {
		send packet.Packet
		code packet.ReasonCode
	}{
		{&packet.Connack{}, packet.ProtocolError}, // a second CONNACK
		{&packet.Publish{QoS: 1, PacketID: 3, Topic: "", Payload: []byte("x"),
			Properties: packet.Properties{TopicAlias: 1, HasTopicAlias: true}}, packet.TopicAliasInvalid},
	} {
		fc := f.accept()
		fc.connack(false, packet.Properties{})
		fc.send(tc.send)
		d, ok := fc.read().(*packet.Disconnect)
		if !ok || d.ReasonCode != tc.code {
			t.Fatalf("case %d: got %+v, want DISCONNECT %v", i, d, tc.code)
		}
	}
	fc := f.accept() // reconnected after both
	fc.connack(false, packet.Properties{})
	testenv.WaitFor(t, 30*time.Second, "third connect", func() bool { return c.Status().Connects == 3 })
}

// TestRefusalKeepsOrder: after a retryable refusal (0x97 quota exceeded)
// the window is 1 until the refused message is accepted, so only the
// messages already in flight when it was refused arrive before it;
// nothing sent later overtakes it, however often it is refused.
func TestRefusalKeepsOrder(t *testing.T) {
	f := startFake(t)
	src := newMemSource()
	for _, s := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
		src.add(Message{Topic: "ro/" + s, Payload: []byte(s), QoS: 1})
	}
	c := newClient(t, Options{URL: f.URL(), ClientID: "ro", KeepAlive: -1, Inflight: 4,
		Backoff: Backoff{Initial: 20 * time.Millisecond, Max: 40 * time.Millisecond}}, src, nil)
	run(t, c)
	fc := f.accept()
	fc.connack(false, packet.Properties{})
	read := func() *packet.Publish {
		t.Helper()
		p, ok := fc.read().(*packet.Publish)
		if !ok {
			t.Fatalf("got %+v, want PUBLISH", p)
		}
		return p
	}
	ids := map[string]uint16{}
	for _, want := range []string{"a", "b", "c", "d"} {
		p := read()
		if string(p.Payload) != want {
			t.Fatalf("got %q, want %q", p.Payload, want)
		}
		ids[want] = p.PacketID
	}
	// b is refused while c and d are in flight; they may arrive first.
	fc.send(&packet.Puback{PacketID: ids["b"], ReasonCode: packet.QuotaExceeded})
	for _, s := range []string{"a", "c", "d"} {
		fc.send(&packet.Puback{PacketID: ids[s]})
	}
	var order []string
	for b := 0; b < 3; b++ { // refused twice more, then accepted
		p := read()
		order = append(order, string(p.Payload))
		if string(p.Payload) != "b" {
			t.Fatalf("sent %v after b was refused, want b alone until it is accepted", order)
		}
		code := packet.QuotaExceeded
		if b == 2 {
			code = packet.Success
		}
		fc.send(&packet.Puback{PacketID: p.PacketID, ReasonCode: code})
	}
	for _, want := range []string{"e", "f", "g", "h"} {
		p := read()
		if string(p.Payload) != want {
			t.Fatalf("got %q, want %q", p.Payload, want)
		}
		fc.send(&packet.Puback{PacketID: p.PacketID})
	}
	testenv.WaitFor(t, 30*time.Second, "all acked", func() bool { q, a, _, _ := src.counts(); return q == 0 && a == 8 })
}

// TestConnectedMeansAcknowledged: after CONNACK the state says "connected"
// only once the server has acknowledged a message, or when nothing waits to
// be sent; until then it is "waiting", however long the socket is open.
func TestConnectedMeansAcknowledged(t *testing.T) {
	f := startFake(t)
	src := newMemSource()
	src.add(Message{Topic: "st/a", Payload: []byte("a"), QoS: 1})
	c := newClient(t, Options{URL: f.URL(), ClientID: "st", KeepAlive: -1}, src, nil)
	run(t, c)
	fc := f.accept()
	fc.connack(false, packet.Properties{})
	p, ok := fc.read().(*packet.Publish)
	if !ok {
		t.Fatalf("got %+v, want PUBLISH", p)
	}
	// Unanswered: the state says so (it is set before the PUBLISH is
	// written, and ticks cannot change it while a message waits).
	if st := c.Status(); st.State != StateWaiting || st.Connects != 1 {
		t.Fatalf("state %q with a PUBLISH unanswered, want %q", st.State, StateWaiting)
	}
	fc.send(&packet.Puback{PacketID: p.PacketID})
	testenv.WaitFor(t, 30*time.Second, "connected after the PUBACK", func() bool { return c.Status().State == StateConnected })

	// Reconnected with a message the server does not answer: waiting.
	src.add(Message{Topic: "st/a", Payload: []byte("b"), QoS: 1})
	if p, ok := fc.read().(*packet.Publish); !ok || string(p.Payload) != "b" {
		t.Fatalf("got %+v, want PUBLISH b", p)
	}
	fc.nc.Close()
	fc = f.accept()
	fc.connack(true, packet.Properties{})
	p, ok = fc.read().(*packet.Publish)
	if !ok || string(p.Payload) != "b" || !p.Dup {
		t.Fatalf("got %+v, want b again with DUP", p)
	}
	if st := c.Status(); st.State != StateWaiting || st.Connects != 2 {
		t.Fatalf("state %q after a reconnect with b unanswered, want %q", st.State, StateWaiting)
	}
	fc.send(&packet.Puback{PacketID: p.PacketID})
	testenv.WaitFor(t, 30*time.Second, "connected", func() bool { return c.Status().State == StateConnected })

	// Nothing to send: connected without an acknowledgement.
	fc.nc.Close()
	fc = f.accept()
	fc.connack(true, packet.Properties{})
	testenv.WaitFor(t, 30*time.Second, "connected when idle", func() bool {
		st := c.Status()
		return st.Connects == 3 && st.State == StateConnected
	})
}

// TestServerBusyBacksOff: CONNACK 0x89 server busy and 0x8A banned, and
// DISCONNECT 0x8B server shutting down and 0x89 server busy, are waited
// out with the growing reconnect delays (never a storm); a PUBACK with
// 0x90 topic name invalid dead-letters the message.
func TestServerBusyBacksOff(t *testing.T) {
	f := startFake(t)
	src := newMemSource()
	bad := src.add(Message{Topic: "busy/a", Payload: []byte("a"), QoS: 1})
	c := newClient(t, Options{URL: f.URL(), ClientID: "busy", KeepAlive: -1, Backoff: Backoff{
		Initial: 20 * time.Millisecond, Max: 160 * time.Millisecond, Randomization: -1}}, src, nil)
	var mu sync.Mutex
	var delays []time.Duration
	c.onBackoff = func(d time.Duration) { mu.Lock(); delays = append(delays, d); mu.Unlock() }
	run(t, c)
	for _, code := range []packet.ReasonCode{packet.ServerBusy, packet.Banned, packet.Banned} {
		fc := f.accept()
		fc.send(&packet.Connack{ReasonCode: code})
		testenv.WaitFor(t, 30*time.Second, "refusal reported", func() bool {
			return strings.Contains(c.Status().LastError, fmt.Sprintf("0x%02X", byte(code)))
		})
	}
	for _, code := range []packet.ReasonCode{packet.ServerShuttingDown, packet.ServerBusy} {
		fc := f.accept()
		fc.connack(false, packet.Properties{})
		p, ok := fc.read().(*packet.Publish)
		if !ok || string(p.Payload) != "a" {
			t.Fatalf("got %+v, want PUBLISH a", p)
		}
		fc.send(&packet.Disconnect{ReasonCode: code})
		testenv.WaitFor(t, 30*time.Second, "disconnect reported", func() bool {
			return strings.Contains(c.Status().LastError, fmt.Sprintf("0x%02X", byte(code)))
		})
	}
	fc := f.accept()
	fc.connack(false, packet.Properties{})
	p, ok := fc.read().(*packet.Publish)
	if !ok || string(p.Payload) != "a" {
		t.Fatalf("got %+v, want PUBLISH a", p)
	}
	fc.send(&packet.Puback{PacketID: p.PacketID, ReasonCode: packet.TopicNameInvalid})
	testenv.WaitFor(t, 30*time.Second, "dead-lettered", func() bool { _, _, d, _ := src.counts(); return d == 1 })
	if r, _ := src.deadReason(bad); !strings.Contains(r, "0x90") {
		t.Errorf("dead letter reason %q, want 0x90", r)
	}
	mu.Lock()
	got := fmt.Sprint(delays)
	mu.Unlock()
	if want := "[20ms 40ms 80ms 160ms 160ms]"; got != want {
		t.Errorf("reconnect delays %s, want %s", got, want)
	}
	if st := c.Status(); st.Connects != 3 || st.Refused != 1 || st.DeadLettered != 1 {
		t.Errorf("status: connects %d, refused %d, dead-lettered %d", st.Connects, st.Refused, st.DeadLettered)
	}
}

// failAckSource is a memSource whose first fails Ack calls fail and make
// their records visible to Lease again, as the queue does when the commit
// of an ack fails.
type failAckSource struct {
	*memSource
	fmu   sync.Mutex
	fails int
}

func (s *failAckSource) Ack(seqs ...uint64) error {
	s.fmu.Lock()
	fail := s.fails > 0
	s.fails--
	s.fmu.Unlock()
	if !fail {
		return s.memSource.Ack(seqs...)
	}
	s.memSource.Release(seqs...)
	return fmt.Errorf("ack of %v failed", seqs)
}

// TestFailedAckSentAgain: messages whose Source Ack fails (the acker tries
// twice) stay queued; the queue leases them again within the same run,
// and they go upstream again behind the messages already leased, out of
// queue order, as the log says.
func TestFailedAckSentAgain(t *testing.T) {
	f := startFake(t)
	src := &failAckSource{memSource: newMemSource(), fails: 2}
	for _, s := range []string{"a", "b"} {
		src.add(Message{Topic: "fa/x", Payload: []byte(s), QoS: 1})
	}
	var log testenv.LockedBuffer
	c := newClient(t, Options{URL: f.URL(), ClientID: "fa", KeepAlive: -1, Inflight: 1,
		Logger: slog.New(slog.NewTextHandler(&log, nil))}, src, nil)
	run(t, c)
	fc := f.accept()
	fc.connack(false, packet.Properties{})
	var got []string
	answer := func() {
		t.Helper()
		p, ok := fc.read().(*packet.Publish)
		if !ok {
			t.Fatalf("got %+v, want PUBLISH", p)
		}
		got = append(got, string(p.Payload))
		fc.send(&packet.Puback{PacketID: p.PacketID})
	}
	answer() // a: its Ack fails twice
	testenv.WaitFor(t, 30*time.Second, "ack failure logged", func() bool { return strings.Contains(log.String(), "queue ack failed") })
	answer() // b, leased with a
	answer() // a, leased again: behind b
	if s := strings.Join(got, " "); s != "a b a" {
		t.Fatalf("upstream received %q, want a b, then a again", s)
	}
	testenv.WaitFor(t, 30*time.Second, "all acked", func() bool { q, _, _, _ := src.counts(); return q == 0 })
	var line string
	for _, l := range strings.Split(log.String(), "\n") {
		if strings.Contains(l, "queue ack failed") {
			line = l
		}
	}
	if !strings.Contains(line, "out of queue order") || strings.Contains(line, "after a restart") {
		t.Errorf("log line %q, want it to say the messages go again in this run, out of queue order", line)
	}
}

// TestWriteDeadlineFromTheFirstTurn: a server that answers CONNECT and
// then reads nothing, while the first turn of the connection writes
// messages far beyond the socket's buffers: the write is bounded by the
// write deadline, so the client gives the connection up and connects
// again instead of blocking for ever.
func TestWriteDeadlineFromTheFirstTurn(t *testing.T) {
	f := startFake(t)
	src := newMemSource()
	payload := make([]byte, 256<<10)
	for range 64 {
		src.add(Message{Topic: "wd/a", Payload: payload, QoS: 1})
	}
	c := newClient(t, Options{URL: f.URL(), ClientID: "wd", KeepAlive: -1, StallTimeout: time.Second,
		Backoff: Backoff{Initial: 100 * time.Millisecond, Max: time.Second}}, src, nil)
	run(t, c)
	f.accept().connack(false, packet.Properties{}) // and never read from again
	f.accept()                                     // fails the test if none comes within 30s
	if st := c.Status(); !strings.Contains(st.LastError, "write") || !strings.Contains(st.LastError, "timeout") {
		t.Fatalf("last error %q, want the write's timeout", st.LastError)
	}
}
