package serial

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"holdfast/internal/testenv"
)

// logCounter is a slog handler that counts records by message.
type logCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (h *logCounter) Enabled(context.Context, slog.Level) bool { return true }
func (h *logCounter) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.n[r.Message]++
	h.mu.Unlock()
	return nil
}
func (h *logCounter) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *logCounter) WithGroup(string) slog.Handler      { return h }

func (h *logCounter) count(msg string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n[msg]
}

func newLoggedAdapter(t *testing.T, cfg PortConfig, bus Bus) (*Adapter, *logCounter) {
	t.Helper()
	logs := &logCounter{n: make(map[string]int)}
	cfg.Name = "sensor"
	cfg.Reopen = Reopen{Initial: 20 * time.Millisecond, Max: 100 * time.Millisecond}
	a, err := New(cfg, bus, slog.New(logs))
	if err != nil {
		t.Fatal(err)
	}
	return a, logs
}

// TestLossLoggedOnce: an unplugged port is logged once at warning level
// when lost and once when back, however many reopen attempts fail in
// between; each failed attempt is one debug line.
func TestLossLoggedOnce(t *testing.T) {
	pty := startPTY(t, t.TempDir(), "dev")
	a, logs := newLoggedAdapter(t, PortConfig{Device: pty.Dev}, newMemBus())
	runAdapter(t, a)
	waitConnected(t, a)
	pty.unplug()
	testenv.WaitFor(t, waitLong, "ten failed reopens", func() bool { return a.Stats().OpenFailures >= 10 })
	pty.replug()
	waitConnected(t, a)
	s := a.Stats() // settled: no attempt fails while the port is open
	checkLogs(t, logs, map[string]int{
		"serial port open":                    1,
		"serial port lost, reopening":         1,
		"serial port not available, retrying": 0, // that is for a port missing at start
		"serial port still not available":     int(s.OpenFailures),
		"serial port open again":              1,
	})
	if s.Disconnects != 1 || s.Reconnects != 1 {
		t.Errorf("stats %+v, want one disconnect and one reconnect", s)
	}
}

// TestMissingAtStartLoggedOnce: a port missing when Run starts is logged
// once as not available and once when it appears; it counts open failures,
// not a disconnect, and its first open is not a reconnect.
func TestMissingAtStartLoggedOnce(t *testing.T) {
	pty := startPTY(t, t.TempDir(), "dev")
	pty.unplug()
	a, logs := newLoggedAdapter(t, PortConfig{Device: pty.Dev}, newMemBus())
	runAdapter(t, a)
	testenv.WaitFor(t, waitLong, "five failed opens", func() bool { return a.Stats().OpenFailures >= 5 })
	pty.replug()
	waitConnected(t, a)
	s := a.Stats()
	checkLogs(t, logs, map[string]int{
		"serial port not available, retrying": 1,
		"serial port still not available":     int(s.OpenFailures) - 1,
		"serial port open again":              1,
		"serial port open":                    0,
		"serial port lost, reopening":         0,
	})
	if s.Disconnects != 0 || s.Reconnects != 0 {
		t.Errorf("stats %+v, want no disconnect and no reconnect", s)
	}
}

func checkLogs(t *testing.T, logs *logCounter, want map[string]int) {
	t.Helper()
	for msg, n := range want {
		if got := logs.count(msg); got != n {
			t.Errorf("logged %q %d times, want %d", msg, got, n)
		}
	}
}

// TestParseErrorsLogRateLimited: a burst of frames that fail to parse is
// counted frame by frame and logged once per log interval.
func TestParseErrorsLogRateLimited(t *testing.T) {
	pty := startPTY(t, t.TempDir(), "dev")
	a, logs := newLoggedAdapter(t, PortConfig{
		Device:  pty.Dev,
		Payload: Payload{Parse: ParseRegex, Regex: `^T=(?P<temp>[0-9.]+)$`},
	}, newMemBus())
	runAdapter(t, a)
	waitConnected(t, a)
	for i := range 50 {
		pty.write(fmt.Appendf(nil, "bad line %d\n", i))
	}
	testenv.WaitFor(t, waitLong, "50 parse errors counted", func() bool { return a.Stats().ParseErrors == 50 })
	if n := logs.count("serial frame failed to parse"); n != 1 {
		t.Fatalf("50 parse errors logged %d times within %v, want once", n, logEvery)
	}
}
