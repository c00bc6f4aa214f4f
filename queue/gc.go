package queue

import (
	"context"
	"errors"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// gcDiscardRatio is the share of a value-log file that must be garbage
// before the periodic GC rewrites it (Badger's recommendation).
const gcDiscardRatio = 0.5

// drainDiscardRatio is the share for the reclaims a drain triggers: in a
// FIFO the files behind the head are all garbage and the one at the head
// partly, so a lower ratio would move the live part of that file (records
// about to be acked) to the active file while the drain runs, and holds
// the writers off (writeMu) while it does. The periodic GC takes care of
// what a record held for long keeps alive.
const drainDiscardRatio = 0.9

// drainShare: once the queue held at least GCAfterDrainBytes, space is
// reclaimed at once when it falls to 1/drainShare of its peak, and again
// each time it falls to 1/drainShare of what it held at the last reclaim
// (maybeReclaim), so a backlog that drained comes back as space even while
// a trickle of new messages keeps the queue from ever being empty.
const drainShare = 4

// maintain runs value-log GC every GCInterval, and, when the backlog
// drained after being large (see drainShare), first drops the drained
// record keys from the LSM tree (dropDrained) and then runs value-log GC,
// so the data directory shrinks again; while the queue is in use it also
// releases the mapped value-log and table pages every pageOutInterval.
// Close waits for it.
func (q *Queue) maintain() {
	defer q.wg.Done()
	var tick <-chan time.Time
	if q.opts.GCInterval > 0 {
		t := time.NewTicker(q.opts.GCInterval)
		defer t.Stop()
		tick = t.C
	}
	page := time.NewTicker(pageOutInterval)
	defer page.Stop()
	var pagedAt uint64
	for {
		select {
		case <-q.closed:
			return
		case <-tick:
			q.reclaim(false)
		case <-q.gcKick:
			q.reclaim(true)
		case <-q.pageKick:
			_, _ = pageOutMapped(q.mapDir, activeTail) // a hint; refused on old kernels
		case <-page.C:
			q.closeIdleReader()
			q.mu.Lock()
			commits := q.cs.commits
			q.mu.Unlock()
			if commits != pagedAt {
				pagedAt = commits
				_, _ = pageOutMapped(q.mapDir, activeTail)
			}
		}
	}
}

// activeTail is how much of the newest value-log file's written data
// pageOutMapped leaves resident: what a consumer keeping up with the
// producers reads next.
const activeTail = 1 << 20

// pageOutBytes: besides every pageOutInterval, a page-out runs whenever
// this many bytes of records were written since the last one, so that the
// mapped pages a fast fill leaves behind stay bounded by about this much
// whatever the rate.
const pageOutBytes = 4 << 20

// pageOutInterval is how often, while commits happen, the maintenance
// goroutine has the kernel reclaim the mapped value-log and table pages
// (pageOutMapped), so that the process's RSS does not grow with the
// backlog written or read.
const pageOutInterval = 250 * time.Millisecond

// reclaim, when full is set, has the commit goroutine drop the record
// keys below the head (every record key when the queue is empty); then it
// rewrites value-log files until none is worth it.
func (q *Queue) reclaim(full bool) {
	start := time.Now()
	if full {
		err := q.wait(context.Background(), &request{kind: reqDrain})
		if err != nil && !errors.Is(err, ErrClosed) {
			q.opts.Logger.Warn("queue: reclaiming space after drain failed", "err", err)
		}
	}
	ratio := gcDiscardRatio
	if full {
		ratio = drainDiscardRatio
	}
	n := 0
	for {
		select {
		case <-q.closed:
			return
		default:
		}
		q.writeMu.Lock()
		err := q.db.RunValueLogGC(ratio)
		q.writeMu.Unlock()
		if err != nil {
			if !errors.Is(err, badger.ErrNoRewrite) && !errors.Is(err, badger.ErrRejected) {
				q.opts.Logger.Warn("queue: value log gc failed", "err", err)
			}
			break
		}
		n++
	}
	lsm, vlog := q.db.Size()
	q.opts.Logger.Debug("queue: space reclaimed", "full", full, "vlog_rewrites", n,
		"lsm_bytes", lsm, "vlog_bytes", vlog, "took", time.Since(start))
}
