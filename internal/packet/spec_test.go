package packet

import (
	"bytes"
	"encoding/hex"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// Byte-exact tests against the examples of the specifications: MQTT 3.1.1
// (OASIS Standard, 29 October 2014) and MQTT 5.0 (OASIS Standard, 7 March
// 2019). The specifications give variable headers and payloads; where a
// whole packet is needed, the rest is filled in and marked as such.

// hx decodes hex written with spaces, in one or more parts.
func hx(parts ...string) []byte {
	b, err := hex.DecodeString(strings.Join(strings.Fields(strings.Join(parts, " ")), ""))
	if err != nil {
		panic(err)
	}
	return b
}

// Variable Byte Integer: 3.1.1 section 2.2.3 and 5.0 section 1.5.5 give the
// smallest and largest value of each length.
func TestSpecVariableByteInteger(t *testing.T) {
	cases := []struct {
		v   int
		enc string
	}{
		{0, "00"}, {127, "7F"},
		{128, "80 01"}, {16_383, "FF 7F"},
		{16_384, "80 80 01"}, {2_097_151, "FF FF 7F"},
		{2_097_152, "80 80 80 01"}, {268_435_455, "FF FF FF 7F"},
		// The example of 3.1.1 section 2.2.3: 64 is 0x40, 321 is 0xC1 0x02.
		{64, "40"}, {321, "C1 02"},
	}
	for _, c := range cases {
		want := hx(c.enc)
		if got := appendVarint(nil, c.v); !bytes.Equal(got, want) {
			t.Errorf("encode %d = % X, want % X", c.v, got, want)
		}
		if n := varintLen(c.v); n != len(want) {
			t.Errorf("varintLen(%d) = %d, want %d", c.v, n, len(want))
		}
		v, n, err := parseVarint(want)
		if err != nil || v != c.v || n != len(want) {
			t.Errorf("decode % X = %d, %d, %v", want, v, n, err)
		}
		// As the remaining length of a PUBLISH read by a Reader whose limit
		// refuses it: the length is parsed from exactly these bytes, and
		// the size in the error counts them.
		if c.v > 0 {
			r := NewReader(bytes.NewReader(append([]byte{0x30}, want...)), 1)
			r.SetVersion(V311)
			_, err := r.ReadPacket()
			total := 1 + len(want) + c.v
			if CodeOf(err) != PacketTooLarge || !strings.Contains(err.Error(), " of "+strconv.Itoa(total)+" bytes") {
				t.Errorf("remaining length % X: %v, want packet too large of %d bytes", want, err, total)
			}
		}
	}
}

// UTF-8 Encoded String: 3.1.1 section 1.5.3 and 5.0 section 1.5.4
// encode "A\U0002A6D4" as 00 05 41 F0 AA 9B 94.
func TestSpecUTF8String(t *testing.T) {
	want := hx("00 05 41 F0 AA 9B 94")
	if got := appendString(nil, "A\U0002A6D4"); !bytes.Equal(got, want) {
		t.Fatalf("encoded % X, want % X", got, want)
	}
	d := &decoder{b: want}
	if s := d.string("example"); d.err != nil || s != "A\U0002A6D4" || d.remaining() != 0 {
		t.Fatalf("decoded %q, %v", s, d.err)
	}
	// As a topic name in a whole PUBLISH.
	p := pk(0x30, want)
	got, err := Decode(p, V311)
	if err != nil || got.(*Publish).Topic != "A\U0002A6D4" {
		t.Fatalf("PUBLISH % X: %#v, %v", p, got, err)
	}
}

// specCase is a whole packet around a specification example, written out as
// literal bytes: the example's bytes as the specification prints them, and
// the rest (fixed header, payload) filled in by hand and marked as such, so
// that nothing the test expects is produced by the code under test.
type specCase struct {
	name string
	v    Version
	in   []byte
	want Packet
}

func specCases() []specCase {
	connectWant := func(v Version) *Connect {
		c := &Connect{ProtocolName: "MQTT", Version: v, CleanStart: true, KeepAlive: 10, ClientID: "client-1",
			WillFlag: true, WillQoS: 1, WillTopic: "will/topic", WillPayload: []byte("bye"),
			UsernameFlag: true, Username: "user", PasswordFlag: true, Password: []byte("pass")}
		if v == V5 {
			c.Properties = Properties{SessionExpiry: 10, HasSessionExpiry: true}
		}
		return c
	}
	// The CONNECT payload completing the examples, in the order of 3.1.3
	// (5.0: 3.1.3): client identifier "client-1", [will property length 0],
	// will topic "will/topic", will payload "bye", user name "user",
	// password "pass".
	const clientID = "00 08 63 6C 69 65 6E 74 2D 31"
	const willEtc = "00 0A 77 69 6C 6C 2F 74 6F 70 69 63  00 03 62 79 65  00 04 75 73 65 72  00 04 70 61 73 73"
	subWant := func() *Subscribe {
		return &Subscribe{PacketID: 10, Subscriptions: []Subscription{{Filter: "a/b", QoS: 1}, {Filter: "c/d", QoS: 2}}}
	}

	return []specCase{
		// 3.1.1 section 3.1.2.10: protocol name "MQTT", level
		// 4, flags 0xCE (user name, password, will QoS 1, will flag, clean
		// session), keep alive 10.
		{name: "3.1.1 CONNECT", v: V311, want: connectWant(V311), in: hx(
			"10 31", // completion: fixed header
			"00 04 4D 51 54 54 04 CE 00 0A",
			clientID, willEtc)},
		// 5.0 section 3.1.2.11: the same with level 5 and a
		// property length of 5 holding a Session Expiry Interval (0x11)
		// of 10.
		{name: "5.0 CONNECT", v: V5, want: connectWant(V5), in: hx(
			"10 38", // completion: fixed header
			"00 04 4D 51 54 54 05 CE 00 0A 05 11 00 00 00 0A",
			clientID, "00", willEtc)},
		// 3.1.1 section 3.2: CONNACK is 20 02, flags, return code.
		{name: "3.1.1 CONNACK accepted", v: V311, in: hx("20 02 00 00"), want: &Connack{}},
		{name: "3.1.1 CONNACK session present", v: V311, in: hx("20 02 01 00"), want: &Connack{SessionPresent: true}},
		{name: "3.1.1 CONNACK bad user name or password", v: V311, in: hx("20 02 00 04"), want: &Connack{ReasonCode: ConnRefusedBadUsernameOrPass}},
		// 5.0 section 3.2.2: flags, reason code, property length.
		{name: "5.0 CONNACK not authorized", v: V5, in: hx("20 03 00 87 00"), want: &Connack{ReasonCode: NotAuthorized}},
		// 3.1.1 section 3.3.2.3: topic "a/b", packet
		// identifier 10; the payload "hi" is the completion.
		{name: "3.1.1 PUBLISH at QoS 1", v: V311, in: hx("32 09", "00 03 61 2F 62 00 0A", "68 69"),
			want: &Publish{QoS: 1, Topic: "a/b", PacketID: 10, Payload: []byte("hi")}},
		// 5.0 section 3.3.2.3: the same with a property
		// length of 0.
		{name: "5.0 PUBLISH at QoS 2, DUP, retain", v: V5, in: hx("3D 0A", "00 03 61 2F 62 00 0A 00", "68 69"),
			want: &Publish{Dup: true, QoS: 2, Retain: true, Topic: "a/b", PacketID: 10, Payload: []byte("hi")}},
		// A QoS 0 PUBLISH has no packet identifier (3.1.1 section 3.3.2.2):
		// the same bytes are then topic and payload.
		{name: "3.1.1 PUBLISH QoS 0", v: V311, in: hx("30 07", "00 03 61 2F 62 00 0A"),
			want: &Publish{Topic: "a/b", Payload: []byte{0, 0x0A}}},
		// 3.1.1 sections 3.4-3.7 and 5.0 3.4-3.7 (remaining length 2 with
		// reason code Success and no properties).
		{name: "3.1.1 PUBACK", v: V311, in: hx("40 02 00 0A"), want: &Puback{PacketID: 10}},
		{name: "3.1.1 PUBREC", v: V311, in: hx("50 02 00 0A"), want: &Pubrec{PacketID: 10}},
		{name: "3.1.1 PUBREL", v: V311, in: hx("62 02 00 0A"), want: &Pubrel{PacketID: 10}},
		{name: "3.1.1 PUBCOMP", v: V311, in: hx("70 02 00 0A"), want: &Pubcomp{PacketID: 10}},
		{name: "5.0 PUBACK success short form", v: V5, in: hx("40 02 00 0A"), want: &Puback{PacketID: 10}},
		{name: "5.0 PUBREC no matching subscribers", v: V5, in: hx("50 03 00 0A 10"), want: &Pubrec{PacketID: 10, ReasonCode: NoMatchingSubscribers}},
		{name: "5.0 PUBREL packet identifier not found", v: V5, in: hx("62 03 00 0A 92"), want: &Pubrel{PacketID: 10, ReasonCode: PacketIdentifierNotFound}},
		{name: "5.0 PUBCOMP with reason string", v: V5, in: hx("70 08 00 0A 92 04 1F 00 01 78"),
			want: &Pubcomp{PacketID: 10, ReasonCode: PacketIdentifierNotFound, Properties: Properties{ReasonString: "x", HasReasonString: true}}},
		// 3.1.1 sections 3.8.2 (packet identifier 10) and 3.8.3: "a/b" at QoS 1, "c/d" at QoS 2.
		{name: "3.1.1 SUBSCRIBE", v: V311, want: subWant(), in: hx("82 0E", "00 0A", "00 03 61 2F 62 01  00 03 63 2F 64 02")},
		// 5.0 sections 3.8.2 (packet identifier 10, property length 0) and 3.8.3: the same filters with options 0x01 and 0x02.
		{name: "5.0 SUBSCRIBE", v: V5, want: subWant(), in: hx("82 0F", "00 0A 00", "00 03 61 2F 62 01  00 03 63 2F 64 02")},
		// 3.1.1 section 3.9.3: return codes 0 (success,
		// maximum QoS 0), 2 (success, maximum QoS 2) and 128 (failure);
		// the packet identifier 10 is the completion.
		{name: "3.1.1 SUBACK", v: V311, in: hx("90 05", "00 0A", "00 02 80"),
			want: &Suback{PacketID: 10, ReasonCodes: []ReasonCode{GrantedQoS0, GrantedQoS2, SubackFailure}}},
		{name: "5.0 SUBACK", v: V5, in: hx("90 06 00 0A 00 00 02 A2"),
			want: &Suback{PacketID: 10, ReasonCodes: []ReasonCode{GrantedQoS0, GrantedQoS2, WildcardSubscriptionsNotSupported}}},
		// 3.1.1 section 3.10.3 and 5.0 section 3.10.3: filters "a/b" and "c/d"; packet identifier 10
		// (5.0: property length 0).
		{name: "3.1.1 UNSUBSCRIBE", v: V311, in: hx("A2 0C", "00 0A", "00 03 61 2F 62  00 03 63 2F 64"),
			want: &Unsubscribe{PacketID: 10, Filters: []string{"a/b", "c/d"}}},
		{name: "5.0 UNSUBSCRIBE", v: V5, in: hx("A2 0D", "00 0A 00", "00 03 61 2F 62  00 03 63 2F 64"),
			want: &Unsubscribe{PacketID: 10, Filters: []string{"a/b", "c/d"}}},
		{name: "3.1.1 UNSUBACK", v: V311, in: hx("B0 02 00 0A"), want: &Unsuback{PacketID: 10}},
		{name: "5.0 UNSUBACK", v: V5, in: hx("B0 05 00 0A 00 00 11"),
			want: &Unsuback{PacketID: 10, ReasonCodes: []ReasonCode{Success, NoSubscriptionExisted}}},
		// 3.1.1 sections 3.12-3.14, 5.0 3.12-3.15: packets without a body.
		{name: "PINGREQ", v: V311, in: hx("C0 00"), want: &Pingreq{}},
		{name: "PINGRESP", v: V5, in: hx("D0 00"), want: &Pingresp{}},
		{name: "3.1.1 DISCONNECT", v: V311, in: hx("E0 00"), want: &Disconnect{}},
		// 5.0 section 3.14.2.1: remaining length 0 means Normal
		// disconnection; 1 is a reason code without properties.
		{name: "5.0 DISCONNECT short form", v: V5, in: hx("E0 00"), want: &Disconnect{}},
		{name: "5.0 DISCONNECT with will", v: V5, in: hx("E0 01 04"), want: &Disconnect{ReasonCode: DisconnectWithWill}},
		{name: "5.0 DISCONNECT session expiry", v: V5, in: hx("E0 07 00 05 11 00 00 00 00"),
			want: &Disconnect{Properties: Properties{SessionExpiry: 0, HasSessionExpiry: true}}},
		// 5.0 section 3.15.2.1: remaining length 0 means Success.
		{name: "5.0 AUTH short form", v: V5, in: hx("F0 00"), want: &Auth{}},
		{name: "5.0 AUTH continue", v: V5, in: hx("F0 0A 18 08 15 00 05 53 43 52 41 4D"),
			want: &Auth{ReasonCode: ContinueAuthentication, Properties: Properties{AuthMethod: "SCRAM", HasAuthMethod: true}}},
		// A 3.1 CONNECT (MQTT V3.1 Protocol Specification, section 3.1):
		// protocol name "MQIsdp", version 3, clean session, keep alive 10;
		// the client identifier "old-1" is the completion.
		{name: "3.1 CONNECT", v: V31, in: hx("10 13", "00 06 4D 51 49 73 64 70 03 02 00 0A", "00 05 6F 6C 64 2D 31"),
			want: &Connect{ProtocolName: "MQIsdp", Version: V31, CleanStart: true, KeepAlive: 10, ClientID: "old-1"}},
	}
}

func TestSpecExamples(t *testing.T) {
	for _, c := range specCases() {
		t.Run(c.name, func(t *testing.T) {
			got, err := Decode(c.in, c.v)
			if err != nil {
				t.Fatalf("Decode(% X): %v", c.in, err)
			}
			if !equalPackets(got, c.want) {
				t.Fatalf("Decode(% X) =\n%#v\nwant\n%#v", c.in, got, c.want)
			}
			enc, err := Append(nil, c.want, c.v)
			if err != nil {
				t.Fatalf("Append: %v", err)
			}
			if !bytes.Equal(enc, c.in) {
				t.Fatalf("Append =\n% X\nwant\n% X", enc, c.in)
			}
		})
	}
}

// A published capture: the CONNECT of MQTTX CLI and the CONNACK of EMQX in
// "MQTT 5.0 Packet Explained 01: CONNECT & CONNACK" (EMQ Technologies, 2023):
// Clean Start, Session Expiry Interval 300, Keep Alive 60, user name "admin",
// password "public".
func TestPublishedCaptureEMQX(t *testing.T) {
	connect := hx(`10 2f 00 04 4d 51 54 54 05 c2 00 3c 05 11 00 00 01 2c 00 0e 6d
		71 74 74 78 5f 30 63 36 36 38 64 30 64 00 05 61 64 6d 69 6e 00
		06 70 75 62 6c 69 63`)
	connack := hx("20 13 00 00 10 27 00 10 00 00 25 01 2a 01 29 01 22 ff ff 28 01")

	r := NewReader(bytes.NewReader(connect), 0)
	p, err := r.ReadPacket()
	if err != nil {
		t.Fatal(err)
	}
	c := p.(*Connect)
	want := &Connect{ProtocolName: "MQTT", Version: V5, CleanStart: true, KeepAlive: 60,
		Properties: Properties{SessionExpiry: 300, HasSessionExpiry: true}, ClientID: "mqttx_0c668d0d",
		UsernameFlag: true, Username: "admin", PasswordFlag: true, Password: []byte("public")}
	if !equalPackets(c, want) {
		t.Fatalf("CONNECT %#v", c)
	}
	if enc, err := Append(nil, c, V5); err != nil || !bytes.Equal(enc, connect) {
		t.Fatalf("CONNECT re-encoded % X, %v", enc, err)
	}

	p, err = Decode(connack, V5)
	if err != nil {
		t.Fatal(err)
	}
	ca := p.(*Connack)
	wantCA := &Connack{Properties: Properties{
		MaximumPacketSize: 1 << 20, HasMaximumPacketSize: true,
		RetainAvailable: 1, HasRetainAvailable: true,
		SharedSubAvailable: 1, HasSharedSubAvailable: true,
		SubIDAvailable: 1, HasSubIDAvailable: true,
		TopicAliasMaximum: 65535, HasTopicAliasMaximum: true,
		WildcardSubAvailable: 1, HasWildcardSubAvailable: true,
	}}
	if !equalPackets(ca, wantCA) {
		t.Fatalf("CONNACK %#v", ca)
	}
	// EMQX writes the properties in another order than Append (identifier
	// order); the specification leaves the order free, so the encoding
	// must be the same bytes reordered and decode to the same packet.
	enc, err := Append(nil, ca, V5)
	if err != nil {
		t.Fatal(err)
	}
	a, b := slices.Clone(enc), slices.Clone(connack)
	slices.Sort(a)
	slices.Sort(b)
	if !bytes.Equal(a, b) || !bytes.Equal(enc[:5], connack[:5]) {
		t.Fatalf("CONNACK re-encoded % X, not a reordering of % X", enc, connack)
	}
	if p2, err := Decode(enc, V5); err != nil || !equalPackets(p2, ca) {
		t.Fatalf("re-encoded CONNACK decodes to %#v, %v", p2, err)
	}
}
