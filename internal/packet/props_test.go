package packet

import (
	"fmt"
	"testing"
)

// propValues holds one valid encoded property (identifier and value) for
// every property identifier of 5.0 section 2.2.2.2.
var propValues = map[byte][]byte{
	propPayloadFormat:        by(0x01, 1),
	propMessageExpiry:        by(0x02, 0, 0, 0, 9),
	propContentType:          append(by(0x03), str("text/plain")...),
	propResponseTopic:        append(by(0x08), str("re/ply")...),
	propCorrelationData:      append(by(0x09), str("\x00\xff")...),
	propSubscriptionID:       by(0x0B, 0x81, 0x01),
	propSessionExpiry:        by(0x11, 0, 0, 0x0E, 0x10),
	propAssignedClientID:     append(by(0x12), str("auto-1")...),
	propServerKeepAlive:      by(0x13, 0, 30),
	propAuthMethod:           append(by(0x15), str("SCRAM")...),
	propAuthData:             append(by(0x16), str("data")...),
	propRequestProblemInfo:   by(0x17, 0),
	propWillDelay:            by(0x18, 0, 0, 0, 5),
	propRequestResponseInfo:  by(0x19, 1),
	propResponseInfo:         append(by(0x1A), str("resp")...),
	propServerReference:      append(by(0x1C), str("other:1883")...),
	propReasonString:         append(by(0x1F), str("why")...),
	propReceiveMaximum:       by(0x21, 0, 10),
	propTopicAliasMaximum:    by(0x22, 0, 10),
	propTopicAlias:           by(0x23, 0, 2),
	propMaximumQoS:           by(0x24, 1),
	propRetainAvailable:      by(0x25, 0),
	propUserProperty:         append(append(by(0x26), str("k")...), str("v")...),
	propMaximumPacketSize:    by(0x27, 0, 0, 4, 0),
	propWildcardSubAvailable: by(0x28, 1),
	propSubIDAvailable:       by(0x29, 0),
	propSharedSubAvailable:   by(0x2A, 1),
}

// Every property identifier in every property block: allowed ones decode and
// round-trip, the others are a Malformed Packet (5.0 section 2.2.2.2). An
// AUTH must carry an Authentication Method (5.0 section 3.15.2.2.2), so its
// block has one in front of the property under test.
func TestPropertyPlacement(t *testing.T) {
	blocks := []struct {
		name    string
		allowed propSet
		needs   byte // a property the block must carry besides the one tested
		build   func(props []byte) []byte
	}{
		{"CONNECT", connectProps, 0, func(p []byte) []byte { return pk(0x10, connect5(0x02), p, str("c")) }},
		{"CONNECT will", willProps, 0, func(p []byte) []byte { return pk(0x10, connect5(0x06), props(), str("c"), p, str("w"), str("x")) }},
		{"CONNACK", connackProps, 0, func(p []byte) []byte { return pk(0x20, by(0, 0), p) }},
		{"PUBLISH", publishProps, 0, func(p []byte) []byte { return pk(0x30, str("a/b"), p, by('x')) }},
		{"PUBACK", ackProps, 0, func(p []byte) []byte { return pk(0x40, u16(1), by(0), p) }},
		{"PUBREC", ackProps, 0, func(p []byte) []byte { return pk(0x50, u16(1), by(0), p) }},
		{"PUBREL", ackProps, 0, func(p []byte) []byte { return pk(0x62, u16(1), by(0), p) }},
		{"PUBCOMP", ackProps, 0, func(p []byte) []byte { return pk(0x70, u16(1), by(0), p) }},
		{"SUBSCRIBE", subscribeProps, 0, func(p []byte) []byte { return pk(0x82, u16(1), p, str("a/#"), by(1)) }},
		{"SUBACK", ackProps, 0, func(p []byte) []byte { return pk(0x90, u16(1), p, by(1)) }},
		{"UNSUBSCRIBE", unsubscribeProps, 0, func(p []byte) []byte { return pk(0xA2, u16(1), p, str("a/#")) }},
		{"UNSUBACK", ackProps, 0, func(p []byte) []byte { return pk(0xB0, u16(1), p, by(0)) }},
		{"DISCONNECT", disconnectProps, 0, func(p []byte) []byte { return pk(0xE0, by(0), p) }},
		{"AUTH", authProps, propAuthMethod, func(p []byte) []byte { return pk(0xF0, by(0x18), p) }},
	}
	for _, bl := range blocks {
		for id, val := range propValues {
			t.Run(fmt.Sprintf("%s/0x%02X", bl.name, id), func(t *testing.T) {
				block := props(val)
				if bl.needs != 0 && id != bl.needs {
					// The needed property has the lower identifier, so
					// it comes first in Append's order too.
					block = props(propValues[bl.needs], val)
				}
				in := bl.build(block)
				p, err := Decode(in, V5)
				if !bl.allowed.has(id) {
					if CodeOf(err) != MalformedPacket {
						t.Fatalf("% X: %v, want malformed packet", in, err)
					}
					return
				}
				if id == propAuthData && bl.name == "CONNECT" {
					// Authentication Data without an Authentication
					// Method is a Protocol Error in CONNECT (5.0
					// section 3.1.2.11.10); CONNACK has no such rule.
					if CodeOf(err) != ProtocolError {
						t.Fatalf("% X: %v, want protocol error", in, err)
					}
					return
				}
				if err != nil {
					t.Fatalf("% X: %v", in, err)
				}
				// A single property encodes to the same bytes.
				out, err := Append(nil, p, V5)
				if err != nil || string(out) != string(in) {
					t.Fatalf("re-encoded % X, %v; want % X", out, err, in)
				}
			})
		}
	}
}
