package uplink

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"holdfast/internal/packet"
	"holdfast/internal/testenv"
)

func payloads(t testing.TB, ps []*packet.Publish) []int {
	t.Helper()
	out := make([]int, len(ps))
	for i, p := range ps {
		n, err := strconv.Atoi(string(p.Payload))
		if err != nil {
			t.Fatalf("payload %q", p.Payload)
		}
		out[i] = n
	}
	return out
}

// TestForward sends a backlog at QoS 0, 1 and 2 over both protocol versions
// to a real mosquitto and checks order, completeness and the acks.
func TestForward(t *testing.T) {
	m := testenv.StartMosquitto(t, testenv.MosquittoOptions{})
	const n = 300
	for _, v := range []packet.Version{packet.V5, packet.V311} {
		for qos := byte(0); qos <= 2; qos++ {
			t.Run(fmt.Sprintf("%v/qos%d", v, qos), func(t *testing.T) {
				prefix := fmt.Sprintf("fw%d%d", v, qos)
				sub := subscriber(t, m.Addr(), prefix+"/#", v, 2)
				src := newMemSource()
				// 15 topics against mosquitto's 10 topic aliases: aliases
				// are reused and replaced.
				src.fill(n, 15, prefix, qos)
				c := newClient(t, Options{URL: m.URL(), Protocol: v, ClientID: prefix, Inflight: 16}, src, nil)
				stop := run(t, c)
				got := receive(t, sub, n)
				for i, p := range got {
					if p.QoS != qos {
						t.Fatalf("message %d arrived with QoS %d, want %d", i, p.QoS, qos)
					}
					if want := fmt.Sprintf("%s/%d", prefix, i%15); p.Topic != want {
						t.Fatalf("message %d on topic %q, want %q", i, p.Topic, want)
					}
				}
				checkDelivery(t, payloads(t, got), n, true)
				testenv.WaitFor(t, 30*time.Second, "all messages acked in the source", func() bool {
					q, a, d, _ := src.counts()
					return q == 0 && a == n && d == 0
				})
				// QoS 0 has no acknowledgements: "connected" once nothing
				// is left to send.
				testenv.WaitFor(t, 30*time.Second, "state connected", func() bool { return c.Status().State == StateConnected })
				st := c.Status()
				if st.Forwarded != n || st.Connects != 1 {
					t.Errorf("status %+v", st)
				}
				stop()
			})
		}
	}
}
