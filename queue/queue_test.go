package queue

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func open(t testing.TB, o Options) *Queue {
	t.Helper()
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	if o.Logger == nil {
		o.Logger = quiet
	}
	q, err := Open(o)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

func msg(i int) Message {
	return Message{Topic: fmt.Sprintf("t/%d", i), Payload: []byte(fmt.Sprintf("payload %d", i)), QoS: 1, Source: "dev"}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func appendN(t testing.TB, q *Queue, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		if err := q.Append(ctxT(t), msg(i)); err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
	}
}

// leaseAll leases until want records came back or fails.
func leaseN(t testing.TB, q *Queue, want int) []Record {
	t.Helper()
	var out []Record
	for len(out) < want {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		recs, err := q.Lease(ctx, want-len(out))
		cancel()
		if err != nil {
			t.Fatalf("lease after %d of %d: %v", len(out), want, err)
		}
		out = append(out, recs...)
	}
	return out
}

func topics(recs []Record) []string {
	var s []string
	for _, r := range recs {
		s = append(s, r.Topic)
	}
	return s
}

func wantTopics(from, to int) []string {
	var s []string
	for i := from; i < to; i++ {
		s = append(s, fmt.Sprintf("t/%d", i))
	}
	return s
}

func seqs(recs []Record) []uint64 {
	var s []uint64
	for _, r := range recs {
		s = append(s, r.Seq)
	}
	return s
}

// leaseNone asserts that nothing is available right now.
func leaseNone(t testing.TB, q *Queue) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	recs, err := q.Lease(ctx, 10)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("lease: got %v, %v; want nothing available", topics(recs), err)
	}
}

func TestFIFOOrderAndFields(t *testing.T) {
	q := open(t, Options{})
	full := Message{
		Topic: "a/b", Payload: []byte{0, 1, 2}, QoS: 2, Retain: true, PayloadFormat: 1,
		ContentType: "application/json", ResponseTopic: "r/t", CorrelationData: []byte("cd"),
		UserProperties: []UserProperty{{"k", "v"}, {"k", "v2"}, {"", ""}},
		Expiry:         time.Hour, ReceivedAt: time.Unix(time.Now().Unix(), 5), Source: "adapter-1",
	}
	if err := q.Append(ctxT(t), full); err != nil {
		t.Fatal(err)
	}
	appendN(t, q, 0, 20)
	recs := leaseN(t, q, 21)
	if !recordEqual(&recs[0].Message, &full) {
		t.Fatalf("first record %+v, want %+v", recs[0].Message, full)
	}
	if got, want := topics(recs[1:]), wantTopics(0, 20); !slices.Equal(got, want) {
		t.Fatalf("order %v, want %v", got, want)
	}
	for i := 1; i < len(recs); i++ {
		if recs[i].Seq != recs[i-1].Seq+1 {
			t.Fatalf("seqs not consecutive: %v", seqs(recs))
		}
		if recs[i].ReceivedAt.IsZero() {
			t.Fatalf("record %d has no receive time", i)
		}
	}
}

func TestLeaseInvisibleAndReleaseOrder(t *testing.T) {
	q := open(t, Options{})
	appendN(t, q, 0, 10)
	a := leaseN(t, q, 4)
	b := leaseN(t, q, 4)
	if got := topics(append(a, b...)); !slices.Equal(got, wantTopics(0, 8)) {
		t.Fatalf("two leases gave %v", got)
	}
	if st := q.Stats(); st.Leased != 8 {
		t.Fatalf("leased %d, want 8", st.Leased)
	}
	// Release out of order; they come back first, in queue order.
	q.Release(b[2].Seq, a[1].Seq, a[3].Seq)
	c := leaseN(t, q, 5)
	if got, want := topics(c), []string{"t/1", "t/3", "t/6", "t/8", "t/9"}; !slices.Equal(got, want) {
		t.Fatalf("after release got %v, want %v", got, want)
	}
	leaseNone(t, q)
	if err := q.Ack(seqs(a)...); err != nil {
		t.Fatal(err)
	}
	q.Release(a[1].Seq) // acked: ignored
	leaseNone(t, q)
	if st := q.Stats(); st.Messages != 6 || st.Acked != 4 || st.Leased != 6 {
		t.Fatalf("stats %+v", st)
	}
}

func TestLeaseWakesOnAppend(t *testing.T) {
	q := open(t, Options{})
	got := make(chan []Record, 1)
	go func() {
		recs, err := q.Lease(context.Background(), 5)
		if err != nil {
			t.Error(err)
		}
		got <- recs
	}()
	appendN(t, q, 0, 1)
	select {
	case recs := <-got:
		if !slices.Equal(topics(recs), wantTopics(0, 1)) {
			t.Fatalf("got %v", topics(recs))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("blocked Lease did not wake on Append")
	}
	done := make(chan error, 1)
	go func() {
		_, err := q.Lease(context.Background(), 1)
		done <- err
	}()
	q.Close()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("lease during close: %v, want ErrClosed", err)
	}
	if err := q.Append(ctxT(t), msg(1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after close: %v", err)
	}
}

func TestRestartLeasesMarksCounters(t *testing.T) {
	dir := t.TempDir()
	q := open(t, Options{Dir: dir})
	appendN(t, q, 0, 10)
	recs := leaseN(t, q, 6)
	if err := q.Ack(recs[0].Seq, recs[2].Seq); err != nil {
		t.Fatal(err)
	}
	if err := q.Mark(ctxT(t), recs[3].Seq, []byte("pubrec")); err != nil {
		t.Fatal(err)
	}
	if err := q.Mark(ctxT(t), recs[0].Seq, []byte("x")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("mark of acked record: %v, want ErrNotFound", err)
	}
	before := q.Stats()
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q = open(t, Options{Dir: dir})
	after := q.Stats()
	if after.Messages != 8 || after.Messages != before.Messages || after.Bytes != before.Bytes ||
		after.Appended != 10 || after.Acked != 2 || after.NextSeq != before.NextSeq || after.Leased != 0 {
		t.Fatalf("after reopen %+v, before %+v", after, before)
	}
	all := leaseN(t, q, 8)
	want := append(wantTopics(1, 2), wantTopics(3, 10)...)
	if got := topics(all); !slices.Equal(got, want) {
		t.Fatalf("after restart got %v, want %v", got, want)
	}
	for _, r := range all {
		wantMark := ""
		if r.Seq == recs[3].Seq {
			wantMark = "pubrec"
		}
		if string(r.Mark) != wantMark {
			t.Fatalf("seq %d mark %q, want %q", r.Seq, r.Mark, wantMark)
		}
	}
	// Marks also come back through Release.
	q.Release(recs[3].Seq)
	again := leaseN(t, q, 1)
	if again[0].Seq != recs[3].Seq || string(again[0].Mark) != "pubrec" {
		t.Fatalf("released marked record came back as %d %q", again[0].Seq, again[0].Mark)
	}
	if err := q.Ack(seqs(all)...); err != nil {
		t.Fatal(err)
	}
	if st := q.Stats(); st.Messages != 0 || st.Bytes != 0 || st.Acked != 10 {
		t.Fatalf("after draining %+v", st)
	}
	// The queue keeps working and numbering continues.
	appendN(t, q, 100, 1)
	r := leaseN(t, q, 1)
	if r[0].Seq != after.NextSeq || r[0].Topic != "t/100" {
		t.Fatalf("new record %d %s, want seq %d", r[0].Seq, r[0].Topic, after.NextSeq)
	}
}

func TestStateAtomicWithMessages(t *testing.T) {
	dir := t.TempDir()
	q := open(t, Options{Dir: dir, MaxMessages: 2})
	err := q.Commit(ctxT(t), Write{
		Messages: []Message{msg(0)},
		State:    []StateOp{{Key: "lb/inflight/c1/7", Value: []byte("1")}, {Key: "lb/inflight/c1/8", Value: []byte("2")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	// Refused write: its state must not appear.
	err = q.Commit(ctxT(t), Write{
		Messages: []Message{msg(1), msg(2)},
		State:    []StateOp{{Key: "lb/inflight/c1/9", Value: []byte("3")}},
	})
	if !errors.Is(err, ErrFull) {
		t.Fatalf("over-limit commit: %v, want ErrFull", err)
	}
	if _, err := q.GetState("lb/inflight/c1/9"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("state of refused write: %v, want ErrNotFound", err)
	}
	if err := q.DeleteState(ctxT(t), "lb/inflight/c1/8"); err != nil {
		t.Fatal(err)
	}
	if err := q.PutState(ctxT(t), StateOp{Key: "up/q2/5", Value: []byte("rec")}, StateOp{Key: "lb/other", Value: []byte{}}); err != nil {
		t.Fatal(err)
	}
	q.Close()
	q = open(t, Options{Dir: dir})
	var keys []string
	err = q.ScanState("lb/", func(k string, v []byte) error {
		keys = append(keys, k+"="+string(v))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"lb/inflight/c1/7=1", "lb/other="}; !slices.Equal(keys, want) {
		t.Fatalf("state after reopen %v, want %v", keys, want)
	}
	v, err := q.GetState("up/q2/5")
	if err != nil || string(v) != "rec" {
		t.Fatalf("get state: %q %v", v, err)
	}
	if got := topics(leaseN(t, q, 1)); !slices.Equal(got, wantTopics(0, 1)) {
		t.Fatalf("records %v", got)
	}
}

func TestRejectNew(t *testing.T) {
	q := open(t, Options{MaxMessages: 3, Policy: RejectNew})
	appendN(t, q, 0, 3)
	if err := q.Append(ctxT(t), msg(3)); !errors.Is(err, ErrFull) {
		t.Fatalf("append to full queue: %v, want ErrFull", err)
	}
	st := q.Stats()
	if st.Messages != 3 || st.RefusedFull != 1 {
		t.Fatalf("stats %+v", st)
	}
	recs := leaseN(t, q, 1)
	if err := q.Ack(recs[0].Seq); err != nil {
		t.Fatal(err)
	}
	appendN(t, q, 3, 1)
	if got := topics(leaseN(t, q, 3)); !slices.Equal(got, wantTopics(1, 4)) {
		t.Fatalf("got %v", got)
	}

	// Byte limit.
	size := uint64(len(mustEncode(t, msg(0))))
	qb := open(t, Options{MaxBytes: int64(2 * size), Policy: RejectNew})
	appendN(t, qb, 0, 2)
	if err := qb.Append(ctxT(t), msg(2)); !errors.Is(err, ErrFull) {
		t.Fatalf("append over byte limit: %v, want ErrFull", err)
	}
	if st := qb.Stats(); st.Bytes != 2*size {
		t.Fatalf("bytes %d, want %d", st.Bytes, 2*size)
	}
}

func mustEncode(t testing.TB, m Message) []byte {
	m.ReceivedAt = time.Now() // same varint length as any current time
	b, err := EncodeRecord(nil, &m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDropOldest(t *testing.T) {
	q := open(t, Options{MaxMessages: 5, Policy: DropOldest})
	appendN(t, q, 0, 5)
	leased := leaseN(t, q, 2) // t/0, t/1 leased, then evicted
	appendN(t, q, 5, 3)
	st := q.Stats()
	if st.Messages != 5 || st.Evicted != 3 || st.Leased != 0 {
		t.Fatalf("stats after eviction %+v", st)
	}
	if err := q.Ack(seqs(leased)...); err != nil {
		t.Fatalf("ack of evicted leased records: %v", err)
	}
	if st2 := q.Stats(); st2.Acked != 0 || st2.Messages != 5 {
		t.Fatalf("ack of evicted records changed counters: %+v", st2)
	}
	if got := topics(leaseN(t, q, 5)); !slices.Equal(got, wantTopics(3, 8)) {
		t.Fatalf("after eviction got %v", got)
	}
	// One write larger than the limit is refused even under drop_oldest.
	batch := []Message{msg(10), msg(11), msg(12), msg(13), msg(14), msg(15)}
	if err := q.Append(ctxT(t), batch...); !errors.Is(err, ErrFull) {
		t.Fatalf("oversized write: %v, want ErrFull", err)
	}
	// A batch that evicts part of itself (many writes in one commit).
	var wg sync.WaitGroup
	for i := 20; i < 40; i++ {
		wg.Add(1)
		q.AppendAsync([]Message{msg(i)}, func(err error) {
			if err != nil {
				t.Error(err)
			}
			wg.Done()
		})
	}
	wg.Wait()
	st = q.Stats()
	if st.Messages != 5 || st.Evicted != 3+5+15 {
		t.Fatalf("stats after burst %+v", st)
	}
}

func TestDropOldestBytes(t *testing.T) {
	size := uint64(len(mustEncode(t, msg(0))))
	q := open(t, Options{MaxBytes: int64(3 * size), Policy: DropOldest})
	appendN(t, q, 0, 6)
	st := q.Stats()
	if st.Messages != 3 || st.Bytes != 3*size || st.Evicted != 3 {
		t.Fatalf("stats %+v (record size %d)", st, size)
	}
	if got := topics(leaseN(t, q, 3)); !slices.Equal(got, wantTopics(3, 6)) {
		t.Fatalf("got %v", got)
	}
}

func TestExpiry(t *testing.T) {
	q := open(t, Options{TTL: time.Hour})
	old := msg(0)
	old.Expiry = time.Second
	old.ReceivedAt = time.Now().Add(-2 * time.Second)
	ttlOld := msg(1)
	ttlOld.ReceivedAt = time.Now().Add(-2 * time.Hour)
	fresh := msg(2)
	fresh.Expiry = time.Hour
	if err := q.Append(ctxT(t), old, ttlOld, fresh, msg(3)); err != nil {
		t.Fatal(err)
	}
	recs := leaseN(t, q, 2)
	if got := topics(recs); !slices.Equal(got, wantTopics(2, 4)) {
		t.Fatalf("got %v, want the unexpired ones", got)
	}
	waitFor(t, "expired records deleted", func() bool {
		st := q.Stats()
		return st.Expired == 2 && st.Messages == 2
	})
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestDeadLetter(t *testing.T) {
	dir := t.TempDir()
	q := open(t, Options{Dir: dir})
	appendN(t, q, 0, 3)
	recs := leaseN(t, q, 3)
	if err := q.Mark(ctxT(t), recs[1].Seq, []byte("m")); err != nil {
		t.Fatal(err)
	}
	if err := q.DeadLetter(ctxT(t), recs[1].Seq, "upstream 0x87 not authorized"); err != nil {
		t.Fatal(err)
	}
	if err := q.DeadLetter(ctxT(t), recs[1].Seq, "again"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second dead letter: %v, want ErrNotFound", err)
	}
	q.Release(seqs(recs)...)
	if got := topics(leaseN(t, q, 2)); !slices.Equal(got, []string{"t/0", "t/2"}) {
		t.Fatalf("queue after dead letter %v", got)
	}
	q.Close()
	q = open(t, Options{Dir: dir})
	st := q.Stats()
	if st.Messages != 2 || st.DeadLettered != 1 || st.DeadLetters != 1 {
		t.Fatalf("stats %+v", st)
	}
	var dls []DeadLetter
	if err := q.DeadLetters(func(d DeadLetter) error { dls = append(dls, d); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(dls) != 1 || dls[0].Seq != recs[1].Seq || dls[0].Topic != "t/1" || dls[0].Reason != "upstream 0x87 not authorized" ||
		string(dls[0].Mark) != "m" || time.Since(dls[0].At) > time.Minute {
		t.Fatalf("dead letters %+v", dls)
	}
}

func TestAsyncCallbacksInOrder(t *testing.T) {
	q := open(t, Options{})
	const n = 8000
	var mu sync.Mutex
	var order []int
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		q.AppendAsync([]Message{msg(i)}, func(err error) {
			if err != nil {
				t.Errorf("append %d: %v", i, err)
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			wg.Done()
		})
	}
	// A write that fails before the commit keeps its place too.
	wg.Add(1)
	q.AppendAsync([]Message{{Topic: "bad", QoS: 3}}, func(err error) {
		if err == nil {
			t.Error("qos 3 accepted")
		}
		mu.Lock()
		order = append(order, n)
		mu.Unlock()
		wg.Done()
	})
	wg.Wait()
	for i, v := range order {
		if v != i {
			t.Fatalf("callback %d ran at position %d", v, i)
		}
	}
	if got := topics(leaseN(t, q, n)); !slices.Equal(got, wantTopics(0, n)) {
		t.Fatal("records not in submission order")
	}
	q.Close()
	errc := make(chan error, 1)
	q.AppendAsync([]Message{msg(0)}, func(err error) { errc <- err })
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Fatalf("async append after close: %v", err)
	}
}

func TestGroupCommit(t *testing.T) {
	q := open(t, Options{CommitWait: 2 * time.Millisecond})
	const producers, each = 16, 20
	var wg sync.WaitGroup
	for p := 0; p < producers; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if err := q.Append(context.Background(), msg(p*1000+i)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	st := q.Stats()
	if st.Appended != producers*each || st.Messages != producers*each {
		t.Fatalf("stats %+v", st)
	}
	if st.Commits >= producers*each/2 {
		t.Fatalf("%d appends took %d commits: not coalesced", producers*each, st.Commits)
	}
	if st.AvgBatch <= 1 || st.AvgCommitLatency <= 0 {
		t.Fatalf("batch stats %+v", st)
	}
	t.Logf("%d appends in %d commits, avg batch %.1f, avg latency %v", st.Appended, st.Commits, st.AvgBatch, st.AvgCommitLatency)
}

func TestBytesExactForLargeValues(t *testing.T) {
	dir := t.TempDir()
	q := open(t, Options{Dir: dir, ValueThreshold: 512})
	var want uint64
	for i, n := range []int{10, 500, 600, 5000, 20000, 300000} {
		m := msg(i)
		m.Payload = make([]byte, n)
		m.ReceivedAt = time.Unix(1, 0)
		b, _ := EncodeRecord(nil, &m)
		want += uint64(len(b))
		if err := q.Append(ctxT(t), m); err != nil {
			t.Fatal(err)
		}
	}
	if st := q.Stats(); st.Bytes != want {
		t.Fatalf("bytes %d, want %d", st.Bytes, want)
	}
	q.Close()
	q = open(t, Options{Dir: dir, ValueThreshold: 512})
	recs := leaseN(t, q, 6)
	if err := q.Ack(recs[1].Seq, recs[3].Seq, recs[5].Seq); err != nil {
		t.Fatal(err)
	}
	if err := q.Ack(recs[0].Seq, recs[2].Seq, recs[4].Seq); err != nil {
		t.Fatal(err)
	}
	if st := q.Stats(); st.Bytes != 0 || st.Messages != 0 {
		t.Fatalf("after acking all: %+v", st)
	}
}

func dirSize(t testing.TB, dir string) int64 {
	var n int64
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if errors.Is(err, os.ErrNotExist) {
			return nil // removed by compaction meanwhile
		}
		if err != nil {
			return err
		}
		if !fi.IsDir() {
			n += fi.Sys().(*syscallStat).Blocks * 512
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// fillBacklog appends n messages of 2,000 poorly compressible bytes, all
// in flight at once, and waits until every one is durable.
func fillBacklog(t *testing.T, q *Queue, n int) {
	t.Helper()
	payload := make([]byte, 2000)
	for i := range payload {
		payload[i] = byte(i * 7919 >> 3)
	}
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		m := msg(i)
		m.Payload = payload
		wg.Add(1)
		q.AppendAsync([]Message{m}, func(err error) {
			if err != nil {
				t.Error(err)
			}
			wg.Done()
		})
	}
	wg.Wait()
}

func TestDirShrinksAfterDrain(t *testing.T) {
	dir := t.TempDir()
	o := Options{Dir: dir, GCAfterDrainBytes: 4 << 20, MemTableSize: 2 << 20, BaseTableSize: 512 << 10, ValueLogFileSize: 4 << 20}
	q := open(t, o)
	empty := dirSize(t, dir)
	const n = 8000
	fillBacklog(t, q, n)
	full := dirSize(t, dir)
	for left := n; left > 0; {
		recs := leaseN(t, q, min(left, 500))
		if err := q.Ack(seqs(recs)...); err != nil {
			t.Fatal(err)
		}
		left -= len(recs)
	}
	waitFor(t, "data dir to shrink", func() bool {
		return dirSize(t, dir) < full/3
	})
	t.Logf("dir: empty %d KiB, full %d KiB, drained %d KiB", empty>>10, full>>10, dirSize(t, dir)>>10)
}

func TestStatsOldestAge(t *testing.T) {
	q := open(t, Options{})
	if st := q.Stats(); st.OldestAge != 0 {
		t.Fatalf("empty queue: OldestAge %v, want 0", st.OldestAge)
	}
	now := time.Now()
	old, newer := msg(0), msg(1)
	old.ReceivedAt = now.Add(-2 * time.Hour)
	newer.ReceivedAt = now.Add(-time.Hour)
	if err := q.Append(ctxT(t), old, newer); err != nil {
		t.Fatal(err)
	}
	// near reports whether got is want give or take a minute (the test
	// may run slowly, never an hour slowly).
	near := func(got, want time.Duration) bool { return got >= want && got < want+time.Minute }
	if st := q.Stats(); !near(st.OldestAge, 2*time.Hour) {
		t.Fatalf("two queued: OldestAge %v, want about 2h", st.OldestAge)
	}
	recs := leaseN(t, q, 2)
	if st := q.Stats(); !near(st.OldestAge, 2*time.Hour) {
		t.Fatalf("both leased, none acked: OldestAge %v, want about 2h", st.OldestAge)
	}
	if err := q.Ack(recs[0].Seq); err != nil {
		t.Fatal(err)
	}
	if st := q.Stats(); !near(st.OldestAge, time.Hour) {
		t.Fatalf("oldest acked: OldestAge %v, want about 1h", st.OldestAge)
	}
	if err := q.Ack(recs[1].Seq); err != nil {
		t.Fatal(err)
	}
	if st := q.Stats(); st.OldestAge != 0 || st.Messages != 0 {
		t.Fatalf("drained: OldestAge %v, Messages %d, want 0 and 0", st.OldestAge, st.Messages)
	}
}

// TestDirShrinksUnderTrickle drains a large backlog while new messages
// keep arriving, so the queue is never empty: the space of the drained
// backlog must still come back.
func TestDirShrinksUnderTrickle(t *testing.T) {
	dir := t.TempDir()
	o := Options{Dir: dir, GCAfterDrainBytes: 4 << 20, MemTableSize: 2 << 20, BaseTableSize: 512 << 10, ValueLogFileSize: 4 << 20}
	q := open(t, o)
	const n = 8000
	fillBacklog(t, q, n)
	full := dirSize(t, dir)
	// Drain the backlog while a trickle of new messages arrives, acking
	// each batch only after the next trickle message is in, so the queue
	// never becomes empty.
	next := n
	for left := n; left > 0; {
		appendN(t, q, next, 1)
		next++
		recs := leaseN(t, q, min(left, 500))
		if err := q.Ack(seqs(recs)...); err != nil {
			t.Fatal(err)
		}
		left -= len(recs)
	}
	waitFor(t, "data dir to shrink", func() bool {
		// The trickle goes on: lease and ack the oldest, append a new one.
		appendN(t, q, next, 1)
		next++
		recs := leaseN(t, q, 1)
		if err := q.Ack(recs[0].Seq); err != nil {
			t.Fatal(err)
		}
		if st := q.Stats(); st.Messages == 0 {
			t.Fatalf("queue became empty: the test no longer covers a trickle")
		}
		return dirSize(t, dir) < full/3
	})
	t.Logf("dir: full %d KiB, drained under trickle %d KiB", full>>10, dirSize(t, dir)>>10)
}

// TestScanChangesNothing: Scan shows every record from the head with its
// mark, leased or not, flags expired ones, and leaves the queue exactly as
// it was: nothing leased, nothing dropped, the counters unchanged.
func TestScanChangesNothing(t *testing.T) {
	q := open(t, Options{TTL: time.Hour})
	appendN(t, q, 0, 5)
	old := msg(5)
	old.ReceivedAt = time.Now().Add(-2 * time.Hour)
	if err := q.Append(ctxT(t), old); err != nil {
		t.Fatal(err)
	}
	recs := leaseN(t, q, 2)
	if err := q.Mark(ctxT(t), recs[1].Seq, []byte("rec:7")); err != nil {
		t.Fatal(err)
	}
	if err := q.Ack(recs[0].Seq); err != nil {
		t.Fatal(err)
	}
	before := q.Stats()
	var got []Scanned
	if err := q.Scan(func(s Scanned) error { got = append(got, s); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 5 {
		t.Fatalf("scanned %d records, want 5 (6 appended, 1 acked)", len(got))
	}
	for i, s := range got {
		if want := recs[0].Seq + 1 + uint64(i); s.Seq != want || s.Corrupt != nil {
			t.Errorf("scan %d: seq %d (corrupt %v), want seq %d", i, s.Seq, s.Corrupt, want)
		}
		if want := fmt.Sprintf("t/%d", i+1); s.Topic != want {
			t.Errorf("scan %d: topic %q, want %q", i, s.Topic, want)
		}
		if s.Expired != (i == 4) {
			t.Errorf("scan %d: expired %v", i, s.Expired)
		}
	}
	if string(got[0].Mark) != "rec:7" || got[1].Mark != nil {
		t.Errorf("marks %q, %q; want rec:7 on the leased record only", got[0].Mark, got[1].Mark)
	}
	stop := errors.New("stop")
	n := 0
	if err := q.Scan(func(Scanned) error { n++; return stop }); !errors.Is(err, stop) || n != 1 {
		t.Errorf("Scan with fn failing: %v after %d calls, want stop after 1", err, n)
	}
	if after := q.Stats(); after.Messages != before.Messages || after.Expired != before.Expired || after.Acked != before.Acked {
		t.Errorf("stats changed by Scan: %+v -> %+v", before, after)
	}
	// The records Scan saw unleased are still there for Lease, the
	// expired one is dropped there, not by Scan.
	rest := leaseN(t, q, 3)
	if rest[0].Seq != got[1].Seq || rest[2].Seq != got[3].Seq {
		t.Errorf("lease after scan: seqs %v", seqs(rest))
	}
}

// TestOpenNoCreate: with NoCreate a directory without a queue is an error
// and stays as it was; an existing queue opens.
func TestOpenNoCreate(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "typo")
	if _, err := Open(Options{Dir: missing, NoCreate: true, Logger: quiet}); !errors.Is(err, ErrNoQueue) {
		t.Fatalf("open missing dir: %v, want ErrNoQueue", err)
	}
	if _, err := os.Stat(missing); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("NoCreate created %s (%v)", missing, err)
	}
	empty := t.TempDir()
	if _, err := Open(Options{Dir: empty, NoCreate: true, Logger: quiet}); !errors.Is(err, ErrNoQueue) {
		t.Fatalf("open empty dir: %v, want ErrNoQueue", err)
	}
	dir := t.TempDir()
	q := open(t, Options{Dir: dir})
	appendN(t, q, 0, 1)
	q.Close()
	q2 := open(t, Options{Dir: dir, NoCreate: true})
	if st := q2.Stats(); st.Messages != 1 {
		t.Fatalf("reopened with NoCreate: %d messages, want 1", st.Messages)
	}
}

// TestOpenLocked: a second Open of a directory in use fails with
// ErrLocked, and the first queue keeps working.
func TestOpenLocked(t *testing.T) {
	dir := t.TempDir()
	q := open(t, Options{Dir: dir})
	if _, err := Open(Options{Dir: dir, Logger: quiet}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
	appendN(t, q, 0, 1)
	q.Close()
	q2 := open(t, Options{Dir: dir})
	if st := q2.Stats(); st.Messages != 1 {
		t.Fatalf("reopened: %d messages, want 1", st.Messages)
	}
}

// TestAckOfAnyLength: one Ack (and one AckAsync) of more seqs than fit in
// a Badger transaction deletes them all, in several transactions.
func TestAckOfAnyLength(t *testing.T) {
	q := open(t, Options{})
	// More than one transaction holds: an Ack of 8,000 failed with
	// ErrTooLarge before acks were split.
	const n = 8000
	batch := make([]Message, 1000)
	for _, async := range []bool{false, true} {
		for i := 0; i < n; i += len(batch) {
			for j := range batch {
				batch[j] = msg(i + j)
			}
			if err := q.Append(ctxT(t), batch...); err != nil {
				t.Fatal(err)
			}
		}
		recs := leaseN(t, q, n)
		if async {
			done := make(chan error, 1)
			q.AckAsync(seqs(recs), func(err error) { done <- err })
			if err := <-done; err != nil {
				t.Fatalf("AckAsync of %d: %v", len(recs), err)
			}
		} else if err := q.Ack(seqs(recs)...); err != nil {
			t.Fatalf("Ack of %d: %v", len(recs), err)
		}
		if st := q.Stats(); st.Messages != 0 {
			t.Fatalf("async %v: %d messages left after acking all", async, st.Messages)
		}
	}
}

// TestFailedAckRestoresLease: records whose ack fails are leased again,
// at their original position, instead of vanishing until a restart.
func TestFailedAckRestoresLease(t *testing.T) {
	dir := t.TempDir()
	q := open(t, Options{Dir: dir})
	appendN(t, q, 0, 5)
	recs := leaseN(t, q, 5)
	// An ack request that fails in the committer, as one too large for a
	// transaction did before acks were split.
	r := q.ackRequests(seqs(recs[1:3]))[0]
	r.err = ErrTooLarge
	errc := make(chan error, 1)
	r.done = func(err error) { errc <- err }
	q.enqueue(r)
	if err := <-errc; !errors.Is(err, ErrTooLarge) {
		t.Fatalf("ack: %v, want ErrTooLarge", err)
	}
	got := leaseN(t, q, 2)
	if got[0].Seq != recs[1].Seq || got[1].Seq != recs[2].Seq {
		t.Fatalf("after the failed ack leased %v, want %v again", seqs(got), seqs(recs[1:3]))
	}
	if err := q.Ack(seqs(recs)...); err != nil {
		t.Fatal(err)
	}
	if st := q.Stats(); st.Messages != 0 {
		t.Fatalf("%d messages left", st.Messages)
	}
}

// TestAckDenseAndSparse: acks found by one pass over their range (dense)
// and by lookups (sparse) delete the same: the records, their marks, the
// exact bytes, nothing twice for a seq acked twice or already gone.
func TestAckDenseAndSparse(t *testing.T) {
	for _, dense := range []bool{true, false} {
		q := open(t, Options{})
		var ms []Message
		for i := range 200 {
			m := msg(i)
			m.Payload = bytes.Repeat([]byte{'x'}, i*37%1500) // in and out of the LSM tree
			ms = append(ms, m)
		}
		if err := q.Append(ctxT(t), ms...); err != nil {
			t.Fatal(err)
		}
		recs := leaseN(t, q, 200)
		for _, r := range recs[:200:200] {
			if r.Seq%3 == 0 {
				if err := q.Mark(ctxT(t), r.Seq, []byte("rec:1")); err != nil {
					t.Fatal(err)
				}
			}
		}
		var ack []uint64
		if dense {
			for _, r := range recs[20:120] { // 100 consecutive seqs
				ack = append(ack, r.Seq)
			}
		} else {
			for _, r := range recs[:200:200] { // every 20th: spread out
				if r.Seq%20 == 0 {
					ack = append(ack, r.Seq)
				}
			}
		}
		if err := q.Ack(ack[:1]...); err != nil { // acked once already
			t.Fatal(err)
		}
		ack = append(ack, ack[:5]...) // and duplicates
		if err := q.Ack(ack...); err != nil {
			t.Fatal(err)
		}
		gone := map[uint64]bool{}
		for _, s := range ack {
			gone[s] = true
		}
		var wantBytes uint64
		left := 0
		err := q.Scan(func(s Scanned) error {
			if gone[s.Seq] {
				t.Errorf("dense %v: acked seq %d still stored", dense, s.Seq)
			}
			if (s.Seq%3 == 0) != (s.Mark != nil) {
				t.Errorf("dense %v: seq %d mark %q", dense, s.Seq, s.Mark)
			}
			// A record has one encoding: re-encoding gives its stored size.
			enc, err := EncodeRecord(nil, &s.Message)
			if err != nil {
				return err
			}
			wantBytes += uint64(len(enc))
			left++
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if st := q.Stats(); st.Messages != uint64(left) || left != 200-len(gone) || st.Bytes != wantBytes || st.Acked != uint64(len(gone)) {
			t.Errorf("dense %v: messages %d bytes %d acked %d, want %d, %d, %d", dense, st.Messages, st.Bytes, st.Acked, left, wantBytes, len(gone))
		}
		// No mark of an acked record is left behind either (below the
		// head, keys wait for dropDrained: see TestHeadAck).
		head := headOf(q)
		n := 0
		if err := q.db.View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixRecord}})
			defer it.Close()
			for it.Seek(recordKey(head)); it.Valid(); it.Next() {
				if k := it.Item().Key(); len(k) == markKeyLen && gone[binary.BigEndian.Uint64(k[1:])] {
					n++
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("dense %v: %d marks of acked records left", dense, n)
		}
	}
}

// TestFailedDeadLetterStaysLeased: a dead letter that fails leaves the
// record with its caller (who retries), not visible to another Lease:
// handed out twice, a QoS 2 message would be sent twice.
func TestFailedDeadLetterStaysLeased(t *testing.T) {
	q := open(t, Options{})
	appendN(t, q, 0, 2)
	recs := leaseN(t, q, 2)
	r := &request{kind: reqDeadLetter, seqs: []uint64{recs[0].Seq}, reason: "test", err: ErrTooLarge}
	errc := make(chan error, 1)
	r.done = func(err error) { errc <- err }
	q.enqueue(r)
	if err := <-errc; !errors.Is(err, ErrTooLarge) {
		t.Fatalf("dead letter: %v, want ErrTooLarge", err)
	}
	leaseNone(t, q)
	if err := q.DeadLetter(ctxT(t), recs[0].Seq, "retried"); err != nil {
		t.Fatalf("retried dead letter: %v", err)
	}
	if st := q.Stats(); st.DeadLetters != 1 || st.Messages != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestLeaseReaderAcrossCalls: Leases that read on through the kept
// snapshot see every record once and in order, also those appended after
// the snapshot was taken, and never one evicted from ahead of the reader.
func TestLeaseReaderAcrossCalls(t *testing.T) {
	q := open(t, Options{MaxMessages: 100, Policy: DropOldest})
	appendN(t, q, 0, 100)
	got := leaseN(t, q, 10) // the reader stays open at seq 10
	// 30 new records evict the 30 oldest: the 10 leased and 20 the
	// reader was about to read.
	appendN(t, q, 100, 30)
	if st := q.Stats(); st.Evicted != 30 {
		t.Fatalf("evicted %d, want 30", st.Evicted)
	}
	got = got[:0]
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		recs, err := q.Lease(ctx, 7)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, recs...)
		if len(got) == 35 {
			appendN(t, q, 130, 20) // after this snapshot: evicts 30-49, leased already
		}
	}
	if len(got) != 120 {
		t.Fatalf("leased %d records after the eviction, want 120 (30 to 149)", len(got))
	}
	for i, r := range got {
		if want := fmt.Sprintf("t/%d", 30+i); r.Topic != want {
			t.Fatalf("lease %d: %s (seq %d), want %s", i, r.Topic, r.Seq, want)
		}
	}
}

// dirState lists every file of dir with its size and modification time.
func dirState(t *testing.T, dir string) map[string]string {
	t.Helper()
	st := map[string]string{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		st[e.Name()] = fmt.Sprintf("%d %d", fi.Size(), fi.ModTime().UnixNano())
	}
	return st
}

// TestReadOnly: a read-only queue shows what a closed one holds, refuses
// every change, and leaves its files exactly as they were; a queue that
// was not closed cleanly is refused with ErrNeedsRecovery; a directory
// without one with ErrNoQueue.
func TestReadOnly(t *testing.T) {
	dir := t.TempDir()
	q := open(t, Options{Dir: dir})
	appendN(t, q, 0, 5)
	recs := leaseN(t, q, 2)
	if err := q.Ack(recs[0].Seq); err != nil {
		t.Fatal(err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	before := dirState(t, dir)
	ro := open(t, Options{Dir: dir, ReadOnly: true})
	if st := ro.Stats(); st.Messages != 4 || st.Acked != 1 {
		t.Fatalf("read-only stats %+v", st)
	}
	n := 0
	if err := ro.Scan(func(Scanned) error { n++; return nil }); err != nil || n != 4 {
		t.Fatalf("scan: %d records, %v", n, err)
	}
	if err := ro.Append(ctxT(t), msg(9)); !errors.Is(err, ErrReadOnly) {
		t.Errorf("append: %v, want ErrReadOnly", err)
	}
	if err := ro.Ack(recs[1].Seq); !errors.Is(err, ErrReadOnly) {
		t.Errorf("ack: %v, want ErrReadOnly", err)
	}
	if _, err := ro.Lease(ctxT(t), 1); !errors.Is(err, ErrReadOnly) {
		t.Errorf("lease: %v, want ErrReadOnly", err)
	}
	done := make(chan error, 1)
	ro.AppendAsync([]Message{msg(10)}, func(err error) { done <- err })
	if err := <-done; !errors.Is(err, ErrReadOnly) {
		t.Errorf("append async: %v, want ErrReadOnly", err)
	}
	if err := ro.Close(); err != nil {
		t.Fatal(err)
	}
	if after := dirState(t, dir); !maps.Equal(before, after) {
		t.Errorf("read-only open changed the directory:\nbefore %v\nafter  %v", before, after)
	}

	// A copy of an open queue's files is what a crash leaves behind.
	live := open(t, Options{})
	appendN(t, live, 0, 3)
	crashed := t.TempDir()
	entries, err := os.ReadDir(live.opts.Dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(live.opts.Dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(crashed, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Open(Options{Dir: crashed, ReadOnly: true, Logger: quiet}); !errors.Is(err, ErrNeedsRecovery) {
		t.Errorf("read-only open of a queue not closed cleanly: %v, want ErrNeedsRecovery", err)
	}
	rw := open(t, Options{Dir: crashed})
	if st := rw.Stats(); st.Messages != 3 {
		t.Errorf("recovered: %d messages, want 3", st.Messages)
	}
	if _, err := Open(Options{Dir: filepath.Join(t.TempDir(), "none"), ReadOnly: true, Logger: quiet}); !errors.Is(err, ErrNoQueue) {
		t.Errorf("read-only open of no queue: %v, want ErrNoQueue", err)
	}
}

// TestFailedQueue: a sync failure Badger only logs fails the queue: the
// commit that was in progress and every later write report ErrFailed,
// Lease stops, and Failed is closed.
func TestFailedQueue(t *testing.T) {
	q := open(t, Options{})
	appendN(t, q, 0, 1)
	select {
	case <-q.Failed():
		t.Fatal("Failed closed before any failure")
	default:
	}
	slogBadger{quiet, q.failed}.Errorf("Error while curlf sync: %v\n", io.ErrShortWrite)
	select {
	case <-q.Failed():
	default:
		t.Fatal("Failed not closed after a logged sync failure")
	}
	if err := q.Append(ctxT(t), msg(1)); !errors.Is(err, ErrFailed) || !strings.Contains(err.Error(), "curlf sync") {
		t.Errorf("append after the failure: %v, want ErrFailed with the cause", err)
	}
	if _, err := q.Lease(ctxT(t), 1); !errors.Is(err, ErrFailed) {
		t.Errorf("lease after the failure: %v, want ErrFailed", err)
	}
	if !errors.Is(q.Err(), ErrFailed) {
		t.Errorf("Err() = %v", q.Err())
	}
	// Reopened, the queue works again with what the disk holds.
	dir := q.opts.Dir
	q.Close()
	q2 := open(t, Options{Dir: dir})
	if st := q2.Stats(); st.Messages != 1 || q2.Err() != nil {
		t.Errorf("reopened: %d messages, err %v", st.Messages, q2.Err())
	}
	appendN(t, q2, 1, 1)
}
