// Package serial reads sensors on serial ports (RS-232, RS-485, USB serial
// adapters) and publishes what they say as messages, so that the same
// forward rules, queue and guarantees apply to them as to MQTT devices.
//
// One Adapter runs one port, described by a PortConfig: where the port is
// (a device path, or a USB vendor/product/serial-number match resolved again
// on every open), its line settings, how its byte stream is cut into frames
// (lines, fixed-length frames, frames ended by silence, frames between start
// and end markers), and what a frame becomes (raw bytes, text, hex, base64,
// or JSON parsed by a regular expression, as CSV or as an NMEA 0183
// sentence). Frames are published on the Bus under a topic template;
// messages on the write-back topic are written to the port; a poll request
// can be sent at an interval.
//
// The adapter survives its device: when the port disappears (a USB adapter
// unplugged) it logs that once, counts it, and reopens with exponential
// backoff that never gives up, until Run's context is done. Garbage on the
// line, overlong frames and frames that fail to parse are counted (see
// Stats) and never stop the adapter.
//
// Modem-status lines (CTS, DSR, RI, DCD) and the DTR/RTS outputs are left as
// the driver sets them: the adapter neither reads nor drives them, which also
// lets it run on pseudo-terminals, where those ioctls fail.
package serial

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"go.bug.st/serial"

	"holdfast/internal/topic"
)

// Message is one message the adapter publishes.
type Message struct {
	// Topic is a valid MQTT topic name (no wildcards).
	Topic string
	// Payload belongs to the Bus once Publish is called.
	Payload []byte
	// QoS is 0, 1 or 2, from the port's qos.
	QoS byte
	// Retain is the port's retain.
	Retain bool
}

// Bus is where frames go and where write-back commands come from; the agent
// implements it on the local broker.
type Bus interface {
	// Publish returns when the message is accepted: stored, if it is to be
	// forwarded. The adapter does not retry a refused message: it counts it
	// (Stats.PublishErrors) and drops it, since a serial sensor cannot be
	// asked to send again.
	Publish(ctx context.Context, m Message) error
	// Subscribe calls fn for every message published to a topic matching
	// filter until unsubscribe is called. fn must not block for long; the
	// adapter only queues the payload.
	Subscribe(filter string, fn func(topic string, payload []byte)) (unsubscribe func(), err error)
}

// Stats are an adapter's counters since New. All counters only grow.
type Stats struct {
	// Device is the path of the port open now, or last open.
	Device string
	// Connected reports whether the port is open now.
	Connected bool
	// Frames published (including frames published to on_error.topic).
	Frames uint64
	// Bytes read from the port.
	Bytes uint64
	// ParseErrors counts frames that failed to parse (or lacked a field
	// the topic needs).
	ParseErrors uint64
	// Overlong counts frames longer than framing.max_length, skipped.
	Overlong uint64
	// Garbage counts bytes outside any frame (delimited framing), dropped.
	Garbage uint64
	// PublishErrors counts frames the Bus refused, dropped.
	PublishErrors uint64
	// Disconnects counts losses of an open port.
	Disconnects uint64
	// Reconnects counts successful reopens after a loss.
	Reconnects uint64
	// OpenFailures counts failed attempts to open (or find) the port.
	OpenFailures uint64
	// WriteBacks counts write-back messages written to the port.
	WriteBacks uint64
	// WriteErrors counts write-back messages not written: bad encoding,
	// port not open, queue full or a failed write.
	WriteErrors uint64
	// Polls counts poll requests written to the port.
	Polls uint64
}

// writeQueue is how many write-back messages wait for the port at most.
const writeQueue = 64

// logEvery is the least time between two log lines about the same kind of
// repeated problem (parse errors, write errors ...); the ones in between
// are counted and reported with the next line.
const logEvery = 10 * time.Second

// stableAfter caps how long a port must stay open before a later loss
// starts the reopen backoff from reopen.initial again.
const stableAfter = 10 * time.Second

// Adapter reads one serial port and publishes its frames. Create it with
// New and run it with Run.
type Adapter struct {
	cfg     PortConfig
	bus     Bus
	log     *slog.Logger
	mode    serial.Mode
	framer  framer
	codec   *codec
	tmpl    *template
	errTmpl *template
	suffix  []byte
	request []byte

	// Replaceable in tests.
	listPorts func() ([]PortInfo, error)
	openPort  func(path string, mode *serial.Mode) (serial.Port, error)
	now       func() time.Time
	wait      func(ctx context.Context, d time.Duration) bool // the reopen backoff's sleep

	mu        sync.Mutex
	device    string
	port      string // {port}: the kernel's name of device
	connected bool
	writes    chan []byte // nil while the port is closed

	frames, bytes, parseErrors, overlong, garbage, publishErrors   atomic.Uint64
	disconnects, reconnects, openFailures, writeBacks, writeErrors atomic.Uint64
	polls                                                          atomic.Uint64

	parseLog, publishLog, writeLog, framingLog limiter
}

// New checks cfg (after SetDefaults on a copy) and prepares an adapter; it
// does not open the port. log may be nil.
func New(cfg PortConfig, bus Bus, log *slog.Logger) (*Adapter, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("serial %s: %w", cfg.Name, err)
	}
	if bus == nil {
		return nil, fmt.Errorf("serial %s: nil bus", cfg.Name)
	}
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	a := &Adapter{
		cfg:       cfg,
		bus:       bus,
		log:       log.With("port", cfg.Name),
		listPorts: List,
		openPort:  serial.Open,
		now:       time.Now,
		wait:      sleep,
	}
	parity, _ := parseParity(cfg.Parity)
	stop, _ := parseStopBits(cfg.StopBits)
	// InitialStatusBits stays nil: the modem lines are not touched.
	a.mode = serial.Mode{BaudRate: cfg.Baud, DataBits: cfg.DataBits, Parity: parity, StopBits: stop}
	a.framer = newFramer(cfg.Framing)
	a.tmpl, _ = parseTemplate(cfg.Topic, cfg.Payload.Format == FormatJSON)
	if cfg.OnError.Action == OnErrorPublish {
		a.errTmpl, _ = parseTemplate(cfg.OnError.Topic, false)
	}
	var err error
	if a.codec, err = newCodec(&cfg, !a.tmpl.static()); err != nil {
		return nil, fmt.Errorf("serial %s: %w", cfg.Name, err)
	}
	a.suffix, _ = ParseBytes(cfg.Write.Append)
	a.request, _ = ParseBytes(cfg.Poll.Request)
	return a, nil
}

// Stats returns the counters. It is safe to call at any time.
func (a *Adapter) Stats() Stats {
	a.mu.Lock()
	dev, conn := a.device, a.connected
	a.mu.Unlock()
	return Stats{
		Device:        dev,
		Connected:     conn,
		Frames:        a.frames.Load(),
		Bytes:         a.bytes.Load(),
		ParseErrors:   a.parseErrors.Load(),
		Overlong:      a.overlong.Load(),
		Garbage:       a.garbage.Load(),
		PublishErrors: a.publishErrors.Load(),
		Disconnects:   a.disconnects.Load(),
		Reconnects:    a.reconnects.Load(),
		OpenFailures:  a.openFailures.Load(),
		WriteBacks:    a.writeBacks.Load(),
		WriteErrors:   a.writeErrors.Load(),
		Polls:         a.polls.Load(),
	}
}

// Name returns the port's configured name.
func (a *Adapter) Name() string { return a.cfg.Name }

// Run opens the port and publishes its frames until ctx is done, then
// closes the port and returns nil; goroutines it started have ended by then.
//
// When the port cannot be opened (or no USB port matches), or an open port
// is lost, Run logs it once, counts it, and tries again after an
// exponential backoff (reopen.initial doubling up to reopen.max, with 20%
// jitter, never giving up); a USB match is resolved again on every attempt.
// A partial frame is dropped with the port. The backoff restarts from
// reopen.initial only after a port stayed open for reopen.max (at most 10s),
// so a port that opens and fails at once cannot make Run spin.
//
// Run returns an error only if the write-back subscription fails.
func (a *Adapter) Run(ctx context.Context) error {
	if a.cfg.Write.Topic != "" {
		f := a.cfg.writeFilter()
		unsub, err := a.bus.Subscribe(f, a.onWrite)
		if err != nil {
			return fmt.Errorf("serial %s: subscribe to write topic %q: %w", a.cfg.Name, f, err)
		}
		defer unsub()
	}
	bo := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(a.cfg.Reopen.Initial),
		backoff.WithMaxInterval(a.cfg.Reopen.Max),
		backoff.WithMultiplier(2),
		backoff.WithRandomizationFactor(0.2),
		backoff.WithMaxElapsedTime(0),
	)
	stable := min(a.cfg.Reopen.Max, stableAfter)

	var (
		everOpen  bool
		down      bool // logged as unavailable, not yet logged as back
		downSince time.Time
		failures  int
	)
	for {
		if ctx.Err() != nil {
			return nil
		}
		dev, port, err := a.open()
		if err != nil {
			a.openFailures.Add(1)
			failures++
			if !down {
				down, downSince = true, a.now()
				a.log.Warn("serial port not available, retrying", "device", dev, "err", err)
			} else {
				a.log.Debug("serial port still not available", "device", dev, "err", err, "attempts", failures)
			}
			if !a.wait(ctx, bo.NextBackOff()) {
				return nil
			}
			continue
		}
		if everOpen {
			a.reconnects.Add(1)
		}
		if down {
			a.log.Info("serial port open again", "device", dev, "after", a.now().Sub(downSince).Round(time.Millisecond), "attempts", failures)
		} else {
			a.log.Info("serial port open", "device", dev)
		}
		everOpen, down, failures = true, false, 0

		opened := a.now()
		err = a.session(ctx, port, dev)
		if ctx.Err() != nil {
			return nil
		}
		a.disconnects.Add(1)
		down, downSince = true, a.now()
		a.log.Warn("serial port lost, reopening", "device", dev, "err", err)
		if a.now().Sub(opened) >= stable {
			bo.Reset()
		}
		if !a.wait(ctx, bo.NextBackOff()) {
			return nil
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// open resolves the device and opens it.
func (a *Adapter) open() (string, serial.Port, error) {
	dev, err := a.resolve()
	if err != nil {
		return dev, nil, err
	}
	p, err := a.openPort(dev, &a.mode)
	if err != nil {
		return dev, nil, fmt.Errorf("serial %s: open %s: %w", a.cfg.Name, dev, err)
	}
	return dev, p, nil
}

// resolve returns the configured device, or the first port (by name) that
// matches the USB ids.
func (a *Adapter) resolve() (string, error) {
	if a.cfg.Device != "" {
		return a.cfg.Device, nil
	}
	m := a.cfg.Match
	ports, err := a.listPorts()
	if err != nil {
		return "", fmt.Errorf("serial %s: list ports: %w", a.cfg.Name, err)
	}
	var found []string
	for _, p := range ports {
		if p.IsUSB && m.matches(p) {
			found = append(found, p.Name)
		}
	}
	if len(found) == 0 {
		return "", fmt.Errorf("serial %s: no USB serial port matches %s", a.cfg.Name, m)
	}
	sort.Strings(found)
	if len(found) > 1 {
		a.log.Warn("several USB serial ports match, using the first", "match", m.String(), "ports", found)
	}
	return found[0], nil
}

func (m Match) matches(p PortInfo) bool {
	return (m.VID == "" || strings.EqualFold(m.VID, p.VID)) &&
		(m.PID == "" || strings.EqualFold(m.PID, p.PID)) &&
		(m.Serial == "" || m.Serial == p.SerialNumber)
}

// String formats the match as "vid=0403 pid=6001 serial=A1".
func (m Match) String() string {
	var parts []string
	for _, kv := range [][2]string{{"vid", m.VID}, {"pid", m.PID}, {"serial", m.Serial}} {
		if kv[1] != "" {
			parts = append(parts, kv[0]+"="+kv[1])
		}
	}
	return strings.Join(parts, " ")
}

// session runs one open port until it fails or ctx is done, and closes it.
func (a *Adapter) session(ctx context.Context, port serial.Port, dev string) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	writes := make(chan []byte, writeQueue)
	a.mu.Lock()
	a.device, a.port, a.connected, a.writes = dev, kernelName(dev), true, writes
	a.mu.Unlock()

	var wg sync.WaitGroup
	var werr atomic.Pointer[error]
	fail := func(err error) {
		werr.CompareAndSwap(nil, &err)
		cancel()
	}
	var wmu sync.Mutex // one write at a time: poll requests and write-backs
	write := func(b []byte) error {
		wmu.Lock()
		defer wmu.Unlock()
		for len(b) > 0 {
			n, err := port.Write(b)
			if err != nil {
				return err
			}
			if n == 0 {
				return io.ErrShortWrite
			}
			b = b[n:]
		}
		return nil
	}
	wg.Add(1)
	go func() { // closing the port is what ends a blocked Read
		defer wg.Done()
		<-sctx.Done()
		port.Close()
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-sctx.Done():
				return
			case b := <-writes:
				if err := write(b); err != nil {
					a.writeFailed(err)
					fail(fmt.Errorf("write: %w", err))
					return
				}
				a.writeBacks.Add(1)
			}
		}
	}()
	if a.cfg.Poll.Interval > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(a.cfg.Poll.Interval)
			defer t.Stop()
			for {
				if err := write(a.request); err != nil {
					fail(fmt.Errorf("poll: %w", err))
					return
				}
				a.polls.Add(1)
				select {
				case <-sctx.Done():
					return
				case <-t.C:
				}
			}
		}()
	}

	err := a.readLoop(sctx, port)
	cancel()
	wg.Wait()
	a.framer.reset()

	a.mu.Lock()
	a.connected, a.writes = false, nil
	a.mu.Unlock()
	for len(writes) > 0 { // queued for a port that is gone
		<-writes
		a.writeErrors.Add(1)
	}
	if p := werr.Load(); p != nil {
		return *p
	}
	return err
}

// onWrite queues a write-back message for the port.
func (a *Adapter) onWrite(_ string, payload []byte) {
	b, err := decodeWrite(a.cfg.Write.Format, payload, a.suffix)
	if err != nil {
		a.writeFailed(err)
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.writes == nil {
		a.writeFailed(errors.New("port not open"))
		return
	}
	select {
	case a.writes <- b:
	default:
		a.writeFailed(fmt.Errorf("%d writes already waiting", writeQueue))
	}
}

func (a *Adapter) writeFailed(err error) {
	a.writeErrors.Add(1)
	if ok, skipped := a.writeLog.allow(a.now()); ok {
		a.log.Warn("serial write-back dropped", "err", err, "suppressed", skipped)
	}
}

// readLoop reads until the port fails or ctx is done.
func (a *Adapter) readLoop(ctx context.Context, port serial.Port) error {
	timeout := time.Second
	if a.cfg.Framing.Mode == FramingSilence {
		timeout = a.cfg.Framing.Silence
	}
	if err := port.SetReadTimeout(timeout); err != nil {
		return fmt.Errorf("set read timeout: %w", err)
	}
	buf := make([]byte, 4096)
	var pubErr error
	emit := func(frame []byte) {
		if pubErr == nil {
			pubErr = a.publish(ctx, frame)
		}
	}
	quick := 0 // timeouts that did not wait: a lost port in disguise
	for {
		start := a.now()
		n, err := port.Read(buf)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			var pe *serial.PortError
			if errors.As(err, &pe) && pe.Code() == serial.PortClosed {
				return errors.New("port closed (device gone)")
			}
			return err
		}
		if n == 0 {
			// Read timeout: the line was quiet for the interval.
			if a.now().Sub(start) < timeout/2 {
				if quick++; quick > 100 {
					return errors.New("read returns nothing without waiting")
				}
			} else {
				quick = 0
			}
			a.framer.idle(emit)
		} else {
			quick = 0
			a.bytes.Add(uint64(n))
			a.framer.feed(buf[:n], emit)
		}
		a.noteFraming()
		if pubErr != nil {
			return pubErr // ctx done while publishing
		}
	}
}

func (a *Adapter) noteFraming() {
	o, g := a.framer.counts()
	if o == 0 && g == 0 {
		return
	}
	a.overlong.Add(o)
	a.garbage.Add(g)
	if ok, skipped := a.framingLog.allow(a.now()); ok {
		a.log.Warn("serial framing: data skipped", "overlong_frames", o, "garbage_bytes", g, "suppressed", skipped)
	}
}

// publish encodes and publishes one frame. It returns an error only when
// ctx is done.
func (a *Adapter) publish(ctx context.Context, frame []byte) error {
	portName := a.currentPort()
	payload, rec, err := a.codec.encode(nil, frame, a.now())
	var t string
	if err == nil {
		t, err = a.tmpl.expandErr(a.cfg.Name, portName, rec.text)
		if err == nil {
			if terr := topic.ValidName(t); terr != nil {
				err = fmt.Errorf("topic: %w", terr)
			}
		}
	}
	m := Message{Topic: t, Payload: payload, QoS: *a.cfg.QoS, Retain: a.cfg.Retain}
	if err != nil {
		a.parseErrors.Add(1)
		if ok, skipped := a.parseLog.allow(a.now()); ok {
			a.log.Warn("serial frame failed to parse", "err", err, "bytes", len(frame), "action", a.cfg.OnError.Action, "suppressed", skipped)
		}
		if a.errTmpl == nil {
			return nil
		}
		m = Message{Topic: a.errTmpl.expand(a.cfg.Name, portName, nil), Payload: append([]byte(nil), frame...), QoS: *a.cfg.QoS}
	}
	if err := a.bus.Publish(ctx, m); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		a.publishErrors.Add(1)
		if ok, skipped := a.publishLog.allow(a.now()); ok {
			a.log.Warn("serial frame not accepted, dropped", "topic", m.Topic, "err", err, "suppressed", skipped)
		}
		return nil
	}
	a.frames.Add(1)
	return nil
}

func (a *Adapter) currentPort() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.port
}

// kernelName is what {port} stands for: the base name of the device node
// that dev leads to, symlinks resolved, so /dev/serial/by-id/usb-FTDI_...
// gives ttyUSB0. If dev cannot be resolved (gone again already), it is the
// base name of dev itself.
func kernelName(dev string) string {
	if p, err := filepath.EvalSymlinks(dev); err == nil {
		dev = p
	}
	return filepath.Base(dev)
}

// limiter lets one log line through per logEvery and counts the rest.
type limiter struct {
	mu      sync.Mutex
	last    time.Time
	skipped int
}

func (l *limiter) allow(now time.Time) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() && now.Sub(l.last) < logEvery {
		l.skipped++
		return false, 0
	}
	s := l.skipped
	l.last, l.skipped = now, 0
	return true, s
}
