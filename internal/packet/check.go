package packet

import (
	"strings"

	"holdfast/internal/topic"
)

// The rules below are shared by the decoder and the encoder, so that Append
// refuses exactly what Decode refuses, with the same reason code. Each
// returns nil or an *Error whose message does not yet name the packet; the
// caller adds that. None of them allocates unless it fails.

// checkProtocol checks a CONNECT's protocol name against its level: "MQTT"
// with 4 or 5, "MQIsdp" with 3 (MQTT-3.1.2-1, MQTT-3.1.2-2).
func checkProtocol(name string, level byte) *Error {
	switch {
	case name == "MQTT" && (level == byte(V311) || level == byte(V5)):
	case name == "MQIsdp" && level == byte(V31):
	case name == "MQTT" || name == "MQIsdp":
		return Errorf(UnsupportedProtocolVersion, "protocol level %d is not supported with protocol name %q", level, name)
	default:
		return Errorf(UnsupportedProtocolVersion, "protocol name %q is not MQTT", name)
	}
	return nil
}

// checkConnectFlags checks the will and credential flags of a CONNECT
// (MQTT-3.1.2-11, -13, -14, -15, -22; 5.0 drops the last).
func checkConnectFlags(c *Connect, v Version) *Error {
	switch {
	case c.WillQoS == 3:
		return Errorf(MalformedPacket, "will QoS 3")
	case !c.WillFlag && (c.WillQoS != 0 || c.WillRetain):
		return Errorf(MalformedPacket, "will QoS or will retain set without the will flag")
	case v != V5 && c.PasswordFlag && !c.UsernameFlag:
		return Errorf(MalformedPacket, "password flag set without the user name flag")
	}
	return nil
}

// checkPublishFlags checks the QoS and DUP flag of a PUBLISH (MQTT-3.3.1-2,
// MQTT-3.3.1-4).
func checkPublishFlags(qos byte, dup bool) *Error {
	switch {
	case qos > 2:
		return Errorf(MalformedPacket, "QoS %d", qos)
	case dup && qos == 0:
		return Errorf(MalformedPacket, "DUP set on a QoS 0 message")
	}
	return nil
}

// checkPublishTopic checks a PUBLISH topic name: a valid name (MQTT-3.3.2-2),
// or, in 5.0 only, empty with a Topic Alias (5.0 section 3.3.2.3.4).
func checkPublishTopic(name string, v5, alias bool) *Error {
	if name == "" {
		if v5 && alias {
			return nil
		}
		return Errorf(ProtocolError, "empty topic name")
	}
	if err := validName(name); err != "" {
		return Errorf(TopicNameInvalid, "topic name: %s", err)
	}
	return nil
}

// checkWillTopic checks the will topic of a CONNECT (MQTT-3.1.3-11).
func checkWillTopic(name string) *Error {
	if err := validName(name); err != "" {
		return Errorf(TopicNameInvalid, "will topic: %s", err)
	}
	return nil
}

// checkPacketID refuses packet identifier 0 where one is required
// (MQTT-2.3.1-1, 5.0 MQTT-2.2.1-3).
func checkPacketID(id uint16) *Error {
	if id == 0 {
		return Errorf(ProtocolError, "packet identifier 0")
	}
	return nil
}

// checkSubscription checks one filter and its options. Only what makes the
// whole SUBSCRIBE a protocol violation is checked here: the syntax of the
// filter is the receiver's to check per filter (see Subscribe).
func checkSubscription(s *Subscription, v5 bool) *Error {
	switch {
	case s.QoS > 2:
		return Errorf(MalformedPacket, "QoS %d for %q", s.QoS, s.Filter)
	case s.RetainHandling > 2:
		return Errorf(ProtocolError, "retain handling %d for %q", s.RetainHandling, s.Filter)
	case s.Filter == "":
		return Errorf(ProtocolError, "empty topic filter")
	case v5 && s.NoLocal && strings.HasPrefix(s.Filter, topic.SharePrefix):
		// MQTT-3.8.3-4: No Local on a Shared Subscription.
		return Errorf(ProtocolError, "no local set on shared subscription %q", s.Filter)
	}
	return nil
}

// checkReason refuses a 5.0 reason code that packets of type t may not carry
// (5.0 sections 3.2.2.2, 3.4.2.1, 3.5.2.1, 3.6.2.1, 3.7.2.1, 3.9.3, 3.11.3,
// 3.14.2.1 and 3.15.2.1).
func checkReason(t Type, rc ReasonCode) *Error {
	if !validReason(t, rc) {
		return Errorf(MalformedPacket, "reason code 0x%02X is not valid here", byte(rc))
	}
	return nil
}

// checkAuth checks a 5.0 AUTH: unless it is the short form (Success without
// properties, remaining length 0), it carries an Authentication Method (5.0
// section 3.15.2.2.2).
func checkAuth(a *Auth, short bool) *Error {
	if !short && !a.Properties.HasAuthMethod {
		return Errorf(ProtocolError, "no authentication method")
	}
	return nil
}

// checkConnectAuth checks the properties of a 5.0 CONNECT: Authentication
// Data without an Authentication Method is a Protocol Error (5.0 section
// 3.1.2.11.10). The rule is CONNECT's alone: CONNACK states none
// (3.2.2.3.18), and an AUTH without a method is refused whatever it carries
// (checkAuth).
func checkConnectAuth(p *Properties) *Error {
	if p.HasAuthData && !p.HasAuthMethod {
		return Errorf(ProtocolError, "authentication data without an authentication method")
	}
	return nil
}

// checkProperties applies the rules on the values of properties, as opposed
// to their encoding or their placement: the byte properties that are 0 or 1,
// the ones where 0 is not a value, and the Response Topic that must be a
// topic name (5.0 sections 2.2.2.2, 3.1.2.11, 3.2.2.3 and 3.3.2.3). Rules
// that belong to one packet type are its own: checkConnectAuth, checkAuth.
func checkProperties(p *Properties) *Error {
	if err := checkFlags(p); err != nil {
		return err
	}
	switch {
	case p.HasResponseTopic && validName(p.ResponseTopic) != "":
		return Errorf(ProtocolError, "response topic: %s", validName(p.ResponseTopic))
	case p.HasReceiveMaximum && p.ReceiveMaximum == 0:
		return Errorf(ProtocolError, "receive maximum 0")
	case p.HasTopicAlias && p.TopicAlias == 0:
		return Errorf(TopicAliasInvalid, "topic alias 0")
	case p.HasMaximumPacketSize && p.MaximumPacketSize == 0:
		return Errorf(ProtocolError, "maximum packet size 0")
	}
	for _, id := range p.SubscriptionIdentifiers {
		if id == 0 {
			return Errorf(ProtocolError, "subscription identifier 0")
		}
	}
	return nil
}

// checkFlags refuses a byte property whose only values are 0 and 1 with any
// other value.
func checkFlags(p *Properties) *Error {
	if !(p.HasPayloadFormat && p.PayloadFormat > 1 || p.HasRequestProblemInfo && p.RequestProblemInfo > 1 ||
		p.HasRequestResponseInfo && p.RequestResponseInfo > 1 || p.HasMaximumQoS && p.MaximumQoS > 1 ||
		p.HasRetainAvailable && p.RetainAvailable > 1 || p.HasWildcardSubAvailable && p.WildcardSubAvailable > 1 ||
		p.HasSubIDAvailable && p.SubIDAvailable > 1 || p.HasSharedSubAvailable && p.SharedSubAvailable > 1) {
		return nil
	}
	// Which one, for the message.
	flags := [...]struct {
		has  bool
		v    byte
		name string
	}{
		{p.HasPayloadFormat, p.PayloadFormat, "payload format indicator"},
		{p.HasRequestProblemInfo, p.RequestProblemInfo, "request problem information"},
		{p.HasRequestResponseInfo, p.RequestResponseInfo, "request response information"},
		{p.HasMaximumQoS, p.MaximumQoS, "maximum QoS"},
		{p.HasRetainAvailable, p.RetainAvailable, "retain available"},
		{p.HasWildcardSubAvailable, p.WildcardSubAvailable, "wildcard subscription available"},
		{p.HasSubIDAvailable, p.SubIDAvailable, "subscription identifiers available"},
		{p.HasSharedSubAvailable, p.SharedSubAvailable, "shared subscription available"},
	}
	for _, f := range flags {
		if f.has && f.v > 1 {
			return Errorf(ProtocolError, "%s is %d, not 0 or 1", f.name, f.v)
		}
	}
	return nil
}

// in names the packet (or part) at fault in err's message.
func (e *Error) in(what string) *Error {
	if e != nil && what != "" {
		e.Msg = what + ": " + e.Msg
	}
	return e
}
