package uplink

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"holdfast/internal/faultproxy"
	"holdfast/internal/packet"
	"holdfast/internal/testenv"
	"holdfast/queue"
)

// queueSource adapts holdfast/queue to Source, as the agent does.
type queueSource struct{ q *queue.Queue }

func (s queueSource) Lease(ctx context.Context, max int) ([]Message, error) {
	recs, err := s.q.Lease(ctx, max)
	if err != nil {
		return nil, err
	}
	out := make([]Message, len(recs))
	for i, r := range recs {
		out[i] = Message{Seq: r.Seq, Topic: r.Topic, Payload: r.Payload, QoS: r.QoS, Retain: r.Retain, Mark: r.Mark}
		if d, ok := r.Deadline(); ok {
			out[i].Expires = d
		}
	}
	return out, nil
}
func (s queueSource) Ack(seqs ...uint64) error { return s.q.Ack(seqs...) }
func (s queueSource) Release(seqs ...uint64)   { s.q.Release(seqs...) }
func (s queueSource) Mark(ctx context.Context, seq uint64, data []byte) error {
	return s.q.Mark(ctx, seq, data)
}
func (s queueSource) DeadLetter(ctx context.Context, seq uint64, reason string) error {
	return s.q.DeadLetter(ctx, seq, reason)
}

// TestMixedQoSOrder forwards QoS 0, 1 and 2 messages interleaved on one
// topic: mosquitto delivers a QoS 2 message at PUBREL, so the uplink holds
// the next QoS 0/1 message on that topic back until then, and the topic
// stays in order.
func TestMixedQoSOrder(t *testing.T) {
	// Without TCP_NODELAY mosquitto's small answers wait for delayed ACKs
	// (40ms per QoS 2 round trip here).
	m := testenv.StartMosquitto(t, testenv.MosquittoOptions{Extra: "set_tcp_nodelay true\n"})
	sub := subscriber(t, m.Addr(), "mx/#", packet.V5, 2)
	src := newMemSource()
	const n = 150
	for i := range n {
		src.add(Message{Topic: "mx/a", Payload: []byte(strconv.Itoa(i)), QoS: byte(2 - i%3)})
	}
	c := newClient(t, Options{URL: m.URL(), ClientID: "mx"}, src, nil)
	run(t, c)
	got := payloads(t, receive(t, sub, n))
	for i, v := range got {
		if v != i {
			t.Fatalf("message %d arrived as number %d (%v)", v, i, got[max(0, i-3):i+1])
		}
	}
}

// TestQueueRestart drains the real queue to mosquitto, and in the middle
// loses the link (blackhole), shuts down, closes and reopens the queue and
// starts a new client: every message arrives, QoS 2 ones exactly once, first
// arrivals in order, and the queue ends empty.
func TestQueueRestart(t *testing.T) {
	m := testenv.StartMosquitto(t, testenv.MosquittoOptions{})
	proxy, err := faultproxy.Start(m.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	dir := t.TempDir()
	open := func() *queue.Queue {
		q, err := queue.Open(queue.Options{Dir: dir, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		return q
	}
	q := open()
	const n = 2000
	msgs := make([]queue.Message, n)
	for i := range msgs {
		msgs[i] = queue.Message{Topic: fmt.Sprintf("qr/q%d", 1+i%2), Payload: []byte(strconv.Itoa(i)), QoS: byte(1 + i%2)}
	}
	if err := q.Append(context.Background(), msgs...); err != nil {
		t.Fatal(err)
	}
	col := collect(t, m.Addr(), "qr/#", packet.V5)
	opts := Options{URL: "mqtt://" + proxy.Addr(), ClientID: "qr", Inflight: 32, ConnectTimeout: 2 * time.Second}
	c1 := newClient(t, opts, queueSource{q}, nil)
	stop1 := run(t, c1)
	testenv.WaitFor(t, 60*time.Second, "a third received", func() bool { return col.unique() >= n/3 })
	proxy.Blackhole(true) // in-flight messages stay unanswered
	stop1()               // waits DrainTimeout, then gives up
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	proxy.Blackhole(false)
	first := len(col.received())

	q = open()
	defer q.Close()
	c2 := newClient(t, opts, queueSource{q}, nil)
	stop2 := run(t, c2)
	testenv.WaitFor(t, 60*time.Second, "queue drained", func() bool { return q.Stats().Messages == 0 })
	testenv.WaitFor(t, 60*time.Second, "all received", func() bool { return col.unique() == n })
	stop2()
	col.drain(t, m.Addr(), "qr/q1")
	col.close()
	got := col.received()
	// Per topic: QoS 1 (even payloads) at least once, QoS 2 (odd) exactly
	// once, in order.
	var q1, q2 []int
	for _, v := range got {
		if v%2 == 0 {
			q1 = append(q1, v/2)
		} else {
			q2 = append(q2, v/2)
		}
	}
	checkDelivery(t, q1, n/2, false)
	checkDelivery(t, q2, n/2, true)
	if !c2.Status().SessionPresent {
		t.Error("second client found no session")
	}
	t.Logf("%d received before the restart, %d in all for %d messages", first, len(got), n)
	if st := q.Stats(); st.DeadLetters != 0 {
		t.Errorf("dead letters: %d", st.DeadLetters)
	}
}
