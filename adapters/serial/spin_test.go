package serial

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goserial "go.bug.st/serial"

	"holdfast/internal/testenv"
)

// The "never spin" rules of Run, shown with ports no pseudo-terminal can
// imitate: one that opens and fails at once, one whose reads return nothing
// without waiting. The fake ports sit behind Adapter.openPort; the waits the
// reopen backoff asks for are recorded through Adapter.wait (and really
// slept), so what is checked is the protocol, not the machine's speed.

// fakePort is a serial.Port whose Read is given by the test.
type fakePort struct {
	opened  time.Time
	read    func(p *fakePort, b []byte) (int, error)
	reads   atomic.Int64
	timeout atomic.Int64 // the read timeout set by the adapter
	closed  chan struct{}
	once    sync.Once
}

func newFakePort(read func(p *fakePort, b []byte) (int, error)) *fakePort {
	return &fakePort{opened: time.Now(), read: read, closed: make(chan struct{})}
}

func (p *fakePort) Read(b []byte) (int, error) {
	p.reads.Add(1)
	select {
	case <-p.closed:
		return 0, errors.New("fake port closed")
	default:
	}
	return p.read(p, b)
}
func (p *fakePort) Write(b []byte) (int, error)          { return len(b), nil }
func (p *fakePort) SetMode(*goserial.Mode) error         { return nil }
func (p *fakePort) Drain() error                         { return nil }
func (p *fakePort) ResetInputBuffer() error              { return nil }
func (p *fakePort) ResetOutputBuffer() error             { return nil }
func (p *fakePort) SetDTR(bool) error                    { return nil }
func (p *fakePort) SetRTS(bool) error                    { return nil }
func (p *fakePort) Break(time.Duration) error            { return nil }
func (p *fakePort) SetReadTimeout(d time.Duration) error { p.timeout.Store(int64(d)); return nil }
func (p *fakePort) GetModemStatusBits() (*goserial.ModemStatusBits, error) {
	return &goserial.ModemStatusBits{}, nil
}
func (p *fakePort) Close() error { p.once.Do(func() { close(p.closed) }); return nil }

// quietRead waits for the read timeout (or Close) and returns (0, nil), as
// a real port does on a quiet line.
func quietRead(p *fakePort, _ []byte) (int, error) {
	select {
	case <-p.closed:
		return 0, errors.New("fake port closed")
	case <-time.After(time.Duration(p.timeout.Load())):
		return 0, nil
	}
}

// portClosedErr is the error go.bug.st/serial returns from Read on a port
// that is gone: a real one, from a pty port closed under a Read.
func portClosedErr(t *testing.T) error {
	t.Helper()
	pty := startPTY(t, t.TempDir(), "dev")
	p, err := goserial.Open(pty.Dev, &goserial.Mode{BaudRate: 9600})
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
	_, err = p.Read(make([]byte, 1))
	var pe *goserial.PortError
	if !errors.As(err, &pe) || pe.Code() != goserial.PortClosed {
		t.Fatalf("Read after Close = %v, want PortClosed", err)
	}
	return err
}

// spinRig runs an adapter on fake ports and records its opens and waits.
type spinRig struct {
	a       *Adapter
	initial time.Duration
	max     time.Duration

	mu    sync.Mutex
	ports []*fakePort
	waits []time.Duration
	start time.Time
}

// newSpinRig builds an adapter whose n-th open (from 0) returns the port
// made by next(n).
func newSpinRig(t *testing.T, next func(n int) *fakePort) *spinRig {
	r := &spinRig{initial: 10 * time.Millisecond, max: 160 * time.Millisecond}
	r.a = newTestAdapter(t, PortConfig{Device: "/dev/fake", Reopen: Reopen{Initial: r.initial, Max: r.max}}, newMemBus())
	r.a.openPort = func(string, *goserial.Mode) (goserial.Port, error) {
		r.mu.Lock()
		defer r.mu.Unlock()
		p := next(len(r.ports))
		r.ports = append(r.ports, p)
		return p, nil
	}
	r.a.wait = func(ctx context.Context, d time.Duration) bool {
		r.mu.Lock()
		r.waits = append(r.waits, d)
		r.mu.Unlock()
		return sleep(ctx, d)
	}
	r.start = time.Now()
	runAdapter(t, r.a)
	return r
}

func (r *spinRig) opens() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.ports)
}

// step is the backoff's current interval before the k-th wait (from 0)
// when it was never reset: initial doubling up to max. Each wait is within
// 20% of it.
func (r *spinRig) step(k int) time.Duration {
	d := r.initial
	for ; k > 0 && d < r.max; k-- {
		d *= 2
	}
	return min(d, r.max)
}

// maxOpens is the most opens the backoff allows in elapsed: the first at
// once, then one after each wait, each at least 80% of its step.
func (r *spinRig) maxOpens(elapsed time.Duration) int {
	n := 1
	for sum := time.Duration(0); ; n++ {
		sum += r.step(n-1) * 8 / 10
		if sum > elapsed {
			return n
		}
	}
}

// checkGrowing checks that the first n waits followed the backoff without
// a reset, and that the opens counted over the run fit in its pace.
func (r *spinRig) checkGrowing(t *testing.T, n int) {
	t.Helper()
	elapsed := time.Since(r.start)
	r.mu.Lock()
	defer r.mu.Unlock()
	for k := 0; k < n && k < len(r.waits); k++ {
		if low := r.step(k) * 8 / 10; r.waits[k] < low-time.Microsecond {
			t.Errorf("wait %d = %v, want at least %v: the backoff was reset after a session that did not last (waits %v)", k, r.waits[k], low, r.waits)
		}
	}
	if bound := r.maxOpens(elapsed); len(r.ports) > bound {
		t.Errorf("%d opens in %v, the backoff allows at most %d: spinning (waits %v)", len(r.ports), elapsed, bound, r.waits)
	}
}

// TestRunPortFailingAtOnceBacksOff: a port that opens and is lost at once
// (the first Read says the port is closed) is reopened at the backoff's
// growing pace: the backoff is not reset, since the port never stayed open.
func TestRunPortFailingAtOnceBacksOff(t *testing.T) {
	closed := portClosedErr(t)
	r := newSpinRig(t, func(int) *fakePort {
		return newFakePort(func(*fakePort, []byte) (int, error) { return 0, closed })
	})
	const n = 10
	testenv.WaitFor(t, waitLong, "10 opens", func() bool { return r.opens() >= n })
	r.checkGrowing(t, n-1)
	if s := r.a.Stats(); s.Disconnects < n-1 || s.Reconnects < n-1 || s.OpenFailures != 0 {
		t.Errorf("after %d opens: %+v, want a disconnect and a reconnect each and no open failures", r.opens(), s)
	}
}

// TestRunReadReturningNothingAtOnceIsLost: a port whose reads return
// (0, nil) without waiting for the read timeout is treated as lost after
// 101 such reads, and reopened at the backoff's pace: neither the read loop
// nor the reopen loop spins.
func TestRunReadReturningNothingAtOnceIsLost(t *testing.T) {
	r := newSpinRig(t, func(int) *fakePort {
		return newFakePort(func(*fakePort, []byte) (int, error) { return 0, nil })
	})
	const n = 6
	testenv.WaitFor(t, waitLong, "6 opens", func() bool { return r.opens() >= n })
	r.checkGrowing(t, n-1)
	r.mu.Lock()
	for i, p := range r.ports[:n-1] { // every session but the last has ended
		if got := p.reads.Load(); got != 101 {
			t.Errorf("session %d: %d reads before it was given up, want 101", i, got)
		}
	}
	r.mu.Unlock()
	if s := r.a.Stats(); s.Disconnects < n-1 {
		t.Errorf("disconnects = %d after %d sessions", s.Disconnects, n)
	}
}

// TestRunBackoffResetOnlyAfterStable: the wait before a reopen starts from
// reopen.initial again only after a session that lasted reopen.max (the
// stable time); after the short sessions around it, it keeps growing.
func TestRunBackoffResetOnlyAfterStable(t *testing.T) {
	closed := portClosedErr(t)
	const stableSession = 4 // sessions 0-3 and 5 fail at once
	var rig *spinRig
	rig = newSpinRig(t, func(n int) *fakePort {
		if n != stableSession {
			return newFakePort(func(*fakePort, []byte) (int, error) { return 0, closed })
		}
		// Quiet reads, then lost once it has been open longer than the
		// stable time (reopen.max).
		return newFakePort(func(p *fakePort, b []byte) (int, error) {
			if time.Since(p.opened) > rig.max+20*time.Millisecond {
				return 0, closed
			}
			return quietRead(p, b)
		})
	})
	testenv.WaitFor(t, waitLong, "7 opens", func() bool { return rig.opens() >= 7 })
	rig.mu.Lock()
	defer rig.mu.Unlock()
	w := rig.waits
	for k := 0; k < stableSession; k++ {
		if low := rig.step(k) * 8 / 10; w[k] < low-time.Microsecond {
			t.Errorf("wait %d = %v, want at least %v (waits %v)", k, w[k], low, w)
		}
	}
	// After the stable session: initial again (within the 20% jitter), then
	// doubling from there.
	if high := rig.initial * 12 / 10; w[stableSession] > high+time.Microsecond {
		t.Errorf("wait after the stable session = %v, want at most %v: no reset (waits %v)", w[stableSession], high, w)
	}
	if low := 2 * rig.initial * 8 / 10; w[stableSession+1] < low-time.Microsecond {
		t.Errorf("wait after the next short session = %v, want at least %v (waits %v)", w[stableSession+1], low, w)
	}
}
