// Package queue is holdfast's durable FIFO: every message the agent accepts
// is stored here, on disk, before anyone is told it was accepted, and
// leaves only when the upstream broker acknowledged it.
//
// The store is Badger. Writes from all producers go through one commit
// goroutine that gathers whatever is pending, writes it as one Badger
// transaction per ~1 MiB, synced before the commit returns (SyncWrites),
// and only then releases every writer of that batch (group commit).
//
// Durability: when Append, Commit, PutState or DeleteState return nil (or
// an AppendAsync callback is called with nil), the messages and state
// changes are on disk: a crash or power cut after that point does not
// lose them. A write and the state operations that travel with it are
// atomic: after a crash either all of them are there or none. A non-nil
// error means the write is not known to be durable; a write that failed
// in Sync may still appear after a restart (at least once, never lost
// silently once acknowledged).
//
// Consumption: Lease hands out records from the head in sequence order
// and hides them from other Lease calls until they are Acked (deleted
// durably: the upstream broker has the message), Released (visible again
// at their original position) or the process restarts (every unacked
// record is visible again from the head). Mark stores per-record data
// (the uplink's QoS 2 progress) that later Leases return, also after a
// restart.
//
// The queue knows nothing of MQTT connections; Message carries the MQTT 5
// properties worth forwarding.
package queue

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Errors callers branch on.
var (
	// ErrClosed is returned by every operation after Close has begun.
	ErrClosed = errors.New("queue: closed")
	// ErrFull means MaxMessages or MaxBytes is reached under RejectNew
	// (or one write alone exceeds them). MQTT 5: reason code 0x97.
	ErrFull = errors.New("queue: full")
	// ErrDiskFull means free space on the data directory's filesystem is
	// below the reserve; writes carrying messages are refused until space
	// comes back. Acks, marks and state still go through.
	ErrDiskFull = errors.New("queue: disk reserve reached")
	// ErrLocked means another Queue, usually a running agent, has Dir
	// open: one Queue per directory.
	ErrLocked = errors.New("queue: in use by another process")
	// ErrReadOnly is returned by every write, ack and lease of a queue
	// opened with Options.ReadOnly.
	ErrReadOnly = errors.New("queue: opened read-only")
	// ErrNeedsRecovery means a read-only Open found a queue that was not
	// closed cleanly (a crash, SIGKILL, a power cut): its write-ahead log
	// must be replayed, which only a read-write Open (holdfast run) does.
	ErrNeedsRecovery = errors.New("queue: not closed cleanly: open it read-write once to recover it")
	// ErrFailed means a commit failed in a way that leaves the store's
	// state unknown (a failed sync, a transaction Badger may have half
	// applied): every later write fails with it, wrapped with the first
	// cause, until the queue is closed and opened again. Failed tells
	// when it happens.
	ErrFailed = errors.New("queue: failed, reopen it")
	// ErrNoQueue means Options.NoCreate is set and Dir holds no queue.
	ErrNoQueue = errors.New("queue: no queue in this directory")
	// ErrNotFound means the record (or state key) does not exist.
	ErrNotFound = errors.New("queue: not found")
	// ErrTooLarge means one write does not fit in a single Badger
	// transaction (about 15% of MemTableSize).
	ErrTooLarge = errors.New("queue: write too large")
)

// StateOp is one change to the keyed state namespace. Keys are opaque to
// the queue; callers prefix them ("lb/inflight/<client>/<id>").
type StateOp struct {
	// Key names the state entry.
	Key string
	// Value is stored under Key; nil deletes Key.
	Value []byte
}

// Write is one atomic unit of group commit: messages appended to the
// queue and state operations, committed together or not at all.
type Write struct {
	// Messages are appended in order.
	Messages []Message
	// State is applied in order after the messages.
	State []StateOp
}

type reqKind uint8

const (
	reqWrite reqKind = iota
	reqAck
	reqMark
	reqDeadLetter
	reqExpire
	reqCorrupt
	reqDrain
)

// request is one submission to the committer.
type request struct {
	kind   reqKind
	recs   [][]byte
	size   uint64
	state  []StateOp
	seqs   []uint64
	sizes  []uint64 // of an ack: the encoded size of each of seqs, if all were leased
	data   []byte
	reason string
	err    error // set when the request failed before reaching the committer
	ch     chan error
	done   func(error)
}

// Queue is the durable FIFO. All methods are safe for concurrent use.
type Queue struct {
	opts Options
	db   *badger.DB
	// mapDir is Dir as /proc/self/maps shows it (absolute, symlinks
	// resolved), for pageOutMapped.
	mapDir string

	// pending writes, guarded by pmu. pmu is taken before mu where both
	// are held (forget), never after.
	pmu           sync.Mutex
	pending       []*request
	closing       bool
	committerDone bool
	wake          chan struct{}

	// writeMu is held by the committer while it writes and by each
	// value-log GC run: Badger's GC reads the memtable's version without
	// synchronising with a concurrent write (a data race in Badger
	// v4.9.6's valueLog.rewrite), so the two never overlap. A GC run
	// over a FIFO's value log rewrites little (its oldest files are
	// mostly garbage), so writers wait at most for one such run.
	writeMu sync.Mutex

	// committer-owned state.
	wctr          counters
	diskFull      atomic.Bool
	lastDiskCheck time.Time
	peakBytes     uint64    // most bytes held since the last reclaim
	drainLeft     bool      // a reclaim ran and more of the backlog is left to drain
	sincePageOut  uint64    // record bytes written since the last page-out kick
	headUndropped uint64    // bytes acked at the head since the last drop kick
	sinceDrop     sizeCount // records acked at the head since the last drop

	failed *failure

	// leaseMu makes Lease calls read one at a time, outside mu, and
	// guards reader.
	leaseMu sync.Mutex
	reader  leaseReader

	// consumer-visible state, guarded by mu.
	mu       sync.Mutex
	ctr      counters
	tail     uint64            // records below tail are durable and visible
	readSeq  uint64            // next seq Lease reads from the store
	leased   map[uint64]uint64 // leased seq -> its encoded size
	released []uint64          // sorted, all below readSeq
	avail    chan struct{}
	cs       commitStats

	closed    chan struct{}
	closeOnce sync.Once
	closeErr  error
	gcKick    chan struct{}
	pageKick  chan struct{}
	notes     notifier
	wg        sync.WaitGroup
}

type commitStats struct {
	commits     uint64
	syncs       uint64
	writes      uint64
	lastBatch   int
	lastLatency time.Duration
	sumLatency  time.Duration
}

// Open opens (or creates) the queue in opts.Dir and starts its commit,
// callback and maintenance goroutines. It reads the persisted counters
// instead of scanning the records, so it takes about the same time for
// an empty queue and for a million records.
//
// Unless the program chose a Go memory limit itself (GOMEMLIMIT, or
// debug.SetMemoryLimit before Open), Open sets a soft limit of 64 MiB for
// the process, so that the garbage collector reclaims Badger's discarded
// memtables and table buffers before the heap grows far beyond what is
// live (docs/queue.md, memory profile).
func Open(opts Options) (*Queue, error) {
	if opts.Dir == "" {
		return nil, errors.New("queue: options: Dir is required")
	}
	if opts.Policy != RejectNew && opts.Policy != DropOldest {
		return nil, fmt.Errorf("queue: options: policy %d unknown", int(opts.Policy))
	}
	if opts.MaxBytes < 0 || opts.MaxMessages < 0 || opts.TTL < 0 || opts.CommitWait < 0 {
		return nil, errors.New("queue: options: limits, TTL and CommitWait must not be negative")
	}
	opts.setDefaults()
	if !opts.ReadOnly {
		applyMemoryLimit(opts.Logger)
	}
	if opts.NoCreate || opts.ReadOnly {
		// Badger's MANIFEST is the first file of every store.
		if _, err := os.Stat(filepath.Join(opts.Dir, "MANIFEST")); errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s", ErrNoQueue, opts.Dir)
		} else if err != nil {
			return nil, fmt.Errorf("queue: open %s: %w", opts.Dir, err)
		}
	} else if err := os.MkdirAll(opts.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("queue: data dir %s: %w", opts.Dir, err)
	}
	if err := checkUnlocked(opts.Dir); err != nil {
		return nil, fmt.Errorf("%w: %s", err, opts.Dir)
	}
	failed := new(failure)
	db, err := badger.Open(opts.badgerOptions(failed))
	if err != nil {
		switch msg := err.Error(); {
		case strings.Contains(msg, "Another process is using this Badger database"):
			return nil, fmt.Errorf("%w: %s", ErrLocked, opts.Dir) // where the flock probe cannot see it
		case opts.ReadOnly && strings.Contains(msg, "truncate required"):
			return nil, fmt.Errorf("%w: %s", ErrNeedsRecovery, opts.Dir)
		}
		return nil, fmt.Errorf("queue: open %s: %w", opts.Dir, err)
	}
	var c counters
	err = db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(countersKey)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			c, err = decodeCounters(v)
			return err
		})
	})
	if err == nil {
		c.head, err = firstLive(db, c.head, c.nextSeq)
	}
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("queue: open %s: counters: %w", opts.Dir, err)
	}
	q := &Queue{
		opts:     opts,
		db:       db,
		failed:   failed,
		mapDir:   resolvedDir(opts.Dir),
		wake:     make(chan struct{}, 1),
		wctr:     c,
		ctr:      c,
		tail:     c.nextSeq,
		readSeq:  c.head,
		leased:   make(map[uint64]uint64),
		avail:    make(chan struct{}),
		closed:   make(chan struct{}),
		gcKick:   make(chan struct{}, 1),
		pageKick: make(chan struct{}, 1),
		notes:    notifier{wake: make(chan struct{}, 1), stop: make(chan struct{})},
	}
	q.peakBytes = c.bytes
	q.wg.Add(2)
	go q.commitLoop()
	go q.notes.run(&q.wg)
	if !opts.ReadOnly {
		q.wg.Add(1)
		go q.maintain()
	}
	return q, nil
}

// failure is a queue's first fatal error (ErrFailed); it stays once set.
type failure struct {
	mu  sync.Mutex
	err error
	ch  chan struct{} // closed when err is set
}

func (f *failure) set(cause error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err == nil {
		f.err = fmt.Errorf("%w: %w", ErrFailed, cause)
		if f.ch == nil {
			f.ch = make(chan struct{})
		}
		close(f.ch)
	}
}

func (f *failure) get() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

func (f *failure) done() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ch == nil {
		f.ch = make(chan struct{})
	}
	return f.ch
}

// Failed returns a channel that is closed when the queue fails
// (ErrFailed: a commit or a sync failed, and what is on disk is no longer
// known). The agent stops then, so that a restart reopens the queue from
// what the disk holds.
func (q *Queue) Failed() <-chan struct{} { return q.failed.done() }

// Err returns why the queue failed (wrapping ErrFailed), or nil.
func (q *Queue) Err() error { return q.failed.get() }

// resolvedDir returns dir absolute and with symlinks resolved, or dir
// when that fails.
func resolvedDir(dir string) string {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return dir
	}
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		return r
	}
	return abs
}

// firstLive returns the first live record's seq at or after from, or
// next when there is none.
func firstLive(db *badger.DB, from, next uint64) (uint64, error) {
	head := next
	err := db.View(func(txn *badger.Txn) error {
		head = seekLive(txn, from, next)
		return nil
	})
	return head, err
}

func seekLive(txn *badger.Txn, from, next uint64) uint64 {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixRecord}})
	defer it.Close()
	for it.Seek(recordKey(from)); it.Valid(); it.Next() {
		if k := it.Item().Key(); len(k) == recordKeyLen {
			return binary.BigEndian.Uint64(k[1:])
		}
	}
	return next
}

// Close shuts the queue down: it first stops intake (new writes, acks and
// leases fail with ErrClosed and blocked Lease calls return ErrClosed),
// then waits for every write already submitted to be committed and its
// waiter or callback to be told, then waits for background GC to finish,
// and finally closes Badger. When Close returns, everything acknowledged
// is on disk and no goroutine of the queue is left. Leases not acked are
// visible again on the next Open. Close is idempotent.
func (q *Queue) Close() error {
	q.closeOnce.Do(func() {
		q.pmu.Lock()
		q.closing = true
		q.pmu.Unlock()
		q.mu.Lock()
		close(q.closed)
		q.mu.Unlock()
		select {
		case q.wake <- struct{}{}:
		default:
		}
		q.wg.Wait()
		q.leaseMu.Lock()
		q.reader.close()
		q.leaseMu.Unlock()
		q.closeErr = q.db.Close()
		if q.closeErr != nil {
			q.closeErr = fmt.Errorf("queue: close %s: %w", q.opts.Dir, q.closeErr)
		}
	})
	return q.closeErr
}

// Append stores msgs at the tail, in order, and returns nil only once
// they are durable. It returns ErrFull, ErrDiskFull or ErrClosed without
// storing anything. If ctx ends first it returns ctx.Err() and the
// messages may or may not be stored.
func (q *Queue) Append(ctx context.Context, msgs ...Message) error {
	return q.Commit(ctx, Write{Messages: msgs})
}

// AppendAsync submits msgs like Append but returns at once; done (which
// may be nil) is called with Append's result after the commit. Callbacks
// run on one queue goroutine, in submission order, so a connection can
// send its acks in order from them; they must not block for long.
func (q *Queue) AppendAsync(msgs []Message, done func(error)) {
	q.CommitAsync(Write{Messages: msgs}, done)
}

// Commit stores w atomically (messages and state together) and returns
// once it is durable. Errors are as for Append; a write with messages
// that is refused applies none of its state operations either.
func (q *Queue) Commit(ctx context.Context, w Write) error {
	r, err := q.newWrite(w)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return q.wait(ctx, r)
}

// CommitAsync is Commit without blocking; see AppendAsync for done.
func (q *Queue) CommitAsync(w Write, done func(error)) {
	r, err := q.newWrite(w)
	if r == nil {
		r = &request{}
	}
	r.err, r.done = err, done
	q.enqueue(r)
}

// PutState durably stores the given state values (a nil Value deletes).
func (q *Queue) PutState(ctx context.Context, ops ...StateOp) error {
	return q.Commit(ctx, Write{State: ops})
}

// DeleteState durably deletes the given state keys.
func (q *Queue) DeleteState(ctx context.Context, keys ...string) error {
	ops := make([]StateOp, len(keys))
	for i, k := range keys {
		ops[i].Key = k
	}
	return q.Commit(ctx, Write{State: ops})
}

// GetState returns the committed value of key, or ErrNotFound.
func (q *Queue) GetState(key string) ([]byte, error) {
	var v []byte
	err := q.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(stateKey(key))
		if err != nil {
			return err
		}
		v, err = item.ValueCopy(nil)
		return err
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, fmt.Errorf("queue: state %q: %w", key, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("queue: state %q: %w", key, err)
	}
	return v, nil
}

// ScanState calls fn for every committed state entry whose key starts
// with prefix, in key order, from one consistent snapshot. value is only
// valid during the call. An error from fn stops the scan and is returned.
func (q *Queue) ScanState(prefix string, fn func(key string, value []byte) error) error {
	err := q.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: stateKey(prefix), PrefetchValues: true, PrefetchSize: 16})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			err := item.Value(func(v []byte) error {
				return fn(string(item.Key()[1:]), v)
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("queue: scan state %q: %w", prefix, err)
	}
	return nil
}

// Ack deletes the records durably: the upstream broker has them. Acking
// a record that is gone (already acked, evicted by drop_oldest, expired)
// is a no-op. The records stop counting as leased at once.
func (q *Queue) Ack(seqs ...uint64) error {
	rs := q.ackRequests(seqs)
	if err := q.submit(rs...); err != nil {
		return err
	}
	var first error
	for _, r := range rs {
		if err := <-r.ch; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// AckAsync is Ack without blocking; done (may be nil) is called after
// the commit, in submission order with other async callbacks.
func (q *Queue) AckAsync(seqs []uint64, done func(error)) {
	rs := q.ackRequests(seqs)
	var first error
	for i, r := range rs {
		last := i == len(rs)-1
		r.done = func(err error) {
			if err != nil && first == nil {
				first = err
			}
			if last && done != nil {
				done(first)
			}
		}
		q.enqueue(r)
	}
}

// maxAckBatch is the most seqs one ack request deletes: about 80 KiB of
// delete markers, inside one Badger transaction even with a 1 MiB
// memtable, so an ack of any length commits (in several transactions)
// instead of failing with ErrTooLarge.
const maxAckBatch = 1024

// ackRequests splits an ack into requests of at most maxAckBatch seqs
// (one, possibly empty, for a short ack). Async callbacks run in
// submission order, so the last request's callback runs after the
// others'.
func (q *Queue) ackRequests(seqs []uint64) []*request {
	seqs = slices.Clone(seqs)
	var rs []*request
	for len(rs) == 0 || len(seqs) > 0 {
		n := min(len(seqs), maxAckBatch)
		rs = append(rs, &request{kind: reqAck, seqs: seqs[:n:n]})
		seqs = seqs[n:]
	}
	return rs
}

// forget drops the seqs of a request that removes records (ack, dead
// letter) from the leased and released sets; submit and enqueue call it
// under q.pmu as they queue r, so the request that forgets a seq first
// is committed first. An ack of seqs that were all leased gets their
// encoded sizes (see applyHeadAck), which holds only because no request
// that removed one of them can be committed before it.
func (q *Queue) forget(r *request) {
	if r.kind != reqAck && r.kind != reqDeadLetter {
		return
	}
	var sizes []uint64
	if r.kind == reqAck {
		sizes = make([]uint64, len(r.seqs))
	}
	q.mu.Lock()
	for i, s := range r.seqs {
		sz, ok := q.leased[s]
		if !ok {
			sizes = nil
		} else if sizes != nil {
			sizes[i] = sz
		}
		delete(q.leased, s)
		q.removeReleased(s)
	}
	q.mu.Unlock()
	r.sizes = sizes
}

// Mark durably stores data beside record seq; later Leases (also after a
// restart) return it in Record.Mark. Empty data removes the mark. It
// returns ErrNotFound when the record is gone.
func (q *Queue) Mark(ctx context.Context, seq uint64, data []byte) error {
	r := &request{kind: reqMark, seqs: []uint64{seq}, data: slices.Clone(data)}
	if err := q.wait(ctx, r); err != nil {
		return fmt.Errorf("queue: mark %d: %w", seq, err)
	}
	return nil
}

// DeadLetter atomically moves record seq (with its mark) out of the queue
// into the dead-letter store with reason, and counts it. The record
// stops being leased. It returns ErrNotFound when the record is gone.
func (q *Queue) DeadLetter(ctx context.Context, seq uint64, reason string) error {
	r := &request{kind: reqDeadLetter, seqs: []uint64{seq}, reason: reason}
	if err := q.wait(ctx, r); err != nil {
		return fmt.Errorf("queue: dead letter %d: %w", seq, err)
	}
	return nil
}

// DeadLetters calls fn for every stored dead letter in sequence order;
// an error from fn stops the iteration and is returned.
func (q *Queue) DeadLetters(fn func(DeadLetter) error) error {
	err := q.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixDeadLetter}, PrefetchValues: true, PrefetchSize: 16})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			v, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			dl := DeadLetter{Seq: binary.BigEndian.Uint64(item.Key()[1:])}
			if err := decodeDeadLetter(v, &dl); err != nil {
				return fmt.Errorf("seq %d: %w", dl.Seq, err)
			}
			if err := fn(dl); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("queue: dead letters: %w", err)
	}
	return nil
}

// newWrite validates and encodes w on the caller's goroutine.
func (q *Queue) newWrite(w Write) (*request, error) {
	r := &request{kind: reqWrite, state: slices.Clone(w.State)}
	if len(w.Messages) > 0 {
		now := time.Now()
		r.recs = make([][]byte, len(w.Messages))
		for i := range w.Messages {
			m := &w.Messages[i]
			if m.ReceivedAt.IsZero() {
				cp := *m
				cp.ReceivedAt = now
				m = &cp
			}
			b, err := EncodeRecord(make([]byte, 0, encodedSize(m)), m)
			if err != nil {
				return nil, err
			}
			r.recs[i] = b
			r.size += uint64(len(b))
		}
	}
	for i := range r.state {
		r.state[i].Value = slices.Clone(r.state[i].Value)
	}
	return r, nil
}

// wait submits r and waits for its result.
func (q *Queue) wait(ctx context.Context, r *request) error {
	if err := q.submit(r); err != nil {
		return err
	}
	select {
	case err := <-r.ch:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// submit hands rs to the committer together, so that they share
// commits, each with a channel for its result.
func (q *Queue) submit(rs ...*request) error {
	if q.opts.ReadOnly {
		return ErrReadOnly
	}
	for _, r := range rs {
		r.ch = make(chan error, 1)
	}
	q.pmu.Lock()
	for _, r := range rs {
		q.forget(r)
	}
	if q.closing {
		q.pmu.Unlock()
		return ErrClosed
	}
	q.pending = append(q.pending, rs...)
	q.pmu.Unlock()
	q.kick()
	return nil
}

// enqueue submits an asynchronous request. A request that already failed
// (or arrives while closing) still goes through the committer or the
// notifier so its callback keeps its place in order.
func (q *Queue) enqueue(r *request) {
	if q.opts.ReadOnly && r.err == nil {
		r.err = ErrReadOnly
	}
	q.pmu.Lock()
	q.forget(r)
	if q.closing && r.err == nil {
		r.err = ErrClosed
	}
	if !q.committerDone {
		q.pending = append(q.pending, r)
		q.pmu.Unlock()
		q.kick()
		return
	}
	q.pmu.Unlock()
	if r.done != nil {
		q.notes.push([]note{{r.done, r.err}})
	}
}

func (q *Queue) kick() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// notifier runs async callbacks in order on one goroutine.
type notifier struct {
	mu      sync.Mutex
	items   []note
	stopped bool
	wake    chan struct{}
	stop    chan struct{}
}

type note struct {
	fn  func(error)
	err error
}

func (n *notifier) push(ns []note) {
	if len(ns) == 0 {
		return
	}
	n.mu.Lock()
	if n.stopped {
		n.mu.Unlock()
		for _, x := range ns {
			x.fn(x.err)
		}
		return
	}
	n.items = append(n.items, ns...)
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

func (n *notifier) run(wg *sync.WaitGroup) {
	defer wg.Done()
	for {
		n.mu.Lock()
		items := n.items
		n.items = nil
		if len(items) == 0 {
			select {
			case <-n.stop:
				n.stopped = true
				n.mu.Unlock()
				return
			default:
			}
		}
		n.mu.Unlock()
		for _, x := range items {
			x.fn(x.err)
		}
		if len(items) == 0 {
			select {
			case <-n.wake:
			case <-n.stop:
			}
		}
	}
}
