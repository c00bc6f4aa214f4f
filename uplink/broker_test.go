package uplink

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"holdfast/internal/faultproxy"
	"holdfast/internal/packet"
	"holdfast/internal/testclient"
	"holdfast/internal/testenv"
)

// TestConnackLimits runs against a mosquitto that announces Maximum QoS 1,
// Retain Available 0 and Maximum Packet Size 300: QoS 2 goes out as QoS 1,
// retain is stripped (mosquitto would disconnect otherwise), a message that
// can never fit is dead-lettered without blocking the ones behind it, and an
// expired message is dead-lettered rather than sent stale.
func TestConnackLimits(t *testing.T) {
	m := testenv.StartMosquitto(t, testenv.MosquittoOptions{Extra: "max_qos 1\nretain_available false\nmax_packet_size 300\n"})
	sub := subscriber(t, m.Addr(), "lim/#", packet.V5, 1)
	src := newMemSource()
	s0 := src.add(Message{Topic: "lim/a", Payload: []byte("0"), QoS: 2, Retain: true})
	big := src.add(Message{Topic: "lim/a", Payload: bytes.Repeat([]byte("x"), 400), QoS: 1})
	old := src.add(Message{Topic: "lim/a", Payload: []byte("old"), QoS: 1, Expires: time.Now().Add(-time.Second)})
	s1 := src.add(Message{Topic: "lim/a", Payload: []byte("1"), QoS: 1, Expires: time.Now().Add(time.Hour),
		ContentType: "text/plain", UserProperties: []packet.UserProperty{{Key: "k", Value: "v"}}})
	c := newClient(t, Options{URL: m.URL(), ClientID: "lim"}, src, nil)
	run(t, c)
	got := receive(t, sub, 2)
	if string(got[0].Payload) != "0" || got[0].QoS != 1 || string(got[1].Payload) != "1" {
		t.Fatalf("received %q (QoS %d), %q", got[0].Payload, got[0].QoS, got[1].Payload)
	}
	pr := got[1].Properties
	if !pr.HasMessageExpiry || pr.MessageExpiry > 3600 || pr.MessageExpiry < 3000 || pr.ContentType != "text/plain" ||
		len(pr.UserProperties) != 1 || pr.UserProperties[0] != (packet.UserProperty{Key: "k", Value: "v"}) {
		t.Errorf("properties not forwarded: %+v", pr)
	}
	testenv.WaitFor(t, 30*time.Second, "settled", func() bool {
		q, a, d, _ := src.counts()
		return q == 0 && a == 2 && d == 2
	})
	if r, ok := src.deadReason(big); !ok || !strings.Contains(r, "packet too large") {
		t.Errorf("big message: dead letter %v %q", ok, r)
	}
	if r, ok := src.deadReason(old); !ok || r != "expired" {
		t.Errorf("expired message: dead letter %v %q", ok, r)
	}
	src.mu.Lock()
	acked := fmt.Sprint(src.acked)
	src.mu.Unlock()
	if want := fmt.Sprint([]uint64{s0, s1}); acked != want {
		t.Errorf("acked %s, want %s (the two that fit, in order)", acked, want)
	}
	st := c.Status()
	if st.DeadLettered != 2 || st.Expired != 1 || st.Connects != 1 || st.Forwarded != 2 {
		t.Errorf("status %+v", st)
	}
	// Nothing retained: a new subscriber's first message is one published
	// after it subscribed, not a retained one (a broker sends those at
	// subscribe time, before anything newer).
	late := subscriber(t, m.Addr(), "lim/#", packet.V5, 1)
	publishEnd(t, m.Addr(), "lim/a")
	p, err := late.Receive(30 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if string(p.Payload) != endMarker || p.Retain {
		t.Errorf("first message for a new subscriber %q (retain %v): a retained message was stored upstream", p.Payload, p.Retain)
	}
}

// TestBirthAndWill observes the birth message after each connect and the
// will on an unexpected loss and on a clean shutdown, in both versions.
func TestBirthAndWill(t *testing.T) {
	m := testenv.StartMosquitto(t, testenv.MosquittoOptions{})
	for _, v := range []packet.Version{packet.V5, packet.V311} {
		t.Run(v.String(), func(t *testing.T) {
			topic := fmt.Sprintf("status/gw%d", v)
			proxy, err := faultproxy.Start(m.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer proxy.Close()
			sub := subscriber(t, m.Addr(), topic, v, 1)
			c := newClient(t, Options{URL: "mqtt://" + proxy.Addr(), Protocol: v, ClientID: fmt.Sprintf("bw%d", v),
				Birth: &WillMessage{Topic: topic, Payload: []byte("online"), QoS: 1, Retain: true},
				Will:  &WillMessage{Topic: topic, Payload: []byte("offline"), QoS: 1, Retain: true},
			}, newMemSource(), nil)
			stop := run(t, c)
			expect := func(what string) {
				t.Helper()
				p, err := sub.Receive(30 * time.Second)
				if err != nil {
					t.Fatalf("waiting for %s: %v", what, err)
				}
				if string(p.Payload) != what || p.Topic != topic {
					t.Fatalf("got %q on %s, want %q", p.Payload, p.Topic, what)
				}
			}
			expect("online")
			proxy.Cut() // unexpected loss: the broker publishes the will
			expect("offline")
			expect("online") // reconnected
			stop()           // clean shutdown: the gateway is gone too
			expect("offline")
			// Retained: a later subscriber learns the state at once.
			late := subscriber(t, m.Addr(), topic, v, 1)
			p, err := late.Receive(30 * time.Second)
			if err != nil || string(p.Payload) != "offline" || !p.Retain {
				t.Fatalf("retained state %+v, %v", p, err)
			}
		})
	}
}

// TestBackoff refuses connections and checks the delays grow, then lets a
// connection stay up past StableAfter and checks they start over; a
// connection cut right away does not reset them.
func TestBackoff(t *testing.T) {
	m := testenv.StartMosquitto(t, testenv.MosquittoOptions{})
	proxy, err := faultproxy.Start(m.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	var mu sync.Mutex
	var delays []time.Duration
	c := newClient(t, Options{URL: "mqtt://" + proxy.Addr(), ClientID: "bo", Backoff: Backoff{
		Initial: 20 * time.Millisecond, Max: 160 * time.Millisecond, Multiplier: 2, Randomization: -1,
		StableAfter: time.Second,
	}}, newMemSource(), nil)
	c.onBackoff = func(d time.Duration) { mu.Lock(); delays = append(delays, d); mu.Unlock() }
	got := func() []time.Duration { mu.Lock(); defer mu.Unlock(); return append([]time.Duration(nil), delays...) }
	proxy.Refuse(true)
	run(t, c)
	testenv.WaitFor(t, 30*time.Second, "six refused attempts", func() bool { return len(got()) >= 6 })
	ms := func(ns ...int) []time.Duration {
		out := make([]time.Duration, len(ns))
		for i, n := range ns {
			out[i] = time.Duration(n) * time.Millisecond
		}
		return out
	}
	if d := got()[:6]; fmt.Sprint(d) != fmt.Sprint(ms(20, 40, 80, 160, 160, 160)) {
		t.Fatalf("delays %v, want 20ms doubling up to 160ms", d)
	}
	proxy.Refuse(false)
	testenv.WaitFor(t, 30*time.Second, "connected", func() bool { return c.Status().State == StateConnected })
	// Stable: up for longer than StableAfter.
	testenv.WaitFor(t, 30*time.Second, "connection stable", func() bool {
		st := c.Status()
		return st.State == StateConnected && time.Since(st.Since) > 1500*time.Millisecond
	})
	n := len(got())
	connects := c.Status().Connects
	proxy.Cut()
	testenv.WaitFor(t, 30*time.Second, "reconnected", func() bool { return c.Status().Connects > connects })
	if d := got()[n]; d != 20*time.Millisecond {
		t.Fatalf("delay after a stable connection %v, want the initial 20ms", d)
	}
	// Unstable: cut right after connecting; the delays keep growing.
	proxy.Cut()
	testenv.WaitFor(t, 30*time.Second, "reconnected again", func() bool { return c.Status().Connects > connects+1 })
	if d := got()[n+1]; d != 40*time.Millisecond {
		t.Fatalf("delay after an unstable connection %v, want 40ms (no reset)", d)
	}
}

// chanDownlink hands delivered messages to a channel.
type chanDownlink chan *Message

func (d chanDownlink) Deliver(ctx context.Context, m *Message) error {
	select {
	case d <- m:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TestDownlinkMosquitto subscribes upstream through mosquitto and delivers
// QoS 0/1/2 commands, in both versions, also after a reconnect.
func TestDownlinkMosquitto(t *testing.T) {
	m := testenv.StartMosquitto(t, testenv.MosquittoOptions{})
	for _, v := range []packet.Version{packet.V5, packet.V311} {
		t.Run(v.String(), func(t *testing.T) {
			prefix := fmt.Sprintf("cmd/gw%d", v)
			proxy, err := faultproxy.Start(m.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer proxy.Close()
			down := make(chanDownlink, 100)
			c := newClient(t, Options{URL: "mqtt://" + proxy.Addr(), Protocol: v, ClientID: fmt.Sprintf("dlm%d", v),
				Subscriptions: []Subscription{{Filter: prefix + "/#", QoS: 2}}}, newMemSource(), down)
			run(t, c)
			testenv.WaitFor(t, 30*time.Second, "connected", func() bool { return c.Status().Connects == 1 })
			pub, err := testclient.Dial(m.Addr(), testclient.Options{ClientID: fmt.Sprintf("pub%d", v), Version: v, CleanStart: true})
			if err != nil {
				t.Fatal(err)
			}
			defer pub.Close()
			send := func(round int) {
				for qos := byte(0); qos <= 2; qos++ {
					// The subscription may still be on its way: retry QoS 0
					// until the first arrives.
					if _, err := pub.Publish(&packet.Publish{Topic: fmt.Sprintf("%s/%d", prefix, qos), QoS: qos,
						Payload: []byte(fmt.Sprintf("r%d-q%d", round, qos))}); err != nil {
						t.Fatal(err)
					}
				}
			}
			delivered := map[string]int{}
			check := func(round int) {
				t.Helper()
				for qos := byte(0); qos <= 2; {
					select {
					case d := <-down:
						delivered[string(d.Payload)]++
						if string(d.Payload) == "probe" || string(d.Payload) == fmt.Sprintf("r%d-q1", round-1) {
							continue // a late probe, or a QoS 1 duplicate after the cut (at least once)
						}
						want := fmt.Sprintf("r%d-q%d", round, qos)
						if string(d.Payload) != want || d.QoS != qos || d.Topic != fmt.Sprintf("%s/%d", prefix, qos) {
							t.Fatalf("delivered %q QoS %d on %s, want %s", d.Payload, d.QoS, d.Topic, want)
						}
						qos++
					case <-time.After(30 * time.Second):
						t.Fatalf("round %d: QoS %d command not delivered", round, qos)
					}
				}
			}
			// Wait until the subscription is active (SUBACK processed).
			testenv.WaitFor(t, 30*time.Second, "subscription active", func() bool {
				pub.Publish(&packet.Publish{Topic: prefix + "/probe", QoS: 1, Payload: []byte("probe")})
				select {
				case <-down:
					return true
				case <-time.After(100 * time.Millisecond):
					return false
				}
			})
			for len(down) > 0 {
				<-down
			}
			send(1)
			check(1)
			proxy.Cut()
			testenv.WaitFor(t, 30*time.Second, "reconnected", func() bool {
				st := c.Status()
				return st.Connects == 2 && st.State == StateConnected
			})
			send(2)
			check(2)
			for r := 1; r <= 2; r++ {
				if n := delivered[fmt.Sprintf("r%d-q2", r)]; n != 1 {
					t.Errorf("QoS 2 command of round %d delivered %d times", r, n)
				}
			}
		})
	}
}
