package serial

// Test helpers others may copy: a socat pseudo-terminal pair that stands in
// for a sensor on a serial port, and an in-memory Bus.

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	goserial "go.bug.st/serial"

	"holdfast/internal/testenv"
	"holdfast/internal/topic"
)

// waitLong is the generous deadline for conditions in these tests (they
// run with -race on 2 cores).
const waitLong = 20 * time.Second

// ptyPair is a socat pseudo-terminal pair: the adapter opens Dev exactly as
// it would open /dev/ttyUSB0, the test plays the sensor on Sensor.
type ptyPair struct {
	t      testing.TB
	socat  string
	Dev    string // the port's end, e.g. $DIR/dev
	Sensor string // the sensor's end
	cmd    *exec.Cmd
	done   chan struct{}
	sensor *os.File
}

// startPTY starts socat with links dir/devName and dir/devName.sensor and
// waits for both to exist. It is killed by t.Cleanup.
func startPTY(t testing.TB, dir, devName string) *ptyPair {
	t.Helper()
	p := &ptyPair{
		t:      t,
		socat:  testenv.LookTool(t, "socat", "socat"),
		Dev:    filepath.Join(dir, devName),
		Sensor: filepath.Join(dir, devName+".sensor"),
	}
	p.start()
	t.Cleanup(p.stop)
	return p
}

func (p *ptyPair) start() {
	p.t.Helper()
	p.cmd = exec.Command(p.socat, "-d", "-d",
		"pty,raw,echo=0,link="+p.Dev,
		"pty,raw,echo=0,link="+p.Sensor)
	p.cmd.Stderr = nil
	if err := p.cmd.Start(); err != nil {
		p.t.Fatalf("start socat: %v", err)
	}
	p.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { cmd.Wait(); close(done) }(p.cmd, p.done)
	testenv.WaitFor(p.t, waitLong, "socat's pty links", func() bool {
		_, e1 := os.Stat(p.Dev)
		_, e2 := os.Stat(p.Sensor)
		return e1 == nil && e2 == nil
	})
	f, err := os.OpenFile(p.Sensor, os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		p.t.Fatalf("open sensor end: %v", err)
	}
	p.sensor = f
}

// unplug kills socat with SIGKILL, as abrupt as pulling a USB adapter. The
// links go first, as the device node of an unplugged adapter does: a link
// left dangling would point at a pts number the system may hand to another
// process's pseudo-terminal.
func (p *ptyPair) unplug() {
	p.t.Helper()
	if p.cmd == nil {
		return
	}
	os.Remove(p.Dev)
	os.Remove(p.Sensor)
	p.cmd.Process.Kill()
	<-p.done
	p.sensor.Close()
	p.cmd, p.sensor = nil, nil
}

// replug starts socat again under the same link names.
func (p *ptyPair) replug() { p.t.Helper(); p.start() }

func (p *ptyPair) stop() {
	if p.cmd != nil {
		p.unplug()
	}
	os.Remove(p.Dev)
	os.Remove(p.Sensor)
}

// write sends bytes as the sensor.
func (p *ptyPair) write(b []byte) {
	p.t.Helper()
	for len(b) > 0 {
		n, err := p.sensor.Write(b)
		if err != nil {
			p.t.Fatalf("sensor write: %v", err)
		}
		b = b[n:]
	}
}

// readN reads exactly n bytes the port wrote to the sensor, or fails the
// test after waitLong.
func (p *ptyPair) readN(n int) []byte {
	p.t.Helper()
	p.sensor.SetReadDeadline(time.Now().Add(waitLong))
	buf := make([]byte, n)
	got := 0
	for got < n {
		m, err := p.sensor.Read(buf[got:])
		if err != nil {
			p.t.Fatalf("sensor read after %d of %d bytes (%q): %v", got, n, buf[:got], err)
		}
		got += m
	}
	return buf
}

// memBus is an in-memory Bus: it records what is published and hands
// injected messages to matching subscribers.
type memBus struct {
	mu     sync.Mutex
	msgs   []Message
	subs   map[int]memSub
	nextID int
	refuse error // returned by Publish when set
}

type memSub struct {
	filter string
	fn     func(string, []byte)
}

func newMemBus() *memBus { return &memBus{subs: map[int]memSub{}} }

func (b *memBus) Publish(ctx context.Context, m Message) error {
	if err := topic.ValidName(m.Topic); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.refuse != nil {
		return b.refuse
	}
	m.Payload = append([]byte(nil), m.Payload...)
	b.msgs = append(b.msgs, m)
	return nil
}

func (b *memBus) Subscribe(filter string, fn func(string, []byte)) (func(), error) {
	if err := topic.ValidFilter(filter); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	id := b.nextID
	b.nextID++
	b.subs[id] = memSub{filter, fn}
	return func() {
		b.mu.Lock()
		delete(b.subs, id)
		b.mu.Unlock()
	}, nil
}

// inject delivers a message as if a local client had published it.
func (b *memBus) inject(name string, payload []byte) int {
	b.mu.Lock()
	var fns []func(string, []byte)
	for _, s := range b.subs {
		if topic.Match(s.filter, name) {
			fns = append(fns, s.fn)
		}
	}
	b.mu.Unlock()
	for _, fn := range fns {
		fn(name, payload)
	}
	return len(fns)
}

func (b *memBus) messages() []Message {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]Message(nil), b.msgs...)
}

func (b *memBus) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.msgs)
}

func (b *memBus) subscribers() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.subs)
}

// waitMessages waits until at least n messages were published and returns them.
func (b *memBus) waitMessages(t testing.TB, n int) []Message {
	t.Helper()
	testenv.WaitFor(t, waitLong, "published messages", func() bool { return b.count() >= n })
	return b.messages()
}

// untilSentinel writes frame as the sensor on pty, waits for the message it
// becomes (the first for which isSentinel is true) and returns the messages
// published before it. The adapter handles the byte stream in order, so by
// then every frame written before the sentinel has been handled: a message
// that would arrive late is among those returned, and none follows.
func (b *memBus) untilSentinel(t testing.TB, pty *ptyPair, frame []byte, isSentinel func(Message) bool) []Message {
	t.Helper()
	pty.write(frame)
	var before []Message
	testenv.WaitFor(t, waitLong, "the sentinel frame", func() bool {
		msgs := b.messages()
		for i, m := range msgs {
			if isSentinel(m) {
				before = msgs[:i]
				return true
			}
		}
		return false
	})
	if all := b.messages(); len(all) != len(before)+1 {
		t.Fatalf("%d messages after the sentinel: %+v", len(all)-len(before)-1, all[len(before)+1:])
	}
	return before
}

// payloadIs matches a message by its payload.
func payloadIs(p string) func(Message) bool {
	return func(m Message) bool { return string(m.Payload) == p }
}

// runAdapter starts a.Run and stops it at cleanup, checking it returned nil.
func runAdapter(t testing.TB, a *Adapter) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- a.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-errc:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(waitLong):
				t.Errorf("Run did not return after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// newTestAdapter builds an adapter on dev with fast reopen, logging to the test.
func newTestAdapter(t testing.TB, cfg PortConfig, bus Bus) *Adapter {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "sensor"
	}
	if cfg.Reopen.Initial == 0 {
		cfg.Reopen = Reopen{Initial: 50 * time.Millisecond, Max: 400 * time.Millisecond}
	}
	a, err := New(cfg, bus, slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return a
}

// ptyAdapter starts a socat pty pair, and an adapter on its port end with
// cfg (Device set to it) publishing to a new memBus; it returns once the
// port is open.
func ptyAdapter(t testing.TB, cfg PortConfig) (*ptyPair, *memBus, *Adapter) {
	t.Helper()
	pty := startPTY(t, t.TempDir(), "dev")
	cfg.Device = pty.Dev
	bus := newMemBus()
	a := newTestAdapter(t, cfg, bus)
	runAdapter(t, a)
	waitConnected(t, a)
	return pty, bus, a
}

func waitConnected(t testing.TB, a *Adapter) {
	t.Helper()
	testenv.WaitFor(t, waitLong, "port open", func() bool { return a.Stats().Connected })
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(b[:len(b)-1]))
	return len(b), nil
}

var errRefused = errors.New("refused by test bus")

func serialOpenWithModemBits(dev string) (interface{ Close() error }, error) {
	return goserial.Open(dev, &goserial.Mode{BaudRate: 9600, InitialStatusBits: &goserial.ModemOutputBits{DTR: true, RTS: true}})
}
