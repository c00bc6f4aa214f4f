package localbus

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"holdfast/internal/packet"
)

// Store layout. Every key starts with "lb/"; client ids are hex-encoded so a
// client id containing "/" cannot make one client's prefix cover another's.
//
//	lb/s/<hex client id>                 session: protocol, expiry, subscriptions
//	lb/q/<hex client id>/<%016x seq>     a QoS 1/2 message held for the session
//	lb/i/<hex client id>/<%04x id>       inbound QoS 2 packet id awaiting PUBREL
//	lb/r/<topic>                         retained message
const (
	keyPrefix         = "lb/"
	keySessionPrefix  = "lb/s/"
	keyQueuedPrefix   = "lb/q/"
	keyInboundPrefix  = "lb/i/"
	keyRetainedPrefix = "lb/r/"
)

// recordVersion is the first byte of every encoded value.
const recordVersion = 1

// errCorrupt is wrapped by every decoding error.
var errCorrupt = errors.New("localbus: corrupt stored record")

func sessionKey(cid string) string   { return keySessionPrefix + hex.EncodeToString([]byte(cid)) }
func retainedKey(name string) string { return keyRetainedPrefix + name }
func queuedKey(cid string, seq uint64) string {
	return fmt.Sprintf("%s%x/%016x", keyQueuedPrefix, cid, seq)
}
func inboundKey(cid string, id uint16) string {
	return fmt.Sprintf("%s%x/%04x", keyInboundPrefix, cid, id)
}

// parseClientKey splits "<hex cid>/<hex n>" (the part after the prefix).
func parseClientKey(rest string) (cid string, n uint64, err error) {
	h, num, ok := strings.Cut(rest, "/")
	if !ok {
		return "", 0, fmt.Errorf("%w: key %q", errCorrupt, rest)
	}
	b, err := hex.DecodeString(h)
	if err != nil {
		return "", 0, fmt.Errorf("%w: key %q", errCorrupt, rest)
	}
	n, err = strconv.ParseUint(num, 16, 64)
	if err != nil {
		return "", 0, fmt.Errorf("%w: key %q", errCorrupt, rest)
	}
	return string(b), n, nil
}

// stored is a message as the broker keeps it: the deadline is absolute so
// that it survives a restart.
type stored struct {
	Message
	deadline time.Time // zero: no expiry
}

func newStored(m *Message, now time.Time) *stored {
	s := &stored{Message: *m}
	if m.Expiry > 0 {
		s.deadline = now.Add(m.Expiry)
	}
	s.Expiry = 0
	return s
}

// expired reports whether the message's expiry has passed at now.
func (s *stored) expired(now time.Time) bool {
	return !s.deadline.IsZero() && !now.Before(s.deadline)
}

// remaining returns the expiry left in whole seconds (rounded up) for an
// outgoing PUBLISH, and whether there is one.
func (s *stored) remaining(now time.Time) (uint32, bool) {
	if s.deadline.IsZero() {
		return 0, false
	}
	d := s.deadline.Sub(now)
	if d <= 0 {
		return 0, true
	}
	secs := (d + time.Second - 1) / time.Second
	if secs > 0xFFFFFFFF {
		secs = 0xFFFFFFFF
	}
	return uint32(secs), true
}

// public returns a copy for an in-process subscriber, Expiry set to what is
// left.
func (s *stored) public(now time.Time) *Message {
	m := s.Message
	if !s.deadline.IsZero() {
		m.Expiry = s.deadline.Sub(now)
	}
	return &m
}

// enc builds records: uvarint lengths, big-endian fixed fields.
type enc struct{ b []byte }

func (e *enc) byte(v byte)      { e.b = append(e.b, v) }
func (e *enc) uvarint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *enc) bytes(v []byte) {
	e.uvarint(uint64(len(v)))
	e.b = append(e.b, v...)
}
func (e *enc) str(v string) {
	e.uvarint(uint64(len(v)))
	e.b = append(e.b, v...)
}

type dec struct {
	b   []byte
	err error
}

func (d *dec) fail() {
	if d.err == nil {
		d.err = fmt.Errorf("%w: truncated or invalid", errCorrupt)
	}
	d.b = nil
}

func (d *dec) byte() byte {
	if len(d.b) < 1 {
		d.fail()
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *dec) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) bytes() []byte {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)) {
		d.fail()
		return nil
	}
	v := append([]byte(nil), d.b[:n]...)
	d.b = d.b[n:]
	return v
}

func (d *dec) str() string {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)) {
		d.fail()
		return ""
	}
	v := string(d.b[:n])
	d.b = d.b[n:]
	return v
}

func (d *dec) done() error {
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%w: %d trailing bytes", errCorrupt, len(d.b))
	}
	return d.err
}

// Message flags in a record.
const (
	flagRetain = 1 << iota
	flagCorrelation
	flagDeadline
)

func (e *enc) message(m *stored) {
	var flags byte
	if m.Retain {
		flags |= flagRetain
	}
	if m.CorrelationData != nil {
		flags |= flagCorrelation
	}
	if !m.deadline.IsZero() {
		flags |= flagDeadline
	}
	e.byte(flags)
	e.byte(m.QoS)
	e.byte(m.PayloadFormat)
	e.str(m.Topic)
	e.bytes(m.Payload)
	e.str(m.ContentType)
	e.str(m.ResponseTopic)
	if m.CorrelationData != nil {
		e.bytes(m.CorrelationData)
	}
	e.uvarint(uint64(len(m.UserProperties)))
	for _, p := range m.UserProperties {
		e.str(p.Key)
		e.str(p.Value)
	}
	if !m.deadline.IsZero() {
		e.uvarint(uint64(m.deadline.UnixNano()))
	}
	e.str(m.ClientID)
}

func (d *dec) message() *stored {
	m := &stored{}
	flags := d.byte()
	if flags&^(flagRetain|flagCorrelation|flagDeadline) != 0 {
		d.fail()
	}
	m.Retain = flags&flagRetain != 0
	m.QoS = d.byte()
	if m.QoS > 2 {
		d.fail()
	}
	m.PayloadFormat = d.byte()
	m.Topic = d.str()
	m.Payload = d.bytes()
	m.ContentType = d.str()
	m.ResponseTopic = d.str()
	if flags&flagCorrelation != 0 {
		m.CorrelationData = d.bytes()
		if m.CorrelationData == nil {
			m.CorrelationData = []byte{}
		}
	}
	n := d.uvarint()
	if n > uint64(len(d.b)) { // each property takes at least two bytes
		d.fail()
		return m
	}
	for i := uint64(0); i < n && d.err == nil; i++ {
		m.UserProperties = append(m.UserProperties, packet.UserProperty{Key: d.str(), Value: d.str()})
	}
	if flags&flagDeadline != 0 {
		m.deadline = time.Unix(0, int64(d.uvarint()))
	}
	m.ClientID = d.str()
	return m
}

// encodeRetained encodes a retained message.
func encodeRetained(m *stored) []byte {
	e := enc{b: []byte{recordVersion}}
	e.message(m)
	return e.b
}

// decodeRetained decodes what encodeRetained wrote.
func decodeRetained(b []byte) (*stored, error) {
	d := dec{b: b}
	if d.byte() != recordVersion {
		return nil, fmt.Errorf("%w: unknown record version", errCorrupt)
	}
	m := d.message()
	if err := d.done(); err != nil {
		return nil, err
	}
	return m, nil
}

// Queued message record flags.
const (
	qflagRetain = 1 << iota
	qflagSent   // PacketID was assigned (QoS 2 in flight)
	qflagPubrec // PUBREC received: only PUBREL/PUBCOMP left
)

// encodeQueued encodes a message held for a session with its delivery state.
func encodeQueued(o *outMsg) []byte {
	e := enc{b: []byte{recordVersion}}
	var flags byte
	if o.retain {
		flags |= qflagRetain
	}
	var pid uint16
	if o.pid != 0 && o.qos == 2 {
		// Only QoS 2 keeps its packet id over a restart: a PUBLISH whose
		// PUBREC may have come must not reach the client twice under
		// another id. QoS 1 is sent again under a new one.
		flags |= qflagSent
		pid = o.pid
		if o.pubrec {
			flags |= qflagPubrec
		}
	}
	e.byte(flags)
	e.byte(o.qos)
	e.uvarint(uint64(pid))
	e.uvarint(uint64(len(o.subIDs)))
	for _, id := range o.subIDs {
		e.uvarint(uint64(id))
	}
	e.message(o.m)
	return e.b
}

// decodeQueued decodes what encodeQueued wrote.
func decodeQueued(b []byte) (*outMsg, error) {
	d := dec{b: b}
	if d.byte() != recordVersion {
		return nil, fmt.Errorf("%w: unknown record version", errCorrupt)
	}
	o := &outMsg{ready: true, persisted: true}
	flags := d.byte()
	o.retain = flags&qflagRetain != 0
	o.qos = d.byte()
	if o.qos < 1 || o.qos > 2 {
		d.fail()
	}
	pid := d.uvarint()
	sent := flags&qflagSent != 0
	if pid > 0xFFFF || flags&^(qflagRetain|qflagSent|qflagPubrec) != 0 ||
		sent != (pid != 0) || sent && o.qos != 2 || flags&qflagPubrec != 0 && !sent {
		d.fail()
	}
	if flags&qflagSent != 0 {
		o.pid = uint16(pid)
		o.pubrec = flags&qflagPubrec != 0
	}
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail()
		return nil, d.err
	}
	for i := uint64(0); i < n && d.err == nil; i++ {
		v := d.uvarint()
		if v == 0 || v > maxSubscriptionID {
			d.fail()
		}
		o.subIDs = append(o.subIDs, uint32(v))
	}
	o.m = d.message()
	if err := d.done(); err != nil {
		return nil, err
	}
	return o, nil
}

// Subscription option bits in a session record.
const (
	soNoLocal = 1 << 2
	soRAP     = 1 << 3
)

// encodeSession encodes a persistent session: protocol level, expiry
// interval and subscriptions.
func encodeSession(s *session) []byte {
	e := enc{b: []byte{recordVersion}}
	e.byte(byte(s.version))
	e.uvarint(uint64(s.expiry))
	e.uvarint(uint64(len(s.subs)))
	for _, f := range s.subOrder() {
		so := s.subs[f]
		opts := so.QoS | so.RetainHandling<<4
		if so.NoLocal {
			opts |= soNoLocal
		}
		if so.RetainAsPublished {
			opts |= soRAP
		}
		e.str(f)
		e.byte(opts)
		e.uvarint(uint64(so.id))
	}
	return e.b
}

// decodeSession decodes what encodeSession wrote into a new session.
func decodeSession(cid string, b []byte) (*session, error) {
	d := dec{b: b}
	if d.byte() != recordVersion {
		return nil, fmt.Errorf("%w: unknown record version", errCorrupt)
	}
	s := newSession(cid)
	s.persistent = true
	s.version = packet.Version(d.byte())
	if s.version != packet.V311 && s.version != packet.V5 && s.version != packet.V31 {
		d.fail()
	}
	exp := d.uvarint()
	if exp > 0xFFFFFFFF {
		d.fail()
	}
	s.expiry = uint32(exp)
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail()
		return nil, d.err
	}
	for i := uint64(0); i < n && d.err == nil; i++ {
		f := d.str()
		opts := d.byte()
		id := d.uvarint()
		if opts&3 > 2 || opts>>4 > 2 || opts&0xC3 != opts&0x03 || id > maxSubscriptionID {
			d.fail()
			break
		}
		s.subs[f] = &subscription{
			Subscription: packet.Subscription{
				Filter: f, QoS: opts & 3, NoLocal: opts&soNoLocal != 0,
				RetainAsPublished: opts&soRAP != 0, RetainHandling: opts >> 4 & 3,
			},
			id: uint32(id),
		}
	}
	if err := d.done(); err != nil {
		return nil, err
	}
	return s, nil
}
