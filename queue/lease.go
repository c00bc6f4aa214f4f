package queue

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Lease blocks until at least one record is available (or ctx ends, or
// the queue closes: ErrClosed) and returns up to max records from the
// head in sequence order. Released records come first, at their original
// position. Leased records are invisible to other Lease calls until
// Acked, Released, dead-lettered or the queue is reopened. Records past
// their MQTT expiry or the TTL are dropped and counted, never returned.
func (q *Queue) Lease(ctx context.Context, max int) ([]Record, error) {
	if max <= 0 {
		return nil, fmt.Errorf("queue: lease of %d records: must be positive", max)
	}
	if q.opts.ReadOnly {
		return nil, ErrReadOnly
	}
	for {
		if err := q.failed.get(); err != nil {
			return nil, err
		}
		q.leaseMu.Lock()
		recs, drops, ch, err := q.leaseOnce(max)
		q.leaseMu.Unlock()
		for kind, seqs := range drops {
			if len(seqs) > 0 {
				q.enqueue(&request{kind: kind, seqs: seqs})
			}
		}
		if errors.Is(err, ErrClosed) {
			return nil, err
		}
		if err != nil {
			return nil, fmt.Errorf("queue: lease: %w", err)
		}
		if len(recs) > 0 {
			return recs, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-q.closed:
			return nil, ErrClosed
		}
	}
}

// expired reports whether m must not be handed out at now.
func (q *Queue) expired(m *Message, now time.Time) bool {
	if d, ok := m.Deadline(); ok && !now.Before(d) {
		return true
	}
	return q.opts.TTL > 0 && !m.ReceivedAt.IsZero() && now.Sub(m.ReceivedAt) >= q.opts.TTL
}

// leaseOnce collects up to max records; leaseMu is held, so only one
// Lease reads at a time. q.mu is held only to take the read position and
// the released records before the store is read, and to record the
// result after: the commit goroutine (publishing a commit) and acks
// (forget) take q.mu too, and a read of the store under it held them up
// for most of a drain. A record evicted from the head while it was read
// is not handed out. drops maps the request kind (expire, corrupt) to the
// seqs to remove; ch is closed when more records become visible.
func (q *Queue) leaseOnce(max int) (out []Record, drops map[reqKind][]uint64, ch chan struct{}, err error) {
	q.mu.Lock()
	select {
	case <-q.closed:
		q.mu.Unlock()
		return nil, nil, nil, ErrClosed
	default:
	}
	ch = q.avail
	from, tail := q.readSeq, q.tail
	rel := slices.Clone(q.released[:min(len(q.released), max)])
	q.released = q.released[len(rel):]
	q.mu.Unlock()

	out, sizes, drops, next, err := q.read(rel, from, tail, max)

	q.mu.Lock()
	defer q.mu.Unlock()
	if err != nil {
		// Nothing was handed out: the released records are still due.
		for _, s := range rel {
			q.addReleased(s)
		}
		return nil, nil, ch, err
	}
	head := q.ctr.head
	kept := out[:0]
	for i, r := range out {
		if r.Seq < head {
			continue // evicted while it was read
		}
		q.leased[r.Seq] = sizes[i]
		kept = append(kept, r)
	}
	if next > q.readSeq {
		q.readSeq = next
	}
	return kept, drops, ch, nil
}

// read reads up to max records for leaseOnce without holding q.mu: first
// the released seqs rel, then from the read position from up to tail. It
// returns the records and their encoded sizes, the seqs to drop (expired,
// undecodable) and the new read position.
func (q *Queue) read(rel []uint64, from, tail uint64, max int) ([]Record, []uint64, map[reqKind][]uint64, uint64, error) {
	r := recordReader{q: q, now: time.Now(), max: max, drops: map[reqKind][]uint64{}, slab: &q.reader.slab}
	room := max // the most records this lease can hold
	if n := uint64(len(rel)) + tail - min(from, tail); n < uint64(max) {
		room = int(n)
	}
	r.out, r.sizes = make([]Record, 0, room), make([]uint64, 0, room)
	if len(rel) > 0 {
		if err := q.db.View(func(txn *badger.Txn) error { return r.released(txn, rel) }); err != nil {
			return nil, nil, nil, from, err
		}
	}
	next := from
	if len(r.out) < max && from < tail {
		var err error
		if next, err = q.forward(&r, from, tail); err != nil {
			return nil, nil, nil, from, err
		}
	}
	return r.out, r.sizes, r.drops, next, nil
}

// recordReader collects the records of one lease.
type recordReader struct {
	q     *Queue
	now   time.Time
	max   int
	out   []Record
	sizes []uint64 // encoded size of each of out, for Ack (see applyHeadAck)
	drops map[reqKind][]uint64
	slab  *slab // where the records' bytes are copied to
}

// take decodes record seq; an undecodable or expired one goes to drops.
func (r *recordReader) take(seq uint64, v []byte) bool {
	var rec Record
	var prev *Message
	if len(r.out) > 0 {
		prev = &r.out[len(r.out)-1].Message
	}
	if err := decodeRecord(v, &rec.Message, prev); err != nil {
		r.q.opts.Logger.Error("queue: dropping undecodable record", "seq", seq, "err", err)
		r.drops[reqCorrupt] = append(r.drops[reqCorrupt], seq)
		return false
	}
	if r.q.expired(&rec.Message, r.now) {
		r.drops[reqExpire] = append(r.drops[reqExpire], seq)
		return false
	}
	rec.Seq = seq
	r.out = append(r.out, rec)
	r.sizes = append(r.sizes, uint64(len(v)))
	return true
}

// released reads the released records rel (and their marks) by key.
func (r *recordReader) released(txn *badger.Txn, rel []uint64) error {
	for _, seq := range rel { // at most max of them (leaseOnce)
		item, err := txn.Get(recordKey(seq))
		if errors.Is(err, badger.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		v, err := r.slab.value(item)
		if err != nil {
			return err
		}
		if !r.take(seq, v) {
			continue
		}
		if r.out[len(r.out)-1].Mark, err = markOf(txn, seq); err != nil {
			return err
		}
	}
	return nil
}

// Leases read forward through one Badger read transaction and iterator,
// kept between Lease calls while they read on from where the last one
// stopped: a new transaction waits for every commit in flight to land
// (Badger's read watermark), so opening one per Lease made each Lease as
// slow as an ack's sync during a drain. The snapshot sees the records
// below snapTail; it is replaced when the reader gets there, when the
// read position moved elsewhere (evictions), and after readerMaxAge or
// readerMaxRecords, because an open transaction keeps Badger from
// dropping deleted versions and value-log files.
const (
	readerMaxAge     = time.Second
	readerMaxRecords = 100_000
)

// leaseReader is the forward reader kept between Lease calls; leaseMu
// guards it.
type leaseReader struct {
	txn      *badger.Txn
	it       *badger.Iterator
	pos      uint64 // seq the iterator is at (its next record)
	snapTail uint64 // records below it are in the snapshot
	opened   time.Time
	read     int
	slab     slab // shared by the records of consecutive Leases
}

func (lr *leaseReader) close() {
	if lr.it != nil {
		lr.it.Close()
		lr.txn.Discard()
		lr.it, lr.txn = nil, nil
	}
}

// forward reads records from seq from up to tail into r with the kept
// reader, opening a new one when needed, and returns the next seq to read.
func (q *Queue) forward(r *recordReader, from, tail uint64) (uint64, error) {
	lr := &q.reader
	if lr.it == nil || lr.pos != from || from >= lr.snapTail ||
		time.Since(lr.opened) > readerMaxAge || lr.read > readerMaxRecords {
		lr.close()
		lr.txn = q.db.NewTransaction(false)
		// No prefetch: Badger starts a goroutine per item to fetch its
		// value, and walkRecords copies each value anyway.
		lr.it = lr.txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixRecord}})
		lr.snapTail, lr.opened, lr.read = tail, time.Now(), 0
		lr.it.Seek(recordKey(from))
	}
	next, err := walkRecords(lr.it, min(tail, lr.snapTail), r.slab, func(seq uint64, v, mark []byte) (bool, error) {
		if r.take(seq, v) {
			r.out[len(r.out)-1].Mark = mark
		}
		lr.read++
		return len(r.out) < r.max, nil
	})
	if err != nil {
		lr.close()
		return from, err
	}
	lr.pos = next
	if next >= lr.snapTail {
		lr.close() // read to the end of its snapshot: nothing more in it
	}
	return next, nil
}

// walkRecords reads the records below end from it's position on, each
// with its mark (which sorts right after it), and calls fn with the
// record's seq and copies of its value and its mark (nil when it has
// none), cut from sl. It stops after the record for which fn returns
// false, or at the first error, and returns the seq of the record the
// iterator is left at: end when none below end is left.
func walkRecords(it *badger.Iterator, end uint64, sl *slab, fn func(seq uint64, v, mark []byte) (bool, error)) (uint64, error) {
	for it.Valid() {
		item := it.Item()
		k := item.Key()
		seq := binary.BigEndian.Uint64(k[1:])
		if seq >= end {
			return end, nil
		}
		if len(k) != recordKeyLen {
			it.Next() // a mark (or drain sentinel) without its record
			continue
		}
		v, err := sl.value(item)
		if err != nil {
			return seq, err
		}
		it.Next()
		var mark []byte
		if it.Valid() {
			if mi := it.Item(); isMarkOf(mi.Key(), seq) {
				if mark, err = sl.value(mi); err != nil {
					return seq, err
				}
				it.Next()
			}
		}
		more, err := fn(seq, v, mark)
		if err != nil || !more {
			if it.Valid() {
				end = min(end, binary.BigEndian.Uint64(it.Item().Key()[1:]))
			}
			return end, err
		}
	}
	return end, nil
}

// slab hands out copies of stored values cut from shared chunks, so a
// Lease of many small records costs a few allocations, not one per
// record. A chunk is freed once nothing cut from it is referenced; a
// large value gets its own allocation, so it never keeps a chunk alive
// nor is kept alive by one.
type slab struct{ buf []byte }

const (
	slabChunk = 32 << 10
	slabMax   = slabChunk / 16 // larger values are not cut from a chunk
)

// value returns a copy of item's value.
func (s *slab) value(item *badger.Item) ([]byte, error) {
	var v []byte
	err := item.Value(func(b []byte) error {
		v = s.copy(b)
		return nil
	})
	return v, err
}

// copy returns a copy of b (nil for an empty b) whose capacity ends with
// it, so an append to it cannot overwrite the next one.
func (s *slab) copy(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	if len(b) > slabMax {
		return slices.Clone(b)
	}
	if cap(s.buf)-len(s.buf) < len(b) {
		s.buf = make([]byte, 0, slabChunk)
	}
	n := len(s.buf)
	s.buf = append(s.buf, b...)
	return s.buf[n:len(s.buf):len(s.buf)]
}

// closeIdleReader closes the kept reader once it is older than
// readerMaxAge, so a consumer that stopped leasing (an uplink that lost
// its connection) does not keep Badger from dropping what was deleted.
// Called by the maintenance goroutine; a Lease in progress keeps it.
func (q *Queue) closeIdleReader() {
	if !q.leaseMu.TryLock() {
		return
	}
	if q.reader.it != nil && time.Since(q.reader.opened) > readerMaxAge {
		q.reader.close()
	}
	q.leaseMu.Unlock()
}

// Release makes leased records visible again at their original position,
// so the next Lease returns them first, in sequence order. Seqs that are
// not leased are ignored.
func (q *Queue) Release(seqs ...uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	added := false
	for _, s := range seqs {
		if _, ok := q.leased[s]; !ok {
			continue
		}
		delete(q.leased, s)
		if q.addReleased(s) {
			added = true
		}
	}
	if added {
		q.wakeLeases()
	}
}

// restore makes records whose removal (ack, dead letter, expiry) failed
// visible again at their original position: forget had already taken them
// out of the lease and released sets, and Lease reads past them. Seqs at
// or past readSeq are still ahead of the reader and need nothing.
func (q *Queue) restore(seqs []uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	added := false
	for _, s := range seqs {
		if s >= q.readSeq || s < q.ctr.head {
			continue
		}
		if _, ok := q.leased[s]; ok {
			continue
		}
		if q.addReleased(s) {
			added = true
		}
	}
	if added {
		q.wakeLeases()
	}
}

// addReleased puts s into the released set and reports whether it was
// not there yet; q.mu is held.
func (q *Queue) addReleased(s uint64) bool {
	i, found := slices.BinarySearch(q.released, s)
	if !found {
		q.released = slices.Insert(q.released, i, s)
	}
	return !found
}

// wakeLeases wakes every Lease waiting for records to become visible;
// q.mu is held.
func (q *Queue) wakeLeases() {
	close(q.avail)
	q.avail = make(chan struct{})
}

// removeReleased drops s from the released set; q.mu is held.
func (q *Queue) removeReleased(s uint64) {
	if i, ok := slices.BinarySearch(q.released, s); ok {
		q.released = slices.Delete(q.released, i, i+1)
	}
}

// Stats is a snapshot of the queue for status pages and metrics.
// Counters are cumulative over the queue's life (persisted across
// restarts) unless noted.
type Stats struct {
	// Messages and Bytes (sum of encoded record sizes) are stored now.
	Messages uint64
	Bytes    uint64
	// OldestAge is the age of the head record by receive time; 0 if empty.
	OldestAge time.Duration
	// Leased is how many records are leased now (this process).
	Leased int
	// NextSeq is the sequence number the next record will get.
	NextSeq uint64
	// Appended and Acked count records stored and acknowledged.
	Appended uint64
	Acked    uint64
	// Evicted counts records dropped by drop_oldest.
	Evicted uint64
	// Expired counts records dropped at the head past their expiry or TTL.
	Expired uint64
	// DeadLettered counts records moved to the dead-letter store;
	// DeadLetters is how many are stored there now.
	DeadLettered uint64
	DeadLetters  uint64
	// Corrupt counts undecodable records dropped at the head.
	Corrupt uint64
	// RefusedFull and RefusedDisk count messages refused with ErrFull and
	// ErrDiskFull.
	RefusedFull uint64
	RefusedDisk uint64
	// DiskFull is true while the disk reserve is reached.
	DiskFull bool
	// Commits counts group commits since Open; AvgBatch and LastBatch are
	// writes (requests) per commit; the latencies are per commit,
	// including the sync.
	Commits           uint64
	AvgBatch          float64
	LastBatch         int
	AvgCommitLatency  time.Duration
	LastCommitLatency time.Duration
	// Syncs counts the commits that wrote to the store and synced it to
	// disk; a commit whose writes carry nothing neither writes nor syncs.
	Syncs uint64
}

// Stats returns current figures. It reads the head record to compute
// OldestAge and is meant for status polling, not per message.
func (q *Queue) Stats() Stats {
	q.mu.Lock()
	c, cs := q.ctr, q.cs
	s := Stats{
		Messages: c.messages, Bytes: c.bytes, Leased: len(q.leased), NextSeq: c.nextSeq,
		Appended: c.appended, Acked: c.acked, Evicted: c.evicted, Expired: c.expired,
		DeadLettered: c.deadLettered, DeadLetters: c.deadLetters, Corrupt: c.corrupt,
		RefusedFull: c.refusedFull, RefusedDisk: c.refusedDisk,
		Commits: cs.commits, Syncs: cs.syncs, LastBatch: cs.lastBatch, LastCommitLatency: cs.lastLatency,
	}
	q.mu.Unlock()
	s.DiskFull = q.diskFull.Load()
	if cs.commits > 0 {
		s.AvgBatch = float64(cs.writes) / float64(cs.commits)
		s.AvgCommitLatency = cs.sumLatency / time.Duration(cs.commits)
	}
	if c.messages > 0 {
		_ = q.db.View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixRecord}, PrefetchValues: false})
			defer it.Close()
			for it.Seek(recordKey(c.head)); it.Valid(); it.Next() {
				item := it.Item()
				if len(item.Key()) != recordKeyLen {
					continue
				}
				return item.Value(func(v []byte) error {
					var m Message
					if DecodeRecord(v, &m) == nil && !m.ReceivedAt.IsZero() {
						s.OldestAge = max(time.Since(m.ReceivedAt), 0)
					}
					return nil
				})
			}
			return nil
		})
	}
	return s
}
