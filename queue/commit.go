package queue

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/dgraph-io/badger/v4"
	"golang.org/x/sys/unix"
)

// commitLoop is the single writer: it gathers pending requests and
// commits them as one batch with one sync.
func (q *Queue) commitLoop() {
	defer q.wg.Done()
	for {
		q.pmu.Lock()
		for len(q.pending) == 0 && !q.closing {
			q.pmu.Unlock()
			<-q.wake
			q.pmu.Lock()
		}
		if len(q.pending) == 0 {
			q.committerDone = true
			q.pmu.Unlock()
			close(q.notes.stop)
			return
		}
		closing := q.closing
		q.pmu.Unlock()
		if q.opts.CommitWait > 0 && !closing {
			t := time.NewTimer(q.opts.CommitWait)
			select {
			case <-t.C:
			case <-q.closed:
				t.Stop()
			}
		}
		q.pmu.Lock()
		batch := q.pending
		q.pending = nil
		q.pmu.Unlock()
		var drains []*request
		batch = slices.DeleteFunc(batch, func(r *request) bool {
			if r.kind == reqDrain {
				drains = append(drains, r)
				return true
			}
			return false
		})
		if len(batch) > 0 {
			q.commit(batch)
		}
		for _, r := range drains {
			r.ch <- q.dropDrained()
		}
	}
}

// drainSentinel is a live key under the record prefix that DropPrefix
// needs to find before it drops anything; its seq is never reached.
var drainSentinel = append(recordKey(^uint64(0)), 'z')

// dropDrained physically removes every record key, live or deleted,
// when the queue is empty: Badger only writes delete markers to disk
// when a memtable fills, so a drained queue would otherwise keep its
// backlog on disk. DropPrefix flushes the memtables and drops the
// prefix from every level. It blocks writes while it runs, which is why
// only the commit goroutine (the only writer) calls it.
func (q *Queue) dropDrained() error {
	if q.wctr.messages != 0 {
		return nil
	}
	err := q.db.Update(func(txn *badger.Txn) error { return txn.Set(drainSentinel, nil) })
	if err == nil {
		err = q.db.DropPrefix([]byte{prefixRecord})
	}
	if err != nil {
		return fmt.Errorf("queue: drop drained records: %w", err)
	}
	return nil
}

// effects are what a commit changes in the consumer-visible state.
type effects struct {
	removed   []uint64
	headMoved bool
}

// commit writes batch in as few transactions as fit, syncs once, then
// publishes the new state and releases every waiter.
func (q *Queue) commit(batch []*request) {
	start := time.Now()
	q.checkDisk(start)
	res := make([]error, len(batch))
	var eff effects
	c := q.wctr
	segStart, segCtr, segEff := 0, c, 0
	txn := q.db.NewTransaction(true)
	var failed error // a segment commit failed: the rest fails too

	commitSeg := func(end int) {
		if end > segStart && failed == nil {
			if eff.headMoved {
				c.head = seekLiveTxn(txn, c.head, c.nextSeq)
				eff.headMoved = false
				if err := txn.Set(countersKey, c.encode()); err != nil && !errors.Is(err, badger.ErrTxnTooBig) {
					failed = err
				}
			}
			if failed == nil {
				failed = txn.Commit()
			}
			if failed != nil {
				failed = fmt.Errorf("queue: commit: %w", failed)
				for i := segStart; i < end; i++ {
					if res[i] == nil {
						res[i] = failed
					}
				}
				c, eff.removed = segCtr, eff.removed[:segEff]
			}
		}
		txn.Discard()
		txn = q.db.NewTransaction(true)
		segStart, segCtr, segEff = end, c, len(eff.removed)
	}

	for i := 0; i < len(batch); i++ {
		r := batch[i]
		if r.err != nil {
			res[i] = r.err
			continue
		}
		if failed != nil {
			res[i] = failed
			continue
		}
		err := q.apply(txn, r, &c, &eff)
		if cleanErr(err) {
			if serr := txn.Set(countersKey, c.encode()); serr != nil {
				err = serr
			}
		}
		if cleanErr(err) {
			res[i] = err
			continue
		}
		// The transaction is full, or r failed half-way: start over
		// without r in a fresh transaction.
		tooBig := errors.Is(err, badger.ErrTxnTooBig)
		txn.Discard()
		txn = q.db.NewTransaction(true)
		c, eff.removed, eff.headMoved = segCtr, eff.removed[:segEff], false
		switch {
		case tooBig && i == segStart:
			r.err = fmt.Errorf("%w: %d records, %d bytes, %d state ops", ErrTooLarge, len(r.recs), r.size, len(r.state))
		case !tooBig:
			r.err = fmt.Errorf("queue: write: %w", err)
		}
		for j := segStart; j < i; j++ {
			if batch[j].err != nil {
				continue
			}
			res[j] = q.apply(txn, batch[j], &c, &eff)
			if err := txn.Set(countersKey, c.encode()); err != nil && res[j] == nil {
				res[j] = err
			}
		}
		if r.err != nil {
			res[i] = r.err
			continue
		}
		commitSeg(i)
		i--
	}
	commitSeg(len(batch))
	txn.Discard()
	if failed == nil {
		if err := q.db.Sync(); err != nil {
			failed = fmt.Errorf("queue: sync: %w", err)
			for i := range res {
				if res[i] == nil {
					res[i] = failed
				}
			}
		}
	}
	if failed != nil {
		q.opts.Logger.Error("queue commit failed", "err", failed, "writes", len(batch))
	}
	q.wctr = c
	q.publish(c, &eff, len(batch), time.Since(start))
	var notes []note
	for i, r := range batch {
		if r.ch != nil {
			r.ch <- res[i]
		}
		if r.done != nil {
			notes = append(notes, note{r.done, res[i]})
		}
	}
	q.notes.push(notes)
}

func seekLiveTxn(txn *badger.Txn, from, next uint64) uint64 {
	return seekLive(txn, from, next)
}

// publish makes a committed batch visible to consumers.
func (q *Queue) publish(c counters, eff *effects, n int, lat time.Duration) {
	q.mu.Lock()
	grew := c.nextSeq > q.tail
	q.ctr = c
	q.tail = c.nextSeq
	for _, s := range eff.removed {
		delete(q.leased, s)
		q.removeReleased(s)
	}
	if q.readSeq < c.head {
		q.readSeq = c.head
	}
	q.cs.commits++
	q.cs.writes += uint64(n)
	q.cs.lastBatch = n
	q.cs.lastLatency = lat
	q.cs.sumLatency += lat
	if grew {
		close(q.avail)
		q.avail = make(chan struct{})
	}
	q.mu.Unlock()
	if c.bytes > q.peakBytes {
		q.peakBytes = c.bytes
	}
	if c.messages == 0 && q.opts.GCAfterDrainBytes > 0 && q.peakBytes >= uint64(q.opts.GCAfterDrainBytes) {
		q.peakBytes = 0
		select {
		case q.gcKick <- struct{}{}:
		default:
		}
	}
}

// checkDisk measures free space at most every DiskCheckInterval.
func (q *Queue) checkDisk(now time.Time) {
	if now.Sub(q.lastDiskCheck) < q.opts.DiskCheckInterval {
		return
	}
	q.lastDiskCheck = now
	var st unix.Statfs_t
	if err := unix.Statfs(q.opts.Dir, &st); err != nil {
		q.opts.Logger.Warn("queue: statfs failed", "dir", q.opts.Dir, "err", err)
		return
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	full := free < q.opts.DiskReserve
	if full != q.diskFull.Load() {
		q.diskFull.Store(full)
		if full {
			q.opts.Logger.Warn("queue: disk reserve reached, refusing new messages",
				"dir", q.opts.Dir, "free_bytes", free, "reserve_bytes", q.opts.DiskReserve)
		} else {
			q.opts.Logger.Info("queue: disk space back, accepting messages",
				"dir", q.opts.Dir, "free_bytes", free)
		}
	}
}

// apply adds r's changes to txn and c. On an error other than
// ErrTxnTooBig nothing but counters changed.
func (q *Queue) apply(txn *badger.Txn, r *request, c *counters, eff *effects) error {
	switch r.kind {
	case reqWrite:
		return q.applyWrite(txn, r, c, eff)
	case reqAck:
		return q.applyDelete(txn, r.seqs, c, &c.acked, eff)
	case reqExpire:
		return q.applyDelete(txn, r.seqs, c, &c.expired, eff)
	case reqCorrupt:
		return q.applyDelete(txn, r.seqs, c, &c.corrupt, eff)
	case reqMark:
		return q.applyMark(txn, r.seqs[0], r.data)
	case reqDeadLetter:
		return q.applyDeadLetter(txn, r.seqs[0], r.reason, c, eff)
	}
	return fmt.Errorf("queue: request kind %d unknown", r.kind)
}

func (q *Queue) applyWrite(txn *badger.Txn, r *request, c *counters, eff *effects) error {
	if n := uint64(len(r.recs)); n > 0 {
		if q.diskFull.Load() {
			c.refusedDisk += n
			return ErrDiskFull
		}
		maxMsgs, maxBytes := uint64(q.opts.MaxMessages), uint64(q.opts.MaxBytes)
		if (maxMsgs > 0 && n > maxMsgs) || (maxBytes > 0 && r.size > maxBytes) {
			c.refusedFull += n
			return ErrFull
		}
		overMsgs := maxMsgs > 0 && c.messages+n > maxMsgs
		overBytes := maxBytes > 0 && c.bytes+r.size > maxBytes
		if overMsgs || overBytes {
			if q.opts.Policy == RejectNew {
				c.refusedFull += n
				return ErrFull
			}
			if err := q.evict(txn, c, n, r.size, eff); err != nil {
				return err
			}
		}
		for _, rec := range r.recs {
			if err := txn.Set(recordKey(c.nextSeq), rec); err != nil {
				return err
			}
			c.nextSeq++
			c.messages++
			c.bytes += uint64(len(rec))
			c.appended++
		}
	}
	for _, op := range r.state {
		var err error
		if op.Value == nil {
			err = txn.Delete(stateKey(op.Key))
		} else {
			err = txn.Set(stateKey(op.Key), op.Value)
		}
		if err != nil {
			return fmt.Errorf("state %q: %w", op.Key, err)
		}
	}
	return nil
}

// evict deletes records from the head until n more records of size
// bytes fit within the limits.
func (q *Queue) evict(txn *badger.Txn, c *counters, n, size uint64, eff *effects) error {
	maxMsgs, maxBytes := uint64(q.opts.MaxMessages), uint64(q.opts.MaxBytes)
	fits := func() bool {
		return (maxMsgs == 0 || c.messages+n <= maxMsgs) && (maxBytes == 0 || c.bytes+size <= maxBytes)
	}
	type victim struct {
		seq  uint64
		size uint64
		mark bool
	}
	var vs []victim
	msgs, bytes := c.messages, c.bytes
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixRecord}})
	for it.Seek(recordKey(c.head)); it.Valid(); it.Next() {
		item := it.Item()
		k := item.Key()
		seq := binary.BigEndian.Uint64(k[1:])
		if len(k) == markKeyLen {
			if len(vs) > 0 && vs[len(vs)-1].seq == seq {
				vs[len(vs)-1].mark = true
			}
			continue
		}
		if (maxMsgs == 0 || msgs+n <= maxMsgs) && (maxBytes == 0 || bytes+size <= maxBytes) {
			break
		}
		sz, err := q.valueSize(item)
		if err != nil {
			it.Close()
			return err
		}
		vs = append(vs, victim{seq: seq, size: sz})
		msgs--
		bytes -= min(sz, bytes)
	}
	it.Close()
	for _, v := range vs {
		if err := txn.Delete(recordKey(v.seq)); err != nil {
			return err
		}
		if v.mark {
			if err := txn.Delete(markKey(v.seq)); err != nil {
				return err
			}
		}
		c.messages--
		c.bytes -= min(v.size, c.bytes)
		c.evicted++
		c.head = v.seq + 1
		eff.removed = append(eff.removed, v.seq)
	}
	if !fits() {
		// Cannot happen when the counters match the store; refuse rather
		// than exceed the limit.
		q.opts.Logger.Error("queue: counters do not match stored records", "messages", c.messages, "bytes", c.bytes)
		c.refusedFull += n
		return ErrFull
	}
	return nil
}

// valueSize returns the exact stored length of an item's value. Badger
// reports an estimate for values kept in the value log, so those are read.
func (q *Queue) valueSize(item *badger.Item) (uint64, error) {
	sz := item.ValueSize()
	if sz < q.opts.ValueThreshold-16 {
		return uint64(sz), nil
	}
	var n int
	err := item.Value(func(v []byte) error { n = len(v); return nil })
	return uint64(n), err
}

// applyDelete removes records that still exist and counts them in ctr.
func (q *Queue) applyDelete(txn *badger.Txn, seqs []uint64, c *counters, ctr *uint64, eff *effects) error {
	for _, s := range seqs {
		item, err := txn.Get(recordKey(s))
		if errors.Is(err, badger.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		sz, err := q.valueSize(item)
		if err != nil {
			return err
		}
		if err := q.deleteRecord(txn, s); err != nil {
			return err
		}
		c.messages--
		c.bytes -= min(sz, c.bytes)
		*ctr++
		if s == c.head {
			c.head++
			eff.headMoved = true
		}
		eff.removed = append(eff.removed, s)
	}
	return nil
}

// deleteRecord deletes a record and its mark if it has one.
func (q *Queue) deleteRecord(txn *badger.Txn, s uint64) error {
	if err := txn.Delete(recordKey(s)); err != nil {
		return err
	}
	_, err := txn.Get(markKey(s))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	return txn.Delete(markKey(s))
}

func (q *Queue) applyMark(txn *badger.Txn, s uint64, data []byte) error {
	if _, err := txn.Get(recordKey(s)); err != nil {
		if errors.Is(err, badger.ErrKeyNotFound) {
			return ErrNotFound
		}
		return err
	}
	if len(data) == 0 {
		return txn.Delete(markKey(s))
	}
	return txn.Set(markKey(s), data)
}

func (q *Queue) applyDeadLetter(txn *badger.Txn, s uint64, reason string, c *counters, eff *effects) error {
	item, err := txn.Get(recordKey(s))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return ErrNotFound
	}
	if err != nil {
		return err
	}
	rec, err := item.ValueCopy(nil)
	if err != nil {
		return err
	}
	var mark []byte
	if mi, err := txn.Get(markKey(s)); err == nil {
		if mark, err = mi.ValueCopy(nil); err != nil {
			return err
		}
	} else if !errors.Is(err, badger.ErrKeyNotFound) {
		return err
	}
	if err := q.deleteRecord(txn, s); err != nil {
		return err
	}
	if err := txn.Set(deadLetterKey(s), encodeDeadLetter(reason, time.Now(), mark, rec)); err != nil {
		return err
	}
	c.messages--
	c.bytes -= min(uint64(len(rec)), c.bytes)
	c.deadLettered++
	c.deadLetters++
	if s == c.head {
		c.head++
		eff.headMoved = true
	}
	eff.removed = append(eff.removed, s)
	return nil
}

// cleanErr reports whether err left the transaction consistent: nil or
// a refusal that changed only counters.
func cleanErr(err error) bool {
	return err == nil || errors.Is(err, ErrFull) || errors.Is(err, ErrDiskFull) || errors.Is(err, ErrNotFound)
}
