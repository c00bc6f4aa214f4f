package packet

import "reflect"

// Append encodes p for protocol version v and appends it to dst.
//
// For 3.1 and 3.1.1 the fields that exist only in 5.0 are left out:
// properties, the reason codes of acknowledgements, UNSUBACK and DISCONNECT,
// and the subscription options other than QoS. A 5.0 CONNACK reason code
// goes out to a 3.1.1 peer as the return code of nearest meaning
// (ConnectReturnCode), and a SUBACK failure code as 0x80. For 3.1 the
// CONNACK's first byte, Session Present in 3.1.1, is reserved and written 0
// whatever SessionPresent says (mosquitto sets it only for 3.1.1 and 5.0
// clients too).
//
// Append refuses what the decoder refuses, and appends nothing then: it
// returns an *Error with the reason code Decode would give for the bytes.
// That covers QoS 3, DUP on QoS 0, packet identifier 0 where one is needed, a
// topic name that is not one (wildcards, empty without a 5.0 Topic Alias), a
// string that is not a UTF-8 Encoded String (invalid UTF-8, U+0000, over
// 65535 bytes), a property the packet cannot carry or with a value out of
// range, more than one Subscription Identifier on SUBSCRIBE, No Local on a
// shared subscription, a 5.0 reason code the packet type does not have, a
// 5.0 AUTH without an Authentication Method, a 5.0 CONNECT with
// Authentication Data but no Authentication Method, a 3.1.1 password without
// a user name, a protocol name that does not go with v, and a packet over the
// protocol's maximum size. Topic filters are not checked beyond that, as
// the decoder does not check them (see Subscribe).
//
// The checks allocate nothing unless they refuse: encoding into a buffer
// large enough allocates nothing.
func Append(dst []byte, p Packet, v Version) ([]byte, error) {
	var e encoder
	if err := e.measure(p, v); err != nil {
		return dst, err
	}
	return e.write(dst, p, v), nil
}

// Size returns the encoded size of p for version v, fixed header included,
// or the error Append would return.
func Size(p Packet, v Version) (int, error) {
	var e encoder
	if err := e.measure(p, v); err != nil {
		return 0, err
	}
	return 1 + varintLen(e.remaining) + e.remaining, nil
}

// encoder carries the lengths measured in the first pass into the second.
type encoder struct {
	remaining int    // remaining length
	props     int    // length of the packet's properties
	willProps int    // length of a CONNECT's will properties
	err       *Error // the first error of the measure
}

// fail records err, the first error wins.
func (e *encoder) fail(err *Error) {
	if e.err == nil {
		e.err = err
	}
}

// str is the encoded length of s as a UTF-8 Encoded String; what names it
// in the error when it is not one.
func (e *encoder) str(s, what string) int {
	if reason := stringError(s); reason != "" {
		e.fail(Errorf(MalformedPacket, "%s: %s", what, reason))
	}
	return 2 + len(s)
}

// bin is the encoded length of b as Binary Data.
func (e *encoder) bin(b []byte, what string) int {
	if len(b) > 65535 {
		e.fail(Errorf(MalformedPacket, "%s: longer than 65535 bytes", what))
	}
	return 2 + len(b)
}

// propsLen is the encoded length of a property block, its length included;
// 0 for 3.1 and 3.1.1, which have none.
func (e *encoder) propsLen(p *Properties, allowed propSet, v5 bool) (n, block int) {
	if !v5 {
		return 0, 0
	}
	k, err := propsLen(p, allowed, "")
	if err != nil {
		e.fail(err)
	}
	return k, varintLen(k) + k
}

// protocolName is the name CONNECT carries: p's, or the one that goes with v.
func protocolName(p *Connect, v Version) string {
	switch {
	case p.ProtocolName != "":
		return p.ProtocolName
	case v == V31:
		return "MQIsdp"
	}
	return "MQTT"
}

// typeOf is p.Type() without the call through the interface, which the
// compiler cannot follow: with it, every packet passed to Append or Size
// escaped to the heap, so that a caller's packet built on its stack (as
// localbus builds one to check each message Publish and Ingest take) cost
// an allocation. 0 for a type not of this package.
func typeOf(p Packet) Type {
	switch p.(type) {
	case *Connect:
		return CONNECT
	case *Connack:
		return CONNACK
	case *Publish:
		return PUBLISH
	case *Puback:
		return PUBACK
	case *Pubrec:
		return PUBREC
	case *Pubrel:
		return PUBREL
	case *Pubcomp:
		return PUBCOMP
	case *Subscribe:
		return SUBSCRIBE
	case *Suback:
		return SUBACK
	case *Unsubscribe:
		return UNSUBSCRIBE
	case *Unsuback:
		return UNSUBACK
	case *Pingreq:
		return PINGREQ
	case *Pingresp:
		return PINGRESP
	case *Disconnect:
		return DISCONNECT
	case *Auth:
		return AUTH
	}
	return 0
}

// measure validates p and computes its lengths.
func (e *encoder) measure(p Packet, v Version) *Error {
	v5 := v == V5
	n := 0
	switch p := p.(type) {
	case *Connect:
		e.fail(checkProtocol(protocolName(p, v), byte(v)))
		e.fail(checkConnectFlags(p, v))
		n = e.str(protocolName(p, v), "protocol name") + 1 + 1 + 2 // level, flags, keep alive
		var block int
		e.props, block = e.propsLen(&p.Properties, connectProps, v5)
		if v5 && e.err == nil {
			e.fail(checkConnectAuth(&p.Properties))
		}
		n += block + e.str(p.ClientID, "client identifier")
		if p.WillFlag {
			before := e.err
			e.willProps, block = e.propsLen(&p.WillProperties, willProps, v5)
			if before == nil && e.err != nil {
				e.err.in("will")
			}
			n += block + e.str(p.WillTopic, "will topic") + e.bin(p.WillPayload, "will payload")
			if e.err == nil {
				e.fail(checkWillTopic(p.WillTopic))
			}
		}
		if p.UsernameFlag {
			n += e.str(p.Username, "user name")
		}
		if p.PasswordFlag {
			n += e.bin(p.Password, "password")
		}
	case *Connack:
		if v5 {
			e.fail(checkReason(CONNACK, p.ReasonCode))
		} else if p.ReasonCode > ConnRefusedNotAuthorized && !validReason(CONNACK, p.ReasonCode) {
			e.fail(Errorf(MalformedPacket, "reason code 0x%02X is neither a 3.1.1 return code nor a 5.0 CONNACK reason code", byte(p.ReasonCode)))
		}
		var block int
		e.props, block = e.propsLen(&p.Properties, connackProps, v5)
		n = 2 + block
	case *Publish:
		e.fail(checkPublishFlags(p.QoS, p.Dup))
		if p.QoS > 0 {
			e.fail(checkPacketID(p.PacketID))
			n = 2
		}
		var block int
		e.props, block = e.propsLen(&p.Properties, publishProps, v5)
		n += block + 2 + len(p.Topic) + len(p.Payload)
		if e.err == nil {
			e.fail(publishTopicError(p, v5))
		}
	case *Puback:
		n = e.ackLen(PUBACK, p.PacketID, p.ReasonCode, &p.Properties, v5)
	case *Pubrec:
		n = e.ackLen(PUBREC, p.PacketID, p.ReasonCode, &p.Properties, v5)
	case *Pubrel:
		n = e.ackLen(PUBREL, p.PacketID, p.ReasonCode, &p.Properties, v5)
	case *Pubcomp:
		n = e.ackLen(PUBCOMP, p.PacketID, p.ReasonCode, &p.Properties, v5)
	case *Subscribe:
		e.fail(checkPacketID(p.PacketID))
		if v5 && len(p.Properties.SubscriptionIdentifiers) > 1 {
			e.fail(Errorf(ProtocolError, "more than one subscription identifier"))
		}
		var block int
		e.props, block = e.propsLen(&p.Properties, subscribeProps, v5)
		n = 2 + block
		for i := range p.Subscriptions {
			e.fail(checkSubscription(&p.Subscriptions[i], v5))
			n += e.str(p.Subscriptions[i].Filter, "topic filter") + 1
		}
		if len(p.Subscriptions) == 0 {
			e.fail(Errorf(ProtocolError, "no topic filter"))
		}
	case *Suback:
		e.fail(checkPacketID(p.PacketID))
		for _, rc := range p.ReasonCodes {
			if v5 {
				e.fail(checkReason(SUBACK, rc))
			} else if !validReason(SUBACK, rc) {
				e.fail(Errorf(MalformedPacket, "reason code 0x%02X is neither a 3.1.1 return code nor a 5.0 SUBACK reason code", byte(rc)))
			}
		}
		if len(p.ReasonCodes) == 0 {
			e.fail(Errorf(ProtocolError, "no reason code"))
		}
		var block int
		e.props, block = e.propsLen(&p.Properties, ackProps, v5)
		n = 2 + block + len(p.ReasonCodes)
	case *Unsubscribe:
		e.fail(checkPacketID(p.PacketID))
		var block int
		e.props, block = e.propsLen(&p.Properties, unsubscribeProps, v5)
		n = 2 + block
		for _, f := range p.Filters {
			if f == "" {
				e.fail(Errorf(ProtocolError, "empty topic filter"))
			}
			n += e.str(f, "topic filter")
		}
		if len(p.Filters) == 0 {
			e.fail(Errorf(ProtocolError, "no topic filter"))
		}
	case *Unsuback:
		e.fail(checkPacketID(p.PacketID))
		n = 2
		if v5 {
			for _, rc := range p.ReasonCodes {
				e.fail(checkReason(UNSUBACK, rc))
			}
			if len(p.ReasonCodes) == 0 {
				e.fail(Errorf(ProtocolError, "no reason code"))
			}
			var block int
			e.props, block = e.propsLen(&p.Properties, ackProps, v5)
			n += block + len(p.ReasonCodes)
		}
	case *Pingreq, *Pingresp:
	case *Disconnect:
		if v5 {
			e.fail(checkReason(DISCONNECT, p.ReasonCode))
			n = e.reasonLen(p.ReasonCode, &p.Properties, disconnectProps)
		}
	case *Auth:
		if !v5 {
			return Errorf(MalformedPacket, "AUTH does not exist in MQTT %s", v)
		}
		e.fail(checkReason(AUTH, p.ReasonCode))
		n = e.reasonLen(p.ReasonCode, &p.Properties, authProps)
		if e.err == nil {
			e.fail(checkAuth(p, n == 0))
		}
	case nil:
		return Errorf(MalformedPacket, "nil packet")
	default:
		return Errorf(MalformedPacket, "cannot encode %s", reflect.TypeOf(p)) // %T would let p escape
	}
	if e.err != nil {
		return e.err.in(typeOf(p).String())
	}
	if n > MaxVarint {
		return Errorf(PacketTooLarge, "%s of %d bytes exceeds the protocol's maximum packet size", typeOf(p), n)
	}
	e.remaining = n
	return nil
}

// publishTopicError checks the topic name of p as the decoder does: as a
// UTF-8 Encoded String (Malformed Packet), then as a topic name (Topic Name
// invalid). topic.ValidName covers both, so the common case, a valid name,
// costs one pass of it; the string is looked at again only to pick the
// reason code of a refusal.
func publishTopicError(p *Publish, v5 bool) *Error {
	err := checkPublishTopic(p.Topic, v5, p.Properties.HasTopicAlias)
	if err != nil && err.Code == TopicNameInvalid {
		if reason := stringError(p.Topic); reason != "" {
			return Errorf(MalformedPacket, "topic name: %s", reason)
		}
	}
	return err
}

// ackLen measures PUBACK, PUBREC, PUBREL and PUBCOMP. In 5.0 the reason code
// and properties are left out when they are Success and empty (section
// 3.4.2.1).
func (e *encoder) ackLen(t Type, id uint16, rc ReasonCode, p *Properties, v5 bool) int {
	e.fail(checkPacketID(id))
	if !v5 {
		return 2
	}
	e.fail(checkReason(t, rc))
	k, _ := e.propsLen(p, ackProps, v5)
	e.props = k
	switch {
	case k > 0:
		return 2 + 1 + varintLen(k) + k
	case rc != Success:
		return 3
	}
	return 2
}

// reasonLen is the body length of a 5.0 DISCONNECT or AUTH: empty for
// Success without properties, else the reason code and, when there are
// any, the properties.
func (e *encoder) reasonLen(rc ReasonCode, p *Properties, allowed propSet) int {
	k, _ := e.propsLen(p, allowed, true)
	e.props = k
	switch {
	case k > 0:
		return 1 + varintLen(k) + k
	case rc != Success:
		return 1
	}
	return 0
}

// write appends the packet measured by measure.
func (e *encoder) write(dst []byte, p Packet, v Version) []byte {
	v5 := v == V5
	first := byte(typeOf(p)) << 4
	switch p := p.(type) {
	case *Publish:
		first |= p.QoS << 1
		if p.Dup {
			first |= 0x08
		}
		if p.Retain {
			first |= 0x01
		}
	case *Pubrel, *Subscribe, *Unsubscribe:
		first |= 0x02
	}
	dst = append(dst, first)
	dst = appendVarint(dst, e.remaining)
	switch p := p.(type) {
	case *Connect:
		dst = appendString(dst, protocolName(p, v))
		var flags byte
		if p.CleanStart {
			flags |= 0x02
		}
		if p.WillFlag {
			flags |= 0x04 | p.WillQoS<<3
			if p.WillRetain {
				flags |= 0x20
			}
		}
		if p.PasswordFlag {
			flags |= 0x40
		}
		if p.UsernameFlag {
			flags |= 0x80
		}
		dst = append(dst, byte(v), flags)
		dst = appendUint16(dst, p.KeepAlive)
		if v5 {
			dst = appendProperties(dst, &p.Properties, e.props)
		}
		dst = appendString(dst, p.ClientID)
		if p.WillFlag {
			if v5 {
				dst = appendProperties(dst, &p.WillProperties, e.willProps)
			}
			dst = appendString(dst, p.WillTopic)
			dst = appendBinary(dst, p.WillPayload)
		}
		if p.UsernameFlag {
			dst = appendString(dst, p.Username)
		}
		if p.PasswordFlag {
			dst = appendBinary(dst, p.Password)
		}
	case *Connack:
		var flags byte
		if p.SessionPresent && p.ReasonCode == Success && v != V31 {
			// MQTT-3.2.2-4 (5.0 MQTT-3.2.2-6): Session Present is 0 in a
			// refusal. 3.1 has no Session Present: the byte is
			// reserved there, and written 0.
			flags = 1
		}
		rc := p.ReasonCode
		if !v5 && rc > ConnRefusedNotAuthorized {
			// 3.1.1 section 3.2.2.3: return codes 6-255 are reserved; a
			// 5.0 reason code goes out as the nearest return code.
			rc = ConnectReturnCode(rc)
		}
		dst = append(dst, flags, byte(rc))
		if v5 {
			dst = appendProperties(dst, &p.Properties, e.props)
		}
	case *Publish:
		dst = appendString(dst, p.Topic)
		if p.QoS > 0 {
			dst = appendUint16(dst, p.PacketID)
		}
		if v5 {
			dst = appendProperties(dst, &p.Properties, e.props)
		}
		dst = append(dst, p.Payload...)
	case *Puback:
		dst = e.writeAck(dst, p.PacketID, p.ReasonCode, &p.Properties)
	case *Pubrec:
		dst = e.writeAck(dst, p.PacketID, p.ReasonCode, &p.Properties)
	case *Pubrel:
		dst = e.writeAck(dst, p.PacketID, p.ReasonCode, &p.Properties)
	case *Pubcomp:
		dst = e.writeAck(dst, p.PacketID, p.ReasonCode, &p.Properties)
	case *Subscribe:
		dst = appendUint16(dst, p.PacketID)
		if v5 {
			dst = appendProperties(dst, &p.Properties, e.props)
		}
		for _, s := range p.Subscriptions {
			dst = appendString(dst, s.Filter)
			opts := s.QoS
			if v5 {
				if s.NoLocal {
					opts |= 0x04
				}
				if s.RetainAsPublished {
					opts |= 0x08
				}
				opts |= s.RetainHandling << 4
			}
			dst = append(dst, opts)
		}
	case *Suback:
		dst = appendUint16(dst, p.PacketID)
		if v5 {
			dst = appendProperties(dst, &p.Properties, e.props)
		}
		for _, rc := range p.ReasonCodes {
			if !v5 && rc > 2 {
				rc = SubackFailure
			}
			dst = append(dst, byte(rc))
		}
	case *Unsubscribe:
		dst = appendUint16(dst, p.PacketID)
		if v5 {
			dst = appendProperties(dst, &p.Properties, e.props)
		}
		for _, f := range p.Filters {
			dst = appendString(dst, f)
		}
	case *Unsuback:
		dst = appendUint16(dst, p.PacketID)
		if v5 {
			dst = appendProperties(dst, &p.Properties, e.props)
			for _, rc := range p.ReasonCodes {
				dst = append(dst, byte(rc))
			}
		}
	case *Disconnect:
		dst = e.appendReason(dst, p.ReasonCode, &p.Properties)
	case *Auth:
		dst = e.appendReason(dst, p.ReasonCode, &p.Properties)
	}
	return dst
}

// appendReason writes the body reasonLen measured.
func (e *encoder) appendReason(dst []byte, rc ReasonCode, p *Properties) []byte {
	if e.remaining > 0 {
		dst = append(dst, byte(rc))
		if e.remaining > 1 {
			dst = appendProperties(dst, p, e.props)
		}
	}
	return dst
}

func (e *encoder) writeAck(dst []byte, id uint16, rc ReasonCode, p *Properties) []byte {
	dst = appendUint16(dst, id)
	if e.remaining > 2 {
		dst = append(dst, byte(rc))
		if e.remaining > 3 {
			dst = appendProperties(dst, p, e.props)
		}
	}
	return dst
}
