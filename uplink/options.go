package uplink

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"time"

	"holdfast/internal/packet"
	"holdfast/internal/topic"
)

// Defaults applied by New to zero fields of Options.
const (
	DefaultProtocol       = packet.V5
	DefaultInflight       = 64 // the agent's default too (upstream.inflight)
	DefaultKeepAlive      = 60 * time.Second
	DefaultSessionExpiry  = 7 * 24 * time.Hour
	DefaultConnectTimeout = 15 * time.Second
	DefaultStallTimeout   = 60 * time.Second

	DefaultBackoffInitial       = time.Second
	DefaultBackoffMax           = 2 * time.Minute
	DefaultBackoffMultiplier    = 2.0
	DefaultBackoffRandomization = 0.5
	DefaultStableAfter          = 60 * time.Second

	// DefaultClientIDPrefix starts the client id derived from the host name
	// when Options.ClientID is empty on MQTT 3.1.1 (which cannot keep a
	// session without a client id).
	DefaultClientIDPrefix = "holdfast-"
)

// Fixed limits of the client. They are not options because no deployment
// has a reason to change them.
const (
	// DrainTimeout bounds how long Run, once its context is cancelled, waits
	// for the acknowledgements of messages already in flight before it
	// disconnects. What is still unacknowledged then is released to the
	// Source and sent again by the next run.
	DrainTimeout = 5 * time.Second

	// DownlinkReceiveMaximum is the Receive Maximum the client announces
	// in an MQTT 5 CONNECT: at most this many QoS 1/2 downlink messages are
	// unacknowledged at once, which bounds the memory they take.
	DownlinkReceiveMaximum = 64

	// MaxDownlinkQoS0Backlog is how many QoS 0 downlink messages wait for
	// Deliver at most; more are dropped (and counted) while Deliver is
	// slow, as QoS 0 allows.
	MaxDownlinkQoS0Backlog = 1024

	// MaxRefusals is how often the upstream may refuse one message with a
	// reason code of no known kind (0x80 unspecified error, 0x83
	// implementation specific error, ...), or close the connection right
	// after it was sent alone after an idle link (see docs/uplink.md),
	// before it is dead-lettered, so that one poisoned message cannot
	// block the queue forever.
	MaxRefusals = 5

	// maxLeaseBatch caps one Lease call.
	maxLeaseBatch = 1024

	// maxAckBatch caps one Source.Ack call, and a batch this full is
	// written without waiting for ackGather. holdfast's queue splits a
	// longer Ack itself; the cap keeps a Source that takes one
	// transaction per Ack (Badger's holds deletes up to about 15% of a
	// memtable) from refusing a batch gathered behind a slow write.
	maxAckBatch = 1024
)

// Backoff paces reconnects (and pauses after retryable refusals such as
// "quota exceeded"): an exponential backoff with jitter from
// github.com/cenkalti/backoff/v4 that never gives up.
//
// The n-th delay is Initial * Multiplier^(n-1), capped at Max, then spread
// by ±Randomization (0.5: anywhere between half and one and a half times
// the value). The delays start again at Initial only after a connection
// has stayed up for StableAfter, so a link that drops right after each
// connect never causes a reconnect storm.
type Backoff struct {
	// Initial is the first delay. Default 1s.
	Initial time.Duration
	// Max caps the delay (before randomization). Default 2m.
	Max time.Duration
	// Multiplier is the growth factor per attempt. Default 2.
	Multiplier float64
	// Randomization is the jitter factor in [0, 1). Default 0.5; a negative
	// value means none.
	Randomization float64
	// StableAfter is how long a connection must last for the delays to be
	// reset. Default 60s.
	StableAfter time.Duration
}

// WillMessage is a message the client registers as its will or publishes
// as its birth message.
type WillMessage struct {
	// Topic is the topic name (no wildcards); New rejects an invalid one.
	Topic string
	// Payload is sent as it is; empty is allowed.
	Payload []byte
	// QoS is 0, 1 or 2. A birth message goes out at QoS 1 at most (and at
	// the server's Maximum QoS); a will the server refuses with 0x9B (QoS
	// not supported) is lowered for the next attempt.
	QoS byte
	// Retain asks the server to keep the message for later subscribers, so
	// that they learn the gateway's state at once. It is cleared when the
	// server has Retain Available 0 (or refuses a retained will with
	// 0x9A).
	Retain bool
}

// Subscription is an upstream subscription whose messages are handed to
// the Downlink.
type Subscription struct {
	// Filter is the topic filter (wildcards allowed); New rejects an
	// invalid one.
	Filter string
	// QoS is the maximum QoS (0, 1 or 2) the server may deliver the
	// subscription's messages with.
	QoS byte
}

// Options configures a Client. Zero values mean the documented defaults.
type Options struct {
	// URL is the upstream broker: mqtt://, mqtts://, ws:// or wss://.
	// Required.
	URL string
	// Protocol is packet.V5 (default) or packet.V311.
	Protocol packet.Version
	// ClientID identifies the session upstream and must be stable across
	// restarts for the session (and QoS 2 state) to survive. Empty: on MQTT
	// 5 the server assigns one (kept for the reconnects of this Client, not
	// across restarts); on MQTT 3.1.1 "holdfast-" + the host name.
	ClientID string
	// Username and Password authenticate the client; empty means none.
	// MQTT 3.1.1 allows a password only with a username.
	Username, Password string
	// TLS configures mqtts:// and wss:// (nil: system roots).
	TLS *tls.Config

	// KeepAlive is the MQTT keep alive. Default 60s; negative disables it.
	// A Server Keep Alive in the CONNACK replaces it.
	KeepAlive time.Duration
	// SessionExpiry is the MQTT 5 session expiry interval: how long the
	// upstream keeps the session (subscriptions, in-flight QoS 1/2 state)
	// while the link is down. Default 7 days; negative means 0 (the session
	// ends with the connection). Rounded down to seconds.
	SessionExpiry time.Duration
	// CleanStart discards the upstream session on every connect. Default
	// false: a persistent session, so in-flight messages resume with their
	// packet ids.
	CleanStart bool
	// Inflight is how many QoS 1/2 messages may await an acknowledgement at
	// once; lowered to the server's Receive Maximum. Default 64.
	Inflight int

	// ConnectTimeout bounds dialing, TLS and the wait for CONNACK.
	// Default 15s.
	ConnectTimeout time.Duration
	// StallTimeout drops the connection when messages are in flight and no
	// acknowledgement has come for this long. Default 60s; negative
	// disables it.
	StallTimeout time.Duration
	// Backoff paces reconnects.
	Backoff Backoff

	// Birth, when set, is published after every successful connect (at
	// QoS 1 at most; see docs/uplink.md).
	Birth *WillMessage
	// Will, when set, is registered in CONNECT; the server publishes it
	// when the link is lost without a DISCONNECT, and on a clean shutdown
	// (see Client.Run).
	Will *WillMessage
	// Subscriptions are subscribed to after every connect; what arrives is
	// handed to the Downlink.
	Subscriptions []Subscription
	// Logger receives state changes. Default slog.Default().
	Logger *slog.Logger
}

// withDefaults validates o and fills in defaults.
func (o Options) withDefaults() (Options, error) {
	u, err := url.Parse(o.URL)
	if err != nil {
		return o, fmt.Errorf("uplink: url: %w", err)
	}
	switch u.Scheme {
	case "mqtt", "mqtts", "ws", "wss":
	default:
		return o, fmt.Errorf("uplink: url: unsupported scheme %q (use mqtt, mqtts, ws or wss)", u.Scheme)
	}
	if u.Host == "" {
		return o, fmt.Errorf("uplink: url %q: no host", o.URL)
	}
	switch o.Protocol {
	case 0:
		o.Protocol = DefaultProtocol
	case packet.V5, packet.V311:
	default:
		return o, fmt.Errorf("uplink: unsupported protocol version %d (use 4 for 3.1.1 or 5 for 5.0)", o.Protocol)
	}
	if o.Protocol == packet.V311 && o.Password != "" && o.Username == "" {
		return o, errors.New("uplink: MQTT 3.1.1 allows a password only with a username")
	}
	if o.ClientID == "" && o.Protocol == packet.V311 {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "gateway"
		}
		o.ClientID = DefaultClientIDPrefix + h
	}
	switch {
	case o.Inflight == 0:
		o.Inflight = DefaultInflight
	case o.Inflight < 0 || o.Inflight > 65535:
		return o, fmt.Errorf("uplink: inflight %d out of range 1..65535", o.Inflight)
	}
	switch {
	case o.KeepAlive == 0:
		o.KeepAlive = DefaultKeepAlive
	case o.KeepAlive < 0:
		o.KeepAlive = 0
	case o.KeepAlive > 65535*time.Second:
		return o, fmt.Errorf("uplink: keep alive %v above 65535s", o.KeepAlive)
	case o.KeepAlive < time.Second:
		o.KeepAlive = time.Second
	}
	switch {
	case o.SessionExpiry == 0:
		o.SessionExpiry = DefaultSessionExpiry
	case o.SessionExpiry < 0:
		o.SessionExpiry = 0
	case o.SessionExpiry > 0xFFFFFFFF*time.Second:
		o.SessionExpiry = 0xFFFFFFFF * time.Second
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = DefaultConnectTimeout
	}
	switch {
	case o.StallTimeout == 0:
		o.StallTimeout = DefaultStallTimeout
	case o.StallTimeout < 0:
		o.StallTimeout = 0
	}
	b := &o.Backoff
	if b.Initial <= 0 {
		b.Initial = DefaultBackoffInitial
	}
	if b.Max <= 0 {
		b.Max = DefaultBackoffMax
	}
	if b.Max < b.Initial {
		b.Max = b.Initial
	}
	if b.Multiplier == 0 {
		b.Multiplier = DefaultBackoffMultiplier
	}
	if b.Multiplier < 1 {
		return o, fmt.Errorf("uplink: backoff multiplier %v below 1", b.Multiplier)
	}
	switch {
	case b.Randomization == 0:
		b.Randomization = DefaultBackoffRandomization
	case b.Randomization < 0:
		b.Randomization = 0
	case b.Randomization >= 1:
		return o, fmt.Errorf("uplink: backoff randomization %v not below 1", b.Randomization)
	}
	if b.StableAfter <= 0 {
		b.StableAfter = DefaultStableAfter
	}
	for _, m := range []struct {
		name string
		m    *WillMessage
	}{{"birth", o.Birth}, {"will", o.Will}} {
		if m.m == nil {
			continue
		}
		if err := topic.ValidName(m.m.Topic); err != nil {
			return o, fmt.Errorf("uplink: %s: topic %q: %w", m.name, m.m.Topic, err)
		}
		if m.m.QoS > 2 {
			return o, fmt.Errorf("uplink: %s: qos %d out of range 0..2", m.name, m.m.QoS)
		}
	}
	for _, s := range o.Subscriptions {
		if err := topic.ValidFilter(s.Filter); err != nil {
			return o, fmt.Errorf("uplink: subscription %q: %w", s.Filter, err)
		}
		if s.QoS > 2 {
			return o, fmt.Errorf("uplink: subscription %q: qos %d out of range 0..2", s.Filter, s.QoS)
		}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o, nil
}

// Message is one message travelling through the uplink: a queue record on
// its way up, or a downlink message on its way to the Downlink.
type Message struct {
	// Seq is the queue sequence number (0 for downlink messages).
	Seq uint64
	// Topic is the topic name.
	Topic string
	// Payload is the application payload.
	Payload []byte
	// QoS is 0, 1 or 2.
	QoS byte
	// Retain is the MQTT retain flag.
	Retain bool
	// PayloadFormat, ContentType, ResponseTopic, CorrelationData and
	// UserProperties are the MQTT 5 properties; zero means absent. They are
	// not sent on MQTT 3.1.1.
	PayloadFormat   byte
	ContentType     string
	ResponseTopic   string
	CorrelationData []byte
	UserProperties  []packet.UserProperty
	// Expires is when the message stops being worth delivering; zero means
	// never. The remaining time is sent as the Message Expiry Interval.
	Expires time.Time
	// Mark is what Source.Mark last stored for Seq, nil if nothing.
	Mark []byte
}

// Source is the queue as the uplink sees it. Its methods are called from
// several goroutines at once (Ack from a batching goroutine; Lease, Mark and
// DeadLetter from the connection), so they must be safe for concurrent use.
type Source interface {
	// Lease blocks until at least one message is available (or ctx is
	// done) and returns up to max messages from the head, in queue order.
	// Leased messages are hidden from later Leases until Ack or Release.
	// The Client keeps the messages of the returned slice, so the Source
	// must not change them afterwards.
	Lease(ctx context.Context, max int) ([]Message, error)
	// Ack deletes messages durably: the upstream has them. When it fails
	// they stay in the source; the queue leases them again (after what is
	// leased already), so they go upstream a second time, out of queue
	// order.
	Ack(seqs ...uint64) error
	// Release makes leased messages visible again at their original
	// position.
	Release(seqs ...uint64)
	// Mark stores per-message data durably, replacing what was stored;
	// empty data removes the mark. Later Leases return it in Message.Mark,
	// also after a restart. An error wrapping ErrGone means the message is
	// no longer in the source.
	Mark(ctx context.Context, seq uint64, data []byte) error
	// DeadLetter moves a message out of the queue into the dead-letter
	// store, with the reason. An error wrapping ErrGone means the message
	// is no longer in the source.
	DeadLetter(ctx context.Context, seq uint64, reason string) error
}

// ErrGone is what Source.Mark and Source.DeadLetter wrap when the message
// was removed from the source while leased: the queue's drop_oldest policy
// evicts from the head, which is what the uplink holds during an outage. The
// uplink then finishes the message's flow without the stored state instead
// of treating the connection as broken (which would resend it forever).
var ErrGone = errors.New("uplink: message no longer in the source")

// Downlink receives the messages of the upstream subscriptions.
type Downlink interface {
	// Deliver returns once m is stored locally for delivery; only then is
	// it acknowledged upstream. An error leaves it unacknowledged.
	Deliver(ctx context.Context, m *Message) error
}

// MarkedDownlink is a Downlink that can store, in the same durable write as
// a delivered QoS 2 message, a mark saying its packet id was delivered. With
// it, a QoS 2 downlink message is delivered once even when holdfast
// restarts between storing it and the server's PUBREL: a PUBLISH under a
// marked packet id is answered with PUBREC and not delivered again (MQTT
// 4.3.3, Method B, kept across restarts). Without it that guarantee holds
// only while the process lives.
type MarkedDownlink interface {
	Downlink
	// DeliverMarked is Deliver for a QoS 2 message, storing the mark for
	// id with it. The uplink does not cancel ctx once the message may have
	// been handed to the store.
	DeliverMarked(ctx context.Context, m *Message, id uint16) error
	// Marks returns the packet ids marked and not yet unmarked.
	Marks() ([]uint16, error)
	// Unmark removes the marks of ids (their PUBREL came, or the server
	// has a new session) and returns once that is durable: PUBCOMP goes
	// out only then, so a mark always stands for an unfinished flow.
	Unmark(ids ...uint16) error
}
