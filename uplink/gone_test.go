package uplink

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"holdfast/internal/packet"
	"holdfast/internal/testenv"
)

// evictingSource is a memSource whose first messages were evicted by the
// queue's drop_oldest policy while the uplink held them: Mark and
// DeadLetter report ErrGone for them, Ack of them is a no-op.
type evictingSource struct {
	*memSource
	mu      sync.Mutex
	evicted map[uint64]bool
	refused int
}

func (s *evictingSource) Mark(ctx context.Context, seq uint64, data []byte) error {
	s.mu.Lock()
	gone := s.evicted[seq]
	if gone {
		s.refused++
	}
	s.mu.Unlock()
	if gone {
		return fmt.Errorf("evicted seq %d: %w", seq, ErrGone)
	}
	return s.memSource.Mark(ctx, seq, data)
}

// TestEvictedWhileLeased: QoS 2 messages evicted from the queue after they
// were leased still complete their flow (PUBREL after PUBREC) on the same
// connection, instead of dropping the link and resending them forever.
func TestEvictedWhileLeased(t *testing.T) {
	m := testenv.StartMosquitto(t, testenv.MosquittoOptions{})
	const n = 40
	sub := subscriber(t, m.Addr(), "gone/#", packet.V5, 2)
	src := &evictingSource{memSource: newMemSource(), evicted: map[uint64]bool{}}
	src.fill(n, 1, "gone", 2)
	for seq := uint64(0); seq < 100; seq++ {
		src.evicted[seq] = len(src.evicted) < 10 // the first ten, whatever the first seq is
	}
	c := newClient(t, Options{URL: m.URL(), ClientID: "gone", Inflight: 16}, src, nil)
	stop := run(t, c)
	defer stop()
	got := receive(t, sub, n)
	checkDelivery(t, payloads(t, got), n, true)
	testenv.WaitFor(t, 30*time.Second, "every message acked", func() bool {
		q, _, _, _ := src.counts()
		return q == 0
	})
	src.mu.Lock()
	refused := src.refused
	src.mu.Unlock()
	if refused == 0 {
		t.Fatal("no Mark was refused: the test did not exercise eviction")
	}
	if st := c.Status(); st.Connects != 1 {
		t.Fatalf("%d connects: an evicted message broke the connection", st.Connects)
	}
}
