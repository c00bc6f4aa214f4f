package uplink

import (
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"holdfast/internal/faultproxy"
	"holdfast/internal/packet"
	"holdfast/internal/testclient"
	"holdfast/internal/testenv"
)

// endMarker is the payload publishEnd sends; collectors count it apart.
const endMarker = "end"

// publishEnd publishes endMarker on topic from a client of its own, once
// the messages under test have all been acknowledged to their sender. The
// broker has queued those for each subscriber before it acknowledged them
// (mosquitto delivers QoS 2 at PUBREL, before PUBCOMP), and it sends a
// subscriber's queue in order, so a subscriber that has received the
// marker has received everything before it: a late duplicate cannot
// arrive after the test stopped looking.
func publishEnd(t testing.TB, addr, topic string) {
	t.Helper()
	pub, err := testclient.Dial(addr, testclient.Options{ClientID: "end-" + strconv.Itoa(testenv.FreePort(t)), CleanStart: true})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	if _, err := pub.Publish(&packet.Publish{Topic: topic, QoS: 1, Payload: []byte(endMarker)}); err != nil {
		t.Fatal(err)
	}
}

// collector receives publishes in the background.
type collector struct {
	mu   sync.Mutex
	got  []int
	ends int // end markers seen (drain)
	errs chan error
	stop chan struct{}
	done chan struct{}
}

func collect(t testing.TB, addr, filter string, v packet.Version) *collector {
	sub := subscriber(t, addr, filter, v, 2)
	c := &collector{errs: make(chan error, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for {
			select {
			case <-c.stop:
				return
			default:
			}
			p, err := sub.Receive(500 * time.Millisecond)
			if err != nil {
				if isTimeout(err) {
					continue
				}
				c.errs <- err
				return
			}
			if string(p.Payload) == endMarker {
				c.mu.Lock()
				c.ends++
				c.mu.Unlock()
				continue
			}
			n, err := strconv.Atoi(string(p.Payload))
			if err != nil {
				c.errs <- fmt.Errorf("payload %q", p.Payload)
				return
			}
			c.mu.Lock()
			c.got = append(c.got, n)
			c.mu.Unlock()
		}
	}()
	t.Cleanup(func() { c.close() })
	return c
}

func isTimeout(err error) bool {
	type timeout interface{ Timeout() bool }
	te, ok := err.(timeout)
	return ok && te.Timeout()
}

// drain waits until everything the broker queued for the collector so far
// has arrived, late duplicates included: see publishEnd.
func (c *collector) drain(t testing.TB, addr, topic string) {
	t.Helper()
	c.mu.Lock()
	before := c.ends
	c.mu.Unlock()
	publishEnd(t, addr, topic)
	testenv.WaitFor(t, 30*time.Second, "end marker received", func() bool {
		if err := c.err(); err != nil {
			t.Fatal(err)
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.ends > before
	})
}

func (c *collector) close() {
	select {
	case <-c.stop:
	default:
		close(c.stop)
	}
	<-c.done
}

// unique returns how many distinct payloads arrived.
func (c *collector) unique() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	seen := map[int]bool{}
	for _, v := range c.got {
		seen[v] = true
	}
	return len(seen)
}

func (c *collector) received() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]int(nil), c.got...)
}

func (c *collector) err() error {
	select {
	case err := <-c.errs:
		return err
	default:
		return nil
	}
}

// TestReconnectFaults forwards a stream through a proxy that cuts, resets
// and blackholes the connection mid-stream: every message arrives, first
// arrivals in order, QoS 2 exactly once; the blackhole is found by stall
// detection.
func TestReconnectFaults(t *testing.T) {
	m := testenv.StartMosquitto(t, testenv.MosquittoOptions{})
	for _, tc := range []struct {
		v   packet.Version
		qos byte
	}{{packet.V5, 1}, {packet.V5, 2}, {packet.V311, 1}, {packet.V311, 2}} {
		t.Run(fmt.Sprintf("%v/qos%d", tc.v, tc.qos), func(t *testing.T) {
			prefix := fmt.Sprintf("rc%d%d", tc.v, tc.qos)
			proxy, err := faultproxy.Start(m.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer proxy.Close()
			col := collect(t, m.Addr(), prefix+"/#", tc.v)
			src := newMemSource()
			c := newClient(t, Options{
				URL: "mqtt://" + proxy.Addr(), Protocol: tc.v, ClientID: prefix, Inflight: 16,
				StallTimeout: time.Second, ConnectTimeout: 2 * time.Second,
			}, src, nil)
			stop := run(t, c)

			const n = 3000
			produced := produceSlowly(src, prefix, n, tc.qos)
			waitReceived := func(k int) { waitUnique(t, col, k, 60*time.Second) }
			waitReceived(400)
			proxy.Cut()
			waitReceived(900)
			proxy.Reset()
			waitReceived(1500)
			connects := c.Status().Connects
			proxy.Blackhole(true)
			testenv.WaitFor(t, 60*time.Second, "stall detected", func() bool { return c.Status().Stalls > 0 })
			proxy.Blackhole(false)
			<-produced
			testenv.WaitFor(t, 60*time.Second, "every message acked upstream", func() bool {
				q, a, _, _ := src.counts()
				return q == 0 && a == n
			})
			waitReceived(n)
			stop()
			col.drain(t, m.Addr(), prefix+"/x")
			col.close()
			checkDelivery(t, col.received(), n, tc.qos == 2)
			st := c.Status()
			if st.Connects < connects+1 || st.Connects < 4 {
				t.Errorf("connects = %d, want at least 4 (initial, after cut, reset and blackhole)", st.Connects)
			}
			if _, _, d, l := src.counts(); d != 0 || l != 0 {
				t.Errorf("dead-lettered %d, still leased %d", d, l)
			}
			t.Logf("%d received for %d messages, %d connects", len(col.received()), n, st.Connects)
		})
	}
}

// produceSlowly adds n QoS qos messages with payloads "0".."n-1" on
// prefix+"/x" to src, pausing 2ms after every tenth so the stream is
// still running while faults are applied; the channel closes when the
// last one is added.
func produceSlowly(src *memSource, prefix string, n int, qos byte) <-chan struct{} {
	produced := make(chan struct{})
	go func() {
		defer close(produced)
		for i := range n {
			src.add(Message{Topic: prefix + "/x", Payload: []byte(strconv.Itoa(i)), QoS: qos})
			if i%10 == 9 {
				time.Sleep(2 * time.Millisecond)
			}
		}
	}()
	return produced
}

// waitUnique waits until col has received k distinct messages, failing
// the test on a collector error or after within.
func waitUnique(t *testing.T, col *collector, k int, within time.Duration) {
	t.Helper()
	testenv.WaitFor(t, within, fmt.Sprintf("%d messages received", k), func() bool {
		if err := col.err(); err != nil {
			t.Fatal(err)
		}
		return col.unique() >= k
	})
}

// TestRandomCutsNeverDeadLetter: a slow link (50ms each way) whose
// connections are closed or reset at random moments, up to 800ms after
// they are made, thirty times, while a backlog drains with messages in
// flight at every cut, then heals: no message is dead-lettered (the
// poison window is 200ms, twice the round trip), every one arrives, first
// arrivals in order.
//
// The moments come from a random source seeded from the clock; the seed is
// logged, and HOLDFAST_TEST_SEED=<seed> replays the same moments.
func TestRandomCutsNeverDeadLetter(t *testing.T) {
	rng := testenv.Rand(t, "connection lifetimes")
	m := testenv.StartMosquitto(t, testenv.MosquittoOptions{})
	proxy, err := faultproxy.Start(m.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	proxy.SetDelay(50 * time.Millisecond)
	var mu sync.Mutex
	var lives []string
	proxy.SetLifetime(func() (time.Duration, bool) {
		d := time.Duration(rng.Int64N(int64(800 * time.Millisecond))).Round(time.Millisecond)
		reset := rng.IntN(2) == 0
		mu.Lock()
		lives = append(lives, fmt.Sprintf("%v%s", d, map[bool]string{true: " rst", false: ""}[reset]))
		mu.Unlock()
		return d, reset
	})
	col := collect(t, m.Addr(), "rn/#", packet.V5)
	src := newMemSource()
	const n = 1500
	src.fill(n, 1, "rn", 1)
	c := newClient(t, Options{URL: "mqtt://" + proxy.Addr(), ClientID: "rn", Inflight: 8, ConnectTimeout: 2 * time.Second,
		Backoff: Backoff{Initial: 10 * time.Millisecond, Max: 20 * time.Millisecond}}, src, nil)
	c.poisonWin = 200 * time.Millisecond
	stop := run(t, c)
	const cuts = 30
	testenv.WaitFor(t, 120*time.Second, fmt.Sprintf("%d connections", cuts), func() bool { return proxy.Accepted() >= cuts })
	mu.Lock()
	t.Logf("lifetimes of the connections: %v", lives)
	mu.Unlock()
	_, acked, _, _ := src.counts()
	proxy.SetLifetime(nil)
	proxy.SetDelay(0)
	testenv.WaitFor(t, 60*time.Second, "every message acked or dead-lettered", func() bool {
		q, _, _, _ := src.counts()
		return q == 0
	})
	if _, _, d, _ := src.counts(); d != 0 {
		t.Fatalf("%d messages dead-lettered (the seed to replay is logged above)", d)
	}
	stop()
	col.drain(t, m.Addr(), "rn/0")
	col.close()
	checkDelivery(t, col.received(), n, false)
	t.Logf("%d of %d acked during the cuts, %d connects", acked, n, c.Status().Connects)
}
