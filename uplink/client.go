// Package uplink is holdfast's MQTT client to the upstream broker: it drains
// the queue upstream and carries the messages of upstream subscriptions back
// down.
//
// Forwarding leases messages from the head of a Source (the queue) and keeps
// a window of them in flight: min(Options.Inflight, the server's Receive
// Maximum) QoS 1/2 messages awaiting their PUBACK or PUBCOMP. A message is
// acknowledged in the Source (deleted) only when the upstream answered with a
// success reason code. Messages go out in queue order; after a reconnect the
// unacknowledged ones go out again in the same order, with DUP and the same
// packet id when the server kept the session, as new publishes when it did
// not.
//
// Packet ids of messages are derived from the queue sequence number
// (1 + seq % 65519), skipping ids still in use (a message that goes out
// under another id has it stored with Source.Mark first); SUBSCRIBE and the
// birth and will messages use the ids above 65519. A restarted client thus
// resumes with the ids the server's session knows. QoS 2 is exactly once
// across restarts: after PUBREC, and before PUBREL is sent, the client
// stores "rec:<packet id>" with Source.Mark; a restarted client that leases
// a message with that mark sends PUBREL instead of a second PUBLISH.
//
// The connection is MQTT 5.0 by default (3.1.1 by option) with a persistent
// session, reconnects forever with exponential backoff and jitter, and is
// dropped when it stalls (messages in flight, no acknowledgement for
// Options.StallTimeout). docs/uplink.md describes every decision (CONNACK
// limits, negative acknowledgements, expiry, birth and will, downlink).
package uplink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// Link states reported in Status.State.
const (
	StateConnecting = "connecting" // dialing, waiting for CONNACK
	StateBackoff    = "backoff"    // waiting before the next attempt
	StateWaiting    = "waiting"    // CONNACK came; no acknowledgement yet, and messages wait for one
	StateConnected  = "connected"  // messages are acknowledged, or none wait
	StateDraining   = "draining"   // shutting down: waiting for in-flight acks
	StateStalled    = "stalled"    // the last connection stalled; reconnecting
)

// Status is a snapshot of the link for status pages and metrics.
type Status struct {
	// State is one of the State* constants.
	State string
	// Since is when State was entered.
	Since time.Time
	// LastAck is when the upstream last acknowledged a message.
	LastAck time.Time
	// InFlight is the number of QoS 1/2 messages awaiting acknowledgement.
	InFlight int
	// Window is the current in-flight limit: min(Inflight, Receive Maximum).
	Window int
	// LastError describes the last failure (connect, connection loss,
	// refusal), empty if none yet.
	LastError string
	// Connects counts successful connects (CONNACK with success).
	Connects uint64
	// Forwarded counts messages the upstream acknowledged (QoS 0: written).
	Forwarded uint64
	// DeadLettered counts messages moved to the dead-letter store (too
	// large, refused for good, expired).
	DeadLettered uint64
	// Expired counts messages dead-lettered because their expiry passed
	// between lease and send (included in DeadLettered).
	Expired uint64
	// Stalls counts connections dropped by stall detection.
	Stalls uint64
	// Refused counts negative acknowledgements (PUBACK/PUBREC >= 0x80).
	Refused uint64
	// Delivered counts downlink messages handed to the Downlink.
	Delivered uint64
	// DownlinkDropped counts QoS 0 downlink messages dropped while the
	// Downlink was slow.
	DownlinkDropped uint64
	// SessionPresent is the last CONNACK's Session Present flag.
	SessionPresent bool
	// ClientID is the client id in use (the assigned one, if any).
	ClientID string
	// Backoff is the delay of the current (or last) wait before a reconnect.
	Backoff time.Duration
}

// Client forwards a Source upstream and delivers downlink messages. Create it
// with New and start it with Run; Status may be called at any time from any
// goroutine.
type Client struct {
	opts Options
	src  Source
	down Downlink
	log  *slog.Logger

	mu sync.Mutex
	st Status

	running atomic.Bool

	// Owned by the goroutine running Run.
	clientID  string
	pending   []*entry // leased, in queue order but for seqs leased again after a failed Ack
	doneCount int      // finished entries still in pending (until compact)
	topSeq    uint64   // the highest seq leased in this Run: none above it is pending (see conn.leased)
	byID      map[uint16]*entry
	ids       idSet
	ctrlNext  uint16
	rx        map[uint16]bool // downlink QoS 2 ids answered with PUBREC, awaiting PUBREL
	// restored holds the marks found at start (MarkedDownlink): delivered
	// before a restart, or left by a crash while the ids of a session the
	// server no longer had were being forgotten. Only a re-delivery (DUP
	// set, MQTT-3.3.1-1) under one of them is a duplicate.
	restored map[uint16]bool
	// unmark holds ids whose marks are forgotten in memory but not yet
	// removed from the store; retried at every connect.
	unmark     map[uint16]bool
	bo         *backoff.ExponentialBackOff
	pause      *backoff.ExponentialBackOff // after retryable refusals (0x97, 0x91, 0x80, 0x83)
	pauseGrown bool                        // pause has grown since its last Reset
	pauseUntil time.Time
	firstConn  bool
	warned     map[string]bool // guarded by mu
	acks       *acker
	willQoS    byte
	willRetain bool
	failures   int       // failed connects since the last connection
	downSince  time.Time // when the link was last lost (or Run started)
	// narrowed: the window is 1 until the message narrowSeq is done (see
	// narrowTo).
	narrowed  bool
	narrowSeq uint64
	// suspected: message suspectSeq, sent alone, was followed by a close
	// such as a server makes on what it refuses; closes counts those that
	// followed it after an idle link, in a row (see afterLoss).
	suspected  bool
	suspectSeq uint64
	closes     int

	// onBackoff, when set (by tests), sees every reconnect delay.
	onBackoff func(time.Duration)
	// poisonWin, when set (by tests), is the poison window, instead of
	// one derived from the handshake's round trip (see conn.poisonWindow).
	poisonWin time.Duration
}

// New checks opts, applies the defaults and returns a Client; nothing is
// dialed before Run. down may be nil when opts has no Subscriptions.
func New(opts Options, src Source, down Downlink) (*Client, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if src == nil {
		return nil, errors.New("uplink: nil Source")
	}
	if down == nil && len(o.Subscriptions) > 0 {
		return nil, errors.New("uplink: subscriptions need a Downlink")
	}
	c := &Client{
		opts:     o,
		src:      src,
		down:     down,
		log:      o.Logger,
		clientID: o.ClientID,
		byID:     make(map[uint16]*entry),
		rx:       make(map[uint16]bool),
		warned:   make(map[string]bool),
	}
	if md, ok := down.(MarkedDownlink); ok {
		ids, err := md.Marks()
		if err != nil {
			return nil, fmt.Errorf("uplink: reading downlink marks: %w", err)
		}
		c.restored = make(map[uint16]bool, len(ids))
		for _, id := range ids {
			c.restored[id] = true
		}
	}
	c.bo = c.newBackoff()
	c.pause = c.newBackoff()
	if o.Will != nil {
		c.willQoS, c.willRetain = o.Will.QoS, o.Will.Retain
	}
	c.st.State, c.st.Since, c.st.ClientID, c.st.Window = StateConnecting, time.Now(), o.ClientID, o.Inflight
	return c, nil
}

func (c *Client) newBackoff() *backoff.ExponentialBackOff {
	b := c.opts.Backoff
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = b.Initial
	bo.MaxInterval = b.Max
	bo.Multiplier = b.Multiplier
	bo.RandomizationFactor = b.Randomization
	bo.MaxElapsedTime = 0 // never give up
	bo.Reset()
	return bo
}

// Status returns a snapshot of the link.
func (c *Client) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st
}

func (c *Client) update(f func(*Status)) {
	c.mu.Lock()
	f(&c.st)
	c.mu.Unlock()
}

func (c *Client) setState(s string) {
	c.mu.Lock()
	if c.st.State != s {
		c.st.State, c.st.Since = s, time.Now()
	}
	c.mu.Unlock()
}

func (c *Client) setError(err error) {
	c.mu.Lock()
	c.st.LastError = err.Error()
	c.mu.Unlock()
}

// warnOnce logs a warning the first time key is seen. Safe for concurrent
// use (the downlink worker calls it too).
func (c *Client) warnOnce(key, msg string, args ...any) {
	c.mu.Lock()
	seen := c.warned[key]
	c.warned[key] = true
	c.mu.Unlock()
	if !seen {
		c.log.Warn(msg, args...)
	}
}

// Run connects, forwards and reconnects (with backoff) until ctx is
// cancelled, then shuts down in this order: no new message is sent; for up
// to DrainTimeout the acknowledgements of messages in flight are awaited
// (state "draining"); DISCONNECT is sent (MQTT 5: reason 0x04 "disconnect
// with will message" when a Will is set, so the upstream learns the gateway
// is gone as it would after a crash; 3.1.1, which has no such reason code:
// the will is published by the client itself before a normal DISCONNECT);
// the connection is closed, pending Source acknowledgements are written and
// every message still leased is released to the Source. Run then returns nil.
//
// Run returns an error only when it is called while already running; every
// network, protocol or Source failure is logged, shown in Status and retried.
func (c *Client) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return errors.New("uplink: Run already running")
	}
	defer c.running.Store(false)
	c.acks = newAcker(c.src, c.log)
	defer c.finish()
	c.firstConn = true
	c.failures, c.downSince = 0, time.Now()
	for ctx.Err() == nil {
		c.setState(StateConnecting)
		res := c.connection(ctx)
		if ctx.Err() != nil {
			break
		}
		if res.err != nil {
			c.setError(res.err)
		}
		if res.connected {
			c.log.Warn("upstream connection lost", "err", res.err, "up_for", res.upFor.Round(time.Millisecond),
				"in_flight", res.inflight)
			c.failures, c.downSince = 0, time.Now()
		} else {
			c.failures++
			if c.failures == 1 {
				c.log.Warn("upstream connect failed", "err", res.err, "url", redact(c.opts.URL))
			} else {
				c.log.Debug("upstream connect failed", "err", res.err, "attempt", c.failures)
			}
		}
		if res.connected {
			c.afterLoss(ctx, res)
		}
		if res.connected && res.upFor >= c.opts.Backoff.StableAfter && !res.stalled {
			c.bo.Reset()
		}
		d := c.bo.NextBackOff()
		if d == backoff.Stop { // cannot happen with MaxElapsedTime 0
			d = c.opts.Backoff.Max
		}
		if res.stalled {
			c.setState(StateStalled)
		} else {
			c.setState(StateBackoff)
		}
		c.update(func(s *Status) { s.Backoff = d; s.InFlight = 0 })
		if c.onBackoff != nil {
			c.onBackoff(d)
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
	}
	return nil
}

// finish writes outstanding Source acks and releases what is still leased.
func (c *Client) finish() {
	c.acks.close()
	var seqs []uint64
	for _, e := range c.pending {
		if !e.done {
			seqs = append(seqs, e.Seq)
		}
	}
	c.pending, c.doneCount, c.topSeq = nil, 0, 0
	c.narrowed, c.suspected, c.suspectSeq, c.closes = false, false, 0, 0
	c.byID = make(map[uint16]*entry)
	c.ids = idSet{}
	if len(seqs) > 0 {
		c.src.Release(seqs...)
	}
	c.update(func(s *Status) { s.InFlight = 0 })
}

// afterLoss runs once a lost connection is torn down. A poisoned message
// (one the server answers by closing the connection: a protocol error it
// sees, a packet larger than a 3.1.1 server takes) would otherwise be sent
// again after every reconnect, for ever. But a failing network closes
// connections too, and the client cannot tell its close (EOF) or reset
// from a server's. So:
//
//   - when messages were unacknowledged, the next connection sends with a
//     window of 1 until the oldest of them is acked (narrowTo), so that it
//     goes out alone;
//   - when the message sent alone was still unanswered and the connection
//     was closed as a server closes one (closedByServer: a DISCONNECT
//     blaming what it received, an orderly close or a reset; never a
//     timeout or a stall) within conn.poisonWindow of its PUBLISH, the
//     message becomes a suspect;
//   - a suspect is held back on each following connection until the link
//     has idled for a poison window and answered a PINGREQ (conn.hold);
//     a close within the window after its PUBLISH then counts against it;
//     any other end of such a connection (it died while idle, or later
//     than a server closes) is the network's doing and starts the count
//     again, and an acknowledgement of any message resets it too;
//   - after MaxRefusals counted closes in a row the message is
//     dead-lettered.
//
// A flapping network rarely looks like a server refusing a message: it
// would have to let MaxRefusals connections in a row live through the
// idle window and then cut each within the window after the PUBLISH,
// before its answer, and none of them while idle.
func (c *Client) afterLoss(ctx context.Context, res connResult) {
	e := res.suspect
	if e != nil && e.done {
		e = nil
	}
	switch {
	case e != nil && c.suspected && e.Seq == c.suspectSeq:
		// It went out after the idle link: pump holds a suspect back
		// until then.
		c.closes++
		c.log.Debug("upstream closed the connection right after a message sent alone after an idle link",
			"seq", e.Seq, "times", c.closes, "err", res.err)
		if c.closes >= MaxRefusals {
			c.deadLetterRefused(ctx, e, res.err)
		}
	case e != nil:
		c.suspected, c.suspectSeq, c.closes = true, e.Seq, 0
		c.log.Debug("upstream closed the connection right after a message sent alone; it waits for an idle link next time",
			"seq", e.Seq, "err", res.err)
	case c.suspected && c.closes > 0:
		c.closes = 0
		c.log.Debug("connection lost while a suspect message was held back or later than a refusal comes; count reset",
			"seq", c.suspectSeq, "err", res.err)
	}
	for _, e := range c.pending {
		if !e.done {
			if e.sent || e.rec {
				c.narrowTo(e)
			}
			break
		}
	}
}

// deadLetterRefused dead-letters e, which the upstream closed the
// connection on MaxRefusals times in a row (see afterLoss); lastErr is
// how the last connection ended.
func (c *Client) deadLetterRefused(ctx context.Context, e *entry, lastErr error) {
	last := "a close"
	if lastErr != nil {
		last = lastErr.Error()
	}
	reason := fmt.Sprintf("upstream closed the connection right after this message, sent alone after an idle link, %d times in a row (last: %s)",
		c.closes, last)
	if err := c.deadLetter(ctx, e, reason); err != nil {
		c.log.Warn("dead-lettering a message the upstream closes the connection on failed; sending it again",
			"seq", e.Seq, "err", err)
	}
}

// narrowTo makes the window 1 until e is done (the oldest such message
// counts): after a retryable refusal of e, nothing sent later may overtake
// it, only what was already in flight does; after a lost connection, e is
// the first message sent and goes alone (see afterLoss).
func (c *Client) narrowTo(e *entry) {
	if !c.narrowed || e.Seq < c.narrowSeq {
		c.narrowed, c.narrowSeq = true, e.Seq
	}
}

// finished notes that e is done: the window opens again when it was the
// message it was narrowed for, unless another refused message is pending.
func (c *Client) finished(e *entry) {
	if !c.narrowed || e.Seq != c.narrowSeq {
		return
	}
	c.narrowed = false
	for _, p := range c.pending {
		if !p.done && p.refusals > 0 {
			c.narrowTo(p)
			return
		}
	}
}

// retire removes e from the forwarding state: it is done.
func (c *Client) retire(e *entry) {
	c.dropID(e)
	e.done = true
	c.doneCount++
	if c.suspected && e.Seq == c.suspectSeq {
		c.suspected, c.closes = false, 0
	}
	c.finished(e)
}

// takeID gives e the message packet id id, marked in use and found by
// byID until dropID.
func (c *Client) takeID(e *entry, id uint16) {
	e.id = id
	c.ids.add(id)
	c.byID[id] = e
}

// dropID frees the packet id e holds, unless another entry holds it now.
func (c *Client) dropID(e *entry) {
	if e.id != 0 && c.byID[e.id] == e {
		delete(c.byID, e.id)
		c.ids.del(e.id)
	}
}

// deadLetter moves e to the dead-letter store.
func (c *Client) deadLetter(ctx context.Context, e *entry, reason string) error {
	if err := c.src.DeadLetter(ctx, e.Seq, reason); errors.Is(err, ErrGone) {
		c.retire(e) // already out of the queue
		return nil
	} else if err != nil {
		return fmt.Errorf("queue dead letter of seq %d: %w", e.Seq, err)
	}
	c.log.Warn("message moved to the dead-letter store", "seq", e.Seq, "topic", e.Topic, "reason", reason)
	c.retire(e)
	c.update(func(st *Status) { st.DeadLettered++ })
	return nil
}

// redact hides a password in a URL.
func redact(s string) string {
	if i := strings.Index(s, "://"); i >= 0 {
		if j := strings.IndexByte(s[i+3:], '@'); j >= 0 {
			if k := strings.IndexByte(s[i+3:i+3+j], ':'); k >= 0 {
				return s[:i+3+k+1] + "xxxxx" + s[i+3+j:]
			}
		}
	}
	return s
}

// entry is one leased message on its way upstream.
type entry struct {
	*Message // in the slice Source.Lease returned, which the Client owns
	id       uint16
	state    entryState
	sent     bool // a PUBLISH with id may have reached the server's session
	sentQoS  byte // the QoS it went out with, when sent
	rec      bool // PUBREC came and "rec:<id>" is stored durably
	unrel    bool // counted in conn.unrel
	// waitCtrl: id, from the mark, is held by a control packet of this
	// connection; the message waits for that packet's answer.
	waitCtrl bool
	// mark is what the Source holds as the message's mark, as far as
	// known: "" for none, markUnknown after a Mark that failed.
	mark string
	// newID: the server said id is in use (0x91); the next PUBLISH takes
	// another.
	newID    bool
	refusals int
	done     bool
}

type entryState uint8

const (
	stQueued   entryState = iota // to be sent (PUBLISH, or PUBREL when rec) on this connection
	stSent                       // PUBLISH sent, awaiting PUBACK/PUBREC
	stMarking                    // PUBREC came, Mark in progress
	stReleased                   // PUBREL sent, awaiting PUBCOMP
)

// Packet ids. Messages use 1..maxMsgID, derived from their sequence
// numbers; the ctrlIDs ids above that are for SUBSCRIBE and the birth and
// will messages. A control packet therefore never takes an id that the
// server's session may hold for a message: after a restart SUBSCRIBE and
// the birth message go out before the queue is leased, that is before the
// client knows which ids its messages had.
const (
	ctrlIDs  = 16
	maxMsgID = 65535 - ctrlIDs
	// maxWindow caps the window so that free ids remain for the marked
	// messages leased ahead, which hold their ids from the lease on.
	maxWindow = maxMsgID - 4*maxLeaseBatch
)

// derivedID is the packet id a message goes out with unless it is in use.
func derivedID(seq uint64) uint16 { return uint16(1 + seq%maxMsgID) }

// Marks stored with Source.Mark.
const (
	markPub = "pub:" // QoS 2 PUBLISH goes out with this non-derived id
	markRec = "rec:" // PUBREC came for this packet id

	// markUnknown stands for a mark a failed Mark may or may not have
	// stored; it equals no mark data, so the next PUBLISH rewrites it.
	markUnknown = "\x00unknown"
)

func markData(kind string, id uint16) []byte {
	return strconv.AppendUint([]byte(kind), uint64(id), 10)
}

// parseMark returns the kind and packet id of a mark, ok false for data
// this package did not write.
func parseMark(b []byte) (kind string, id uint16, ok bool) {
	s := string(b)
	for _, k := range []string{markPub, markRec} {
		if rest, found := strings.CutPrefix(s, k); found {
			n, err := strconv.ParseUint(rest, 10, 16)
			if err != nil || n == 0 {
				return "", 0, false
			}
			return k, uint16(n), true
		}
	}
	return "", 0, false
}

// idSet is the set of packet ids in use.
type idSet [65536 / 64]uint64

func (s *idSet) has(id uint16) bool { return s[id/64]&(1<<(id%64)) != 0 }
func (s *idSet) add(id uint16)      { s[id/64] |= 1 << (id % 64) }
func (s *idSet) del(id uint16)      { s[id/64] &^= 1 << (id % 64) }

// next returns the first free message id at or after id, wrapping from
// maxMsgID to 1.
func (s *idSet) next(id uint16) uint16 {
	if id == 0 || id > maxMsgID {
		id = 1
	}
	for range maxMsgID {
		if !s.has(id) {
			return id
		}
		if id++; id > maxMsgID {
			id = 1
		}
	}
	return 0 // all in use: impossible, the window is at most maxWindow
}

// errNoCtrlID ends a connection that has every control packet id in use
// (impossible: at most three control packets are in flight at once).
var errNoCtrlID = errors.New("uplink: no free packet id for a control packet")

// allocCtrl allocates a packet id for SUBSCRIBE or a birth/will PUBLISH,
// downwards from 65535 within the ctrlIDs ids above maxMsgID.
func (c *Client) allocCtrl() (uint16, error) {
	for range ctrlIDs {
		id := c.ctrlNext
		if id <= maxMsgID {
			id = 65535
		}
		c.ctrlNext = id - 1
		if !c.ids.has(id) {
			c.ids.add(id)
			return id, nil
		}
	}
	return 0, errNoCtrlID
}

// ackGather is how long the acker lets acknowledgements gather before it
// writes them, unless maxAckBatch wait already: every Ack is a synced
// commit of the queue, and a drain that wrote the few PUBACKs that came
// during each commit spent much of its time syncing. A crash forgets at
// most this much more of acknowledgements than it would anyway; those
// messages go upstream again (QoS 1: at least once; QoS 2 resumes from
// its mark with PUBREL, never a second PUBLISH).
const ackGather = 20 * time.Millisecond

// acker hands Source acknowledgements to a goroutine that writes them in
// batches, so the connection never waits for a durable delete.
type acker struct {
	src  Source
	log  *slog.Logger
	mu   sync.Mutex
	seqs []uint64
	wake chan struct{}
	done chan struct{}
	stop chan struct{}
}

func newAcker(src Source, log *slog.Logger) *acker {
	a := &acker{src: src, log: log, wake: make(chan struct{}, 1), done: make(chan struct{}), stop: make(chan struct{})}
	go a.run()
	return a
}

// add queues seq; it wakes run for the first seq of a batch and for a
// full one.
func (a *acker) add(seq uint64) {
	a.mu.Lock()
	a.seqs = append(a.seqs, seq)
	n := len(a.seqs)
	a.mu.Unlock()
	if n == 1 || n == maxAckBatch {
		select {
		case a.wake <- struct{}{}:
		default:
		}
	}
}

func (a *acker) run() {
	defer close(a.done)
	var batch []uint64
	for {
		select {
		case <-a.wake:
		case <-a.stop:
			a.flush(&batch)
			return
		}
		a.mu.Lock()
		full := len(a.seqs) >= maxAckBatch
		a.mu.Unlock()
		if !full {
			t := time.NewTimer(ackGather)
			select {
			case <-t.C:
			case <-a.wake: // full
			case <-a.stop:
			}
			t.Stop()
		}
		a.flush(&batch)
	}
}

// flush writes what has gathered, in Ack calls of at most maxAckBatch.
func (a *acker) flush(batch *[]uint64) {
	a.mu.Lock()
	*batch, a.seqs = a.seqs, (*batch)[:0]
	a.mu.Unlock()
	for b := *batch; len(b) > 0; {
		n := min(len(b), maxAckBatch)
		a.ack(b[:n])
		b = b[n:]
	}
}

func (a *acker) ack(seqs []uint64) {
	err := a.src.Ack(seqs...)
	if err != nil {
		// Not deleted: the messages stay queued. The queue leases them
		// again in this run, so they go upstream a second time, behind the
		// messages leased meanwhile (at least once; not in queue order).
		// Retry once before saying so.
		time.Sleep(100 * time.Millisecond)
		if err = a.src.Ack(seqs...); err != nil {
			a.log.Error("queue ack failed; the messages stay queued and go upstream again, behind those already leased (out of queue order)",
				"err", err, "messages", len(seqs))
		}
	}
}

func (a *acker) close() {
	close(a.stop)
	<-a.done
}
