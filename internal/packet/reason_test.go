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

// Every byte value as the reason code of every 5.0 packet type that has one:
// the codes of the specification's table for the type encode to the bytes
// written by hand and decode from them; all others are refused by both as
// Malformed Packet.
func TestEveryReasonCode(t *testing.T) {
	for typ, codes := range reasonSet {
		valid := map[ReasonCode]bool{}
		for _, c := range codes {
			valid[c] = true
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
