package localbus

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// memStore is an in-memory Store for tests. By default every call completes
// at once, synchronously inside the call. Hold makes calls wait until
// Release; Latency makes a commit goroutine complete them in groups after a
// delay (group commit). Refuse makes Ingest fail.
type memStore struct {
	mu       sync.Mutex
	data     map[string][]byte
	ingested []*Message
	hold     bool
	pending  []func() // held calls, in call order
	refuse   error    // returned by Ingest when set
	saveErr  error    // returned by Save when set (nothing applied)
	ingests  int      // Ingest calls
	saves    int
	closed   bool // calls after this fail the test
	discard  bool // do not keep ingested messages (benchmarks)

	latency time.Duration
	work    chan func()
	t       testing.TB
}

func newMemStore(t testing.TB) *memStore {
	return &memStore{data: make(map[string][]byte), t: t}
}

// withLatency starts the commit goroutine: calls complete in batches, each
// batch after d.
func (s *memStore) withLatency(d time.Duration) *memStore {
	s.latency = d
	s.work = make(chan func(), 1<<16)
	go func() {
		for fn := range s.work {
			batch := []func(){fn}
		more:
			for {
				select {
				case fn, ok := <-s.work:
					if !ok {
						break more
					}
					batch = append(batch, fn)
				default:
					break more
				}
			}
			time.Sleep(d)
			for _, fn := range batch {
				fn()
			}
		}
	}()
	return s
}

func (s *memStore) apply(ops []StateOp) {
	for _, op := range ops {
		// The broker writes lb/ keys only; ext/ is what tests pass to
		// PublishWith as a caller's own state.
		if !strings.HasPrefix(op.Key, "lb/") && !strings.HasPrefix(op.Key, "ext/") {
			panic(fmt.Sprintf("key without lb/ prefix: %q", op.Key))
		}
		if op.Value == nil {
			delete(s.data, op.Key)
		} else {
			s.data[op.Key] = append([]byte(nil), op.Value...)
		}
	}
}

func (s *memStore) run(fn func()) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.t.Errorf("store call after Close")
		return
	}
	if s.hold {
		s.pending = append(s.pending, fn)
		s.mu.Unlock()
		return
	}
	if s.work != nil {
		s.mu.Unlock()
		s.work <- fn
		return
	}
	s.mu.Unlock()
	fn()
}

func (s *memStore) Ingest(m *Message, ops []StateOp, done func(error)) {
	s.mu.Lock()
	s.ingests++
	refuse := s.refuse
	s.mu.Unlock()
	cp := *m
	s.run(func() {
		s.mu.Lock()
		if refuse != nil {
			s.mu.Unlock()
			done(refuse)
			return
		}
		s.apply(ops)
		if !s.discard {
			s.ingested = append(s.ingested, &cp)
		}
		s.mu.Unlock()
		done(nil)
	})
}

func (s *memStore) Save(ops []StateOp, done func(error)) {
	s.mu.Lock()
	s.saves++
	saveErr := s.saveErr
	s.mu.Unlock()
	s.run(func() {
		if saveErr != nil {
			done(saveErr)
			return
		}
		s.mu.Lock()
		s.apply(ops)
		s.mu.Unlock()
		done(nil)
	})
}

func (s *memStore) setSaveErr(err error) {
	s.mu.Lock()
	s.saveErr = err
	s.mu.Unlock()
}

func (s *memStore) Load(prefix string, fn func(key string, value []byte) error) error {
	s.mu.Lock()
	keys := make([]string, 0, len(s.data))
	for k := range s.data {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	vals := make([][]byte, len(keys))
	for i, k := range keys {
		vals[i] = append([]byte(nil), s.data[k]...)
	}
	s.mu.Unlock()
	for i, k := range keys {
		if err := fn(k, vals[i]); err != nil {
			return err
		}
	}
	return nil
}

func (s *memStore) setHold(h bool) {
	s.mu.Lock()
	s.hold = h
	s.mu.Unlock()
}

func (s *memStore) setRefuse(err error) {
	s.mu.Lock()
	s.refuse = err
	s.mu.Unlock()
}

// release completes every held call, in call order.
func (s *memStore) release() {
	s.mu.Lock()
	p := s.pending
	s.pending = nil
	s.mu.Unlock()
	for _, fn := range p {
		fn()
	}
}

func (s *memStore) heldCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending)
}

func (s *memStore) ingestCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ingests
}

func (s *memStore) messages() []*Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*Message(nil), s.ingested...)
}

func (s *memStore) keys(prefix string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for k := range s.data {
		if strings.HasPrefix(k, prefix) {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// copyData returns a new store holding the same data, as after a restart.
func (s *memStore) reopen(t testing.TB) *memStore {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := newMemStore(t)
	for k, v := range s.data {
		n.data[k] = v
	}
	return n
}

func (s *memStore) markClosed() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
}
