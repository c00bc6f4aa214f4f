package packet

import "fmt"

// Append encodes p for protocol version v and appends it to dst. MQTT 5
// fields (properties, reason codes of acknowledgements and DISCONNECT) are
// left out for 3.1 and 3.1.1. It fails, appending nothing, on a packet that
// cannot be encoded: QoS 3, a missing packet identifier, a string over 65535
// bytes, a property the packet type cannot carry, or a packet over the
// protocol's maximum size.
func Append(dst []byte, p Packet, v Version) ([]byte, error) {
	var e encoder
	if err := e.measure(p, v); err != nil {
		return dst, err
	}
	return e.write(dst, p, v), nil
}

// Size returns the encoded size of p for version v, fixed header included.
func Size(p Packet, v Version) (int, error) {
	var e encoder
	if err := e.measure(p, v); err != nil {
		return 0, err
	}
	return 1 + varintLen(e.remaining) + e.remaining, nil
}

// encoder carries the lengths measured in the first pass into the second.
type encoder struct {
	remaining int // remaining length
	props     int // length of the packet's properties
	willProps int // length of a CONNECT's will properties
}

func strLen(s string, what string) (int, error) {
	if len(s) > 65535 {
		return 0, fmt.Errorf("mqtt: %s longer than 65535 bytes", what)
	}
	return 2 + len(s), nil
}

// measure validates p and computes its lengths.
func (e *encoder) measure(p Packet, v Version) error {
	v5 := v == V5
	n := 0
	var err error
	add := func(k int, e error) {
		n += k
		if err == nil {
			err = e
		}
	}
	props := func(pr *Properties, allowed propSet, what string) {
		if !v5 {
			return
		}
		k, e2 := propsLen(pr, allowed, what)
		e.props = k
		add(varintLen(k)+k, e2)
	}
	switch p := p.(type) {
	case *Connect:
		name := p.ProtocolName
		if name == "" {
			name = "MQTT"
			if v == V31 {
				name = "MQIsdp"
			}
		}
		add(strLen(name, "CONNECT protocol name"))
		n += 1 + 1 + 2 // level, flags, keep alive
		props(&p.Properties, connectProps, "CONNECT")
		add(strLen(p.ClientID, "CONNECT client identifier"))
		if p.WillQoS > 2 {
			return fmt.Errorf("mqtt: CONNECT will QoS %d", p.WillQoS)
		}
		if p.WillFlag {
			if v5 {
				k, e2 := propsLen(&p.WillProperties, willProps, "CONNECT will")
				e.willProps = k
				add(varintLen(k)+k, e2)
			}
			add(strLen(p.WillTopic, "CONNECT will topic"))
			add(strLen(string(p.WillPayload), "CONNECT will payload"))
		}
		if p.UsernameFlag {
			add(strLen(p.Username, "CONNECT user name"))
		}
		if p.PasswordFlag {
			add(strLen(string(p.Password), "CONNECT password"))
		}
	case *Connack:
		n = 2
		props(&p.Properties, connackProps, "CONNACK")
	case *Publish:
		if p.QoS > 2 {
			return fmt.Errorf("mqtt: PUBLISH QoS %d", p.QoS)
		}
		if p.QoS > 0 && p.PacketID == 0 {
			return fmt.Errorf("mqtt: PUBLISH QoS %d without a packet identifier", p.QoS)
		}
		add(strLen(p.Topic, "PUBLISH topic name"))
		if p.QoS > 0 {
			n += 2
		}
		props(&p.Properties, publishProps, "PUBLISH")
		n += len(p.Payload)
	case *Puback:
		n = e.ackLen(PUBACK, p.PacketID, p.ReasonCode, &p.Properties, v5, &err)
	case *Pubrec:
		n = e.ackLen(PUBREC, p.PacketID, p.ReasonCode, &p.Properties, v5, &err)
	case *Pubrel:
		n = e.ackLen(PUBREL, p.PacketID, p.ReasonCode, &p.Properties, v5, &err)
	case *Pubcomp:
		n = e.ackLen(PUBCOMP, p.PacketID, p.ReasonCode, &p.Properties, v5, &err)
	case *Subscribe:
		if p.PacketID == 0 || len(p.Subscriptions) == 0 {
			return fmt.Errorf("mqtt: SUBSCRIBE needs a packet identifier and at least one filter")
		}
		n = 2
		props(&p.Properties, subscribeProps, "SUBSCRIBE")
		for _, s := range p.Subscriptions {
			if s.QoS > 2 || s.RetainHandling > 2 {
				return fmt.Errorf("mqtt: SUBSCRIBE %q: QoS %d, retain handling %d", s.Filter, s.QoS, s.RetainHandling)
			}
			add(strLen(s.Filter, "SUBSCRIBE topic filter"))
			n++
		}
	case *Suback:
		if len(p.ReasonCodes) == 0 {
			return fmt.Errorf("mqtt: SUBACK needs at least one reason code")
		}
		n = 2 + len(p.ReasonCodes)
		props(&p.Properties, ackProps, "SUBACK")
	case *Unsubscribe:
		if p.PacketID == 0 || len(p.Filters) == 0 {
			return fmt.Errorf("mqtt: UNSUBSCRIBE needs a packet identifier and at least one filter")
		}
		n = 2
		props(&p.Properties, unsubscribeProps, "UNSUBSCRIBE")
		for _, f := range p.Filters {
			add(strLen(f, "UNSUBSCRIBE topic filter"))
		}
	case *Unsuback:
		n = 2
		if v5 {
			if len(p.ReasonCodes) == 0 {
				return fmt.Errorf("mqtt: UNSUBACK needs at least one reason code")
			}
			props(&p.Properties, ackProps, "UNSUBACK")
			n += len(p.ReasonCodes)
		}
	case *Pingreq, *Pingresp:
	case *Disconnect:
		if v5 {
			n = e.reasonLen(p.ReasonCode, &p.Properties, disconnectProps, "DISCONNECT", &err)
		}
	case *Auth:
		if !v5 {
			return fmt.Errorf("mqtt: AUTH does not exist in MQTT %s", v)
		}
		n = e.reasonLen(p.ReasonCode, &p.Properties, authProps, "AUTH", &err)
	case nil:
		return fmt.Errorf("mqtt: nil packet")
	default:
		return fmt.Errorf("mqtt: cannot encode %T", p)
	}
	if err != nil {
		return err
	}
	if n > MaxVarint {
		return fmt.Errorf("mqtt: %s of %d bytes exceeds the protocol's maximum packet size", p.Type(), n)
	}
	e.remaining = n
	return nil
}

// ackLen measures PUBACK, PUBREC, PUBREL and PUBCOMP. In 5.0 the reason code
// and properties are left out when they are Success and empty (section
// 3.4.2.1).
func (e *encoder) ackLen(t Type, id uint16, rc ReasonCode, p *Properties, v5 bool, err *error) int {
	if id == 0 {
		*err = fmt.Errorf("mqtt: %s without a packet identifier", t)
		return 0
	}
	if !v5 {
		return 2
	}
	k, e2 := propsLen(p, ackProps, t.String())
	if e2 != nil {
		*err = e2
	}
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
func (e *encoder) reasonLen(rc ReasonCode, p *Properties, allowed propSet, what string, err *error) int {
	k, e2 := propsLen(p, allowed, what)
	if e2 != nil && *err == nil {
		*err = e2
	}
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
	first := byte(p.Type()) << 4
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
		name, level := p.ProtocolName, byte(v)
		if name == "" {
			name = "MQTT"
			if v == V31 {
				name = "MQIsdp"
			}
		}
		dst = appendString(dst, name)
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
		dst = append(dst, level, flags)
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
		if p.SessionPresent && p.ReasonCode == Success {
			// MQTT-3.2.2-4 (5.0 MQTT-3.2.2-6): Session Present is 0 in a
			// refusal.
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
