package queue

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/dgraph-io/badger/v4"
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
		q.writeMu.Lock()
		if len(batch) > 0 {
			q.commit(batch)
		}
		for _, r := range drains {
			r.ch <- q.dropDrained()
		}
		q.writeMu.Unlock()
	}
}

// drainSentinel is a live key under the record prefix that DropPrefix
// needs to find before it drops anything; its seq is never reached.
var drainSentinel = append(recordKey(^uint64(0)), 'z')

// dropDrained physically removes the record keys of the drained part of
// the queue: Badger only writes delete markers to disk when a memtable
// fills, and only drops the deleted versions (and counts their value-log
// space as garbage) when compaction reaches them, so under a light load
// a drained backlog would otherwise stay on disk. DropPrefix flushes the
// memtables, drops the prefixes from every level and counts the dropped
// values as value-log garbage. When the queue is empty every record key
// goes; otherwise every key below the head, in whole blocks of 256
// sequence numbers (dropBlocks), so at most 255 deleted records stay
// behind for ordinary compaction or the next drop. Blocks are of 65,536
// when the records acked at the head since the last drop (those a drop
// is mostly for) are small enough that one holds at most
// GCAfterDrainBytes: a compaction that drops prefixes tests every key
// against each of them, and at 256 there were about a hundred. It blocks
// writes while it runs, which is why only the commit goroutine (the only
// writer) calls it.
func (q *Queue) dropDrained() error {
	prefixes := [][]byte{{prefixRecord}}
	sentinels := [][]byte{drainSentinel}
	if c := q.wctr; c.messages != 0 {
		block := 1 // low bytes of the seq a prefix leaves out
		if s := q.sinceDrop; s.n > 0 && s.bytes/s.n<<16 <= uint64(q.opts.GCAfterDrainBytes) {
			block = 2
		}
		prefixes = dropBlocks(c.head, block)
		if len(prefixes) == 0 {
			return nil
		}
		// DropPrefix skips a prefix without a live key: give each one.
		sentinels = sentinels[:0]
		for _, p := range prefixes {
			k := make([]byte, recordKeyLen, recordKeyLen+1)
			copy(k, p)
			sentinels = append(sentinels, append(k, 'z'))
		}
	}
	err := q.db.Update(func(txn *badger.Txn) error {
		for _, k := range sentinels {
			if err := txn.Set(k, nil); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		err = q.db.DropPrefix(prefixes...)
	}
	if err != nil {
		return fmt.Errorf("queue: drop drained records: %w", err)
	}
	q.sinceDrop = sizeCount{}
	return nil
}

// dropBlocks returns record-key prefixes that together cover exactly the
// sequence numbers below head rounded down to a multiple of 256^block
// (block 1 or 2). A prefix of 'm', the first i bytes of head and one
// smaller byte covers the 256^(7-i) seqs below head that first differ
// from it there; i stops at 7-block so no block is shorter than
// 256^block, which keeps the list short (at most 255 per size). No live
// record has a seq below head.
func dropBlocks(head uint64, block int) [][]byte {
	var out [][]byte
	var h [8]byte
	binary.BigEndian.PutUint64(h[:], head)
	for i := 0; i < 8-block; i++ {
		for b := 0; b < int(h[i]); b++ {
			p := make([]byte, 0, 2+i)
			p = append(p, prefixRecord)
			p = append(p, h[:i]...)
			out = append(out, append(p, byte(b)))
		}
	}
	return out
}

// effects are what a commit changes in the consumer-visible state.
type effects struct {
	removed   []uint64
	headMoved bool
	// headAcked counts the records acked by moving the head past them
	// (applyHeadAck), whose keys dropDrained removes later.
	headAcked sizeCount
}

// commit writes batch in as few transactions as fit, syncs once, then
// publishes the new state and releases every waiter. A batch whose
// requests write nothing (empty writes, kept only for their callback's
// place in order) opens no transaction and does not sync: everything
// submitted before it is durable already, because batches are committed
// and their callbacks queued one after the other.
func (q *Queue) commit(batch []*request) {
	start := time.Now()
	q.checkDisk(start)
	res := make([]error, len(batch))
	before := q.failed.get() // a queue that failed earlier fails every request
	for i, r := range batch {
		if r.err == nil {
			r.err = before
		}
		res[i] = r.err
	}
	var eff effects
	c := q.wctr
	var failed error // a segment commit failed: the rest fails too
	wrote := false
	for i := 0; i < len(batch); {
		var w bool
		i, w, failed = q.commitSegment(batch, res, i, &c, &eff)
		wrote = wrote || w
		if failed != nil {
			for j := i; j < len(batch); j++ {
				if res[j] == nil {
					res[j] = failed
				}
			}
			break
		}
	}
	if err := q.failed.get(); err != nil && failed == nil && wrote {
		// A sync failed inside a commit that reported success (Badger
		// only logs a failed value-log sync): nothing of it is known to
		// be on disk.
		failed = err
		for i := range res {
			if res[i] == nil {
				res[i] = err
			}
		}
	}
	if failed != nil {
		q.opts.Logger.Error("queue commit failed", "err", failed, "writes", len(batch))
	}
	q.wctr = c
	q.publish(c, &eff, len(batch), wrote, time.Since(start))
	var written uint64
	for i, r := range batch {
		if r.kind == reqWrite && res[i] == nil {
			written += r.size
		}
	}
	q.maybePageOut(written)
	q.maybeDropHead(eff.headAcked)
	for i, r := range batch {
		// Acked, expired and undecodable records that stay stored are due
		// again. A failed dead letter is not: its caller still holds the
		// record and retries, so handing it out again would send it twice.
		if res[i] != nil && (r.kind == reqAck || r.kind == reqExpire || r.kind == reqCorrupt) && !errors.Is(res[i], ErrClosed) {
			q.restore(r.seqs)
		}
	}
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

// writesNothing reports whether r needs no transaction: it failed
// before reaching the committer, or has nothing to write or delete.
func (r *request) writesNothing() bool {
	if r.err != nil {
		return true
	}
	switch r.kind {
	case reqWrite:
		return len(r.recs) == 0 && len(r.state) == 0
	case reqAck, reqExpire, reqCorrupt:
		return len(r.seqs) == 0
	}
	return false
}

// commitSegment applies batch[from:] to one transaction, as many
// requests as fit together with the counters, and commits it. It
// returns the index of the first request it did not handle, whether it
// committed a transaction, and the commit error, if any; results go to
// res (requests it refuses also get r.err set, so that a retry skips
// them). The counters key is set once, after the requests, and a segment
// that does not fit with it is shortened, so that per-request sets do not
// use up the transaction's entry budget. On failure c and eff are as
// they were before the segment.
func (q *Queue) commitSegment(batch []*request, res []error, from int, c *counters, eff *effects) (int, bool, error) {
	limit := len(batch)
	segCtr, segEff, segAcked := *c, len(eff.removed), eff.headAcked
	for {
		*c, eff.removed, eff.headMoved, eff.headAcked = segCtr, eff.removed[:segEff], false, segAcked
		txn := q.db.NewTransaction(true)
		applied, last := 0, -1 // requests applied, index of the last one
		end := from
		var stop error // the error that ended the segment at batch[end]
		for ; end < limit; end++ {
			r := batch[end]
			if r.writesNothing() {
				continue
			}
			err := q.apply(txn, r, c, eff)
			if !cleanErr(err) {
				stop = err
				break
			}
			res[end] = err
			applied, last = applied+1, end
		}
		if stop != nil {
			// The transaction is full, or batch[end] failed half-way:
			// start over without it, or up to it.
			txn.Discard()
			r := batch[end]
			switch tooBig := errors.Is(stop, badger.ErrTxnTooBig); {
			case !tooBig:
				r.err = fmt.Errorf("queue: write: %w", stop)
				res[end] = r.err
			case applied == 0:
				r.err = fmt.Errorf("%w: %d records, %d bytes, %d state ops", ErrTooLarge, len(r.recs), r.size, len(r.state))
				res[end] = r.err
			default:
				limit = end
			}
			continue
		}
		if applied == 0 {
			txn.Discard()
			return end, false, nil
		}
		if eff.headMoved {
			c.head = seekLive(txn, c.head, c.nextSeq)
			eff.headMoved = false
		}
		err := txn.Set(countersKey, c.encode())
		if errors.Is(err, badger.ErrTxnTooBig) {
			// No room left for the counters: commit one request less.
			txn.Discard()
			if applied == 1 {
				r := batch[last]
				r.err = fmt.Errorf("%w: %d records, %d bytes, %d state ops", ErrTooLarge, len(r.recs), r.size, len(r.state))
				res[last] = r.err
			} else {
				limit = last
			}
			continue
		}
		if err == nil {
			err = txn.Commit()
		}
		txn.Discard()
		if err != nil {
			err = fmt.Errorf("queue: commit: %w", err)
			// Badger may have applied some of it: what is stored is no
			// longer what the counters say until a reopen reads it.
			q.failed.set(err)
			for i := from; i < end; i++ {
				if res[i] == nil {
					res[i] = err
				}
			}
			*c, eff.removed, eff.headAcked = segCtr, eff.removed[:segEff], segAcked
			return end, true, err
		}
		return end, true, nil
	}
}

// publish makes a committed batch visible to consumers.
func (q *Queue) publish(c counters, eff *effects, n int, synced bool, lat time.Duration) {
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
	if synced {
		q.cs.syncs++
	}
	q.cs.writes += uint64(n)
	q.cs.lastBatch = n
	q.cs.lastLatency = lat
	q.cs.sumLatency += lat
	if grew {
		q.wakeLeases()
	}
	q.mu.Unlock()
	q.maybeReclaim(c)
}

// maybeReclaim kicks a reclaim (see drainShare) when a backlog of at
// least GCAfterDrainBytes has fallen to a quarter of its peak, then each
// time what was left at the last reclaim falls to a quarter again, until
// the queue is empty or what is left is under GCAfterDrainBytes/16.
func (q *Queue) maybeReclaim(c counters) {
	if q.opts.GCAfterDrainBytes <= 0 {
		return
	}
	large := uint64(q.opts.GCAfterDrainBytes)
	if c.bytes > q.peakBytes {
		q.peakBytes = c.bytes
	}
	if q.peakBytes < large && !q.drainLeft {
		return
	}
	if c.messages != 0 && c.bytes > q.peakBytes/drainShare {
		return
	}
	q.drainLeft = c.messages != 0 && c.bytes >= large/(drainShare*drainShare)
	q.peakBytes = c.bytes
	select {
	case q.gcKick <- struct{}{}:
	default:
	}
}

// sizeCount is a number of records and their bytes.
type sizeCount struct{ n, bytes uint64 }

func (s *sizeCount) add(size uint64) { s.n, s.bytes = s.n+1, s.bytes+size }

// maybeDropHead kicks a reclaim (dropDrained, then value-log GC) once
// GCAfterDrainBytes of records were acked at the head (applyHeadAck)
// since the last kick: their keys stay in the LSM tree, and their values
// in the value log, until dropped, so a queue that keeps flowing without
// ever backing up gets its space back too.
func (q *Queue) maybeDropHead(acked sizeCount) {
	q.headUndropped += acked.bytes
	q.sinceDrop.n += acked.n
	q.sinceDrop.bytes += acked.bytes
	if q.headUndropped < uint64(q.opts.GCAfterDrainBytes) {
		return
	}
	q.headUndropped = 0
	select {
	case q.gcKick <- struct{}{}:
	default:
	}
}

// maybePageOut kicks a page-out (pageOutMapped) once pageOutBytes of
// records were written since the last kick, so that a fast fill does not
// pile up mapped pages between the timed page-outs.
func (q *Queue) maybePageOut(written uint64) {
	q.sincePageOut += written
	if q.sincePageOut < pageOutBytes {
		return
	}
	q.sincePageOut = 0
	select {
	case q.pageKick <- struct{}{}:
	default:
	}
}

// checkDisk measures free space at most every DiskCheckInterval.
func (q *Queue) checkDisk(now time.Time) {
	if now.Sub(q.lastDiskCheck) < q.opts.DiskCheckInterval {
		return
	}
	q.lastDiskCheck = now
	free, err := freeBytes(q.opts.Dir)
	if err != nil {
		q.opts.Logger.Warn("queue: free disk space unknown", "dir", q.opts.Dir, "err", err)
		return
	}
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
		if q.applyHeadAck(txn, r.seqs, r.sizes, c, eff) {
			return nil
		}
		return q.applyDelete(txn, r.seqs, c, &c.acked, eff)
	case reqExpire:
		return q.applyDelete(txn, r.seqs, c, &c.expired, eff)
	case reqCorrupt:
		return q.applyDelete(txn, r.seqs, c, &c.corrupt, eff)
	case reqMark:
		return q.applyMark(txn, r.seqs[0], r.data, c)
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
	var vs []located
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
		vs = append(vs, located{seq: seq, size: sz})
		msgs--
		bytes -= min(sz, bytes)
	}
	it.Close()
	for _, v := range vs {
		if err := v.delete(txn); err != nil {
			return err
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

// located is a stored record an iteration found to delete: its seq, its
// exact size and whether a mark follows it.
type located struct {
	seq  uint64
	size uint64
	mark bool
}

// delete deletes the record and, if it has one, its mark.
func (l located) delete(txn *badger.Txn) error {
	if err := txn.Delete(recordKey(l.seq)); err != nil {
		return err
	}
	if l.mark {
		return txn.Delete(markKey(l.seq))
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

// applyHeadAck acks seqs by moving the head past them, without reading or
// deleting a key, when they are exactly head, head+1, ... in that order
// and their sizes are known from their lease (an uplink acks what it
// leased, in order): the reads and delete markers of applyDelete were most
// of the cost of a drain. Their keys (and marks) stay below the head,
// where no reader looks and every write path treats them as gone, until
// dropDrained removes them in bulk (kicked by the bytes acked this way,
// see maybeDropHead). It reports whether it took the ack.
func (q *Queue) applyHeadAck(txn *badger.Txn, seqs, sizes []uint64, c *counters, eff *effects) bool {
	if len(seqs) == 0 || len(sizes) != len(seqs) || q.opts.GCAfterDrainBytes <= 0 {
		return false
	}
	if seqs[0] > c.head {
		// The head moved here last time, but the record at it may be
		// gone (expired, dead-lettered): find the first live one.
		c.head = seekLive(txn, c.head, c.nextSeq)
	}
	for i, s := range seqs {
		if s != c.head+uint64(i) {
			return false
		}
	}
	for i := range seqs {
		c.messages--
		c.bytes -= min(sizes[i], c.bytes)
		c.acked++
		eff.headAcked.add(sizes[i])
	}
	// No seek for the first live record at the new head: it is the
	// next record in the common case, and the next head ack looks if not.
	c.head += uint64(len(seqs))
	return true
}

// applyDelete removes records that still exist and counts them in ctr.
// Seqs close together (an uplink acks what it leased, in order) are found
// with one iterator pass over their range instead of two point lookups
// each (record and mark): the lookups were a quarter of a drain's CPU.
func (q *Queue) applyDelete(txn *badger.Txn, seqs []uint64, c *counters, ctr *uint64, eff *effects) error {
	if len(seqs) < 8 {
		return q.applyDeleteEach(txn, seqs, c, ctr, eff)
	}
	sorted := slices.Clone(seqs)
	slices.Sort(sorted)
	sorted = slices.Compact(sorted)
	lo, hi := sorted[0], sorted[len(sorted)-1]
	if hi-lo > 4*uint64(len(sorted))+64 {
		return q.applyDeleteEach(txn, seqs, c, ctr, eff)
	}
	var del []located
	err := func() error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixRecord}})
		defer it.Close()
		i := 0
		// Below the head only keys of acked records are left.
		for it.Seek(recordKey(max(lo, c.head))); it.Valid() && i < len(sorted); it.Next() {
			item := it.Item()
			k := item.Key()
			seq := binary.BigEndian.Uint64(k[1:])
			if seq > hi {
				break
			}
			for i < len(sorted) && sorted[i] < seq {
				i++
			}
			if i == len(sorted) || sorted[i] != seq {
				continue
			}
			if len(k) == recordKeyLen {
				sz, err := q.valueSize(item)
				if err != nil {
					return err
				}
				del = append(del, located{seq: seq, size: sz})
			} else if k[recordKeyLen] == markSuffix && len(del) > 0 && del[len(del)-1].seq == seq {
				del[len(del)-1].mark = true
			}
		}
		return nil
	}()
	if err != nil {
		return err
	}
	for _, d := range del {
		if err := d.delete(txn); err != nil {
			return err
		}
		q.countDelete(d.seq, d.size, c, ctr, eff)
	}
	return nil
}

// applyDeleteEach is applyDelete with a point lookup per seq.
func (q *Queue) applyDeleteEach(txn *badger.Txn, seqs []uint64, c *counters, ctr *uint64, eff *effects) error {
	for _, s := range seqs {
		item, err := liveRecord(txn, s, c)
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
		q.countDelete(s, sz, c, ctr, eff)
	}
	return nil
}

// countDelete accounts for the deletion of record s of size sz.
func (q *Queue) countDelete(s, sz uint64, c *counters, ctr *uint64, eff *effects) {
	c.messages--
	c.bytes -= min(sz, c.bytes)
	*ctr++
	if s == c.head {
		c.head++
		eff.headMoved = true
	}
	eff.removed = append(eff.removed, s)
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

// markOf returns a copy of record s's mark, or nil when it has none.
func markOf(txn *badger.Txn, s uint64) ([]byte, error) {
	item, err := txn.Get(markKey(s))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return item.ValueCopy(nil)
}

// liveRecord looks record s up; below the head it is gone
// (badger.ErrKeyNotFound) even where a head ack left its key.
func liveRecord(txn *badger.Txn, s uint64, c *counters) (*badger.Item, error) {
	if s < c.head {
		return nil, badger.ErrKeyNotFound
	}
	return txn.Get(recordKey(s))
}

func (q *Queue) applyMark(txn *badger.Txn, s uint64, data []byte, c *counters) error {
	if _, err := liveRecord(txn, s, c); err != nil {
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
	item, err := liveRecord(txn, s, c)
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
	mark, err := markOf(txn, s)
	if err != nil {
		return err
	}
	// A stored mark is never empty (applyMark deletes it instead).
	if err := (located{seq: s, mark: mark != nil}).delete(txn); err != nil {
		return err
	}
	if err := txn.Set(deadLetterKey(s), encodeDeadLetter(reason, time.Now(), mark, rec)); err != nil {
		return err
	}
	c.deadLetters++
	q.countDelete(s, uint64(len(rec)), c, &c.deadLettered, eff)
	return nil
}

// cleanErr reports whether err left the transaction consistent: nil or
// a refusal that changed only counters.
func cleanErr(err error) bool {
	return err == nil || errors.Is(err, ErrFull) || errors.Is(err, ErrDiskFull) || errors.Is(err, ErrNotFound)
}
