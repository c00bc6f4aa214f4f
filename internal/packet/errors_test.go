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

		// AUTH (5.0 section 3.15.2.2.2): an Authentication Method unless
		// the remaining length is 0.
		{"AUTH without properties", V5, by(0xF0, 0x02, 0x18, 0x00), proto},
		{"AUTH with a reason code only", V5, by(0xF0, 0x01, 0x18), proto},
		{"AUTH success with a reason code only", V5, by(0xF0, 0x01, 0x00), proto},
		{"AUTH with data but no method", V5, pk(0xF0, by(0x18), props(by(0x16), str("d"))), proto},
		{"AUTH with a reason string but no method", V5, pk(0xF0, by(0x18), props(by(0x1F), str("why"))), proto},
		{"AUTH with two methods", V5, pk(0xF0, by(0x18), props(by(0x15), str("a"), by(0x15), str("b"))), proto},
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
		{"SUBACK packet id 0", V311, pk(0x90, u16(0), by(0)), proto},
		{"SUBACK packet id 0 (5.0)", V5, pk(0x90, u16(0), props(), by(0)), proto},
		{"UNSUBACK packet id 0", V311, pk(0xB0, u16(0)), proto},
		{"UNSUBACK packet id 0 (5.0)", V5, pk(0xB0, u16(0), props(), by(0)), proto},
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
		{"AUTH with a method only", V5, pk(0xF0, by(0x19), props(by(0x15), str("SCRAM"))),
			func(p Packet) bool {
				a := p.(*Auth)
				return a.ReasonCode == ReAuthenticate && a.Properties.AuthMethod == "SCRAM"
			}},
		{"AUTH success with method and data", V5, pk(0xF0, by(0x00), props(by(0x15), str("SCRAM"), by(0x16), str("d"))),
			func(p Packet) bool { return string(p.(*Auth).Properties.AuthData) == "d" }},
		{"CONNACK authentication method and data", V5, pk(0x20, by(0, 0), props(by(0x15), str("SCRAM"), by(0x16), str("d"))),
			func(p Packet) bool { return string(p.(*Connack).Properties.AuthData) == "d" }},
		// 5.0 section 3.1.2.11.10 requires a method with the data in
		// CONNECT only: a CONNACK with data alone is well formed.
		{"CONNACK authentication data without method", V5, pk(0x20, by(0, 0), props(by(0x16), str("d"))),
			func(p Packet) bool {
				pr := p.(*Connack).Properties
				return string(pr.AuthData) == "d" && !pr.HasAuthMethod
			}},
		// Filter syntax is the receiver's to check per filter (see
		// Subscribe): these are whole, well-formed packets.
		{"SUBSCRIBE filters of bad syntax", V5, pk(0x82, u16(1), props(), str("a/#/b"), by(0), str("a+"), by(0), str("$share//x"), by(0)),
			func(p Packet) bool {
				s := p.(*Subscribe).Subscriptions
				return len(s) == 3 && s[0].Filter == "a/#/b" && s[1].Filter == "a+" && s[2].Filter == "$share//x"
			}},
		{"UNSUBSCRIBE filters of bad syntax", V311, pk(0xA2, u16(1), str("a/#/b"), str("a+"), str("$share//x")),
			func(p Packet) bool { return len(p.(*Unsubscribe).Filters) == 3 }},
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
	const (
		mal   = MalformedPacket
		proto = ProtocolError
	)
	sub := func(s Subscription) *Subscribe { return &Subscribe{PacketID: 1, Subscriptions: []Subscription{s}} }
	pubProps := func(p Properties) *Publish { return &Publish{Topic: "a", Properties: p} }
	connackProps := func(p Properties) *Connack { return &Connack{Properties: p} }
	cases := []struct {
		name string
		p    Packet
		v    Version
		code ReasonCode // what Decode says of the same packet
	}{
		{"PUBLISH QoS 3", &Publish{QoS: 3, Topic: "a", PacketID: 1}, V311, mal},
		{"PUBLISH QoS 1 without packet id", &Publish{QoS: 1, Topic: "a"}, V5, proto},
		{"PUBLISH QoS 2 without packet id", &Publish{QoS: 2, Topic: "a"}, V311, proto},
		{"PUBLISH DUP on QoS 0", &Publish{Dup: true, Topic: "a"}, V311, mal},
		{"PUBLISH DUP on QoS 0 (5.0)", &Publish{Dup: true, Topic: "a"}, V5, mal},
		{"topic name with +", &Publish{Topic: "a/+"}, V311, TopicNameInvalid},
		{"topic name with #", &Publish{Topic: "#"}, V5, TopicNameInvalid},
		{"topic name with invalid UTF-8", &Publish{Topic: "a\xC3\x28"}, V311, mal},
		{"topic name with a surrogate", &Publish{Topic: "a\xED\xA0\x80"}, V5, mal},
		{"topic name with U+0000", &Publish{Topic: "a\x00b"}, V5, mal},
		{"empty topic name in 3.1.1", &Publish{Topic: ""}, V311, proto},
		{"empty topic name without alias", &Publish{Topic: ""}, V5, proto},
		{"empty topic name with alias in 3.1.1", &Publish{Topic: "", Properties: Properties{TopicAlias: 1, HasTopicAlias: true}}, V311, proto},
		{"topic alias 0", pubProps(Properties{TopicAlias: 0, HasTopicAlias: true}), V5, TopicAliasInvalid},
		{"payload format indicator 2", pubProps(Properties{PayloadFormat: 2, HasPayloadFormat: true}), V5, proto},
		{"response topic with a wildcard", pubProps(Properties{ResponseTopic: "r/#", HasResponseTopic: true}), V5, proto},
		{"content type with U+0000", pubProps(Properties{ContentType: "a\x00", HasContentType: true}), V5, mal},
		{"user property name invalid", pubProps(Properties{UserProperties: []UserProperty{{"\xFF", "v"}}}), V5, mal},
		{"user property value with U+0000", pubProps(Properties{UserProperties: []UserProperty{{"k", "\x00"}}}), V5, mal},
		{"PUBACK without packet id", &Puback{}, V311, proto},
		{"PUBREC without packet id", &Pubrec{}, V5, proto},
		{"PUBREL without packet id", &Pubrel{}, V5, proto},
		{"PUBCOMP without packet id", &Pubcomp{}, V311, proto},
		{"PUBACK reason code 0x04", &Puback{PacketID: 1, ReasonCode: 0x04}, V5, mal},
		{"PUBREL reason code 0x10", &Pubrel{PacketID: 1, ReasonCode: NoMatchingSubscribers}, V5, mal},
		{"reason string invalid", &Puback{PacketID: 1, Properties: Properties{ReasonString: "\xC3", HasReasonString: true}}, V5, mal},
		{"SUBSCRIBE without packet id", &Subscribe{Subscriptions: []Subscription{{Filter: "a"}}}, V311, proto},
		{"SUBSCRIBE without filters", &Subscribe{PacketID: 1}, V5, proto},
		{"SUBSCRIBE QoS 3", sub(Subscription{Filter: "a", QoS: 3}), V311, mal},
		{"SUBSCRIBE retain handling 3", sub(Subscription{Filter: "a", RetainHandling: 3}), V5, proto},
		{"SUBSCRIBE empty filter", sub(Subscription{Filter: ""}), V311, proto},
		{"SUBSCRIBE filter with invalid UTF-8", sub(Subscription{Filter: "\xFF"}), V5, mal},
		{"SUBSCRIBE no local on a shared subscription", sub(Subscription{Filter: "$share/g/a", NoLocal: true}), V5, proto},
		{"two subscription identifiers on SUBSCRIBE", &Subscribe{PacketID: 1, Properties: Properties{SubscriptionIdentifiers: []uint32{1, 2}},
			Subscriptions: []Subscription{{Filter: "a"}}}, V5, proto},
		{"SUBACK without reason codes", &Suback{PacketID: 1}, V311, proto},
		{"SUBACK without packet id", &Suback{ReasonCodes: []ReasonCode{0}}, V311, proto},
		{"SUBACK without packet id (5.0)", &Suback{ReasonCodes: []ReasonCode{0}}, V5, proto},
		{"SUBACK reason code 0x03", &Suback{PacketID: 1, ReasonCodes: []ReasonCode{3}}, V5, mal},
		{"SUBACK return code 0x03 in 3.1.1", &Suback{PacketID: 1, ReasonCodes: []ReasonCode{3}}, V311, mal},
		{"UNSUBSCRIBE without filters", &Unsubscribe{PacketID: 1}, V311, proto},
		{"UNSUBSCRIBE without packet id", &Unsubscribe{Filters: []string{"a"}}, V5, proto},
		{"UNSUBSCRIBE empty filter", &Unsubscribe{PacketID: 1, Filters: []string{""}}, V311, proto},
		{"UNSUBACK without reason codes in 5.0", &Unsuback{PacketID: 1}, V5, proto},
		{"UNSUBACK without packet id", &Unsuback{}, V311, proto},
		{"UNSUBACK without packet id (5.0)", &Unsuback{ReasonCodes: []ReasonCode{0}}, V5, proto},
		{"UNSUBACK reason code 0x01", &Unsuback{PacketID: 1, ReasonCodes: []ReasonCode{1}}, V5, mal},
		{"CONNACK reason code 0x01", &Connack{ReasonCode: 1}, V5, mal},
		{"CONNACK reason code 0x8E", &Connack{ReasonCode: SessionTakenOver}, V5, mal},
		{"CONNACK return code 6 in 3.1.1", &Connack{ReasonCode: 6}, V311, mal},
		{"CONNACK maximum QoS 2", connackProps(Properties{MaximumQoS: 2, HasMaximumQoS: true}), V5, proto},
		{"CONNACK retain available 2", connackProps(Properties{RetainAvailable: 2, HasRetainAvailable: true}), V5, proto},
		{"CONNACK receive maximum 0", connackProps(Properties{HasReceiveMaximum: true}), V5, proto},
		{"DISCONNECT reason code 0x01", &Disconnect{ReasonCode: 1}, V5, mal},
		{"AUTH reason code 0x01", &Auth{ReasonCode: 1, Properties: Properties{AuthMethod: "m", HasAuthMethod: true}}, V5, mal},
		{"AUTH without method", &Auth{ReasonCode: ContinueAuthentication}, V5, proto},
		{"AUTH success with a reason string but no method", &Auth{Properties: Properties{ReasonString: "r", HasReasonString: true}}, V5, proto},
		{"AUTH with data but no method", &Auth{ReasonCode: ContinueAuthentication, Properties: Properties{AuthData: []byte("d"), HasAuthData: true}}, V5, proto},
		{"CONNECT will QoS 3", &Connect{ClientID: "c", WillFlag: true, WillQoS: 3, WillTopic: "w"}, V311, mal},
		{"CONNECT will QoS without will flag", &Connect{ClientID: "c", WillQoS: 1}, V311, mal},
		{"CONNECT will retain without will flag", &Connect{ClientID: "c", WillRetain: true}, V5, mal},
		{"will topic with #", &Connect{WillFlag: true, WillTopic: "w/#"}, V311, TopicNameInvalid},
		{"empty will topic", &Connect{WillFlag: true}, V5, TopicNameInvalid},
		{"will response topic with +", &Connect{WillFlag: true, WillTopic: "w",
			WillProperties: Properties{ResponseTopic: "+", HasResponseTopic: true}}, V5, proto},
		{"password without user name in 3.1.1", &Connect{PasswordFlag: true, Password: []byte("pw")}, V311, mal},
		{"password without user name in 3.1", &Connect{PasswordFlag: true, Password: []byte("pw")}, V31, mal},
		{"client identifier with U+0000", &Connect{ClientID: "c\x00"}, V311, mal},
		{"user name with a surrogate", &Connect{UsernameFlag: true, Username: "\xED\xB0\x80"}, V311, mal},
		{"CONNECT authentication data without method", &Connect{Properties: Properties{AuthData: []byte("d"), HasAuthData: true}}, V5, proto},
		{"CONNECT request problem information 2", &Connect{Properties: Properties{RequestProblemInfo: 2, HasRequestProblemInfo: true}}, V5, proto},
		{"CONNECT maximum packet size 0", &Connect{Properties: Properties{HasMaximumPacketSize: true}}, V5, proto},
		{"protocol name MQTT at level 3", &Connect{ProtocolName: "MQTT"}, V31, UnsupportedProtocolVersion},
		{"protocol name MQIsdp at level 4", &Connect{ProtocolName: "MQIsdp"}, V311, UnsupportedProtocolVersion},
		{"protocol name MQIsdp at level 5", &Connect{ProtocolName: "MQIsdp"}, V5, UnsupportedProtocolVersion},
		{"protocol name mqtt", &Connect{ProtocolName: "mqtt"}, V311, UnsupportedProtocolVersion},
		{"protocol level 6", &Connect{}, Version(6), UnsupportedProtocolVersion},
		{"protocol level 0", &Connect{}, 0, UnsupportedProtocolVersion},
		{"topic over 65535 bytes", &Publish{Topic: long}, V311, mal},
		{"client identifier over 65535 bytes", &Connect{ClientID: long}, V5, mal},
		{"user name over 65535 bytes", &Connect{UsernameFlag: true, Username: long}, V311, mal},
		{"password over 65535 bytes", &Connect{PasswordFlag: true, UsernameFlag: true, Password: []byte(long)}, V311, mal},
		{"will payload over 65535 bytes", &Connect{WillFlag: true, WillTopic: "w", WillPayload: []byte(long)}, V311, mal},
		{"filter over 65535 bytes", sub(Subscription{Filter: long}), V5, mal},
		{"user property over 65535 bytes", pubProps(Properties{UserProperties: []UserProperty{{long, "v"}}}), V5, mal},
		{"content type over 65535 bytes", pubProps(Properties{ContentType: long, HasContentType: true}), V5, mal},
		{"correlation data over 65535 bytes", pubProps(Properties{CorrelationData: []byte(long), HasCorrelationData: true}), V5, mal},
		{"session expiry on PUBLISH", pubProps(Properties{SessionExpiry: 1, HasSessionExpiry: true}), V5, mal},
		{"topic alias on CONNECT", &Connect{Properties: Properties{TopicAlias: 1, HasTopicAlias: true}}, V5, mal},
		{"will delay on CONNECT itself", &Connect{Properties: Properties{WillDelay: 1, HasWillDelay: true}}, V5, mal},
		{"session expiry in will properties", &Connect{WillFlag: true, WillTopic: "w", WillProperties: Properties{SessionExpiry: 1, HasSessionExpiry: true}}, V5, mal},
		{"subscription identifier on PUBACK", &Puback{PacketID: 1, Properties: Properties{SubscriptionIdentifiers: []uint32{1}}}, V5, mal},
		{"subscription identifier 0", &Subscribe{PacketID: 1, Properties: Properties{SubscriptionIdentifiers: []uint32{0}}, Subscriptions: []Subscription{{Filter: "a"}}}, V5, proto},
		{"subscription identifier too large", pubProps(Properties{SubscriptionIdentifiers: []uint32{MaxVarint + 1}}), V5, mal},
		{"server reference on AUTH", &Auth{Properties: Properties{ServerReference: "x", HasServerReference: true}}, V5, mal},
		{"AUTH in 3.1.1", &Auth{}, V311, mal},
		{"AUTH in 3.1", &Auth{ReasonCode: ContinueAuthentication}, V31, mal},
		{"nil packet", nil, V5, mal},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dst := []byte{0xAA}
			out, err := Append(dst, c.p, c.v)
			if err == nil {
				t.Fatalf("Append encoded % X", out)
			}
			if CodeOf(err) != c.code {
				t.Fatalf("Append: %v, want reason code 0x%02X %s", err, byte(c.code), c.code)
			}
			if len(out) != 1 || out[0] != 0xAA {
				t.Fatalf("Append changed dst to % X on error", out)
			}
			if n, serr := Size(c.p, c.v); serr == nil || serr.Error() != err.Error() {
				t.Fatalf("Size = %d, %v; Append: %v", n, serr, err)
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

// MQTT 3.1 has no Session Present: the first byte of its CONNACK is
// reserved ("not used"). An accepted reconnection to a stored session gets
// 20 02 00 00, as mosquitto sends to 3.1 clients, and whatever the byte
// holds, a 3.1 CONNACK decodes without Session Present.
func TestConnack31WithoutSessionPresent(t *testing.T) {
	b, err := Append(nil, &Connack{SessionPresent: true}, V31)
	if want := by(0x20, 0x02, 0x00, 0x00); err != nil || !bytes.Equal(b, want) {
		t.Fatalf("Append: % X, %v; want % X", b, err, want)
	}
	for _, flags := range []byte{0x00, 0x01, 0xFF} {
		p, err := Decode(by(0x20, 0x02, flags, 0x00), V31)
		if err != nil || p.(*Connack).SessionPresent || p.(*Connack).ReasonCode != ConnAccepted {
			t.Errorf("flags 0x%02X: %#v, %v", flags, p, err)
		}
	}
	// 3.1.1 keeps the bit, and refuses the other bits.
	if b, err := Append(nil, &Connack{SessionPresent: true}, V311); err != nil || b[2] != 0x01 {
		t.Errorf("3.1.1: % X, %v", b, err)
	}
	if _, err := Decode(by(0x20, 0x02, 0x02, 0x00), V311); CodeOf(err) != MalformedPacket {
		t.Errorf("3.1.1 reserved flag: %v", err)
	}
}

// A 5.0 PUBLISH whose Payload Format Indicator says UTF-8 decodes whatever
// its payload; ValidPayloadFormat tells the receiver which reason code to
// answer.
func TestValidPayloadFormat(t *testing.T) {
	cases := []struct {
		name    string
		in      []byte
		invalid bool
	}{
		{"UTF-8 payload", pk(0x30, str("a"), props(by(0x01, 1)), []byte("gr\u00fc\u00df")), false},
		{"empty payload", pk(0x30, str("a"), props(by(0x01, 1))), false},
		{"invalid UTF-8", pk(0x30, str("a"), props(by(0x01, 1)), by('o', 'k', 0xC3)), true},
		{"a surrogate", pk(0x30, str("a"), props(by(0x01, 1)), by(0xED, 0xA0, 0x80)), true},
		{"U+0000 is character data", pk(0x30, str("a"), props(by(0x01, 1)), by('a', 0, 'b')), false},
		{"indicator 0", pk(0x30, str("a"), props(by(0x01, 0)), by(0xFF)), false},
		{"no indicator", pk(0x30, str("a"), props(), by(0xFF)), false},
	}
	for _, c := range cases {
		p, err := Decode(c.in, V5)
		if err != nil {
			t.Fatalf("%s: Decode(% X): %v", c.name, c.in, err)
		}
		err = p.(*Publish).ValidPayloadFormat()
		if c.invalid != (err != nil) || (err != nil && CodeOf(err) != PayloadFormatInvalid) {
			t.Errorf("%s: ValidPayloadFormat() = %v", c.name, err)
		}
	}
}
