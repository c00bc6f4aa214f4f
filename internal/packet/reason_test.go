package packet

import (
	"bytes"
	"fmt"
	"testing"
)

// withReason returns a 5.0 packet of type t carrying reason code rc, and
// its encoding written out by hand: the short forms where the reason code
// is Success (5.0 sections 3.4.2.1, 3.14.2.1). An AUTH carries the
// Authentication Method "SCRAM" that every AUTH with a reason code needs.
func withReason(t Type, rc ReasonCode) (Packet, []byte) {
	r := byte(rc)
	scram := by(0x08, 0x15, 0x00, 0x05, 'S', 'C', 'R', 'A', 'M')
	ack := func(first byte) []byte {
		if rc == Success {
			return by(first, 0x02, 0x00, 0x01)
		}
		return by(first, 0x03, 0x00, 0x01, r)
	}
	switch t {
	case CONNACK:
		return &Connack{ReasonCode: rc}, by(0x20, 0x03, 0x00, r, 0x00)
	case PUBACK:
		return &Puback{PacketID: 1, ReasonCode: rc}, ack(0x40)
	case PUBREC:
		return &Pubrec{PacketID: 1, ReasonCode: rc}, ack(0x50)
	case PUBREL:
		return &Pubrel{PacketID: 1, ReasonCode: rc}, ack(0x62)
	case PUBCOMP:
		return &Pubcomp{PacketID: 1, ReasonCode: rc}, ack(0x70)
	case SUBACK:
		return &Suback{PacketID: 1, ReasonCodes: []ReasonCode{rc}}, by(0x90, 0x04, 0x00, 0x01, 0x00, r)
	case UNSUBACK:
		return &Unsuback{PacketID: 1, ReasonCodes: []ReasonCode{rc}}, by(0xB0, 0x04, 0x00, 0x01, 0x00, r)
	case DISCONNECT:
		if rc == Success {
			return &Disconnect{}, by(0xE0, 0x00)
		}
		return &Disconnect{ReasonCode: rc}, by(0xE0, 0x01, r)
	case AUTH:
		return &Auth{ReasonCode: rc, Properties: Properties{AuthMethod: "SCRAM", HasAuthMethod: true}},
			append(by(0xF0, 0x0A, r), scram...)
	}
	panic(t)
}

// specReasonCodes are the reason codes of MQTT 5.0 per packet type, copied
// by hand from the specification's tables, as bytes: the codec's own table
// (reasonSet) is what this checks, so it must not be derived from it.
var specReasonCodes = map[Type][]byte{
	// 3.2.2.2, Table 3-1 Connect Reason Code values.
	CONNACK: {0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C,
		0x90, 0x95, 0x97, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F},
	// 3.4.2.1, Table 3-4 PUBACK Reason Codes.
	PUBACK: {0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99},
	// 3.5.2.1, Table 3-5 PUBREC Reason Codes.
	PUBREC: {0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99},
	// 3.6.2.1, Table 3-6 PUBREL Reason Codes.
	PUBREL: {0x00, 0x92},
	// 3.7.2.1, Table 3-7 PUBCOMP Reason Codes.
	PUBCOMP: {0x00, 0x92},
	// 3.9.3, Table 3-8 Subscribe Reason Codes.
	SUBACK: {0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2},
	// 3.11.3, Table 3-9 Unsubscribe Reason Codes.
	UNSUBACK: {0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91},
	// 3.14.2.1, Table 3-10 Disconnect Reason Code values.
	DISCONNECT: {0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90,
		0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2},
	// 3.15.2.1, Table 3-13 Authenticate Reason Codes.
	AUTH: {0x00, 0x18, 0x19},
}

// Every byte value as the reason code of every 5.0 packet type that has one:
// the codes of the specification's table for the type (specReasonCodes,
// written out by hand) encode to the bytes written by hand and decode from
// them; all others are refused by both as Malformed Packet. The codec has a
// table for exactly those packet types.
func TestEveryReasonCode(t *testing.T) {
	if len(reasonSet) != len(specReasonCodes) {
		t.Errorf("the codec has reason codes for %d packet types, the specification for %d", len(reasonSet), len(specReasonCodes))
	}
	for typ := range reasonSet {
		if _, ok := specReasonCodes[typ]; !ok {
			t.Errorf("the codec has reason codes for %s, which has none in the specification", typ)
		}
	}
	for typ, codes := range specReasonCodes {
		valid := map[ReasonCode]bool{}
		for _, c := range codes {
			valid[ReasonCode(c)] = true
		}
		for i := 0; i < 256; i++ {
			rc := ReasonCode(i)
			t.Run(fmt.Sprintf("%s/0x%02X", typ, i), func(t *testing.T) {
				p, want := withReason(typ, rc)
				b, err := Append(nil, p, V5)
				got, derr := Decode(want, V5)
				if !valid[rc] {
					if CodeOf(err) != MalformedPacket {
						t.Fatalf("Append: % X, %v; want malformed packet", b, err)
					}
					if CodeOf(derr) != MalformedPacket {
						t.Fatalf("Decode(% X): %#v, %v; want malformed packet", want, got, derr)
					}
					return
				}
				if err != nil || !bytes.Equal(b, want) {
					t.Fatalf("Append: % X, %v; want % X", b, err, want)
				}
				if derr != nil || !equalPackets(got, p) {
					t.Fatalf("Decode(% X): %#v, %v", want, got, derr)
				}
			})
		}
	}
}

// Every byte value as a 3.1.1 SUBACK and CONNACK return code, both ways.
// Decoding takes the return codes of 3.1.1 sections 3.9.3 and 3.2.2.3 only.
// Encoding takes those, and a 5.0 code of the packet type, which goes out
// as the return code of nearest meaning; anything else is refused.
func TestEveryReturnCode311(t *testing.T) {
	for i := 0; i < 256; i++ {
		rc := ReasonCode(i)

		in := by(0x90, 0x03, 0x00, 0x01, byte(rc))
		_, err := Decode(in, V311)
		if ok := rc <= 2 || rc == 0x80; ok != (err == nil) {
			t.Errorf("decode SUBACK return code 0x%02X: %v", i, err)
		}
		out, err := Append(nil, &Suback{PacketID: 1, ReasonCodes: []ReasonCode{rc}}, V311)
		switch {
		case rc <= 2 || rc == 0x80:
			if err != nil || !bytes.Equal(out, in) {
				t.Errorf("encode SUBACK return code 0x%02X: % X, %v; want % X", i, out, err, in)
			}
		case validReason(SUBACK, rc) && rc.IsError():
			if want := by(0x90, 0x03, 0x00, 0x01, 0x80); err != nil || !bytes.Equal(out, want) {
				t.Errorf("encode SUBACK reason code 0x%02X: % X, %v; want % X", i, out, err, want)
			}
		default:
			if CodeOf(err) != MalformedPacket {
				t.Errorf("encode SUBACK return code 0x%02X: % X, %v; want malformed packet", i, out, err)
			}
		}

		in = by(0x20, 0x02, 0x00, byte(rc))
		_, err = Decode(in, V311)
		if ok := rc <= 5; ok != (err == nil) {
			t.Errorf("decode CONNACK return code 0x%02X: %v", i, err)
		}
		out, err = Append(nil, &Connack{ReasonCode: rc}, V311)
		switch {
		case rc <= 5:
			if err != nil || !bytes.Equal(out, in) {
				t.Errorf("encode CONNACK return code 0x%02X: % X, %v; want % X", i, out, err, in)
			}
		case validReason(CONNACK, rc):
			want := by(0x20, 0x02, 0x00, byte(ConnectReturnCode(rc)))
			if err != nil || !bytes.Equal(out, want) || want[3] > 5 {
				t.Errorf("encode CONNACK reason code 0x%02X: % X, %v; want % X", i, out, err, want)
			}
		default:
			if CodeOf(err) != MalformedPacket {
				t.Errorf("encode CONNACK return code 0x%02X: % X, %v; want malformed packet", i, out, err)
			}
		}
	}
}
