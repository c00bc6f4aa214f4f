package queue

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

// keysBelow counts the record and mark keys Badger still holds below seq.
func keysBelow(t *testing.T, q *Queue, seq uint64) int {
	t.Helper()
	n := 0
	err := q.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixRecord}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if k := it.Item().Key(); len(k) >= recordKeyLen && binary.BigEndian.Uint64(k[1:]) < seq {
				n++
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func headOf(q *Queue) uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.ctr.head
}

// appendSized appends n messages with payloads of size bytes in one write.
func appendSized(t *testing.T, q *Queue, n, size int) {
	t.Helper()
	var ms []Message
	for i := range n {
		m := msg(i)
		m.Payload = bytes.Repeat([]byte{'p'}, size)
		ms = append(ms, m)
	}
	if err := q.Append(ctxT(t), ms...); err != nil {
		t.Fatal(err)
	}
}

// headAckSetup appends 2000 records, leases them all, marks the fourth and
// acks the first 1500 in order, 100 at a time.
func headAckSetup(t *testing.T, q *Queue) (recs []Record, before Stats, acked uint64) {
	t.Helper()
	appendSized(t, q, 2000, 100)
	before = q.Stats()
	recs = leaseN(t, q, 2000)
	if err := q.Mark(ctxT(t), recs[3].Seq, []byte("rec:7")); err != nil {
		t.Fatal(err)
	}
	for _, r := range recs[:1500] {
		enc, err := EncodeRecord(nil, &r.Message)
		if err != nil {
			t.Fatal(err)
		}
		acked += uint64(len(enc))
	}
	for i := 0; i < 1500; i += 100 {
		if err := q.Ack(seqs(recs[i : i+100])...); err != nil {
			t.Fatal(err)
		}
	}
	return recs, before, acked
}

// TestHeadAck: acks of leased records in order from the head only move the
// head, leaving their keys, and the queue treats what is below the head as
// gone everywhere: counters, Mark, DeadLetter, a second Ack, Scan, a
// reopen.
func TestHeadAck(t *testing.T) {
	dir := t.TempDir()
	q := open(t, Options{Dir: dir}) // 16 MiB before a drop: none here
	recs, before, acked := headAckSetup(t, q)
	head := recs[1500].Seq
	if h := headOf(q); h != head {
		t.Fatalf("head %d after acking up to %d, want %d", h, recs[1499].Seq, head)
	}
	if n := keysBelow(t, q, head); n != 1501 { // 1500 records and a mark
		t.Fatalf("%d keys below the head, want the 1501 a head ack leaves", n)
	}
	st := q.Stats()
	if st.Messages != 500 || st.Acked != 1500 || st.Bytes != before.Bytes-acked {
		t.Fatalf("after 1500 acks: messages %d acked %d bytes %d, want 500, 1500, %d", st.Messages, st.Acked, st.Bytes, before.Bytes-acked)
	}
	if err := q.Mark(ctxT(t), recs[3].Seq, []byte("rec:8")); !errors.Is(err, ErrNotFound) {
		t.Errorf("Mark of an acked record: %v, want ErrNotFound", err)
	}
	if err := q.DeadLetter(ctxT(t), recs[10].Seq, "test"); !errors.Is(err, ErrNotFound) {
		t.Errorf("DeadLetter of an acked record: %v, want ErrNotFound", err)
	}
	if err := q.Ack(recs[0].Seq, recs[20].Seq, recs[1499].Seq); err != nil {
		t.Fatal(err)
	}
	if st := q.Stats(); st.Messages != 500 || st.Acked != 1500 || st.DeadLettered != 0 {
		t.Errorf("after acking acked records again: messages %d acked %d dead-lettered %d, want 500, 1500, 0",
			st.Messages, st.Acked, st.DeadLettered)
	}
	n := 0
	if err := q.Scan(func(s Scanned) error {
		if s.Seq < head {
			t.Errorf("Scan returned acked seq %d", s.Seq)
		}
		n++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n != 500 {
		t.Errorf("Scan returned %d records, want 500", n)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q = open(t, Options{Dir: dir})
	if st := q.Stats(); st.Messages != 500 || st.Acked != 1500 || st.Bytes != before.Bytes-acked {
		t.Fatalf("reopened: messages %d acked %d bytes %d, want 500, 1500, %d", st.Messages, st.Acked, st.Bytes, before.Bytes-acked)
	}
	if got := leaseN(t, q, 500); got[0].Seq != head || got[499].Seq != recs[1999].Seq {
		t.Fatalf("reopened: leased %d..%d, want %d..%d", got[0].Seq, got[499].Seq, head, recs[1999].Seq)
	}
}

// TestHeadAckDropsKeys: each time GCAfterDrainBytes of records were acked
// at the head, the keys they left are dropped (in whole blocks of 256,
// dropBlocks), so a queue that keeps flowing gets its space back.
func TestHeadAckDropsKeys(t *testing.T) {
	q := open(t, Options{GCAfterDrainBytes: 64 << 10})
	recs, _, _ := headAckSetup(t, q) // about 180 KiB acked, 120 bytes a record
	// The last drop came at most 64 KiB (550 records) before the head and
	// spared at most 255 below it.
	below := recs[1500-550-256].Seq
	waitFor(t, "the keys below the last drop dropped", func() bool { return keysBelow(t, q, below) == 0 })
	if st := q.Stats(); st.Messages != 500 || st.Acked != 1500 {
		t.Errorf("messages %d acked %d, want 500, 1500", st.Messages, st.Acked)
	}
}

// TestHeadAckDropsWholeBlocks: with records small enough that 65,536 of
// them hold at most GCAfterDrainBytes, a drop takes whole blocks of 65,536
// seqs (far fewer prefixes for Badger to test every key against) and
// leaves the rest of the block for a later drop.
func TestHeadAckDropsWholeBlocks(t *testing.T) {
	q := open(t, Options{GCAfterDrainBytes: 2 << 20})
	const n = 120_000
	var ms []Message
	for i := range n {
		ms = append(ms, Message{Topic: "t", Payload: []byte("small record"), QoS: 1})
		if len(ms) == 5000 || i == n-1 {
			if err := q.Append(ctxT(t), ms...); err != nil {
				t.Fatal(err)
			}
			ms = ms[:0]
		}
	}
	// Acks of more than GCAfterDrainBytes before the head leaves the
	// second block.
	if st := q.Stats(); st.Bytes/st.Messages<<16 > 2<<20 || st.Bytes*3/4 < 2<<20 {
		t.Fatalf("records of %d bytes: a block must hold at most GCAfterDrainBytes and the acks more", st.Bytes/st.Messages)
	}
	recs := leaseN(t, q, n)
	for i := 0; i < n-10_000; i += 1000 { // an empty queue drops every key
		if err := q.Ack(seqs(recs[i : i+1000])...); err != nil {
			t.Fatal(err)
		}
	}
	head := headOf(q)
	if head >= 2<<16 {
		t.Fatalf("head %d: the test needs it inside the second block", head)
	}
	waitFor(t, "the keys of the first block of 65,536 dropped", func() bool { return keysBelow(t, q, 1<<16) == 0 })
	if kept := keysBelow(t, q, head); kept != int(head-1<<16) {
		t.Errorf("%d keys kept below the head %d, want the %d of its own block", kept, head, head-1<<16)
	}
}

// TestDropBlockSizeFromAcked: the block size of a drop follows the records
// acked since the last one, not those still queued: large records drained
// with a few small ones left behind are dropped to within 256 seqs.
func TestDropBlockSizeFromAcked(t *testing.T) {
	q := open(t, Options{GCAfterDrainBytes: 64 << 20}) // no drop until asked
	appendSized(t, q, 3000, 2000)
	appendN(t, q, 3000, 10) // small ones stay queued
	recs := leaseN(t, q, 3000)
	if err := q.Ack(seqs(recs)...); err != nil {
		t.Fatal(err)
	}
	if err := q.wait(ctxT(t), &request{kind: reqDrain}); err != nil {
		t.Fatal(err)
	}
	head := headOf(q)
	if n := keysBelow(t, q, head&^255); n != 0 {
		t.Errorf("%d keys below seq %d (head %d) left after a drop", n, head&^255, head)
	}
}

// TestHeadAckRacingDeadLetter dead-letters a leased record between an
// in-order ack of it being made ready and its submission: the record is
// counted once, by the dead letter, and the ack takes the rest.
func TestHeadAckRacingDeadLetter(t *testing.T) {
	q := open(t, Options{})
	appendSized(t, q, 10, 50)
	recs := leaseN(t, q, 10)
	rs := q.ackRequests(seqs(recs))
	if err := q.DeadLetter(ctxT(t), recs[5].Seq, "test"); err != nil {
		t.Fatal(err)
	}
	if err := q.submit(rs...); err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if err := <-r.ch; err != nil {
			t.Fatal(err)
		}
	}
	st := q.Stats()
	if st.Messages != 0 || st.Acked != 9 || st.DeadLettered != 1 {
		t.Fatalf("stats %+v: want 0 messages, 9 acked, 1 dead-lettered", st)
	}
}
