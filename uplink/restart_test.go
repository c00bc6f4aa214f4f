package uplink

import (
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"holdfast/internal/faultproxy"
	"holdfast/internal/packet"
	"holdfast/internal/testclient"
	"holdfast/internal/testenv"
)

// durableCollector is a subscriber with a persistent session that
// reconnects whenever the broker goes away.
type durableCollector struct {
	mu   sync.Mutex
	got  map[string][]int // by topic
	ends int              // end markers seen (drain)
	subs chan struct{}    // one value per (re)subscribe
	stop chan struct{}
	done chan struct{}
}

func collectDurable(t testing.TB, addr, filter string) *durableCollector {
	d := &durableCollector{got: map[string][]int{}, subs: make(chan struct{}, 16), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(d.done)
		first := true
		for {
			select {
			case <-d.stop:
				return
			default:
			}
			sub, err := testclient.Dial(addr, testclient.Options{ClientID: "durable-sub", CleanStart: first,
				Version: packet.V311, Timeout: 5 * time.Second})
			if err != nil {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			// mosquitto 2.0.11 does not route to a subscription restored
			// from its persistence file here: subscribe again (the session
			// keeps what was queued for it meanwhile).
			if _, err := sub.Subscribe(packet.Subscription{Filter: filter, QoS: 2}); err != nil {
				sub.Close()
				continue
			}
			first = false
			d.subs <- struct{}{}
			for {
				select {
				case <-d.stop:
					sub.Close()
					return
				default:
				}
				p, err := sub.Receive(300 * time.Millisecond)
				if err != nil {
					if isTimeout(err) {
						continue
					}
					break
				}
				if string(p.Payload) == endMarker {
					d.mu.Lock()
					d.ends++
					d.mu.Unlock()
					continue
				}
				n, _ := strconv.Atoi(string(p.Payload))
				d.mu.Lock()
				if p.Dup && slices.Contains(d.got[p.Topic], n) {
					// mosquitto's own resend to this subscriber after its
					// restart (its saved state predates our PUBCOMP). A
					// duplicate the uplink caused would arrive as a new
					// message, without DUP.
					d.mu.Unlock()
					continue
				}
				d.got[p.Topic] = append(d.got[p.Topic], n)
				d.mu.Unlock()
			}
			sub.Close()
		}
	}()
	d.subscribed(t)
	t.Cleanup(d.close)
	return d
}

// subscribed waits for the next (re)subscribe.
func (d *durableCollector) subscribed(t testing.TB) {
	select {
	case <-d.subs:
	case <-time.After(30 * time.Second):
		t.Fatal("durable subscriber did not subscribe")
	}
}

// drain waits until everything the broker queued for the subscriber so
// far has arrived, late duplicates included: see publishEnd.
func (d *durableCollector) drain(t testing.TB, addr, topic string) {
	t.Helper()
	d.mu.Lock()
	before := d.ends
	d.mu.Unlock()
	publishEnd(t, addr, topic)
	testenv.WaitFor(t, 30*time.Second, "end marker received", func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		return d.ends > before
	})
}

func (d *durableCollector) close() {
	select {
	case <-d.stop:
	default:
		close(d.stop)
	}
	<-d.done
}

func (d *durableCollector) unique(topic string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	seen := map[int]bool{}
	for _, v := range d.got[topic] {
		seen[v] = true
	}
	return len(seen)
}

func (d *durableCollector) list(topic string) []int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]int(nil), d.got[topic]...)
}

// TestUpstreamRestart restarts the upstream broker (with persistence) twice
// while a stream is forwarded: the uplink finds its session again in the
// restarted broker and resumes; QoS 1 arrives at least once and QoS 2
// exactly once, each topic in order.
func TestUpstreamRestart(t *testing.T) {
	m := testenv.StartMosquitto(t, testenv.MosquittoOptions{Persistent: true})
	col := collectDurable(t, m.Addr(), "ur/#")
	// The proxy keeps the uplink out until the test's subscriber is back.
	proxy, err := faultproxy.Start(m.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	src := newMemSource()
	c := newClient(t, Options{URL: "mqtt://" + proxy.Addr(), ClientID: "ur", ConnectTimeout: 2 * time.Second}, src, nil)
	stop := run(t, c)
	const n = 1500 // per topic
	produced := make(chan struct{})
	go func() {
		defer close(produced)
		for i := range n {
			src.add(Message{Topic: "ur/q1", Payload: []byte(strconv.Itoa(i)), QoS: 1})
			src.add(Message{Topic: "ur/q2", Payload: []byte(strconv.Itoa(i)), QoS: 2})
			if i%10 == 9 {
				time.Sleep(3 * time.Millisecond)
			}
		}
	}()
	for _, k := range []int{300, 800} {
		testenv.WaitFor(t, 60*time.Second, fmt.Sprintf("%d received", k), func() bool { return col.unique("ur/q2") >= k })
		proxy.Refuse(true)
		m.Restart()
		col.subscribed(t)
		proxy.Refuse(false)
	}
	<-produced
	testenv.WaitFor(t, 60*time.Second, "all acked", func() bool { q, a, _, _ := src.counts(); return q == 0 && a == 2*n })
	testenv.WaitFor(t, 60*time.Second, "all received", func() bool {
		return col.unique("ur/q1") == n && col.unique("ur/q2") == n
	})
	stop()
	col.drain(t, m.Addr(), "ur/q2")
	col.close()
	checkDelivery(t, col.list("ur/q1"), n, false)
	checkDelivery(t, col.list("ur/q2"), n, true)
	if st := c.Status(); st.Connects < 3 || !st.SessionPresent {
		t.Errorf("connects %d (want at least 3), session present %v", st.Connects, st.SessionPresent)
	}
}
