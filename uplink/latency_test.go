package uplink

import (
	"fmt"
	"testing"
	"time"

	"holdfast/internal/faultproxy"
	"holdfast/internal/packet"
	"holdfast/internal/testenv"
)

// TestLatencyMidStream forwards a stream to mosquitto through a proxy that
// adds latency far above the window's round trip on loopback, switched on
// mid-stream and off again: the link is neither dropped nor mistaken for a
// stalled one, nothing is resent, and every message arrives once, in
// order, and is acked in the queue.
func TestLatencyMidStream(t *testing.T) {
	m := testenv.StartMosquitto(t, testenv.MosquittoOptions{})
	for _, tc := range []struct {
		v   packet.Version
		qos byte
	}{{packet.V5, 1}, {packet.V311, 2}} {
		t.Run(fmt.Sprintf("%v/qos%d", tc.v, tc.qos), func(t *testing.T) {
			prefix := fmt.Sprintf("lat%d%d", tc.v, tc.qos)
			proxy, err := faultproxy.Start(m.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer proxy.Close()
			col := collect(t, m.Addr(), prefix+"/#", tc.v)
			src := newMemSource()
			// Each chunk through the proxy waits 250ms in each direction:
			// an ack comes at least 500ms after its PUBLISH. StallTimeout
			// is far above that, so only a client that gives up on slow
			// acks (or resends early) reconnects.
			const delay = 250 * time.Millisecond
			c := newClient(t, Options{
				URL: "mqtt://" + proxy.Addr(), Protocol: tc.v, ClientID: prefix, Inflight: 16,
				StallTimeout: 20 * delay, ConnectTimeout: 10 * time.Second,
			}, src, nil)
			stop := run(t, c)

			const n = 1500
			produced := produceSlowly(src, prefix, n, tc.qos)
			waitReceived := func(k int) { waitUnique(t, col, k, 90*time.Second) }
			waitReceived(300)
			proxy.SetDelay(delay)
			at := col.unique()
			if at >= n {
				t.Fatalf("all %d messages arrived before the latency was switched on", at)
			}
			// Messages keep flowing, slowly, under latency.
			waitReceived(at + 100)
			under := col.unique() - at
			proxy.SetDelay(0)
			<-produced
			testenv.WaitFor(t, 90*time.Second, "every message acked upstream", func() bool {
				q, a, _, _ := src.counts()
				return q == 0 && a == n
			})
			waitReceived(n)
			stop()
			col.drain(t, m.Addr(), prefix+"/x")
			col.close()
			checkDelivery(t, col.received(), n, true)
			st := c.Status()
			if st.Connects != 1 || st.Stalls != 0 {
				t.Errorf("connects %d, stalls %d; want 1 and 0: latency alone must not drop the link", st.Connects, st.Stalls)
			}
			if _, _, d, l := src.counts(); d != 0 || l != 0 {
				t.Errorf("dead-lettered %d, still leased %d", d, l)
			}
			if st.DeadLettered != 0 || st.Forwarded != n {
				t.Errorf("status: dead-lettered %d, forwarded %d; want 0 and %d", st.DeadLettered, st.Forwarded, n)
			}
			t.Logf("%d messages, %d of them while delayed by %v each way", n, under, delay)
		})
	}
}
