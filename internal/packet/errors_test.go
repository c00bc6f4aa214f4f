package packet

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
)

// Builders for hand-made packets.

// pk returns a packet with first byte first and the body parts concatenated
// after a remaining length that fits them.
func pk(first byte, body ...[]byte) []byte {
	b := bytes.Join(body, nil)
	out := appendVarint([]byte{first}, len(b))
	return append(out, b...)
}

// str is a UTF-8 Encoded String (or Binary Data): two-byte length and s.
func str(s string) []byte { return appendString(nil, s) }

// u16 is a Two Byte Integer.
func u16(v uint16) []byte { return appendUint16(nil, v) }

// by is raw bytes.
func by(b ...byte) []byte { return b }

// props is a property block: its Variable Byte Integer length and the bytes.
func props(b ...[]byte) []byte {
	p := bytes.Join(b, nil)
	return append(appendVarint(nil, len(p)), p...)
}

// connect311 and connect5 are the variable headers of a CONNECT with the given
// flags and a keep alive of 60.
func connect311(flags byte) []byte {
	return bytes.Join([][]byte{str("MQTT"), {4, flags}, u16(60)}, nil)
}
func connect5(flags byte) []byte { return bytes.Join([][]byte{str("MQTT"), {5, flags}, u16(60)}, nil) }

type badCase struct {
	name string
	v    Version // version Decode is called with (ignored for CONNECT)
	in   []byte
	code ReasonCode
}

// decodeOnly names the cases of a remaining length that disagrees with the
// bytes given, which only Decode can see; a Reader reads on.
var decodeOnly = map[string]bool{
	"remaining length larger than the bytes":  true,
	"remaining length smaller than the bytes": true,
}

// badPackets lists one packet per validation rule of the decoder, with the
// reason code the peer must get.
func badPackets() []badCase {
	const (
		mal   = MalformedPacket
		proto = ProtocolError
	)
	pub5 := func(topic string, pr []byte) []byte { return pk(0x30, str(topic), pr, by('x')) }
	cases := []badCase{
		// Fixed header (MQTT-1.5.5-1, MQTT-2.1.3-1 / 5.0 2.1.3).
		{"remaining length not minimal (2 bytes for 0)", V5, by(0xC0, 0x80, 0x00), mal},
		{"remaining length not minimal (3 bytes for 127)", V5, append(by(0x30, 0xFF, 0x80, 0x00), make([]byte, 127)...), mal},
		{"remaining length of 5 bytes", V5, by(0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01), mal},
		{"remaining length cut short", V5, by(0x30, 0x80), mal},
		{"remaining length larger than the bytes", V5, by(0x30, 0x05, 0, 1, 'a'), mal},
		{"remaining length smaller than the bytes", V5, by(0xC0, 0x00, 0x00), mal},
		{"packet type 0", V5, by(0x00, 0x00), mal},
		{"PUBLISH QoS 3", V5, pk(0x36, str("a"), u16(1), props()), mal},
		{"PUBLISH QoS 3 (3.1.1)", V311, pk(0x37, str("a"), u16(1)), mal},
		{"PUBLISH DUP on QoS 0", V311, pk(0x38, str("a")), mal},
		{"PUBLISH DUP on QoS 0 (5.0)", V5, pk(0x38, str("a"), props()), mal},

		// UTF-8 Encoded Strings (MQTT-1.5.4-1, MQTT-1.5.4-2 / 3.1.1 MQTT-1.5.3-1, -2).
		{"topic with invalid UTF-8", V311, pk(0x30, str("a\xC3\x28")), mal},
		{"topic with a lone continuation byte", V5, pk(0x30, str("\x80"), props()), mal},
		{"topic with an overlong NUL", V311, pk(0x30, str("a\xC0\x80")), mal},
		{"topic with U+0000", V311, pk(0x30, str("a\x00b")), mal},
		{"topic with U+0000 (5.0)", V5, pk(0x30, str("a\x00b"), props()), mal},
		{"topic with a high surrogate half", V311, pk(0x30, str("a\xED\xA0\x80")), mal},
		{"topic with a low surrogate half", V5, pk(0x30, str("a\xED\xBF\xBF"), props()), mal},
		{"topic with a code point above U+10FFFF", V311, pk(0x30, str("\xF4\x90\x80\x80")), mal},
		{"client identifier with U+0000", V311, pk(0x10, connect311(0x02), str("c\x00")), mal},
		{"user name with a surrogate", V311, pk(0x10, connect311(0x82), str("c"), str("\xED\xB0\x80")), mal},
		{"user property name invalid", V5, pub5("a", props(by(0x26), str("\xFF"), str("v"))), mal},
		{"user property value with U+0000", V5, pub5("a", props(by(0x26), str("k"), str("\x00"))), mal},
		{"reason string invalid", V5, pk(0x40, u16(1), by(0), props(by(0x1F), str("\xC3"))), mal},
		{"string length beyond the packet", V311, pk(0x30, u16(10), by('a')), mal},

		// Properties (5.0 section 2.2.2).
		{"duplicate message expiry", V5, pub5("a", props(by(0x02, 0, 0, 0, 1, 0x02, 0, 0, 0, 2))), proto},
		{"duplicate content type", V5, pub5("a", props(by(0x03), str("x"), by(0x03), str("y"))), proto},
		{"duplicate session expiry on CONNECT", V5, pk(0x10, connect5(0x02), props(by(0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 1)), str("c")), proto},
		{"duplicate reason string on PUBACK", V5, pk(0x40, u16(1), by(0), props(by(0x1F), str("a"), by(0x1F), str("b"))), proto},
		{"session expiry on PUBLISH", V5, pub5("a", props(by(0x11, 0, 0, 0, 1))), mal},
		{"topic alias on CONNECT", V5, pk(0x10, connect5(0x02), props(by(0x23), u16(1)), str("c")), mal},
		{"session expiry in will properties", V5, pk(0x10, connect5(0x06), props(), str("c"), props(by(0x11, 0, 0, 0, 1)), str("w"), str("p")), mal},
		{"will delay on CONNECT itself", V5, pk(0x10, connect5(0x02), props(by(0x18, 0, 0, 0, 1)), str("c")), mal},
		{"subscription identifier on PUBACK", V5, pk(0x40, u16(1), by(0), props(by(0x0B, 1))), mal},
		{"assigned client identifier on DISCONNECT", V5, pk(0xE0, by(0), props(by(0x12), str("x"))), mal},
		{"topic alias on SUBSCRIBE", V5, pk(0x82, u16(1), props(by(0x23), u16(1)), str("a"), by(0)), mal},
		{"property identifier 0", V5, pub5("a", props(by(0x00, 0))), mal},
		{"unassigned property identifier 0x04", V5, pub5("a", props(by(0x04, 0))), mal},
		{"property identifier 0x80 0x01 (128)", V5, pub5("a", props(by(0x80, 0x01, 0))), mal},
		{"property length beyond the packet", V5, pk(0x30, str("a"), by(0x05, 0x01)), mal},
		{"property value beyond the property length", V5, pk(0x30, str("a"), by(0x02, 0x02, 0), by(0, 0, 1)), mal},
		{"property length missing on 5.0 PUBLISH", V5, pk(0x30, str("a")), mal},
		{"payload format indicator 2", V5, pub5("a", props(by(0x01, 2))), proto},
		{"maximum QoS 2", V5, pk(0x20, by(0, 0), props(by(0x24, 2))), proto},
		{"retain available 2", V5, pk(0x20, by(0, 0), props(by(0x25, 2))), proto},
		{"request problem information 2", V5, pk(0x10, connect5(0x02), props(by(0x17, 2)), str("c")), proto},
		{"request response information 2", V5, pk(0x10, connect5(0x02), props(by(0x19, 2)), str("c")), proto},
		{"wildcard subscription available 2", V5, pk(0x20, by(0, 0), props(by(0x28, 2))), proto},
		{"receive maximum 0 on CONNECT", V5, pk(0x10, connect5(0x02), props(by(0x21), u16(0)), str("c")), proto},
		{"receive maximum 0 on CONNACK", V5, pk(0x20, by(0, 0), props(by(0x21), u16(0))), proto},
		{"maximum packet size 0", V5, pk(0x10, connect5(0x02), props(by(0x27, 0, 0, 0, 0)), str("c")), proto},
		{"authentication data without method", V5, pk(0x10, connect5(0x02), props(by(0x16), str("d")), str("c")), proto},
		{"topic alias 0", V5, pub5("a", props(by(0x23), u16(0))), TopicAliasInvalid},
		{"subscription identifier 0 on SUBSCRIBE", V5, pk(0x82, u16(1), props(by(0x0B, 0)), str("a"), by(0)), proto},
		{"subscription identifier 0 on PUBLISH", V5, pub5("a", props(by(0x0B, 0))), proto},
		{"subscription identifier not minimal", V5, pub5("a", props(by(0x0B, 0x81, 0x00))), mal},
		{"two subscription identifiers on SUBSCRIBE", V5, pk(0x82, u16(1), props(by(0x0B, 1, 0x0B, 2)), str("a"), by(0)), proto},

		// Packet identifiers (MQTT-2.3.1-1 / 5.0 MQTT-2.2.1-3).
		{"PUBLISH QoS 1 packet id 0", V311, pk(0x32, str("a"), u16(0)), proto},
		{"PUBLISH QoS 2 packet id 0 (5.0)", V5, pk(0x34, str("a"), u16(0), props()), proto},
		{"PUBACK packet id 0", V311, pk(0x40, u16(0)), proto},
		{"PUBREC packet id 0", V5, pk(0x50, u16(0)), proto},
		{"PUBREL packet id 0", V311, pk(0x62, u16(0)), proto},
		{"PUBCOMP packet id 0", V5, pk(0x70, u16(0)), proto},
		{"SUBSCRIBE packet id 0", V311, pk(0x82, u16(0), str("a"), by(0)), proto},
		{"UNSUBSCRIBE packet id 0", V5, pk(0xA2, u16(0), props(), str("a")), proto},
		{"PUBACK without packet id", V311, pk(0x40, by(0)), mal},

		// Topic names (MQTT-3.3.2-2, MQTT-3.1.3-11, 5.0 3.1.3.2.5 and 3.3.2.3.5).
		{"topic name with +", V311, pk(0x30, str("a/+")), TopicNameInvalid},
		{"topic name with #", V5, pub5("a/#", props()), TopicNameInvalid},
		{"will topic with #", V311, pk(0x10, connect311(0x06), str("c"), str("w/#"), str("p")), TopicNameInvalid},
		{"will topic with + (5.0)", V5, pk(0x10, connect5(0x06), props(), str("c"), props(), str("+"), str("p")), TopicNameInvalid},
		{"empty will topic", V311, pk(0x10, connect311(0x06), str("c"), str(""), str("p")), TopicNameInvalid},
		{"response topic with #", V5, pub5("a", props(by(0x08), str("r/#"))), proto},
		{"will response topic with +", V5, pk(0x10, connect5(0x06), props(), str("c"), props(by(0x08), str("+/r")), str("w"), str("p")), proto},
		{"empty topic in 3.1.1", V311, pk(0x30, str("")), proto},
		{"empty topic without alias", V5, pub5("", props()), proto},

		// SUBSCRIBE (MQTT-3.8.3-3, -4 / 5.0 3.8.3.1).
		{"SUBSCRIBE without filters", V311, pk(0x82, u16(1)), proto},
		{"SUBSCRIBE without filters (5.0)", V5, pk(0x82, u16(1), props()), proto},
		{"SUBSCRIBE option bit 2 in 3.1.1", V311, pk(0x82, u16(1), str("a"), by(0x04)), mal},
		{"SUBSCRIBE option bits 4-5 in 3.1.1", V311, pk(0x82, u16(1), str("a"), by(0x10)), mal},
		{"SUBSCRIBE option bit 6 in 5.0", V5, pk(0x82, u16(1), props(), str("a"), by(0x40)), mal},
		{"SUBSCRIBE option bit 7 in 5.0", V5, pk(0x82, u16(1), props(), str("a"), by(0x80)), mal},
		{"SUBSCRIBE QoS 3", V311, pk(0x82, u16(1), str("a"), by(0x03)), mal},
		{"SUBSCRIBE QoS 3 (5.0)", V5, pk(0x82, u16(1), props(), str("a"), by(0x03)), mal},
		{"SUBSCRIBE retain handling 3", V5, pk(0x82, u16(1), props(), str("a"), by(0x30)), proto},
		{"SUBSCRIBE filter without options", V311, pk(0x82, u16(1), str("a")), mal},
		{"SUBSCRIBE empty filter", V311, pk(0x82, u16(1), str(""), by(0)), proto},
		{"SUBSCRIBE no local on a shared subscription", V5, pk(0x82, u16(1), props(), str("$share/g/a"), by(0x04)), proto},
		{"UNSUBSCRIBE without filters", V311, pk(0xA2, u16(1)), proto},
		{"UNSUBSCRIBE without filters (5.0)", V5, pk(0xA2, u16(1), props()), proto},
		{"UNSUBSCRIBE empty filter", V311, pk(0xA2, u16(1), str("")), proto},

		// CONNECT (MQTT-3.1.2-1, -2, -3, -11, -13, -14, -15, -22 / 5.0 3.1.2).
		{"protocol name mqtt", V311, pk(0x10, str("mqtt"), by(4, 2), u16(60), str("c")), UnsupportedProtocolVersion},
		{"protocol name HTTP", V311, pk(0x10, str("HTTP"), by(4, 2), u16(60), str("c")), UnsupportedProtocolVersion},
		{"protocol level 6", V311, pk(0x10, str("MQTT"), by(6, 2), u16(60), str("c")), UnsupportedProtocolVersion},
		{"protocol level 3 with name MQTT", V311, pk(0x10, str("MQTT"), by(3, 2), u16(60), str("c")), UnsupportedProtocolVersion},
		{"protocol name MQIsdp with level 4", V311, pk(0x10, str("MQIsdp"), by(4, 2), u16(60), str("c")), UnsupportedProtocolVersion},
		{"CONNECT reserved flag", V311, pk(0x10, connect311(0x03), str("c")), mal},
		{"CONNECT reserved flag (5.0)", V5, pk(0x10, connect5(0x01), props(), str("c")), mal},
		{"will QoS without will flag", V311, pk(0x10, connect311(0x0A), str("c")), mal},
		{"will retain without will flag", V5, pk(0x10, connect5(0x22), props(), str("c")), mal},
		{"will QoS 3", V311, pk(0x10, connect311(0x1E), str("c"), str("w"), str("p")), mal},
		{"password without user name in 3.1.1", V311, pk(0x10, connect311(0x42), str("c"), str("pw")), mal},
		{"password without user name in 3.1", V311, pk(0x10, str("MQIsdp"), by(3, 0x42), u16(60), str("c"), str("pw")), mal},
		{"will flag without will topic", V311, pk(0x10, connect311(0x06), str("c")), mal},
		{"user name flag without user name", V5, pk(0x10, connect5(0x82), props(), str("c")), mal},
		{"CONNECT with trailing bytes", V311, pk(0x10, connect311(0x02), str("c"), by(0)), mal},
		{"CONNECT without client identifier", V311, pk(0x10, connect311(0x02)), mal},

		// CONNACK (MQTT-3.2.2-1, -4 / 5.0 MQTT-3.2.2-6, 3.2.2.2).
		{"CONNACK reserved flags", V311, pk(0x20, by(0x02, 0)), mal},
		{"CONNACK session present with refusal", V311, pk(0x20, by(0x01, 0x05)), mal},
		{"CONNACK session present with refusal (5.0)", V5, pk(0x20, by(0x01, 0x87), props()), mal},
		{"CONNACK return code 6 in 3.1.1", V311, pk(0x20, by(0, 6)), mal},
		{"CONNACK return code 0x80 in 3.1.1", V311, pk(0x20, by(0, 0x80)), mal},
		{"CONNACK trailing bytes in 3.1.1", V311, pk(0x20, by(0, 0, 0)), mal},
		{"CONNACK without properties in 5.0", V5, pk(0x20, by(0, 0)), mal},

		// Reason codes per packet type (5.0 sections 3.x.2.1; 3.1.1 3.9.3).
		{"CONNACK reason code 0x01", V5, pk(0x20, by(0, 0x01), props()), mal},
		{"CONNACK reason code 0x8E", V5, pk(0x20, by(0, 0x8E), props()), mal},
		{"PUBACK reason code 0x04", V5, pk(0x40, u16(1), by(0x04)), mal},
		{"PUBREC reason code 0x92", V5, pk(0x50, u16(1), by(0x92)), mal},
		{"PUBREL reason code 0x10", V5, pk(0x62, u16(1), by(0x10)), mal},
		{"PUBCOMP reason code 0x80", V5, pk(0x70, u16(1), by(0x80)), mal},
		{"SUBACK reason code 0x03", V5, pk(0x90, u16(1), props(), by(0x03)), mal},
		{"SUBACK return code 0x03 in 3.1.1", V311, pk(0x90, u16(1), by(0x03)), mal},
		{"SUBACK return code 0x87 in 3.1.1", V311, pk(0x90, u16(1), by(0x87)), mal},
		{"SUBACK without return codes", V311, pk(0x90, u16(1)), proto},
		{"UNSUBACK reason code 0x01", V5, pk(0xB0, u16(1), props(), by(0x01)), mal},
		{"UNSUBACK without reason codes", V5, pk(0xB0, u16(1), props()), proto},
		{"UNSUBACK trailing bytes in 3.1.1", V311, pk(0xB0, u16(1), by(0)), mal},
		{"DISCONNECT reason code 0x01", V5, pk(0xE0, by(0x01)), mal},
		{"DISCONNECT reason code 0x84", V5, pk(0xE0, by(0x84)), mal},
		{"AUTH reason code 0x01", V5, pk(0xF0, by(0x01)), mal},
		{"AUTH reason code 0x80", V5, pk(0xF0, by(0x80), props()), mal},

		// Bodies where none or less is allowed.
		{"PINGREQ with a body", V311, pk(0xC0, by(0)), mal},
		{"PINGRESP with a body", V5, pk(0xD0, by(0)), mal},
		{"DISCONNECT with a body in 3.1.1", V311, pk(0xE0, by(0)), mal},
		{"PUBACK with a reason code in 3.1.1", V311, pk(0x40, u16(1), by(0)), mal},
		{"PUBACK trailing bytes after properties", V5, pk(0x40, u16(1), by(0), props(), by(0)), mal},
		{"DISCONNECT trailing bytes after properties", V5, pk(0xE0, by(0), props(), by(0)), mal},
		{"AUTH in 3.1.1", V311, pk(0xF0), mal},
		{"AUTH with a reason code in 3.1.1", V311, pk(0xF0, by(0x18), props()), mal},
	}

	// Reserved fixed-header flags of every type but PUBLISH (MQTT-2.2.2-1,
	// MQTT-2.2.2-2 / 5.0 MQTT-2.1.3-1): each sample with its flags changed.
	for _, v := range []Version{V311, V5} {
		for _, p := range samples(v) {
			if p.Type() == PUBLISH {
				continue
			}
			b, err := Append(nil, p, v)
			if err != nil {
				panic(err)
			}
			for _, f := range []byte{0x01, 0x02, 0x04, 0x08} {
				c := bytes.Clone(b)
				c[0] ^= f
				cases = append(cases, badCase{p.Type().String() + " reserved flags " + v.String(), v, c, mal})
			}
		}
	}
	return cases
}

func TestDecodeRejects(t *testing.T) {
	for _, c := range badPackets() {
		t.Run(c.name, func(t *testing.T) {
			p, err := Decode(c.in, c.v)
			if err == nil {
				t.Fatalf("Decode(% X) = %#v, want reason code 0x%02X", c.in, p, byte(c.code))
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Decode(% X): %T %v, want *Error", c.in, err, err)
			}
			if e.Code != c.code {
				t.Fatalf("Decode(% X): %v (0x%02X), want 0x%02X %s", c.in, err, byte(e.Code), byte(c.code), c.code)
			}
			if p != nil {
				t.Fatalf("Decode returned a packet with the error: %#v", p)
			}
			if decodeOnly[c.name] {
				return
			}
			// The Reader reports the same.
			r := NewReader(bytes.NewReader(c.in), 0)
			if c.in[0]>>4 != byte(CONNECT) {
				r.SetVersion(c.v)
			}
			_, rerr := r.ReadPacket()
			if CodeOf(rerr) != c.code && !(rerr == io.ErrUnexpectedEOF && c.name == "remaining length cut short") {
				t.Fatalf("ReadPacket(% X): %v, want 0x%02X", c.in, rerr, byte(c.code))
			}
		})
	}
}

// Near misses of the cases above that are valid, so the rules are not broader
// than the specifications.
func TestDecodeAccepts(t *testing.T) {
	cases := []struct {
		name  string
		v     Version
		in    []byte
		check func(Packet) bool
	}{
		{"password without user name in 5.0", V5, pk(0x10, connect5(0x42), props(), str("c"), str("pw")),
			func(p Packet) bool {
				c := p.(*Connect)
				return c.PasswordFlag && !c.UsernameFlag && string(c.Password) == "pw"
			}},
		{"no local in 5.0", V5, pk(0x82, u16(1), props(), str("a"), by(0x2D)),
			func(p Packet) bool {
				s := p.(*Subscribe).Subscriptions[0]
				return s.NoLocal && s.RetainAsPublished && s.RetainHandling == 2 && s.QoS == 1
			}},
		{"empty topic with alias", V5, pub5Alias(), func(p Packet) bool {
			pub := p.(*Publish)
			return pub.Topic == "" && pub.Properties.TopicAlias == 7
		}},
		{"two subscription identifiers on PUBLISH", V5, pk(0x30, str("a"), props(by(0x0B, 1, 0x0B, 0xFF, 0xFF, 0xFF, 0x7F))),
			func(p Packet) bool {
				ids := p.(*Publish).Properties.SubscriptionIdentifiers
				return len(ids) == 2 && ids[0] == 1 && ids[1] == MaxVarint
			}},
		{"repeated user properties keep their order", V5, pk(0x30, str("a"), props(by(0x26), str("k"), str("2"), by(0x26), str("k"), str("1"))),
			func(p Packet) bool {
				u := p.(*Publish).Properties.UserProperties
				return len(u) == 2 && u[0] == UserProperty{"k", "2"} && u[1] == UserProperty{"k", "1"}
			}},
		{"U+FEFF, U+FFFF and U+10FFFF in a topic", V311, pk(0x30, str("\xEF\xBB\xBF/\xEF\xBF\xBF/\xF4\x8F\xBF\xBF")),
			func(p Packet) bool { return p.(*Publish).Topic == "\uFEFF/\uFFFF/\U0010FFFF" }},
		{"remaining length 127 in one byte", V311, pk(0x30, str("a"), make([]byte, 124)),
			func(p Packet) bool { return len(p.(*Publish).Payload) == 124 }},
		{"remaining length 128 in two bytes", V311, pk(0x30, str("a"), make([]byte, 125)),
			func(p Packet) bool { return len(p.(*Publish).Payload) == 125 }},
		{"PUBACK with reason code only", V5, pk(0x40, u16(1), by(0x10)),
			func(p Packet) bool { return p.(*Puback).ReasonCode == NoMatchingSubscribers }},
		{"PUBACK with reason code and empty properties", V5, pk(0x40, u16(1), by(0x00), props()),
			func(p Packet) bool { return p.(*Puback).ReasonCode == Success }},
		{"DISCONNECT with disconnect-with-will", V5, pk(0xE0, by(0x04)),
			func(p Packet) bool { return p.(*Disconnect).ReasonCode == DisconnectWithWill }},
		{"empty client identifier", V311, pk(0x10, connect311(0x02), str("")),
			func(p Packet) bool { return p.(*Connect).ClientID == "" }},
		{"CONNACK return code 5 in 3.1.1", V311, pk(0x20, by(0, 5)),
			func(p Packet) bool { return p.(*Connack).ReasonCode == ConnRefusedNotAuthorized }},
		{"SUBACK failure in 3.1.1", V311, pk(0x90, u16(1), by(0x80, 0x02)),
			func(p Packet) bool { r := p.(*Suback).ReasonCodes; return r[0] == SubackFailure && r[1] == GrantedQoS2 }},
		{"$share filter without no local", V5, pk(0x82, u16(1), props(), str("$share/g/a"), by(0x01)),
			func(p Packet) bool { return p.(*Subscribe).Subscriptions[0].Filter == "$share/g/a" }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := Decode(c.in, c.v)
			if err != nil {
				t.Fatalf("Decode(% X): %v", c.in, err)
			}
			if !c.check(p) {
				t.Fatalf("Decode(% X) = %#v", c.in, p)
			}
			out, err := Append(nil, p, c.v)
			if err != nil {
				t.Fatalf("Append: %v", err)
			}
			p2, err := Decode(out, c.v)
			if err != nil || !equalPackets(p, p2) {
				t.Fatalf("re-encoded % X decodes to %#v, %v", out, p2, err)
			}
		})
	}
}

func pub5Alias() []byte { return pk(0x32, str(""), u16(5), props(by(0x23), u16(7)), by('x')) }

// Truncated streams: io.ErrUnexpectedEOF from the Reader, wherever the stream
// stops inside a packet; io.EOF only between packets.
func TestReaderTruncated(t *testing.T) {
	for _, v := range []Version{V311, V5} {
		for _, p := range samples(v) {
			b, err := Append(nil, p, v)
			if err != nil {
				t.Fatal(err)
			}
			for cut := 1; cut < len(b); cut++ {
				r := NewReader(bytes.NewReader(b[:cut]), 0)
				if p.Type() != CONNECT {
					r.SetVersion(v)
				}
				got, err := r.ReadPacket()
				if err != io.ErrUnexpectedEOF {
					t.Fatalf("%s %s cut at %d of %d: %v, %v; want io.ErrUnexpectedEOF", v, p.Type(), cut, len(b), got, err)
				}
				// Decode of the same bytes says the packet is malformed.
				if _, err := Decode(b[:cut], v); CodeOf(err) != MalformedPacket {
					t.Fatalf("Decode of %s cut at %d: %v", p.Type(), cut, err)
				}
			}
		}
	}
	r := NewReader(bytes.NewReader(nil), 0)
	if _, err := r.ReadPacket(); err != io.EOF {
		t.Fatalf("empty stream: %v, want io.EOF", err)
	}
}

// Errors of the underlying reader pass through unchanged.
func TestReaderPassesErrors(t *testing.T) {
	boom := errors.New("connection reset")
	for _, prefix := range [][]byte{nil, {0xC0}, {0x30, 0x05, 0x00}} {
		r := NewReader(io.MultiReader(bytes.NewReader(prefix), errReader{boom}), 0)
		r.SetVersion(V311)
		if _, err := r.ReadPacket(); err != boom {
			t.Fatalf("after % X: %v, want %v", prefix, err, boom)
		}
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

func TestReaderFirstPacketMustBeConnect(t *testing.T) {
	for _, p := range samples(V5) {
		if p.Type() == CONNECT {
			continue
		}
		b, err := Append(nil, p, V5)
		if err != nil {
			t.Fatal(err)
		}
		// The body must not be read either: the refusal comes from the
		// fixed header.
		_, n, perr := parseVarint(b[1:])
		if perr != nil {
			t.Fatal(perr)
		}
		r := NewReader(io.MultiReader(bytes.NewReader(b[:1+n]), neverReader{t}), 0)
		if _, err := r.ReadPacket(); CodeOf(err) != ProtocolError {
			t.Fatalf("%s first: %v, want protocol error", p.Type(), err)
		}
	}
}

// A second CONNECT on a connection is a Protocol Error (MQTT-3.1.0-2), and so
// is a CONNECT on a client's Reader.
func TestReaderSecondConnect(t *testing.T) {
	c, err := Append(nil, &Connect{ClientID: "a", CleanStart: true}, V311)
	if err != nil {
		t.Fatal(err)
	}
	c5, err := Append(nil, &Connect{ClientID: "a", CleanStart: true}, V5)
	if err != nil {
		t.Fatal(err)
	}
	r := NewReader(bytes.NewReader(append(bytes.Clone(c), c5...)), 0)
	if _, err := r.ReadPacket(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ReadPacket(); CodeOf(err) != ProtocolError {
		t.Fatalf("second CONNECT: %v, want protocol error", err)
	}
	if r.Version() != V311 {
		t.Fatalf("version changed to %s by a second CONNECT", r.Version())
	}
	r = NewReader(bytes.NewReader(c), 0)
	r.SetVersion(V5)
	if _, err := r.ReadPacket(); CodeOf(err) != ProtocolError {
		t.Fatalf("CONNECT on a client Reader: %v, want protocol error", err)
	}
}

func TestReaderSizeLimitBoundary(t *testing.T) {
	p := &Publish{Topic: "a/b", Payload: make([]byte, 100)}
	b, err := Append(nil, p, V311)
	if err != nil {
		t.Fatal(err)
	}
	// Exactly at the limit: accepted. One byte under: refused from the
	// fixed header, without reading the body.
	r := NewReader(bytes.NewReader(b), uint32(len(b)))
	r.SetVersion(V311)
	if _, err := r.ReadPacket(); err != nil {
		t.Fatalf("packet of exactly the limit: %v", err)
	}
	r = NewReader(io.MultiReader(bytes.NewReader(b[:2]), neverReader{t}), uint32(len(b)-1))
	r.SetVersion(V311)
	if _, err := r.ReadPacket(); CodeOf(err) != PacketTooLarge {
		t.Fatalf("packet one over the limit: %v", err)
	}
	// The limit counts the fixed header: a CONNECT before any version, and
	// a limit changed on the way.
	r = NewReader(io.MultiReader(bytes.NewReader(by(0x10, 0xFF, 0xFF, 0x03)), neverReader{t}), 0)
	r.SetMaxPacketSize(65535)
	if _, err := r.ReadPacket(); CodeOf(err) != PacketTooLarge {
		t.Fatalf("CONNECT of 65540 bytes with a limit of 65535: %v", err)
	}
}

func TestEncodeRejects(t *testing.T) {
	long := strings.Repeat("a", 65536)
	cases := []struct {
		name string
		p    Packet
		v    Version
	}{
		{"PUBLISH QoS 3", &Publish{QoS: 3, Topic: "a", PacketID: 1}, V311},
		{"PUBLISH QoS 1 without packet id", &Publish{QoS: 1, Topic: "a"}, V5},
		{"PUBLISH QoS 2 without packet id", &Publish{QoS: 2, Topic: "a"}, V311},
		{"PUBACK without packet id", &Puback{}, V311},
		{"PUBREC without packet id", &Pubrec{}, V5},
		{"PUBREL without packet id", &Pubrel{}, V5},
		{"PUBCOMP without packet id", &Pubcomp{}, V311},
		{"SUBSCRIBE without packet id", &Subscribe{Subscriptions: []Subscription{{Filter: "a"}}}, V311},
		{"SUBSCRIBE without filters", &Subscribe{PacketID: 1}, V5},
		{"SUBSCRIBE QoS 3", &Subscribe{PacketID: 1, Subscriptions: []Subscription{{Filter: "a", QoS: 3}}}, V311},
		{"SUBSCRIBE retain handling 3", &Subscribe{PacketID: 1, Subscriptions: []Subscription{{Filter: "a", RetainHandling: 3}}}, V5},
		{"SUBACK without reason codes", &Suback{PacketID: 1}, V311},
		{"UNSUBSCRIBE without filters", &Unsubscribe{PacketID: 1}, V311},
		{"UNSUBSCRIBE without packet id", &Unsubscribe{Filters: []string{"a"}}, V5},
		{"UNSUBACK without reason codes in 5.0", &Unsuback{PacketID: 1}, V5},
		{"CONNECT will QoS 3", &Connect{ClientID: "c", WillFlag: true, WillQoS: 3, WillTopic: "w"}, V311},
		{"topic over 65535 bytes", &Publish{Topic: long}, V311},
		{"client identifier over 65535 bytes", &Connect{ClientID: long}, V5},
		{"user name over 65535 bytes", &Connect{UsernameFlag: true, Username: long}, V311},
		{"password over 65535 bytes", &Connect{PasswordFlag: true, UsernameFlag: true, Password: []byte(long)}, V311},
		{"will payload over 65535 bytes", &Connect{WillFlag: true, WillTopic: "w", WillPayload: []byte(long)}, V311},
		{"filter over 65535 bytes", &Subscribe{PacketID: 1, Subscriptions: []Subscription{{Filter: long}}}, V5},
		{"user property over 65535 bytes", &Publish{Topic: "a", Properties: Properties{UserProperties: []UserProperty{{long, "v"}}}}, V5},
		{"content type over 65535 bytes", &Publish{Topic: "a", Properties: Properties{ContentType: long, HasContentType: true}}, V5},
		{"correlation data over 65535 bytes", &Publish{Topic: "a", Properties: Properties{CorrelationData: []byte(long), HasCorrelationData: true}}, V5},
		{"session expiry on PUBLISH", &Publish{Topic: "a", Properties: Properties{SessionExpiry: 1, HasSessionExpiry: true}}, V5},
		{"topic alias on CONNECT", &Connect{Properties: Properties{TopicAlias: 1, HasTopicAlias: true}}, V5},
		{"will delay on CONNECT itself", &Connect{Properties: Properties{WillDelay: 1, HasWillDelay: true}}, V5},
		{"session expiry in will properties", &Connect{WillFlag: true, WillTopic: "w", WillProperties: Properties{SessionExpiry: 1, HasSessionExpiry: true}}, V5},
		{"subscription identifier on PUBACK", &Puback{PacketID: 1, Properties: Properties{SubscriptionIdentifiers: []uint32{1}}}, V5},
		{"subscription identifier 0", &Subscribe{PacketID: 1, Properties: Properties{SubscriptionIdentifiers: []uint32{0}}, Subscriptions: []Subscription{{Filter: "a"}}}, V5},
		{"subscription identifier too large", &Publish{Topic: "a", Properties: Properties{SubscriptionIdentifiers: []uint32{MaxVarint + 1}}}, V5},
		{"server reference on AUTH", &Auth{Properties: Properties{ServerReference: "x", HasServerReference: true}}, V5},
		{"AUTH in 3.1.1", &Auth{}, V311},
		{"AUTH in 3.1", &Auth{ReasonCode: ContinueAuthentication}, V31},
		{"nil packet", nil, V5},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dst := []byte{0xAA}
			out, err := Append(dst, c.p, c.v)
			if err == nil {
				t.Fatalf("Append encoded % X", out)
			}
			if len(out) != 1 || out[0] != 0xAA {
				t.Fatalf("Append changed dst to % X on error", out)
			}
			if n, err := Size(c.p, c.v); err == nil {
				t.Fatalf("Size = %d without error", n)
			}
		})
	}
}

// A peer that claims a packet of 200 MB within the limit and then sends a few
// bytes costs about what it sent, not what it claimed.
func TestReaderLargeClaimCostsLittle(t *testing.T) {
	hdr := by(0x30, 0x80, 0x80, 0x80, 0x64) // remaining length 200 MiB
	r := NewReader(io.MultiReader(bytes.NewReader(hdr), bytes.NewReader(make([]byte, 1000))), 0)
	r.SetVersion(V311)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := r.ReadPacket()
	runtime.ReadMemStats(&after)
	if err != io.ErrUnexpectedEOF {
		t.Fatalf("err = %v, want io.ErrUnexpectedEOF", err)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 4<<20 {
		t.Fatalf("allocated %d bytes for a claim of 200 MiB with 1000 bytes sent", n)
	}
}

// Bodies larger than the first allocation arrive whole.
func TestReaderLargePacket(t *testing.T) {
	for _, n := range []int{bodyChunk - 5, bodyChunk, bodyChunk + 1, 3*bodyChunk + 7, 1 << 20} {
		p := &Publish{QoS: 1, PacketID: 9, Topic: "big", Payload: bytes.Repeat([]byte{0xA5, 0x5A, 0x01}, n/3+1)[:n]}
		b, err := Append(nil, p, V5)
		if err != nil {
			t.Fatal(err)
		}
		// A reader that hands out a few bytes at a time.
		r := NewReader(iotest.HalfReader(bytes.NewReader(b)), 0)
		r.SetVersion(V5)
		got, err := r.ReadPacket()
		if err != nil || !equalPackets(got, p) {
			t.Fatalf("payload of %d bytes: %v", n, err)
		}
		if _, err := r.ReadPacket(); err != io.EOF {
			t.Fatalf("after the packet: %v", err)
		}
	}
}

// A 5.0 CONNACK reason code sent to a 3.1.1 client goes out as the nearest
// 3.1.1 return code (3.1.1 section 3.2.2.3 reserves 6-255).
func TestEncodeConnackReturnCode(t *testing.T) {
	cases := map[ReasonCode]ReasonCode{
		Success: ConnAccepted, ConnRefusedBadUsernameOrPass: ConnRefusedBadUsernameOrPass,
		NotAuthorized: ConnRefusedNotAuthorized, BadUserNameOrPassword: ConnRefusedBadUsernameOrPass,
		UnsupportedProtocolVersion: ConnRefusedProtocolVersion, ClientIdentifierNotValid: ConnRefusedIdentifierRejected,
		ServerBusy: ConnRefusedServerUnavailable, Banned: ConnRefusedNotAuthorized,
	}
	for in, want := range cases {
		b, err := Append(nil, &Connack{ReasonCode: in}, V311)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, by(0x20, 0x02, 0x00, byte(want))) {
			t.Errorf("CONNACK %s in 3.1.1: % X, want return code %d", in, b, want)
		}
		if _, err := Decode(b, V311); err != nil {
			t.Errorf("CONNACK %s in 3.1.1 does not decode: %v", in, err)
		}
	}
}

// A refusing CONNACK never says the session is present (MQTT-3.2.2-4, 5.0
// MQTT-3.2.2-6), whatever the caller set.
func TestEncodeConnackRefusalWithoutSession(t *testing.T) {
	for _, v := range []Version{V311, V5} {
		b, err := Append(nil, &Connack{SessionPresent: true, ReasonCode: NotAuthorized}, v)
		if err != nil {
			t.Fatal(err)
		}
		if b[2] != 0 {
			t.Errorf("%s: acknowledge flags 0x%02X in a refusal", v, b[2])
		}
		p, err := Decode(b, v)
		if err != nil || p.(*Connack).SessionPresent {
			t.Errorf("%s: % X decodes to %#v, %v", v, b, p, err)
		}
	}
}
