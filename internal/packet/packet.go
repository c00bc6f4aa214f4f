// Package packet is holdfast's MQTT wire codec: it encodes and decodes every
// control packet of MQTT 3.1.1 (protocol level 4) and MQTT 5.0 (level 5), and
// accepts the CONNECT of MQTT 3.1 (protocol name "MQIsdp", level 3), which is
// treated as 3.1.1 afterwards. Both sides of holdfast use it: the local broker
// (server side) and the uplink (client side).
//
// Decoding validates as the specifications require and reports failures as an
// *Error carrying the reason code the peer must receive (0x81 Malformed Packet,
// 0x82 Protocol Error, 0x95 Packet Too Large, ...). The size limit of a Reader
// is checked on the remaining length, before anything is allocated. Encoding
// refuses the same packets with the same reason codes (see Append), so
// whatever holdfast writes, a receiver holding to the specifications reads.
//
// Two checks are left to the receiver, because their answer is the
// receiver's to give and does not end the packet's decoding:
//
//   - The syntax of each SUBSCRIBE and UNSUBSCRIBE filter (see Subscribe): a
//     bad filter gets its own reason code, the other filters stand.
//   - A 5.0 payload that a Payload Format Indicator of 1 says is UTF-8:
//     Publish.ValidPayloadFormat checks it for a receiver that wants to
//     answer 0x99 Payload format invalid.
//
// The 3.1 limit of 23 characters on the client identifier is not the
// codec's either: 3.1 requires the server to answer it with CONNACK return
// code 2 (Identifier Rejected), not to drop the connection as it does for a
// packet that does not decode, so a 3.1 CONNECT with a longer identifier
// decodes and the server decides.
package packet

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

// Version is an MQTT protocol level as carried in CONNECT.
type Version byte

// Protocol levels.
const (
	V31  Version = 3 // MQTT 3.1, protocol name "MQIsdp"
	V311 Version = 4 // MQTT 3.1.1
	V5   Version = 5 // MQTT 5.0
)

// String returns "3.1", "3.1.1" or "5.0".
func (v Version) String() string {
	switch v {
	case V31:
		return "3.1"
	case V311:
		return "3.1.1"
	case V5:
		return "5.0"
	}
	return fmt.Sprintf("level(%d)", byte(v))
}

// Type is the control packet type, the high nibble of the first byte.
type Type byte

// Control packet types.
const (
	CONNECT     Type = 1
	CONNACK     Type = 2
	PUBLISH     Type = 3
	PUBACK      Type = 4
	PUBREC      Type = 5
	PUBREL      Type = 6
	PUBCOMP     Type = 7
	SUBSCRIBE   Type = 8
	SUBACK      Type = 9
	UNSUBSCRIBE Type = 10
	UNSUBACK    Type = 11
	PINGREQ     Type = 12
	PINGRESP    Type = 13
	DISCONNECT  Type = 14
	AUTH        Type = 15
)

var typeNames = [...]string{"RESERVED", "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC", "PUBREL",
	"PUBCOMP", "SUBSCRIBE", "SUBACK", "UNSUBSCRIBE", "UNSUBACK", "PINGREQ", "PINGRESP", "DISCONNECT", "AUTH"}

// String returns the packet type's name as the specification writes it.
func (t Type) String() string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return fmt.Sprintf("TYPE(%d)", byte(t))
}

// Packet is one MQTT control packet.
type Packet interface {
	// Type returns the control packet type.
	Type() Type
}

// UserProperty is an MQTT 5 user property: a UTF-8 string pair. A packet may
// carry several with the same key; their order is significant and kept.
type UserProperty struct {
	Key, Value string
}

// Properties holds the MQTT 5 properties of a packet (5.0 section 2.2.2).
//
// Each property that may appear at most once has a value field and a Has*
// field: the property is present exactly when Has* is true, whatever the
// value, so an empty string or a zero is a value that can be sent. The two
// that may repeat, UserProperties and SubscriptionIdentifiers, are slices
// with no Has* field: present when not empty, in the order of the wire.
//
// The codec checks which properties a packet type may carry and the rules on
// their values, in both directions; 3.1 and 3.1.1 packets have none, and the
// encoder leaves them out for those versions.
type Properties struct {
	PayloadFormat    byte // 0x01, HasPayloadFormat
	HasPayloadFormat bool

	MessageExpiry    uint32 // 0x02 seconds, HasMessageExpiry
	HasMessageExpiry bool

	ContentType    string // 0x03
	HasContentType bool

	ResponseTopic    string // 0x08
	HasResponseTopic bool

	CorrelationData    []byte // 0x09
	HasCorrelationData bool

	// SubscriptionIdentifiers (0x0B): one on SUBSCRIBE, any number on PUBLISH
	// from server to client. Values 1..268,435,455.
	SubscriptionIdentifiers []uint32

	SessionExpiry    uint32 // 0x11 seconds
	HasSessionExpiry bool

	AssignedClientID    string // 0x12
	HasAssignedClientID bool

	ServerKeepAlive    uint16 // 0x13 seconds
	HasServerKeepAlive bool

	AuthMethod    string // 0x15
	HasAuthMethod bool

	AuthData    []byte // 0x16
	HasAuthData bool

	RequestProblemInfo    byte // 0x17, 0 or 1
	HasRequestProblemInfo bool

	WillDelay    uint32 // 0x18 seconds
	HasWillDelay bool

	RequestResponseInfo    byte // 0x19, 0 or 1
	HasRequestResponseInfo bool

	ResponseInfo    string // 0x1A
	HasResponseInfo bool

	ServerReference    string // 0x1C
	HasServerReference bool

	ReasonString    string // 0x1F
	HasReasonString bool

	ReceiveMaximum    uint16 // 0x21, 1..65535
	HasReceiveMaximum bool

	TopicAliasMaximum    uint16 // 0x22
	HasTopicAliasMaximum bool

	TopicAlias    uint16 // 0x23, 1..65535
	HasTopicAlias bool

	MaximumQoS    byte // 0x24, 0 or 1
	HasMaximumQoS bool

	RetainAvailable    byte // 0x25, 0 or 1
	HasRetainAvailable bool

	UserProperties []UserProperty // 0x26

	MaximumPacketSize    uint32 // 0x27, 1..268,435,455
	HasMaximumPacketSize bool

	WildcardSubAvailable    byte // 0x28, 0 or 1
	HasWildcardSubAvailable bool

	SubIDAvailable    byte // 0x29, 0 or 1
	HasSubIDAvailable bool

	SharedSubAvailable    byte // 0x2A, 0 or 1
	HasSharedSubAvailable bool
}

// Connect is a CONNECT packet. ProtocolName is "MQTT", or "MQIsdp" for 3.1.
type Connect struct {
	ProtocolName string
	Version      Version
	CleanStart   bool // Clean Session in 3.1.1
	KeepAlive    uint16
	Properties   Properties
	ClientID     string

	WillFlag       bool
	WillQoS        byte
	WillRetain     bool
	WillProperties Properties // 5.0: Will Delay, Payload Format, Message Expiry, Content Type, Response Topic, Correlation Data, User Properties
	WillTopic      string
	WillPayload    []byte

	UsernameFlag bool
	Username     string
	PasswordFlag bool
	Password     []byte
}

// Connack is a CONNACK packet. In 3.1.1 ReasonCode holds the connect return
// code (0..5); in 5.0 a reason code. MQTT 3.1 has return codes 0..5 as well
// but no Session Present: its first byte is reserved, written 0 and ignored
// when read.
type Connack struct {
	SessionPresent bool
	ReasonCode     ReasonCode
	Properties     Properties
}

// Publish is a PUBLISH packet. After decoding, Topic and Payload refer to one
// buffer owned by the packet: retain the packet, not the buffer it came from.
// A 5.0 PUBLISH may have an empty Topic when it carries a Topic Alias.
type Publish struct {
	Dup        bool
	QoS        byte
	Retain     bool
	Topic      string
	PacketID   uint16 // only for QoS 1 and 2
	Properties Properties
	Payload    []byte
}

// ValidPayloadFormat reports whether the payload is what a Payload Format
// Indicator of 1 announces: UTF-8 Encoded Character Data (5.0 section
// 3.3.2.3.2). It returns nil when there is no such indicator or the payload
// is well-formed UTF-8, else an *Error with reason code 0x99 (Payload format
// invalid), which a receiver may answer with in PUBACK, PUBREC or DISCONNECT
// (the specification allows it, it does not require it). The decoder does not call it:
// checking every payload costs a pass over it, which is the receiver's
// choice.
func (p *Publish) ValidPayloadFormat() error {
	if p.Properties.HasPayloadFormat && p.Properties.PayloadFormat == 1 && !utf8.Valid(p.Payload) {
		return Errorf(PayloadFormatInvalid, "PUBLISH: payload format indicator 1 but the payload is not UTF-8")
	}
	return nil
}

// Puback is a PUBACK packet (QoS 1 acknowledgement).
type Puback struct {
	PacketID   uint16
	ReasonCode ReasonCode // 5.0 only; 0x00 in 3.1.1
	Properties Properties
}

// Pubrec is a PUBREC packet (QoS 2, part 1).
type Pubrec struct {
	PacketID   uint16
	ReasonCode ReasonCode
	Properties Properties
}

// Pubrel is a PUBREL packet (QoS 2, part 2).
type Pubrel struct {
	PacketID   uint16
	ReasonCode ReasonCode
	Properties Properties
}

// Pubcomp is a PUBCOMP packet (QoS 2, part 3).
type Pubcomp struct {
	PacketID   uint16
	ReasonCode ReasonCode
	Properties Properties
}

// Subscription is one topic filter of a SUBSCRIBE with its options.
type Subscription struct {
	Filter            string
	QoS               byte // maximum QoS
	NoLocal           bool // 5.0
	RetainAsPublished bool // 5.0
	RetainHandling    byte // 5.0: 0 send retained on subscribe, 1 only if new, 2 never
}

// Subscribe is a SUBSCRIBE packet.
//
// The decoder refuses a SUBSCRIBE only for what makes the whole packet
// invalid: no filter, an empty filter, a filter that is not a UTF-8 Encoded
// String, QoS 3, Retain Handling 3, reserved option bits, and No Local on a
// "$share/" filter. It does not check the syntax of each filter ("a/#/b",
// "a+", "$share//x" decode), because a bad filter must not fail the others:
// the receiver checks every filter with topic.ValidFilter and, in 5.0,
// topic.ParseShared, and answers that one with SUBACK reason code 0x8F
// (Topic Filter invalid; 3.1.1: 0x80).
type Subscribe struct {
	PacketID      uint16
	Properties    Properties // Subscription Identifier, User Properties
	Subscriptions []Subscription
}

// Suback is a SUBACK packet: one reason code (3.1.1: return code 0, 1, 2 or
// 0x80) per subscription, in order.
type Suback struct {
	PacketID    uint16
	Properties  Properties
	ReasonCodes []ReasonCode
}

// Unsubscribe is an UNSUBSCRIBE packet. As with Subscribe, the syntax of each
// filter is the receiver's to check (topic.ValidFilter and, in 5.0,
// topic.ParseShared), so that in 5.0 one bad filter gets UNSUBACK reason
// code 0x8F without failing the others. A 3.1.1 UNSUBACK has no reason
// codes: there a bad filter is a protocol violation (3.1.1 MQTT-4.7.1-2,
// -3), which the receiver answers by closing the connection
// (MQTT-4.8.0-1).
type Unsubscribe struct {
	PacketID   uint16
	Properties Properties
	Filters    []string
}

// Unsuback is an UNSUBACK packet. ReasonCodes is empty in 3.1.1.
type Unsuback struct {
	PacketID    uint16
	Properties  Properties
	ReasonCodes []ReasonCode
}

// Pingreq is a PINGREQ packet.
type Pingreq struct{}

// Pingresp is a PINGRESP packet.
type Pingresp struct{}

// Disconnect is a DISCONNECT packet; ReasonCode and Properties are 5.0 only.
type Disconnect struct {
	ReasonCode ReasonCode
	Properties Properties
}

// Auth is an AUTH packet (5.0 only).
type Auth struct {
	ReasonCode ReasonCode
	Properties Properties
}

// Type implements Packet.
func (*Connect) Type() Type { return CONNECT }

// Type implements Packet.
func (*Connack) Type() Type { return CONNACK }

// Type implements Packet.
func (*Publish) Type() Type { return PUBLISH }

// Type implements Packet.
func (*Puback) Type() Type { return PUBACK }

// Type implements Packet.
func (*Pubrec) Type() Type { return PUBREC }

// Type implements Packet.
func (*Pubrel) Type() Type { return PUBREL }

// Type implements Packet.
func (*Pubcomp) Type() Type { return PUBCOMP }

// Type implements Packet.
func (*Subscribe) Type() Type { return SUBSCRIBE }

// Type implements Packet.
func (*Suback) Type() Type { return SUBACK }

// Type implements Packet.
func (*Unsubscribe) Type() Type { return UNSUBSCRIBE }

// Type implements Packet.
func (*Unsuback) Type() Type { return UNSUBACK }

// Type implements Packet.
func (*Pingreq) Type() Type { return PINGREQ }

// Type implements Packet.
func (*Pingresp) Type() Type { return PINGRESP }

// Type implements Packet.
func (*Disconnect) Type() Type { return DISCONNECT }

// Type implements Packet.
func (*Auth) Type() Type { return AUTH }

// Error is a protocol violation found while decoding or encoding, with the
// reason code the peer must receive (in a CONNACK or DISCONNECT on 5.0; a
// 3.1.1 peer's connection is just closed).
type Error struct {
	Code ReasonCode
	Msg  string
}

// Error returns "mqtt: <reason>: <detail>".
func (e *Error) Error() string { return "mqtt: " + e.Code.String() + ": " + e.Msg }

// Is makes errors.Is(err, &Error{Code: c}) true for any *Error with code c.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// Errorf returns an *Error with the given reason code.
func Errorf(code ReasonCode, format string, args ...any) *Error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// Sentinels for errors.Is: any *Error with the same code matches.
var (
	ErrMalformed      = &Error{Code: MalformedPacket, Msg: "malformed packet"}
	ErrProtocol       = &Error{Code: ProtocolError, Msg: "protocol error"}
	ErrPacketTooLarge = &Error{Code: PacketTooLarge, Msg: "packet too large"}
)

// CodeOf returns the reason code carried by err, or UnspecifiedError when err
// is not an *Error.
func CodeOf(err error) ReasonCode {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return UnspecifiedError
}
