package uplink

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"holdfast/internal/packet"
	"holdfast/internal/testenv"
)

// TestTopicAliasesOnTheWire: with the server's Topic Alias Maximum 2, the
// first PUBLISH on a topic carries the topic and an alias, later ones the
// alias and an empty topic; a new topic when both are taken gets the least
// recently used alias (with its topic); after a reconnect aliases start
// over.
func TestTopicAliasesOnTheWire(t *testing.T) {
	f := startFake(t)
	src := newMemSource()
	for _, tp := range []string{"a", "a", "b", "c", "a", "b", "b"} {
		src.add(Message{Topic: "al/" + tp, Payload: []byte(tp), QoS: 1})
	}
	c := newClient(t, Options{URL: f.URL(), ClientID: "al", KeepAlive: -1}, src, nil)
	run(t, c)
	fc := f.accept()
	fc.connack(false, packet.Properties{TopicAliasMaximum: 2, HasTopicAliasMaximum: true})
	type wire struct {
		topic string
		alias uint16
	}
	want := []wire{
		{"al/a", 1}, {"", 1}, // a: assigned, then the alias alone
		{"al/b", 2},
		{"al/c", 1}, // both taken: a's alias (least recently used) goes to c
		{"al/a", 2}, // b's goes to a
		{"al/b", 1}, // c's goes to b
		{"", 1},
	}
	for i, w := range want {
		p, ok := fc.read().(*packet.Publish)
		if !ok {
			t.Fatalf("packet %d: %+v, want PUBLISH", i, p)
		}
		got := wire{p.Topic, p.Properties.TopicAlias}
		if !p.Properties.HasTopicAlias || got != w {
			t.Fatalf("PUBLISH %d (%s): topic %q alias %d (set %v), want topic %q alias %d", i, p.Payload,
				p.Topic, p.Properties.TopicAlias, p.Properties.HasTopicAlias, w.topic, w.alias)
		}
		fc.send(&packet.Puback{PacketID: p.PacketID})
	}
	testenv.WaitFor(t, 30*time.Second, "acked", func() bool { _, a, _, _ := src.counts(); return a == len(want) })
	fc.nc.Close()
	fc = f.accept()
	fc.connack(true, packet.Properties{TopicAliasMaximum: 2, HasTopicAliasMaximum: true})
	src.add(Message{Topic: "al/b", Payload: []byte("b"), QoS: 1})
	p, ok := fc.read().(*packet.Publish)
	if !ok || p.Topic != "al/b" || p.Properties.TopicAlias != 1 {
		t.Fatalf("after a reconnect: %+v, want topic al/b with alias 1 (aliases start over)", p)
	}
}

// TestResendWithDupOnReconnect: within one run, after a lost connection
// the server kept the session for, unacknowledged QoS 1 and 2 messages go
// out again with DUP 1 under the same packet ids, and a QoS 2 message whose
// PUBREC came gets PUBREL again, not a PUBLISH.
func TestResendWithDupOnReconnect(t *testing.T) {
	f := startFake(t)
	src := newMemSource()
	src.add(Message{Topic: "dup/1", Payload: []byte("q1"), QoS: 1})
	src.add(Message{Topic: "dup/2", Payload: []byte("q2"), QoS: 2})
	src.add(Message{Topic: "dup/3", Payload: []byte("rec"), QoS: 2})
	c := newClient(t, Options{URL: f.URL(), ClientID: "dup", KeepAlive: -1}, src, nil)
	run(t, c)
	fc := f.accept()
	fc.connack(false, packet.Properties{})
	ids := map[string]uint16{}
	for range 3 {
		p, ok := fc.read().(*packet.Publish)
		if !ok || p.Dup {
			t.Fatalf("got %+v, want a first PUBLISH", p)
		}
		ids[string(p.Payload)] = p.PacketID
	}
	fc.send(&packet.Pubrec{PacketID: ids["rec"]})
	if rel, ok := fc.read().(*packet.Pubrel); !ok || rel.PacketID != ids["rec"] {
		t.Fatalf("got %+v, want PUBREL %d", rel, ids["rec"])
	}
	fc.nc.Close()

	fc = f.accept()
	fc.connack(true, packet.Properties{})
	for _, want := range []string{"q1", "q2", "rec"} {
		switch p := fc.read().(type) {
		case *packet.Publish:
			if string(p.Payload) != want || want == "rec" || !p.Dup || p.PacketID != ids[want] {
				t.Fatalf("got PUBLISH %q DUP %v id %d, want %s with DUP under id %d", p.Payload, p.Dup, p.PacketID, want, ids[want])
			}
			if p.QoS == 1 {
				fc.send(&packet.Puback{PacketID: p.PacketID})
			} else {
				fc.send(&packet.Pubrec{PacketID: p.PacketID})
			}
		case *packet.Pubrel:
			if want != "rec" || p.PacketID != ids["rec"] {
				t.Fatalf("got PUBREL %d, want %s", p.PacketID, want)
			}
			fc.send(&packet.Pubcomp{PacketID: p.PacketID})
		default:
			t.Fatalf("unexpected %v", p.Type())
		}
	}
	if rel, ok := fc.read().(*packet.Pubrel); !ok || rel.PacketID != ids["q2"] {
		t.Fatalf("got %+v, want PUBREL for q2", rel)
	}
	fc.send(&packet.Pubcomp{PacketID: ids["q2"]})
	testenv.WaitFor(t, 30*time.Second, "acked", func() bool { q, a, _, _ := src.counts(); return q == 0 && a == 3 })
}

// TestBackoffJitter: with Randomization 0.5, each reconnect delay lies
// within half and one and a half times its nominal value (Initial doubling
// up to Max), and the delays are spread, not the nominal values.
func TestBackoffJitter(t *testing.T) {
	url := fmt.Sprintf("mqtt://127.0.0.1:%d", testenv.FreePort(t)) // nothing listens
	c := newClient(t, Options{URL: url, ClientID: "jit", Backoff: Backoff{
		Initial: 20 * time.Millisecond, Max: 80 * time.Millisecond, Multiplier: 2, Randomization: 0.5}}, newMemSource(), nil)
	var mu sync.Mutex
	var delays []time.Duration
	c.onBackoff = func(d time.Duration) { mu.Lock(); delays = append(delays, d); mu.Unlock() }
	stop := run(t, c)
	const n = 12
	testenv.WaitFor(t, 30*time.Second, "attempts", func() bool { mu.Lock(); defer mu.Unlock(); return len(delays) >= n })
	stop()
	mu.Lock()
	defer mu.Unlock()
	lo, hi := 2.0, 0.0
	for i, d := range delays[:n] {
		nominal := min(20*time.Millisecond<<i, 80*time.Millisecond)
		r := float64(d) / float64(nominal)
		if r < 0.5 || r > 1.5 {
			t.Errorf("delay %d: %v, outside [%v, %v]", i, d, nominal/2, nominal*3/2)
		}
		lo, hi = min(lo, r), max(hi, r)
	}
	if hi-lo < 0.1 {
		t.Errorf("delays %v: ratios to the nominal values only between %.3f and %.3f, want jitter", delays[:n], lo, hi)
	}
}

// TestMaxQoSWarning: the one warning about a server's Maximum QoS names
// what the server allows and what messages are sent with.
func TestMaxQoSWarning(t *testing.T) {
	for _, tc := range []struct {
		max  byte
		want string
	}{
		{1, "QoS 2 messages are sent with QoS 1 (at least once)"},
		{0, "QoS 1 and 2 messages are sent with QoS 0 (at most once)"},
	} {
		t.Run(fmt.Sprint(tc.max), func(t *testing.T) {
			f := startFake(t)
			var logs testenv.LockedBuffer
			src := newMemSource()
			src.add(Message{Topic: "mq/a", Payload: []byte("a"), QoS: 2})
			c := newClient(t, Options{URL: f.URL(), ClientID: "mq", KeepAlive: -1,
				Logger: slog.New(slog.NewTextHandler(&logs, nil))}, src, nil)
			run(t, c)
			fc := f.accept()
			fc.connack(false, packet.Properties{MaximumQoS: tc.max, HasMaximumQoS: true})
			if p, ok := fc.read().(*packet.Publish); !ok || p.QoS != tc.max {
				t.Fatalf("got %+v, want PUBLISH with QoS %d", p, tc.max)
			}
			if !strings.Contains(logs.String(), tc.want) {
				t.Errorf("log %q does not say %q", logs.String(), tc.want)
			}
		})
	}
}
