package queue

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
)

// TestEmptyWriteSkipsSync: a write with neither messages nor state gets
// done(nil) in its place among the callbacks of the batches before and
// after it, and a batch of only such writes neither writes nor syncs.
func TestEmptyWriteSkipsSync(t *testing.T) {
	q := open(t, Options{})
	var mu sync.Mutex
	var order []string
	record := func(name string, done chan<- struct{}) func(error) {
		return func(err error) {
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
			mu.Lock()
			order = append(order, name)
			mu.Unlock()
			if done != nil {
				close(done)
			}
		}
	}
	before := q.Stats()

	// A's callback holds the callback goroutine until the later batches
	// are committed, so their callbacks queue up behind it.
	aRunning, gate := make(chan struct{}), make(chan struct{})
	q.AppendAsync([]Message{msg(0)}, func(err error) {
		record("A", aRunning)(err)
		<-gate
	})
	<-aRunning
	// A's batch is committed; E goes in a batch of its own.
	eDone := make(chan struct{})
	q.CommitAsync(Write{}, record("E", eDone))
	waitFor(t, "empty batch committed", func() bool { return q.Stats().Commits == before.Commits+2 })
	if st := q.Stats(); st.Syncs != before.Syncs+1 {
		t.Fatalf("after one write and one empty batch: %d syncs, want %d", st.Syncs-before.Syncs, 1)
	}
	bDone := make(chan struct{})
	q.CommitAsync(Write{Messages: []Message{msg(1)}}, record("B", bDone))
	waitFor(t, "B committed", func() bool { return q.Stats().Commits == before.Commits+3 })
	close(gate)
	<-eDone
	<-bDone
	mu.Lock()
	got := slices.Clone(order)
	mu.Unlock()
	if want := []string{"A", "E", "B"}; !slices.Equal(got, want) {
		t.Fatalf("callbacks ran in order %v, want %v", got, want)
	}
	st := q.Stats()
	if st.Syncs != before.Syncs+2 || st.Commits != before.Commits+3 {
		t.Fatalf("%d commits, %d syncs; want 3 and 2", st.Commits-before.Commits, st.Syncs-before.Syncs)
	}
	if got := topics(leaseN(t, q, 2)); !slices.Equal(got, wantTopics(0, 2)) {
		t.Fatalf("records %v", got)
	}

	// Synchronous empty commits, and a burst of asynchronous ones that
	// may share batches: none syncs, every callback gets nil in order.
	before = q.Stats()
	for i := 0; i < 5; i++ {
		if err := q.Commit(context.Background(), Write{}); err != nil {
			t.Fatalf("empty commit: %v", err)
		}
	}
	const n = 200
	var wg sync.WaitGroup
	var seen []int
	for i := 0; i < n; i++ {
		wg.Add(1)
		q.CommitAsync(Write{}, func(err error) {
			if err != nil {
				t.Errorf("empty write %d: %v", i, err)
			}
			mu.Lock()
			seen = append(seen, i)
			mu.Unlock()
			wg.Done()
		})
	}
	wg.Wait()
	for i, v := range seen {
		if v != i {
			t.Fatalf("empty write %d called back at position %d", v, i)
		}
	}
	st = q.Stats()
	if st.Commits <= before.Commits+5 {
		t.Fatalf("empty commits not counted: %d", st.Commits-before.Commits)
	}
	if st.Syncs != before.Syncs {
		t.Fatalf("%d empty commits synced %d times", st.Commits-before.Commits, st.Syncs-before.Syncs)
	}
}

// TestBatchSplitsKeepCounters: a batch larger than one Badger
// transaction is committed in several, each with the counters, and a
// single write too large for one transaction is refused alone.
func TestBatchSplitsKeepCounters(t *testing.T) {
	dir := t.TempDir()
	o := Options{Dir: dir, MemTableSize: 1 << 20}
	q := open(t, o)
	big := make([]Message, int(q.db.MaxBatchCount()))
	for i := range big {
		big[i] = msg(i)
	}
	const n = 3000 // well over one transaction's entries
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	q.pmu.Lock() // hold the committer so that everything lands in one batch
	for i := 0; i < n; i++ {
		if i == n/2 {
			wg.Add(1)
			q.pending = append(q.pending, mustWrite(t, q, Write{Messages: big}, func(err error) {
				if !errors.Is(err, ErrTooLarge) {
					t.Errorf("write of %d messages: %v, want ErrTooLarge", len(big), err)
				}
				wg.Done()
			}))
		}
		wg.Add(1)
		q.pending = append(q.pending, mustWrite(t, q, Write{Messages: []Message{msg(i)}, State: []StateOp{{Key: "k", Value: []byte{byte(i)}}}}, func(err error) {
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
			wg.Done()
		}))
	}
	q.pmu.Unlock()
	q.kick()
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d writes failed, first: %v", len(errs), errs[0])
	}
	st := q.Stats()
	if st.Commits != 1 || st.Syncs != 1 || st.LastBatch != n+1 {
		t.Fatalf("not one batch: %+v", st)
	}
	q.Close()
	q = open(t, o)
	st = q.Stats()
	if st.Messages != n || st.Appended != n || st.NextSeq != n {
		t.Fatalf("after reopen: %+v", st)
	}
	if v, err := q.GetState("k"); err != nil || v[0] != byte((n-1)%256) {
		t.Fatalf("state after reopen: %v %v", v, err)
	}
	if got := topics(leaseN(t, q, n)); !slices.Equal(got, wantTopics(0, n)) {
		t.Fatal("records out of order after reopen")
	}
}

func mustWrite(t *testing.T, q *Queue, w Write, done func(error)) *request {
	t.Helper()
	r, err := q.newWrite(w)
	if err != nil {
		t.Fatal(err)
	}
	r.done = done
	return r
}

func TestDropBlocksCoverBelowHead(t *testing.T) {
	covers := func(ps [][]byte, seq uint64) int {
		n := 0
		for _, p := range ps {
			if bytes.HasPrefix(recordKey(seq), p) {
				n++
			}
		}
		return n
	}
	for _, block := range []int{1, 2} {
		unit := uint64(1) << (8 * block)
		for _, head := range []uint64{0, 1, 255, 256, 257, 8001, 65535, 65536, 65537, 1_000_003, 1<<40 + 12345, ^uint64(0)} {
			ps := dropBlocks(head, block)
			limit := head &^ (unit - 1)
			probe := []uint64{0, 1, 255, 256, unit - 1, unit, limit / 2, head / 3}
			if limit > 0 {
				probe = append(probe, limit-1, limit-256, limit-unit)
			}
			for _, s := range probe {
				if s < limit && covers(ps, s) != 1 {
					t.Errorf("block %d, head %d: seq %d covered %d times, want once", block, head, s, covers(ps, s))
				}
			}
			for _, s := range []uint64{limit, head, head + 1, limit + unit - 1} {
				if s >= limit && covers(ps, s) != 0 {
					t.Errorf("block %d, head %d: seq %d (not below %d) covered", block, head, s, limit)
				}
			}
			if len(ps) > (8-block)*255 {
				t.Errorf("block %d, head %d: %d prefixes", block, head, len(ps))
			}
		}
	}
}
