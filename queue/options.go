package queue

import (
	"fmt"
	"log/slog"
	"math"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
)

// Policy says what the queue does when MaxMessages or MaxBytes is reached.
type Policy int

const (
	// RejectNew refuses the new messages with ErrFull; nothing stored is
	// touched. Right for messages that must not be lost: the device keeps
	// them (MQTT 5 reason code 0x97, or a 3.1.1 connection closed unacked).
	RejectNew Policy = iota
	// DropOldest evicts records from the head until the new ones fit, and
	// counts them. Right for telemetry where fresh data matters most. An
	// evicted record that was leased stays with its consumer; its later
	// Ack is a harmless no-op.
	DropOldest
)

// String returns the policy's configuration name.
func (p Policy) String() string {
	switch p {
	case RejectNew:
		return "reject_new"
	case DropOldest:
		return "drop_oldest"
	}
	return fmt.Sprintf("Policy(%d)", int(p))
}

// ParsePolicy turns a configuration name ("reject_new", "drop_oldest")
// into a Policy.
func ParsePolicy(s string) (Policy, error) {
	switch s {
	case "reject_new":
		return RejectNew, nil
	case "drop_oldest":
		return DropOldest, nil
	}
	return 0, fmt.Errorf("queue: policy %q: want reject_new or drop_oldest", s)
}

// Defaults of Options. The Badger sizes form the low-memory profile
// described in docs/queue.md.
const (
	DefaultCommitWait        = 0
	DefaultDiskCheckInterval = 100 * time.Millisecond
	DefaultGCInterval        = 5 * time.Minute
	DefaultGCAfterDrainBytes = 16 << 20
	DefaultMemTableSize      = 4 << 20
	DefaultNumMemtables      = 2
	DefaultBaseTableSize     = 1 << 20
	DefaultValueLogFileSize  = 32 << 20
	DefaultValueThreshold    = 64
	DefaultBlockCacheSize    = 4 << 20
	DefaultIndexCacheSize    = 4 << 20
	// DefaultMinDiskReserve is the floor of the computed disk reserve.
	DefaultMinDiskReserve = 64 << 20
)

// Options configures a Queue. Only Dir is required; every other field has
// a default applied by Open when it is zero.
type Options struct {
	// Required.

	// Dir is the data directory (created if missing, unless NoCreate).
	// One Queue per Dir.
	Dir string
	// ReadOnly opens an existing queue (ErrNoQueue otherwise) for
	// Scan, Stats, GetState, ScanState and DeadLetters only, leaving its
	// files exactly as they are (Badger read-only, no maintenance, no Go
	// memory limit): for tools that must not change a queue, or create
	// files in it owned by another user. Writes, acks and leases fail
	// with ErrReadOnly. A queue that was not closed cleanly fails to open
	// with ErrNeedsRecovery.
	ReadOnly bool
	// NoCreate makes Open fail with ErrNoQueue when Dir holds no queue,
	// instead of creating an empty one there: for tools that inspect an
	// existing queue, where a mistyped directory must not look like an
	// empty queue.
	NoCreate bool

	// Usually modified.

	// MaxMessages caps the number of stored records; 0 means no cap.
	MaxMessages int64
	// MaxBytes caps the sum of encoded record sizes; 0 means no cap.
	MaxBytes int64
	// Policy applies when MaxMessages or MaxBytes is reached.
	// Default RejectNew.
	Policy Policy
	// TTL drops records older than this (by receive time) at the head,
	// whether or not they carry an MQTT expiry; 0 disables it.
	TTL time.Duration
	// DiskReserve is the free space (bytes) below which writes carrying
	// messages are refused with ErrDiskFull. 0 means the computed default:
	// the larger of DefaultMinDiskReserve and what Badger may allocate at
	// once (two value-log files, all memtable WAL files, a round of
	// compaction output). Set it below that only on a dedicated
	// filesystem you can afford to lose to SIGBUS.
	DiskReserve int64

	// Fine tuning.

	// CommitWait is the longest a commit waits to gather more writes
	// after the first one arrives. 0 (default) commits whatever is pending
	// at once: concurrent writers still share a commit because they queue
	// up while the previous sync runs. A small value (1ms) trades latency
	// for fewer, larger syncs under light concurrency.
	CommitWait time.Duration
	// DiskCheckInterval is how often free space is measured (statfs);
	// default 100ms. Checks happen on the commit path, at most this often.
	DiskCheckInterval time.Duration
	// GCInterval is how often value-log GC runs in the background;
	// default 5 minutes; negative disables the periodic run.
	GCInterval time.Duration
	// GCAfterDrainBytes: when the queue, after holding at least this many
	// bytes, falls to a quarter of that peak (and again each time what is
	// left falls to a quarter, until it is empty or under 1/16 of this),
	// the drained records' keys are dropped from the LSM tree and
	// value-log GC runs at once, so the directory shrinks even while new
	// messages keep arriving. The same amount of records acked at the
	// head (in order, as an uplink acks) has their keys dropped, since
	// such acks only move the head and leave the keys behind. Default
	// 16 MiB; negative disables it, and acks then write a delete marker
	// per record instead.
	GCAfterDrainBytes int64
	// MemTableSize is Badger's memtable size; NumMemtables of them live
	// in RAM. Default 4 MiB. Larger: fewer L0 flushes, more RAM.
	MemTableSize int64
	// NumMemtables is how many memtables Badger keeps (active plus
	// waiting to flush). Default 2.
	NumMemtables int
	// BaseTableSize is the size of Badger's tables (every level). Default
	// 1 MiB. Badger builds each table in memory, and a compaction keeps up
	// to a dozen builders in flight, so this bounds the heap a compaction
	// takes; larger means fewer tables and files.
	BaseTableSize int64
	// ValueLogFileSize is the size of one value-log file. Default 32 MiB.
	ValueLogFileSize int64
	// ValueThreshold: encoded records below this size live inside the LSM
	// tree, larger ones in the value log, with only their key and a
	// pointer in the LSM tree. Default 64 bytes, so nearly every record
	// is in the value log: Badger's flushes and compactions then handle
	// keys only, which keeps their buffers small while a backlog is
	// written (records in the LSM tree made a process filling 1,000,000
	// messages peak at ~550 MiB of heap). Value-log space comes back
	// through value-log GC. Capped at 15% of MemTableSize.
	ValueThreshold int64
	// BlockCacheSize is Badger's block cache (bytes). Default 4 MiB.
	BlockCacheSize int64
	// IndexCacheSize bounds the memory for table indexes and bloom
	// filters (bytes). Default 4 MiB; without a bound they grow with the
	// backlog.
	IndexCacheSize int64
	// Logger receives Badger's warnings and errors and the queue's own
	// state changes. Default slog.Default().
	Logger *slog.Logger
}

func (o *Options) setDefaults() {
	if o.DiskCheckInterval <= 0 {
		o.DiskCheckInterval = DefaultDiskCheckInterval
	}
	if o.GCInterval == 0 {
		o.GCInterval = DefaultGCInterval
	}
	if o.GCAfterDrainBytes == 0 {
		o.GCAfterDrainBytes = DefaultGCAfterDrainBytes
	}
	if o.MemTableSize <= 0 {
		o.MemTableSize = DefaultMemTableSize
	}
	if o.NumMemtables <= 0 {
		o.NumMemtables = DefaultNumMemtables
	}
	if o.BaseTableSize <= 0 {
		o.BaseTableSize = DefaultBaseTableSize
	}
	if o.ValueLogFileSize <= 0 {
		o.ValueLogFileSize = DefaultValueLogFileSize
	}
	if o.ValueThreshold <= 0 {
		o.ValueThreshold = DefaultValueThreshold
	}
	// Badger requires the threshold below its largest transaction.
	o.ValueThreshold = min(o.ValueThreshold, o.MemTableSize*15/100-1024)
	if o.BlockCacheSize <= 0 {
		o.BlockCacheSize = DefaultBlockCacheSize
	}
	if o.IndexCacheSize <= 0 {
		o.IndexCacheSize = DefaultIndexCacheSize
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.DiskReserve <= 0 {
		o.DiskReserve = max(int64(DefaultMinDiskReserve), o.badgerBurst())
	}
}

// memoryLimit is the soft limit on the Go runtime's memory that Open sets
// when the process has none. Badger builds memtables and tables in Go
// heap memory and drops them at every flush and compaction; without a
// limit the garbage collector lets the heap grow to twice what is live
// (4-5 times while a backlog is written as fast as possible). The limit
// makes the collector run earlier instead; it is soft: a process that
// really holds more keeps working, with more frequent collections.
const memoryLimit = 64 << 20

// applyMemoryLimit sets memoryLimit unless the program chose a limit
// itself (GOMEMLIMIT in the environment, "off" included, or an earlier
// debug.SetMemoryLimit).
func applyMemoryLimit(l *slog.Logger) {
	if _, set := os.LookupEnv("GOMEMLIMIT"); set {
		return
	}
	if debug.SetMemoryLimit(-1) != math.MaxInt64 {
		return
	}
	debug.SetMemoryLimit(memoryLimit)
	l.Info("queue: Go memory limit set", "bytes", memoryLimit)
}

// badgerBurst estimates the disk Badger may claim at once: a new value-log
// file (preallocated at twice its size and memory-mapped), the memtable
// WAL files (mapped at twice the memtable size each) and the output of a
// compaction round.
func (o *Options) badgerBurst() int64 {
	return 2*o.ValueLogFileSize + int64(o.NumMemtables+1)*2*o.MemTableSize + 10*o.BaseTableSize
}

func (o *Options) badgerOptions(f *failure) badger.Options {
	bo := badger.DefaultOptions(o.Dir)
	bo.ReadOnly = o.ReadOnly
	// Tables are built in memory before they are written; keep them all
	// at BaseTableSize instead of doubling per level (64 MiB at L6).
	bo.TableSizeMultiplier = 1
	return bo.
		WithSyncWrites(true).
		WithDetectConflicts(false).
		WithMetricsEnabled(false).
		WithNumVersionsToKeep(1).
		WithMemTableSize(o.MemTableSize).
		WithNumMemtables(o.NumMemtables).
		WithNumLevelZeroTables(2).
		WithNumLevelZeroTablesStall(8).
		WithBaseTableSize(o.BaseTableSize).
		WithBaseLevelSize(4 * o.BaseTableSize).
		WithValueLogFileSize(o.ValueLogFileSize).
		WithValueThreshold(o.ValueThreshold).
		WithBlockCacheSize(o.BlockCacheSize).
		WithIndexCacheSize(o.IndexCacheSize).
		WithNumCompactors(2).
		WithCompression(options.None).
		WithNumGoroutines(1).
		WithCompactL0OnClose(false).
		WithLogger(slogBadger{o.Logger, f})
}

// slogBadger routes Badger's log to slog at warning level and above. A
// logged sync failure fails the queue: under SyncWrites Badger logs a
// failed value-log sync instead of returning it, so a commit would
// otherwise report records as durable that are not.
type slogBadger struct {
	l *slog.Logger
	f *failure
}

func (s slogBadger) Errorf(f string, a ...any) {
	msg := strings.TrimSpace(fmt.Sprintf(f, a...))
	s.l.Error(msg, "component", "badger")
	if s.f != nil && strings.Contains(strings.ToLower(msg), "sync") {
		s.f.set(fmt.Errorf("badger: %s", msg))
	}
}

func (s slogBadger) Warningf(f string, a ...any) {
	s.l.Warn(fmt.Sprintf(f, a...), "component", "badger")
}

func (s slogBadger) Infof(string, ...any) {}

func (s slogBadger) Debugf(string, ...any) {}
