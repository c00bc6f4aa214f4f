package packet

import (
	"fmt"
	"testing"
)

// withReason returns a 5.0 packet of type t carrying reason code rc.
func withReason(t Type, rc ReasonCode) Packet {
	switch t {
	case CONNACK:
		return &Connack{ReasonCode: rc}
	case PUBACK:
		return &Puback{PacketID: 1, ReasonCode: rc}
	case PUBREC:
		return &Pubrec{PacketID: 1, ReasonCode: rc}
	case PUBREL:
		return &Pubrel{PacketID: 1, ReasonCode: rc}
	case PUBCOMP:
		return &Pubcomp{PacketID: 1, ReasonCode: rc}
	case SUBACK:
		return &Suback{PacketID: 1, ReasonCodes: []ReasonCode{rc}}
	case UNSUBACK:
		return &Unsuback{PacketID: 1, ReasonCodes: []ReasonCode{rc}}
	case DISCONNECT:
		return &Disconnect{ReasonCode: rc}
	case AUTH:
		return &Auth{ReasonCode: rc}
	}
	panic(t)
}

// Every byte value as the reason code of every 5.0 packet type that has one:
// the codes of the specification's table for the type round-trip, all others
// are refused as Malformed Packet.
func TestEveryReasonCode(t *testing.T) {
	for typ, codes := range reasonSet {
		valid := map[ReasonCode]bool{}
		for _, c := range codes {
			valid[c] = true
		}
		for i := 0; i < 256; i++ {
			rc := ReasonCode(i)
			t.Run(fmt.Sprintf("%s/0x%02X", typ, i), func(t *testing.T) {
				b, err := Append(nil, withReason(typ, rc), V5)
				if err != nil {
					t.Fatal(err)
				}
				p, err := Decode(b, V5)
				if !valid[rc] {
					if CodeOf(err) != MalformedPacket {
						t.Fatalf("% X: %#v, %v; want malformed packet", b, p, err)
					}
					return
				}
				if err != nil || !equalPackets(p, withReason(typ, rc)) {
					t.Fatalf("% X: %#v, %v", b, p, err)
				}
			})
		}
	}
}

// Every 3.1.1 SUBACK return code and CONNACK return code.
func TestEveryReturnCode311(t *testing.T) {
	for i := 0; i < 256; i++ {
		rc := ReasonCode(i)
		b := pk(0x90, u16(1), by(byte(rc)))
		_, err := Decode(b, V311)
		if ok := rc <= 2 || rc == 0x80; ok != (err == nil) {
			t.Errorf("SUBACK return code 0x%02X: %v", i, err)
		}
		b = pk(0x20, by(0, byte(rc)))
		_, err = Decode(b, V311)
		if ok := rc <= 5; ok != (err == nil) {
			t.Errorf("CONNACK return code 0x%02X: %v", i, err)
		}
	}
}
