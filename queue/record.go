package queue

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
	"unicode/utf8"
)

// RecordVersion is the version byte that starts every record this package
// writes. Decoders reject any other version.
const RecordVersion = 1

// ErrCorrupt is returned (wrapped) when a stored record, mark or counter
// block does not decode.
var ErrCorrupt = errors.New("queue: corrupt data")

// UserProperty is one MQTT 5 user property. Order and duplicates are kept.
type UserProperty struct {
	Key   string
	Value string
}

// Message is what the queue stores: an MQTT publish plus the MQTT 5
// properties worth carrying upstream and where it came from.
type Message struct {
	// Topic is the topic name the message is forwarded with.
	Topic string
	// Payload is the application payload; it may be empty.
	Payload []byte
	// QoS is the MQTT quality of service, 0, 1 or 2.
	QoS byte
	// Retain is the MQTT retain flag.
	Retain bool
	// PayloadFormat is the MQTT 5 payload format indicator: 0 unspecified
	// bytes (or absent), 1 UTF-8 text.
	PayloadFormat byte
	// ContentType is the MQTT 5 content type; empty means absent.
	ContentType string
	// ResponseTopic is the MQTT 5 response topic; empty means absent.
	ResponseTopic string
	// CorrelationData is the MQTT 5 correlation data; empty means absent.
	CorrelationData []byte
	// UserProperties are the MQTT 5 user properties, in order.
	UserProperties []UserProperty
	// Expiry is the MQTT 5 message expiry interval; 0 means the message
	// never expires. The deadline is ReceivedAt + Expiry.
	Expiry time.Duration
	// ReceivedAt is when holdfast received the message. Append sets it to
	// the current time when it is zero.
	ReceivedAt time.Time
	// Source is the local client id or adapter name that produced it.
	Source string
}

// Deadline returns the absolute time after which the message must not be
// forwarded, and false when it has no expiry.
func (m *Message) Deadline() (time.Time, bool) {
	if m.Expiry <= 0 {
		return time.Time{}, false
	}
	return m.ReceivedAt.Add(m.Expiry), true
}

// Record is a message as handed out by Lease: the stored message, its
// sequence number in the queue, and the mark last stored for it.
type Record struct {
	// Seq is the record's position in the queue; it only ever grows.
	Seq uint64
	// Mark is the data last stored with Mark for this record, or nil.
	Mark []byte
	Message
}

// Flag bits of the second byte of an encoded record.
const (
	flagQoSMask       = 0x03
	flagRetain        = 0x04
	flagUTF8Payload   = 0x08
	flagContentType   = 0x10
	flagResponseTopic = 0x20
	flagCorrelation   = 0x40
	flagUserProps     = 0x80
)

// maxRecordFieldLen caps any single decoded length, a guard against
// absurd allocations on corrupt input (a field can never be longer than
// the record anyway; this keeps the arithmetic far from overflow).
const maxRecordFieldLen = 1 << 30

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendBytes(b []byte, p []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(p)))
	return append(b, p...)
}

// encodedSize returns an upper bound of the encoded size of m.
func encodedSize(m *Message) int {
	n := 2 + 2*binary.MaxVarintLen64
	n += len(m.Topic) + len(m.Payload) + len(m.ContentType) + len(m.ResponseTopic) +
		len(m.CorrelationData) + len(m.Source) + 6*binary.MaxVarintLen64
	for _, p := range m.UserProperties {
		n += len(p.Key) + len(p.Value) + 2*binary.MaxVarintLen64
	}
	return n
}

// EncodeRecord appends the version 1 encoding of m to b and returns it.
//
// Layout: version byte (1); flags byte (bits 0-1 QoS, bit 2 retain, bit 3
// UTF-8 payload, bits 4-7 presence of content type, response topic,
// correlation data, user properties); varint receive time in Unix
// nanoseconds; uvarint expiry interval in nanoseconds (0 none); then
// length-prefixed (uvarint) topic, source, the present optional fields in
// flag order (user properties as a uvarint count of key/value pairs), and
// the payload last.
func EncodeRecord(b []byte, m *Message) ([]byte, error) {
	if m.QoS > 2 {
		return b, fmt.Errorf("queue: message qos %d: must be 0, 1 or 2", m.QoS)
	}
	if m.PayloadFormat > 1 {
		return b, fmt.Errorf("queue: message payload format %d: must be 0 or 1", m.PayloadFormat)
	}
	if m.Expiry < 0 {
		return b, fmt.Errorf("queue: message expiry %v: negative", m.Expiry)
	}
	flags := m.QoS
	if m.Retain {
		flags |= flagRetain
	}
	if m.PayloadFormat == 1 {
		flags |= flagUTF8Payload
	}
	if m.ContentType != "" {
		flags |= flagContentType
	}
	if m.ResponseTopic != "" {
		flags |= flagResponseTopic
	}
	if len(m.CorrelationData) > 0 {
		flags |= flagCorrelation
	}
	if len(m.UserProperties) > 0 {
		flags |= flagUserProps
	}
	b = append(b, RecordVersion, flags)
	var recv int64
	if !m.ReceivedAt.IsZero() {
		recv = m.ReceivedAt.UnixNano()
	}
	b = binary.AppendVarint(b, recv)
	b = binary.AppendUvarint(b, uint64(m.Expiry))
	b = appendString(b, m.Topic)
	b = appendString(b, m.Source)
	if flags&flagContentType != 0 {
		b = appendString(b, m.ContentType)
	}
	if flags&flagResponseTopic != 0 {
		b = appendString(b, m.ResponseTopic)
	}
	if flags&flagCorrelation != 0 {
		b = appendBytes(b, m.CorrelationData)
	}
	if flags&flagUserProps != 0 {
		b = binary.AppendUvarint(b, uint64(len(m.UserProperties)))
		for _, p := range m.UserProperties {
			b = appendString(b, p.Key)
			b = appendString(b, p.Value)
		}
	}
	b = appendBytes(b, m.Payload)
	return b, nil
}

// decoder reads the fields of an encoded record and remembers the first
// error.
type decoder struct {
	b   []byte
	err error
	tmp [binary.MaxVarintLen64]byte
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: record %s", ErrCorrupt, what)
	}
}

func (d *decoder) uvarint(what string) uint64 {
	v, ok := d.readUvarint()
	if !ok {
		d.fail(what + ": bad varint")
	}
	return v
}

// readUvarint reads a canonical uvarint; false (and 0) for a bad one,
// which the caller reports, so the field names of an error are only put
// together when there is one. After an earlier error it returns 0 and
// true: that one is reported already.
func (d *decoder) readUvarint() (uint64, bool) {
	if d.err != nil {
		return 0, true // reported already
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 || n != len(binary.AppendUvarint(d.tmp[:0], v)) {
		return 0, false
	}
	d.b = d.b[n:]
	return v, true
}

func (d *decoder) varint(what string) int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 || n != len(binary.AppendVarint(d.tmp[:0], v)) {
		d.fail(what + ": bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes(what string) []byte {
	n, ok := d.readUvarint()
	if !ok {
		d.fail(what + " length: bad varint")
	}
	if d.err != nil {
		return nil
	}
	if n > maxRecordFieldLen || n > uint64(len(d.b)) {
		d.fail(what + ": length beyond end")
		return nil
	}
	p := d.b[:n:n]
	d.b = d.b[n:]
	return p
}

// str decodes a length-prefixed UTF-8 string; required refuses an empty
// one. When the bytes equal same (a string decoded before, often the
// same topic), same itself is returned.
func (d *decoder) str(what string, required bool, same string) string {
	p := d.bytes(what)
	if d.err != nil {
		return ""
	}
	if len(p) > 0 && string(p) == same {
		return same // validated when same was decoded; no copy
	}
	if required && len(p) == 0 {
		d.fail(what + ": flagged present but empty")
		return ""
	}
	if !utf8.Valid(p) {
		d.fail(what + ": invalid utf-8")
		return ""
	}
	return string(p)
}

// DecodeRecord decodes a record written by EncodeRecord into m. It
// validates the version, flags, every length and the UTF-8 of every
// string, and rejects trailing bytes and non-canonical encodings (overlong
// varints, optional fields flagged present but empty); errors
// wrap ErrCorrupt. Payload and CorrelationData alias b.
func DecodeRecord(b []byte, m *Message) error { return decodeRecord(b, m, nil) }

// decodeRecord is DecodeRecord sharing the topic and source strings of
// prev (a message decoded before; may be nil) when they are the same, as
// they mostly are from one record to the next: a lease then allocates
// neither.
func decodeRecord(b []byte, m *Message, prev *Message) error {
	if len(b) < 2 {
		return fmt.Errorf("%w: record too short (%d bytes)", ErrCorrupt, len(b))
	}
	if b[0] != RecordVersion {
		return fmt.Errorf("%w: record version %d not supported", ErrCorrupt, b[0])
	}
	flags := b[1]
	if flags&flagQoSMask == 3 {
		return fmt.Errorf("%w: record qos 3", ErrCorrupt)
	}
	d := decoder{b: b[2:]}
	*m = Message{QoS: flags & flagQoSMask, Retain: flags&flagRetain != 0}
	if flags&flagUTF8Payload != 0 {
		m.PayloadFormat = 1
	}
	recv := d.varint("receive time")
	if d.err == nil && recv != 0 {
		m.ReceivedAt = time.Unix(0, recv)
	}
	exp := d.uvarint("expiry")
	if d.err == nil && exp > math.MaxInt64 {
		d.fail("expiry: out of range")
	}
	m.Expiry = time.Duration(exp)
	var topic, source string
	if prev != nil {
		topic, source = prev.Topic, prev.Source
	}
	m.Topic = d.str("topic", false, topic)
	m.Source = d.str("source", false, source)
	if flags&flagContentType != 0 {
		m.ContentType = d.str("content type", true, "")
	}
	if flags&flagResponseTopic != 0 {
		m.ResponseTopic = d.str("response topic", true, "")
	}
	if flags&flagCorrelation != 0 {
		m.CorrelationData = d.bytes("correlation data")
		if d.err == nil && len(m.CorrelationData) == 0 {
			d.fail("correlation data: flagged present but empty")
		}
	}
	if flags&flagUserProps != 0 {
		n := d.uvarint("user property count")
		// Each property takes at least two bytes (two empty lengths).
		if d.err == nil && (n == 0 || n > uint64(len(d.b))/2) {
			d.fail("user property count: out of range")
		}
		if d.err == nil {
			m.UserProperties = make([]UserProperty, n)
			for i := range m.UserProperties {
				m.UserProperties[i].Key = d.str("user property key", false, "")
				m.UserProperties[i].Value = d.str("user property value", false, "")
			}
		}
	}
	p := d.bytes("payload")
	if len(p) > 0 {
		m.Payload = p
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail(fmt.Sprintf("has %d trailing bytes", len(d.b)))
	}
	if d.err != nil {
		*m = Message{}
		return d.err
	}
	return nil
}
