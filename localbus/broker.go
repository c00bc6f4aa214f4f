package localbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"holdfast/internal/auth"
	"holdfast/internal/packet"
	"holdfast/internal/topic"
)

// Message is a message as the broker routes it. The MQTT 5 properties are
// passed on unaltered; a 3.1.1 publisher leaves them zero.
type Message struct {
	// Topic is the topic name: no wildcards, never empty (a topic alias is
	// resolved before the message is made).
	Topic string
	// Payload is the application message; it may be empty.
	Payload []byte
	// QoS is the QoS the message was published with, 0 to 2.
	QoS byte
	// Retain is the RETAIN flag the publisher set.
	Retain bool
	// PayloadFormat is the Payload Format Indicator: 0 unspecified bytes,
	// 1 UTF-8 text.
	PayloadFormat byte
	// ContentType is the Content Type ("" when absent).
	ContentType string
	// ResponseTopic is the Response Topic of a request ("" when absent).
	ResponseTopic string
	// CorrelationData is the Correlation Data; nil when absent, non-nil
	// (possibly empty) when present.
	CorrelationData []byte
	// UserProperties are the User Properties, in the order sent.
	UserProperties []packet.UserProperty
	// Expiry is the MQTT 5 message expiry remaining; 0 means none.
	Expiry time.Duration
	// ClientID is the publisher's client id ("" for Broker.Publish).
	ClientID string
}

// StateOp is one change of the broker's stored state: Value is stored under
// Key, or Key is deleted when Value is nil.
type StateOp struct {
	// Key names the record; the broker's keys start with "lb/".
	Key string
	// Value is the record to store; nil deletes Key.
	Value []byte
}

// Store is the broker's durable storage. The agent implements it on the
// queue's group commit.
type Store interface {
	// Ingest is called for every inbound PUBLISH from a client (QoS 0, 1 and
	// 2, and will messages), in order per connection, with the broker state
	// changes that must be atomic with it (for example "QoS 2 packet id N of
	// client C received, awaiting PUBREL" for a persistent session, or the
	// copies held for offline persistent sessions). done is called exactly
	// once when it is durable or failed; done calls come in Ingest call
	// order. errors.Is(err, ErrRefused) means the store is full: an MQTT 5
	// client gets PUBACK/PUBREC reason 0x97 Quota exceeded, a 3.1.1 client's
	// connection is closed without the ack. Any other error: 5.0 reason 0x80,
	// 3.1.1 close.
	Ingest(m *Message, ops []StateOp, done func(error))
	// Save durably applies state changes (sessions, subscriptions, retained
	// messages, offline queues). done calls come in call order, interleaved
	// with Ingest's in call order.
	Save(ops []StateOp, done func(error))
	// Load calls fn for every stored key with the prefix, in key order.
	Load(prefix string, fn func(key string, value []byte) error) error
}

// ErrRefused is what a Store's done reports (wrapped or not) when it refuses
// a message because it is full.
var ErrRefused = errors.New("localbus: message refused by the store")

// ErrClosed is returned by Broker.Publish, Broker.Subscribe and Broker.Serve
// after Close.
var ErrClosed = errors.New("localbus: broker closed")

// Defaults for zero Options fields.
const (
	DefaultMaxPacketSize     = 1 << 20          // bytes, inbound and announced
	DefaultReceiveMaximum    = 64               // inbound QoS 1/2 window per connection
	DefaultConnectTimeout    = 10 * time.Second // accept to CONNECT received
	DefaultMaxConnections    = 1024
	DefaultMaxQueuedMessages = 1000               // per session, not yet sent
	DefaultMaxSessionExpiry  = 7 * 24 * time.Hour // cap on a session's expiry interval
	// TopicAliasMaximum is how many inbound topic aliases a 5.0 client may
	// set up per connection (announced in CONNACK).
	TopicAliasMaximum = 256
	// maxSubscriptionID is the largest MQTT 5 subscription identifier.
	maxSubscriptionID = 268435455
)

// Options configures a Broker. Zero values take the defaults above.
type Options struct {
	// MaxPacketSize is the largest packet accepted from a client (announced
	// as Maximum Packet Size to 5.0 clients); larger ones close the
	// connection (5.0: DISCONNECT 0x95). Default 1 MiB.
	MaxPacketSize uint32
	// ReceiveMaximum is how many QoS 1/2 publishes a client may have
	// unacknowledged (announced to 5.0 clients; exceeding it is 0x93). It
	// also bounds how many Ingest calls one connection has outstanding, and
	// is the outbound window for 3.1.1 clients. Default 64.
	ReceiveMaximum uint16
	// ConnectTimeout is how long a new connection may take for the TLS
	// handshake and CONNECT. Default 10s.
	ConnectTimeout time.Duration
	// MaxConnections caps concurrent client connections; a CONNECT beyond
	// it is refused (5.0: CONNACK 0x97 Quota exceeded, 3.1.1: 0x03 Server
	// unavailable), unless its client id is connected: a takeover replaces
	// that connection. Sockets beyond 2*MaxConnections+64 are closed
	// without reading their CONNECT. Default 1024.
	MaxConnections int
	// MaxQueuedMessages caps the messages waiting for one session (offline,
	// or online behind its window); beyond it the oldest is dropped and
	// counted. It also caps the packets waiting to be written to a client
	// that reads slower than QoS 0 messages come; beyond it new QoS 0
	// messages are dropped and counted. Default 1000; negative queues
	// nothing for offline sessions.
	MaxQueuedMessages int
	// MaxSessionExpiry caps the session expiry interval a client may ask for;
	// a 3.1.1 client with clean session 0 gets exactly this. Default 7 days;
	// negative ends every session when its connection closes.
	MaxSessionExpiry time.Duration
	// MaxKeepAlive caps the keep alive of 5.0 clients (Server Keep Alive,
	// also imposed on a client asking for 0). 0: no cap.
	MaxKeepAlive time.Duration
	// RetainAvailable enables retained messages. When false, a retained
	// PUBLISH or will is refused (5.0: 0x9A). The agent's config defaults
	// it to true.
	RetainAvailable bool
	// Logger receives connection and state changes. Default slog.Default().
	Logger *slog.Logger

	// now is the clock of message expiry (nil: time.Now) and afterFunc
	// (nil: time.AfterFunc) runs the session expiry and will delay timers.
	// Tests set both from one test clock, to move a message past its
	// expiry, a session past its expiry interval or a will past its delay
	// without waiting and without a real-time window a loaded machine can
	// miss. Network deadlines (keep alive, ConnectTimeout) always use the
	// real clock.
	now       func() time.Time
	afterFunc func(d time.Duration, f func()) timer
}

// timer is a timer from Options.afterFunc: *time.Timer, or a test clock's.
type timer interface {
	// Stop prevents the timer from firing; it reports whether it stopped
	// it (false: it already fired or was stopped).
	Stop() bool
}

// realAfterFunc is the default Options.afterFunc.
func realAfterFunc(d time.Duration, f func()) timer { return time.AfterFunc(d, f) }

// ListenerOptions configures one Serve call.
type ListenerOptions struct {
	// Name labels the listener in logs.
	Name string
	// AllowAnonymous admits clients without a username (or with one while
	// Auth is nil). A client with a verified TLS client certificate and no
	// username is authenticated as the certificate's common name.
	AllowAnonymous bool
	// Auth checks usernames and passwords; nil: no password file.
	Auth *auth.Passwords
	// ACL limits publish, subscribe and receive; nil allows everything.
	ACL *auth.ACL
}

// Stats is a snapshot of the broker's counters.
type Stats struct {
	Connections   int // open client connections (CONNECT accepted)
	Sessions      int // sessions, online and offline
	Subscriptions int // client subscriptions (not in-process ones)
	Retained      int // retained messages
	Queued        int // messages waiting in sessions, in flight included

	MessagesIn  uint64 // PUBLISH packets accepted from clients
	MessagesOut uint64 // PUBLISH packets sent to clients
	Refused     uint64 // inbound messages the store refused or failed
	Malformed   uint64 // connections closed for a protocol violation

	ConnectionsRefused uint64 // CONNECTs refused (auth, limits, ids)
	DroppedQueueFull   uint64 // dropped by MaxQueuedMessages
	DroppedExpired     uint64 // message expiry passed before delivery
	DroppedTooLarge    uint64 // larger than the client's Maximum Packet Size
	DroppedInvalid     uint64 // deliveries the codec cannot encode (stored fields MQTT does not allow)
	DroppedOffline     uint64 // QoS 0 for an offline session
	DroppedDenied      uint64 // publishes or deliveries the ACL refused
}

// Broker is an MQTT 3.1.1 / 5.0 broker. Its methods are safe for concurrent
// use.
type Broker struct {
	opts  Options
	store Store
	log   *slog.Logger
	now   func() time.Time // Options.now or time.Now
	// afterFunc is Options.afterFunc or time.AfterFunc.
	afterFunc func(d time.Duration, f func()) timer

	// mu guards everything below it and the state of every session and
	// connection (not their sockets).
	mu        sync.Mutex
	closing   bool
	sessions  map[string]*session
	subs      topic.Tree[*subscription]
	retained  map[string]*stored
	locals    []*localSub
	shareNext map[string]int
	seq       uint64             // last used queued-message sequence number
	conns     map[*conn]struct{} // connected (CONNACK sent)
	accepted  map[*conn]struct{} // every open socket
	listeners map[net.Listener]struct{}
	nconns    int // accepted sockets

	storeCalls sync.WaitGroup // outstanding Store calls
	connWG     sync.WaitGroup // connection goroutines

	evMu   sync.Mutex
	events []func()
	evSig  chan struct{}
	evDone chan struct{}
	evStop chan struct{}

	stats struct {
		in, out, refused, malformed, connRefused      atomic.Uint64
		dropFull, dropExpired, dropLarge, dropOffline atomic.Uint64
		dropDenied, dropInvalid                       atomic.Uint64
	}
	closeOnce sync.Once
}

// New returns a broker that keeps its state in store, loading what a previous
// run persisted (sessions, their subscriptions and undelivered QoS 1/2
// messages, retained messages) through store.Load("lb/", ...).
func New(opts Options, store Store) (*Broker, error) {
	if store == nil {
		return nil, errors.New("localbus: nil store")
	}
	if opts.MaxPacketSize == 0 {
		opts.MaxPacketSize = DefaultMaxPacketSize
	}
	if opts.ReceiveMaximum == 0 {
		opts.ReceiveMaximum = DefaultReceiveMaximum
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = DefaultConnectTimeout
	}
	if opts.MaxConnections <= 0 {
		opts.MaxConnections = DefaultMaxConnections
	}
	if opts.MaxQueuedMessages == 0 {
		opts.MaxQueuedMessages = DefaultMaxQueuedMessages
	}
	if opts.MaxSessionExpiry == 0 {
		opts.MaxSessionExpiry = DefaultMaxSessionExpiry
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.now == nil {
		opts.now = time.Now
	}
	if opts.afterFunc == nil {
		opts.afterFunc = realAfterFunc
	}
	b := &Broker{
		opts: opts, store: store, log: opts.Logger, now: opts.now, afterFunc: opts.afterFunc,
		sessions:  make(map[string]*session),
		retained:  make(map[string]*stored),
		shareNext: make(map[string]int),
		conns:     make(map[*conn]struct{}),
		accepted:  make(map[*conn]struct{}),
		listeners: make(map[net.Listener]struct{}),
		evSig:     make(chan struct{}, 1),
		evDone:    make(chan struct{}),
		evStop:    make(chan struct{}),
	}
	if err := b.load(); err != nil {
		return nil, err
	}
	go b.runEvents()
	return b, nil
}

// load restores the persisted state. Records that do not decode are logged,
// deleted and skipped: one bad record must not keep the broker down.
func (b *Broker) load() error {
	var bad []StateOp
	var queued []*outMsg
	var qcids []string
	var inbound []struct {
		cid string
		id  uint16
	}
	now := b.now()
	err := b.store.Load(keyPrefix, func(key string, value []byte) error {
		var err error
		switch {
		case strings.HasPrefix(key, keySessionPrefix):
			var cid []byte
			cid, err = hexDecode(key[len(keySessionPrefix):])
			if err == nil {
				var s *session
				s, err = decodeSession(string(cid), value)
				if err == nil {
					b.sessions[s.cid] = s
				}
			}
		case strings.HasPrefix(key, keyQueuedPrefix):
			var cid string
			var seq uint64
			cid, seq, err = parseClientKey(key[len(keyQueuedPrefix):])
			if err == nil {
				var o *outMsg
				o, err = decodeQueued(value)
				if err == nil {
					o.seq = seq
					queued = append(queued, o)
					qcids = append(qcids, cid)
					if seq > b.seq {
						b.seq = seq
					}
				}
			}
		case strings.HasPrefix(key, keyInboundPrefix):
			var cid string
			var id uint64
			cid, id, err = parseClientKey(key[len(keyInboundPrefix):])
			if err == nil && (id == 0 || id > 0xFFFF) {
				err = fmt.Errorf("%w: packet id %d", errCorrupt, id)
			}
			if err == nil {
				inbound = append(inbound, struct {
					cid string
					id  uint16
				}{cid, uint16(id)})
			}
		case strings.HasPrefix(key, keyRetainedPrefix):
			var m *stored
			m, err = decodeRetained(value)
			if err == nil {
				if m.expired(now) {
					bad = append(bad, StateOp{Key: key})
				} else {
					m.Topic = key[len(keyRetainedPrefix):]
					b.retained[m.Topic] = m
				}
			}
		default:
			err = fmt.Errorf("%w: unknown key", errCorrupt)
		}
		if err != nil {
			b.log.Warn("dropping unreadable stored state", "key", key, "err", err)
			bad = append(bad, StateOp{Key: key})
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("localbus: load state: %w", err)
	}
	// Attach the queued messages (in key order: per client, by sequence) and
	// inbound QoS 2 state to their sessions; orphans are deleted.
	for i, o := range queued {
		s := b.sessions[qcids[i]]
		if s == nil {
			bad = append(bad, StateOp{Key: queuedKey(qcids[i], o.seq)})
			continue
		}
		o.s = s
		if o.pid != 0 {
			s.inflight = append(s.inflight, o)
			s.pids[o.pid] = o
		} else {
			s.queue = append(s.queue, o)
		}
	}
	for _, in := range inbound {
		s := b.sessions[in.cid]
		if s == nil {
			bad = append(bad, StateOp{Key: inboundKey(in.cid, in.id)})
			continue
		}
		s.inbound[in.id] = true
	}
	for _, s := range b.sessions {
		for f, sub := range s.subs {
			b.subs.Add(f, s.cid, sub)
		}
		// The time the previous run stopped is unknown: expiry counts from now.
		b.startExpiry(s)
	}
	if len(bad) > 0 {
		ch := make(chan error, 1)
		b.store.Save(bad, func(err error) { ch <- err })
		if err := <-ch; err != nil {
			return fmt.Errorf("localbus: delete unreadable state: %w", err)
		}
	}
	if n := len(b.sessions) + len(b.retained); n > 0 {
		b.log.Info("restored broker state", "sessions", len(b.sessions),
			"retained", len(b.retained), "queued", len(queued))
	}
	return nil
}

// runEvents runs store completions and timers one at a time, in the order
// they were posted, under b.mu.
func (b *Broker) runEvents() {
	defer close(b.evDone)
	for {
		b.evMu.Lock()
		evs := b.events
		b.events = nil
		b.evMu.Unlock()
		for _, fn := range evs {
			b.mu.Lock()
			fn()
			b.mu.Unlock()
		}
		if len(evs) > 0 {
			continue
		}
		select {
		case <-b.evSig:
		case <-b.evStop:
			b.evMu.Lock()
			n := len(b.events)
			b.evMu.Unlock()
			if n == 0 {
				return
			}
		}
	}
}

// post queues fn to run under b.mu on the event goroutine. It never blocks,
// so a Store may call done from any goroutine, Ingest's caller included.
func (b *Broker) post(fn func()) {
	b.evMu.Lock()
	b.events = append(b.events, fn)
	b.evMu.Unlock()
	select {
	case b.evSig <- struct{}{}:
	default:
	}
}

// save calls Store.Save with b.mu held (so that store calls keep the order of
// the state changes they record); then runs under b.mu afterwards. It
// reports false, without calling the store, once the broker is closing.
func (b *Broker) save(ops []StateOp, then func(error)) bool {
	if b.closing {
		return false
	}
	if len(ops) == 0 {
		if then != nil {
			b.post(func() { then(nil) })
		}
		return true
	}
	b.storeCalls.Add(1)
	b.store.Save(ops, func(err error) {
		b.post(func() {
			defer b.storeCalls.Done()
			if err != nil {
				b.log.Error("saving broker state failed", "err", err)
			}
			if then != nil {
				then(err)
			}
		})
	})
	return true
}

// Serve accepts clients on ln until ctx is done, ln is closed or the broker
// is closed. It returns nil in the first and last case and the accept error
// otherwise. ln may be a TCP, TLS or WebSocket listener from
// internal/transport; TLS client certificates are verified by its tls.Config.
func (b *Broker) Serve(ctx context.Context, ln net.Listener, lo ListenerOptions) error {
	b.mu.Lock()
	if b.closing {
		b.mu.Unlock()
		return ErrClosed
	}
	b.listeners[ln] = struct{}{}
	b.mu.Unlock()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	defer func() {
		b.mu.Lock()
		delete(b.listeners, ln)
		b.mu.Unlock()
	}()
	lop := &lo
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			b.mu.Lock()
			closing := b.closing
			b.mu.Unlock()
			if ctx.Err() != nil || closing {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		b.mu.Lock()
		if b.closing {
			b.mu.Unlock()
			nc.Close()
			return nil
		}
		b.nconns++
		over := b.nconns > hardConnLimit(b.opts.MaxConnections)
		if over {
			b.nconns--
			b.mu.Unlock()
			// Far beyond the limit: not even a CONNACK.
			b.stats.connRefused.Add(1)
			nc.Close()
			continue
		}
		b.connWG.Add(1)
		c := newConn(b, nc, lop)
		b.accepted[c] = struct{}{}
		b.mu.Unlock()
		go func() {
			defer b.connWG.Done()
			c.serve()
			b.mu.Lock()
			b.nconns--
			delete(b.accepted, c)
			b.mu.Unlock()
		}()
	}
}

// hardConnLimit is the number of open sockets beyond which new ones are
// closed at once, without reading CONNECT: up to it, the ones over
// MaxConnections get a CONNACK saying why.
func hardConnLimit(maxConns int) int { return 2*maxConns + 64 }

func isTemporary(err error) bool {
	t, ok := err.(interface{ Temporary() bool })
	return ok && t.Temporary()
}

// Close shuts the broker down: it stops accepting connections (closing every
// listener given to Serve), stops storing what clients publish (PUBLISH
// packets read from then on are neither stored nor acknowledged, so clients
// send them again), waits until every outstanding Store call has completed
// and its acknowledgement has been queued, then sends DISCONNECT 0x8B (Server shutting down) to 5.0 clients,
// closes every connection and waits for their goroutines. After Close
// returns the broker makes no more Store calls. Sessions persisted in the
// store are restored by the next New; wills of connected clients are not
// published.
func (b *Broker) Close() error {
	b.closeOnce.Do(b.close)
	return nil
}

func (b *Broker) close() {
	b.mu.Lock()
	b.closing = true
	for ln := range b.listeners {
		ln.Close()
	}
	for _, s := range b.sessions {
		s.stopTimers()
	}
	locals := b.locals
	b.locals = nil
	b.mu.Unlock()
	for _, l := range locals {
		l.stop()
	}
	b.storeCalls.Wait()
	// Let completions already posted (acks) run before the goodbyes.
	b.flushEvents()
	b.mu.Lock()
	for c := range b.conns {
		c.closeWith(packet.ServerShuttingDown)
	}
	for c := range b.accepted {
		if _, ok := b.conns[c]; !ok && c.s == nil {
			c.nc.Close() // still in TLS handshake or before CONNECT
		}
	}
	b.mu.Unlock()
	b.connWG.Wait()
	close(b.evStop)
	<-b.evDone
}

// flushEvents waits until every event posted so far has run.
func (b *Broker) flushEvents() {
	ch := make(chan struct{})
	b.post(func() { close(ch) })
	<-ch
}

// Stats returns a snapshot of the broker's counters.
func (b *Broker) Stats() Stats {
	b.mu.Lock()
	st := Stats{
		Connections:   len(b.conns),
		Sessions:      len(b.sessions),
		Subscriptions: b.subs.Len(),
		Retained:      len(b.retained),
	}
	for _, s := range b.sessions {
		st.Queued += len(s.queue) + len(s.inflight)
	}
	b.mu.Unlock()
	st.MessagesIn = b.stats.in.Load()
	st.MessagesOut = b.stats.out.Load()
	st.Refused = b.stats.refused.Load()
	st.Malformed = b.stats.malformed.Load()
	st.ConnectionsRefused = b.stats.connRefused.Load()
	st.DroppedQueueFull = b.stats.dropFull.Load()
	st.DroppedExpired = b.stats.dropExpired.Load()
	st.DroppedTooLarge = b.stats.dropLarge.Load()
	st.DroppedInvalid = b.stats.dropInvalid.Load()
	st.DroppedOffline = b.stats.dropOffline.Load()
	st.DroppedDenied = b.stats.dropDenied.Load()
	return st
}

// Publish routes m to the local subscribers, as a message from the agent
// (downlink) or an adapter: it is not passed to Store.Ingest. A retained m
// replaces the retained message of its topic (an empty payload deletes it).
// Publish returns once the copies for persistent sessions (QoS 1/2) and the
// retained message are durably stored, or with the store's error; online
// subscribers get it then. m.Expiry, when set, is its message expiry.
//
// A message that could not be sent as a PUBLISH is refused with an error
// before anything is stored: a topic that is not a topic name, QoS above
// 2, or MQTT 5 fields the protocol does not allow (PayloadFormat above 1, a
// ResponseTopic with a wildcard, ContentType or UserProperties that are not
// valid UTF-8 without U+0000, CorrelationData over 65535 bytes); the
// codec's refusal is a *packet.Error in the chain. Ingest and PublishWith
// check the same.
func (b *Broker) Publish(ctx context.Context, m *Message) error {
	return b.PublishWith(ctx, m, nil)
}

// PublishWith is Publish with the caller's own state ops stored in the same
// durable write as m, so that they exist exactly when m does (the uplink's
// mark of a delivered QoS 2 downlink message). Their keys must not start
// with the broker's prefix "lb/".
func (b *Broker) PublishWith(ctx context.Context, m *Message, extra []StateOp) error {
	for _, op := range extra {
		if strings.HasPrefix(op.Key, keyPrefix) {
			return fmt.Errorf("localbus: publish: state key %q is the broker's", op.Key)
		}
	}
	return b.inject(ctx, m, "publish", func(sm *stored, now time.Time, done func(error)) {
		ops := slices.Clone(extra)
		if sm.Retain {
			ops = append(ops, retainOp(sm))
		}
		targets, ops := b.route(sm, ops, now)
		b.save(ops, func(err error) {
			b.complete(sm, targets, err)
			done(err)
		})
	})
}

// Ingest publishes m the way a client's PUBLISH is published: through
// Store.Ingest, in one write with the copies for persistent sessions and the
// retained message, so the store's forwarding applies to it and a crash
// never finds one without the other. It is for messages that originate on
// the gateway (serial adapters). It returns once that write is done, with
// the store's error (wrapping ErrRefused when the store refused m); online
// subscribers get m then.
func (b *Broker) Ingest(ctx context.Context, m *Message) error {
	return b.inject(ctx, m, "ingest", func(sm *stored, now time.Time, done func(error)) {
		b.ingest(sm, nil, now, done)
	})
}

// inject checks m (checkMessage), hands it to write with b.mu held and
// waits for write's done; op names the caller in errors.
func (b *Broker) inject(ctx context.Context, m *Message, op string, write func(sm *stored, now time.Time, done func(error))) error {
	if err := checkMessage(m); err != nil {
		return fmt.Errorf("localbus: %s: %w", op, err)
	}
	now := b.now()
	sm := newStored(m, now)
	b.mu.Lock()
	if b.closing {
		b.mu.Unlock()
		return ErrClosed
	}
	if sm.Retain && !b.opts.RetainAvailable {
		sm.Retain = false
	}
	ch := make(chan error, 1)
	write(sm, now, func(err error) { ch <- err })
	b.mu.Unlock()
	select {
	case err := <-ch:
		if err != nil {
			return fmt.Errorf("localbus: %s: %w", op, err)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// checkMessage refuses a message that could not be delivered as a PUBLISH:
// a topic that is not a topic name, QoS above 2, and whatever the codec
// refuses to encode in a 5.0 PUBLISH carrying m's properties (a Payload
// Format Indicator other than 0 or 1, a Response Topic that is not a topic
// name, a Content Type or User Property that is not a UTF-8 Encoded String,
// Correlation Data over 65535 bytes, a packet over the protocol's maximum
// size). The error from the codec is a *packet.Error. Checked here, before
// the message is stored or routed, so that nothing the writer cannot send
// takes a packet id and a place in a client's window.
func checkMessage(m *Message) error {
	if err := topic.ValidName(m.Topic); err != nil {
		return err
	}
	if m.QoS > 2 {
		return fmt.Errorf("invalid QoS %d", m.QoS)
	}
	p := packet.Publish{QoS: 1, PacketID: 1, Topic: m.Topic, Payload: m.Payload}
	messageProps(&p.Properties, m)
	if m.Expiry > 0 {
		p.Properties.HasMessageExpiry = true // 4 bytes whatever the value
	}
	if _, err := packet.Size(&p, packet.V5); err != nil {
		return err
	}
	return nil
}

// Subscribe registers an in-process subscriber: fn is called, on a goroutine
// of its own, for every message matching filter that is published from then
// on (by clients, wills or Publish), in order. Shared subscription filters
// are not accepted. fn must not modify the message (its payload is shared
// with every other subscriber) and should return quickly: messages for it
// wait in memory meanwhile. unsubscribe stops the calls (one already running
// finishes).
func (b *Broker) Subscribe(filter string, fn func(*Message)) (unsubscribe func(), err error) {
	if err := topic.ValidFilter(filter); err != nil {
		return nil, fmt.Errorf("localbus: subscribe: %w", err)
	}
	if _, _, shared, _ := topic.ParseShared(filter); shared {
		return nil, fmt.Errorf("localbus: subscribe: shared subscription %q not supported in-process", filter)
	}
	l := &localSub{filter: filter, fn: fn, sig: make(chan struct{}, 1), quit: make(chan struct{})}
	b.mu.Lock()
	if b.closing {
		b.mu.Unlock()
		return nil, ErrClosed
	}
	b.locals = append(b.locals, l)
	b.mu.Unlock()
	go l.run()
	return func() {
		b.mu.Lock()
		for i, x := range b.locals {
			if x == l {
				b.locals = append(b.locals[:i:i], b.locals[i+1:]...)
				break
			}
		}
		b.mu.Unlock()
		l.stop()
	}, nil
}

// localSub is an in-process subscriber with its own delivery goroutine.
type localSub struct {
	filter string
	fn     func(*Message)
	mu     sync.Mutex
	q      []*Message
	sig    chan struct{}
	quit   chan struct{}
	once   sync.Once
}

func (l *localSub) deliver(m *Message) {
	l.mu.Lock()
	l.q = append(l.q, m)
	l.mu.Unlock()
	select {
	case l.sig <- struct{}{}:
	default:
	}
}

func (l *localSub) stop() { l.once.Do(func() { close(l.quit) }) }

func (l *localSub) run() {
	for {
		select {
		case <-l.quit:
			return
		case <-l.sig:
		}
		l.mu.Lock()
		q := l.q
		l.q = nil
		l.mu.Unlock()
		for _, m := range q {
			select {
			case <-l.quit:
				return
			default:
			}
			l.fn(m)
		}
	}
}

func retainOp(m *stored) StateOp {
	if len(m.Payload) == 0 {
		return StateOp{Key: retainedKey(m.Topic)}
	}
	return StateOp{Key: retainedKey(m.Topic), Value: encodeRetained(m)}
}

func hexDecode(s string) ([]byte, error) {
	b := make([]byte, len(s)/2)
	if len(s)%2 != 0 {
		return nil, fmt.Errorf("%w: key %q", errCorrupt, s)
	}
	for i := 0; i < len(b); i++ {
		hi, ok1 := unhex(s[2*i])
		lo, ok2 := unhex(s[2*i+1])
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("%w: key %q", errCorrupt, s)
		}
		b[i] = hi<<4 | lo
	}
	return b, nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}
