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

// TestLossLoggedOnce: an unplugged port is logged once when lost and once
// when back, however many reopen attempts fail in between.
func TestLossLoggedOnce(t *testing.T) {
	pty := startPTY(t, t.TempDir(), "dev")
	a, logs := newLoggedAdapter(t, PortConfig{Device: pty.Dev}, newMemBus())
	runAdapter(t, a)
	waitConnected(t, a)
	pty.unplug()
	testenv.WaitFor(t, waitLong, "ten failed reopens", func() bool { return a.Stats().OpenFailures >= 10 })
	pty.replug()
	waitConnected(t, a)
	if lost, retry, back := logs.count("serial port lost, reopening"), logs.count("serial port not available, retrying"),
		logs.count("serial port open again"); lost != 1 || retry > 1 || back != 1 {
		t.Fatalf("logged lost %d, retrying %d, open again %d times over %d failed reopens; want 1, at most 1, 1",
			lost, retry, back, a.Stats().OpenFailures)
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
