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
	Key   string // the name
	Value string // the value
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
	PayloadFormat    byte // 0x01 Payload Format Indicator: 0 unspecified bytes, 1 UTF-8 (PUBLISH, will)
	HasPayloadFormat bool // PayloadFormat is present

	MessageExpiry    uint32 // 0x02 Message Expiry Interval, seconds (PUBLISH, will)
	HasMessageExpiry bool   // MessageExpiry is present

	ContentType    string // 0x03 Content Type, the payload's MIME type (PUBLISH, will)
	HasContentType bool   // ContentType is present

	ResponseTopic    string // 0x08 Response Topic, a topic name (PUBLISH, will)
	HasResponseTopic bool   // ResponseTopic is present

	CorrelationData    []byte // 0x09 Correlation Data, up to 65535 bytes (PUBLISH, will)
	HasCorrelationData bool   // CorrelationData is present

	// SubscriptionIdentifiers (0x0B): one on SUBSCRIBE, any number on PUBLISH
	// from server to client. Values 1..268,435,455.
	SubscriptionIdentifiers []uint32

	SessionExpiry    uint32 // 0x11 Session Expiry Interval, seconds (CONNECT, CONNACK, DISCONNECT)
	HasSessionExpiry bool   // SessionExpiry is present

	AssignedClientID    string // 0x12 Assigned Client Identifier (CONNACK)
	HasAssignedClientID bool   // AssignedClientID is present

	ServerKeepAlive    uint16 // 0x13 Server Keep Alive, seconds (CONNACK)
	HasServerKeepAlive bool   // ServerKeepAlive is present

	AuthMethod    string // 0x15 Authentication Method (CONNECT, CONNACK, AUTH)
	HasAuthMethod bool   // AuthMethod is present

	AuthData    []byte // 0x16 Authentication Data (CONNECT, CONNACK, AUTH)
	HasAuthData bool   // AuthData is present

	RequestProblemInfo    byte // 0x17 Request Problem Information, 0 or 1 (CONNECT)
	HasRequestProblemInfo bool // RequestProblemInfo is present

	WillDelay    uint32 // 0x18 Will Delay Interval, seconds (will)
	HasWillDelay bool   // WillDelay is present

	RequestResponseInfo    byte // 0x19 Request Response Information, 0 or 1 (CONNECT)
	HasRequestResponseInfo bool // RequestResponseInfo is present

	ResponseInfo    string // 0x1A Response Information (CONNACK)
	HasResponseInfo bool   // ResponseInfo is present

	ServerReference    string // 0x1C Server Reference, another server to use (CONNACK, DISCONNECT)
	HasServerReference bool   // ServerReference is present

	ReasonString    string // 0x1F Reason String, for humans (acknowledgements, DISCONNECT, AUTH)
	HasReasonString bool   // ReasonString is present

	ReceiveMaximum    uint16 // 0x21 Receive Maximum, 1..65535 (CONNECT, CONNACK)
	HasReceiveMaximum bool   // ReceiveMaximum is present

	TopicAliasMaximum    uint16 // 0x22 Topic Alias Maximum (CONNECT, CONNACK)
	HasTopicAliasMaximum bool   // TopicAliasMaximum is present

	TopicAlias    uint16 // 0x23 Topic Alias, 1..65535 (PUBLISH)
	HasTopicAlias bool   // TopicAlias is present

	MaximumQoS    byte // 0x24 Maximum QoS, 0 or 1 (CONNACK)
	HasMaximumQoS bool // MaximumQoS is present

	RetainAvailable    byte // 0x25 Retain Available, 0 or 1 (CONNACK)
	HasRetainAvailable bool // RetainAvailable is present

	UserProperties []UserProperty // 0x26 User Properties, in order (every packet with properties)

	MaximumPacketSize    uint32 // 0x27 Maximum Packet Size, 1..268,435,455 (CONNECT, CONNACK)
	HasMaximumPacketSize bool   // MaximumPacketSize is present

	WildcardSubAvailable    byte // 0x28 Wildcard Subscription Available, 0 or 1 (CONNACK)
	HasWildcardSubAvailable bool // WildcardSubAvailable is present

	SubIDAvailable    byte // 0x29 Subscription Identifiers Available, 0 or 1 (CONNACK)
	HasSubIDAvailable bool // SubIDAvailable is present

	SharedSubAvailable    byte // 0x2A Shared Subscription Available, 0 or 1 (CONNACK)
	HasSharedSubAvailable bool // SharedSubAvailable is present
}

// Connect is a CONNECT packet. ProtocolName is "MQTT", or "MQIsdp" for 3.1.
type Connect struct {
	// ProtocolName is "MQTT" (3.1.1, 5.0) or "MQIsdp" (3.1); Append fills
	// in the one that goes with the version when it is empty.
	ProtocolName string
	// Version is the protocol level: V31, V311 or V5.
	Version Version
	// CleanStart is Clean Start (5.0), Clean Session in 3.1 and 3.1.1.
	CleanStart bool
	// KeepAlive is the keep alive in seconds; 0 turns it off.
	KeepAlive uint16
	// Properties are the CONNECT's (5.0): Session Expiry, Receive Maximum,
	// Maximum Packet Size, Topic Alias Maximum, ...
	Properties Properties
	// ClientID is the Client Identifier; "" asks the server for one.
	ClientID string

	// WillFlag is set when the CONNECT carries a will message.
	WillFlag bool
	// WillQoS is the will message's QoS, 0 to 2 (0 without WillFlag).
	WillQoS byte
	// WillRetain asks for the will to be published retained.
	WillRetain bool
	// WillProperties are the will's properties (5.0): Will Delay,
	// Payload Format, Message Expiry, Content Type, Response Topic,
	// Correlation Data, User Properties.
	WillProperties Properties
	// WillTopic is the will message's topic name.
	WillTopic string
	// WillPayload is the will message's payload.
	WillPayload []byte

	// UsernameFlag is set when Username is sent (even empty).
	UsernameFlag bool
	// Username is the User Name.
	Username string
	// PasswordFlag is set when Password is sent (even empty); 3.1 and
	// 3.1.1 allow it only with UsernameFlag.
	PasswordFlag bool
	// Password is the Password, binary data.
	Password []byte
}

// Connack is a CONNACK packet. In 3.1.1 ReasonCode holds the connect return
// code (0..5); in 5.0 a reason code. MQTT 3.1 has return codes 0..5 as well
// but no Session Present: its first byte is reserved, written 0 and ignored
// when read.
type Connack struct {
	// SessionPresent reports that the server resumed a stored session;
	// always false in a refusal (MQTT-3.2.2-4, 5.0 MQTT-3.2.2-6) and in 3.1.
	SessionPresent bool
	// ReasonCode is the connect return code (3.1, 3.1.1) or the reason
	// code (5.0); 0 accepts the connection.
	ReasonCode ReasonCode
	// Properties are the CONNACK's (5.0): the server's limits, Assigned
	// Client Identifier, Server Keep Alive, ...
	Properties Properties
}

// Publish is a PUBLISH packet. After decoding, Topic and Payload refer to one
// buffer owned by the packet: retain the packet, not the buffer it came from.
// A 5.0 PUBLISH may have an empty Topic when it carries a Topic Alias.
type Publish struct {
	// Dup is the DUP flag: a redelivery (never on QoS 0).
	Dup bool
	// QoS is the quality of service, 0 to 2.
	QoS byte
	// Retain is the RETAIN flag.
	Retain bool
	// Topic is the topic name; empty only with a 5.0 Topic Alias.
	Topic string
	// PacketID is the packet identifier, only for QoS 1 and 2 (non-zero).
	PacketID uint16
	// Properties are the PUBLISH's (5.0): the message properties, Topic
	// Alias, Subscription Identifiers.
	Properties Properties
	// Payload is the application message; it may be empty.
	Payload []byte
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
	// PacketID is the packet identifier of the PUBLISH acknowledged.
	PacketID uint16
	// ReasonCode is the outcome (5.0 only; 0x00 in 3.1.1).
	ReasonCode ReasonCode
	// Properties are the PUBACK's (5.0): Reason String, User Properties.
	Properties Properties
}

// Pubrec is a PUBREC packet (QoS 2, part 1).
type Pubrec struct {
	// PacketID is the packet identifier of the PUBLISH acknowledged.
	PacketID uint16
	// ReasonCode is the outcome (5.0 only; 0x00 in 3.1.1); 0x80 or above
	// ends the flow.
	ReasonCode ReasonCode
	// Properties are the PUBREC's (5.0): Reason String, User Properties.
	Properties Properties
}

// Pubrel is a PUBREL packet (QoS 2, part 2).
type Pubrel struct {
	// PacketID is the packet identifier of the flow released.
	PacketID uint16
	// ReasonCode is 0x00 or 0x92 Packet Identifier not found (5.0 only).
	ReasonCode ReasonCode
	// Properties are the PUBREL's (5.0): Reason String, User Properties.
	Properties Properties
}

// Pubcomp is a PUBCOMP packet (QoS 2, part 3).
type Pubcomp struct {
	// PacketID is the packet identifier of the flow completed.
	PacketID uint16
	// ReasonCode is 0x00 or 0x92 Packet Identifier not found (5.0 only).
	ReasonCode ReasonCode
	// Properties are the PUBCOMP's (5.0): Reason String, User Properties.
	Properties Properties
}

// Subscription is one topic filter of a SUBSCRIBE with its options.
type Subscription struct {
	Filter            string // topic filter, "$share/{group}/{filter}" for a shared one
	QoS               byte   // maximum QoS, 0 to 2
	NoLocal           bool   // 5.0: not the subscriber's own messages
	RetainAsPublished bool   // 5.0: keep the publisher's RETAIN flag on delivery
	RetainHandling    byte   // 5.0: 0 send retained on subscribe, 1 only if new, 2 never
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
	// PacketID is the packet identifier (non-zero).
	PacketID uint16
	// Properties are the SUBSCRIBE's (5.0): one Subscription Identifier,
	// User Properties.
	Properties Properties
	// Subscriptions are the filters with their options, at least one.
	Subscriptions []Subscription
}

// Suback is a SUBACK packet: one reason code (3.1.1: return code 0, 1, 2 or
// 0x80) per subscription, in order.
type Suback struct {
	// PacketID is the packet identifier of the SUBSCRIBE answered.
	PacketID uint16
	// Properties are the SUBACK's (5.0): Reason String, User Properties.
	Properties Properties
	// ReasonCodes has one code per subscription: the QoS granted or a
	// failure.
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
	// PacketID is the packet identifier (non-zero).
	PacketID uint16
	// Properties are the UNSUBSCRIBE's (5.0): User Properties.
	Properties Properties
	// Filters are the topic filters to unsubscribe, at least one.
	Filters []string
}

// Unsuback is an UNSUBACK packet. ReasonCodes is empty in 3.1.1.
type Unsuback struct {
	// PacketID is the packet identifier of the UNSUBSCRIBE answered.
	PacketID uint16
	// Properties are the UNSUBACK's (5.0): Reason String, User
	// Properties.
	Properties Properties
	// ReasonCodes has one code per filter (5.0 only).
	ReasonCodes []ReasonCode
}

// Pingreq is a PINGREQ packet.
type Pingreq struct{}

// Pingresp is a PINGRESP packet.
type Pingresp struct{}

// Disconnect is a DISCONNECT packet; ReasonCode and Properties are 5.0 only.
type Disconnect struct {
	// ReasonCode says why (5.0); 0x00 is a normal disconnection.
	ReasonCode ReasonCode
	// Properties are the DISCONNECT's (5.0): Session Expiry (client
	// only), Server Reference, Reason String, User Properties.
	Properties Properties
}

// Auth is an AUTH packet (5.0 only).
type Auth struct {
	// ReasonCode is 0x00 Success, 0x18 Continue authentication or 0x19
	// Re-authenticate.
	ReasonCode ReasonCode
	// Properties are the AUTH's: Authentication Method (required unless
	// the AUTH is empty), Authentication Data, Reason String, User
	// Properties.
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
	// Code is the reason code the peer must receive.
	Code ReasonCode
	// Msg says what is wrong, naming the packet and field.
	Msg string
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
