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
	for {
		q.mu.Lock()
		select {
		case <-q.closed:
			q.mu.Unlock()
			return nil, ErrClosed
		default:
		}
		recs, drops, err := q.leaseLocked(max)
		ch := q.avail
		q.mu.Unlock()
		for kind, seqs := range drops {
			if len(seqs) > 0 {
				q.enqueue(&request{kind: kind, seqs: seqs})
			}
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

// leaseLocked collects up to max records; q.mu is held. drops maps the
// request kind (expire, corrupt) to the seqs to remove.
func (q *Queue) leaseLocked(max int) ([]Record, map[reqKind][]uint64, error) {
	now := time.Now()
	var out []Record
	drops := map[reqKind][]uint64{}
	take := func(seq uint64, v []byte) {
		var rec Record
		if err := DecodeRecord(v, &rec.Message); err != nil {
			q.opts.Logger.Error("queue: dropping undecodable record", "seq", seq, "err", err)
			drops[reqCorrupt] = append(drops[reqCorrupt], seq)
			return
		}
		if q.expired(&rec.Message, now) {
			drops[reqExpire] = append(drops[reqExpire], seq)
			return
		}
		rec.Seq = seq
		q.leased[seq] = struct{}{}
		out = append(out, rec)
	}
	err := q.db.View(func(txn *badger.Txn) error {
		for len(q.released) > 0 && len(out) < max {
			seq := q.released[0]
			q.released = q.released[1:]
			item, err := txn.Get(recordKey(seq))
			if errors.Is(err, badger.ErrKeyNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			v, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			n := len(out)
			take(seq, v)
			if len(out) > n {
				if mi, err := txn.Get(markKey(seq)); err == nil {
					if out[n].Mark, err = mi.ValueCopy(nil); err != nil {
						return err
					}
				} else if !errors.Is(err, badger.ErrKeyNotFound) {
					return err
				}
			}
		}
		if len(out) >= max || q.readSeq >= q.tail {
			return nil
		}
		it := txn.NewIterator(badger.IteratorOptions{
			Prefix:         []byte{prefixRecord},
			PrefetchValues: true,
			PrefetchSize:   min(max-len(out)+1, 64),
		})
		defer it.Close()
		next := q.tail
		for it.Seek(recordKey(q.readSeq)); it.Valid(); it.Next() {
			item := it.Item()
			k := item.Key()
			seq := binary.BigEndian.Uint64(k[1:])
			if seq >= q.tail {
				break
			}
			if len(k) == markKeyLen {
				if n := len(out); n > 0 && out[n-1].Seq == seq {
					m, err := item.ValueCopy(nil)
					if err != nil {
						return err
					}
					out[n-1].Mark = m
				}
				continue
			}
			if len(out) >= max {
				next = seq
				break
			}
			v, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			take(seq, v)
		}
		q.readSeq = next
		return nil
	})
	return out, drops, err
}

// Release makes leased records visible again at their original position,
// so the next Lease returns them first, in sequence order. Seqs that are
// not leased are ignored.
func (q *Queue) Release(seqs ...uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	any := false
	for _, s := range seqs {
		if _, ok := q.leased[s]; !ok {
			continue
		}
		delete(q.leased, s)
		i, found := slices.BinarySearch(q.released, s)
		if !found {
			q.released = slices.Insert(q.released, i, s)
			any = true
		}
	}
	if any {
		close(q.avail)
		q.avail = make(chan struct{})
	}
}

// restore makes records whose removal (ack, dead letter, expiry) failed
// visible again at their original position: forget had already taken them
// out of the lease and released sets, and Lease reads past them. Seqs at
// or past readSeq are still ahead of the reader and need nothing.
func (q *Queue) restore(seqs []uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	any := false
	for _, s := range seqs {
		if s >= q.readSeq || s < q.ctr.head {
			continue
		}
		if _, ok := q.leased[s]; ok {
			continue
		}
		i, found := slices.BinarySearch(q.released, s)
		if !found {
			q.released = slices.Insert(q.released, i, s)
			any = true
		}
	}
	if any {
		close(q.avail)
		q.avail = make(chan struct{})
	}
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
