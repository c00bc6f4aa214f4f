package packet

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"testing"
)

// allProps sets every property the allowed set holds, with distinct values.
func allProps(allowed propSet) Properties {
	var p Properties
	full := Properties{
		PayloadFormat: 1, HasPayloadFormat: true,
		MessageExpiry: 3600, HasMessageExpiry: true,
		ContentType: "application/json", HasContentType: true,
		ResponseTopic: "reply/to/me", HasResponseTopic: true,
		CorrelationData: []byte{0, 1, 2, 0xFF}, HasCorrelationData: true,
		SubscriptionIdentifiers: []uint32{1, 268_435_455},
		SessionExpiry:           0xFFFFFFFF, HasSessionExpiry: true,
		AssignedClientID: "auto-1234", HasAssignedClientID: true,
		ServerKeepAlive: 120, HasServerKeepAlive: true,
		AuthMethod: "SCRAM-SHA-1", HasAuthMethod: true,
		AuthData: []byte("client-first"), HasAuthData: true,
		RequestProblemInfo: 0, HasRequestProblemInfo: true,
		WillDelay: 30, HasWillDelay: true,
		RequestResponseInfo: 1, HasRequestResponseInfo: true,
		ResponseInfo: "resp/", HasResponseInfo: true,
		ServerReference: "other.example:1883", HasServerReference: true,
		ReasonString: "because ✓", HasReasonString: true,
		ReceiveMaximum: 64, HasReceiveMaximum: true,
		TopicAliasMaximum: 10, HasTopicAliasMaximum: true,
		TopicAlias: 3, HasTopicAlias: true,
		MaximumQoS: 1, HasMaximumQoS: true,
		RetainAvailable: 0, HasRetainAvailable: true,
		UserProperties:    []UserProperty{{"k", "v1"}, {"k", "v2"}, {"", ""}},
		MaximumPacketSize: 1 << 20, HasMaximumPacketSize: true,
		WildcardSubAvailable: 1, HasWildcardSubAvailable: true,
		SubIDAvailable: 0, HasSubIDAvailable: true,
		SharedSubAvailable: 1, HasSharedSubAvailable: true,
	}
	// Copy only the allowed ones, field by field through reflection on the
	// Has flags' names.
	fv, pv := reflect.ValueOf(full), reflect.ValueOf(&p).Elem()
	ids := map[string]byte{
		"PayloadFormat": propPayloadFormat, "MessageExpiry": propMessageExpiry, "ContentType": propContentType,
		"ResponseTopic": propResponseTopic, "CorrelationData": propCorrelationData,
		"SubscriptionIdentifiers": propSubscriptionID, "SessionExpiry": propSessionExpiry,
		"AssignedClientID": propAssignedClientID, "ServerKeepAlive": propServerKeepAlive,
		"AuthMethod": propAuthMethod, "AuthData": propAuthData, "RequestProblemInfo": propRequestProblemInfo,
		"WillDelay": propWillDelay, "RequestResponseInfo": propRequestResponseInfo,
		"ResponseInfo": propResponseInfo, "ServerReference": propServerReference,
		"ReasonString": propReasonString, "ReceiveMaximum": propReceiveMaximum,
		"TopicAliasMaximum": propTopicAliasMaximum, "TopicAlias": propTopicAlias,
		"MaximumQoS": propMaximumQoS, "RetainAvailable": propRetainAvailable,
		"UserProperties": propUserProperty, "MaximumPacketSize": propMaximumPacketSize,
		"WildcardSubAvailable": propWildcardSubAvailable, "SubIDAvailable": propSubIDAvailable,
		"SharedSubAvailable": propSharedSubAvailable,
	}
	for name, id := range ids {
		if !allowed.has(id) {
			continue
		}
		pv.FieldByName(name).Set(fv.FieldByName(name))
		if h := pv.FieldByName("Has" + name); h.IsValid() {
			h.SetBool(true)
		}
	}
	return p
}

// samples returns one or more packets of every type for version v.
func samples(v Version) []Packet {
	v5 := v == V5
	pr := func(allowed propSet) Properties {
		if !v5 {
			return Properties{}
		}
		return allProps(allowed)
	}
	subOpts := Subscription{Filter: "a/+/c", QoS: 1}
	if v5 {
		subOpts = Subscription{Filter: "$share/g/a/#", QoS: 2, RetainAsPublished: true, RetainHandling: 2}
	}
	subPr := pr(subscribeProps)
	subPr.SubscriptionIdentifiers = subPr.SubscriptionIdentifiers[:min(1, len(subPr.SubscriptionIdentifiers))]
	ps := []Packet{
		&Connect{ProtocolName: "MQTT", Version: v, CleanStart: true, KeepAlive: 60, ClientID: "dev-1",
			Properties: func() Properties { p := pr(connectProps); return p }()},
		&Connect{ProtocolName: "MQTT", Version: v, KeepAlive: 0, ClientID: "",
			WillFlag: true, WillQoS: 2, WillRetain: true, WillTopic: "dev/1/status", WillPayload: []byte("offline"),
			WillProperties: pr(willProps),
			UsernameFlag:   true, Username: "user", PasswordFlag: true, Password: []byte{0, 1, 2}},
		&Connack{SessionPresent: v != V31, ReasonCode: Success, Properties: pr(connackProps)}, // 3.1 has none
		&Connack{ReasonCode: func() ReasonCode {
			if v5 {
				return NotAuthorized
			}
			return ConnRefusedNotAuthorized
		}()},
		&Publish{Topic: "a/b", Payload: []byte("hello")},
		&Publish{QoS: 1, Dup: true, Retain: true, Topic: "a/b/c", PacketID: 7, Payload: nil, Properties: pr(publishProps)},
		&Publish{QoS: 2, Topic: "x", PacketID: 65535, Payload: bytes.Repeat([]byte{0xAB}, 300)},
		&Puback{PacketID: 1},
		&Pubrec{PacketID: 2},
		&Pubrel{PacketID: 3},
		&Pubcomp{PacketID: 4},
		&Subscribe{PacketID: 10, Properties: subPr, Subscriptions: []Subscription{subOpts, {Filter: "#"}}},
		&Suback{PacketID: 10, Properties: pr(ackProps), ReasonCodes: []ReasonCode{GrantedQoS1, GrantedQoS0, SubackFailure}},
		&Unsubscribe{PacketID: 11, Properties: pr(unsubscribeProps), Filters: []string{"a/+/c", "#"}},
		&Pingreq{},
		&Pingresp{},
		&Disconnect{},
	}
	if v == V31 {
		ps[0].(*Connect).ProtocolName = "MQIsdp"
		ps[1].(*Connect).ProtocolName = "MQIsdp"
	}
	if v5 {
		ps = append(ps,
			&Puback{PacketID: 5, ReasonCode: QuotaExceeded},
			&Pubrec{PacketID: 6, ReasonCode: NotAuthorized, Properties: pr(ackProps)},
			&Pubrel{PacketID: 7, ReasonCode: PacketIdentifierNotFound},
			&Pubcomp{PacketID: 8, Properties: pr(ackProps)},
			&Unsuback{PacketID: 11, Properties: pr(ackProps), ReasonCodes: []ReasonCode{Success, NoSubscriptionExisted}},
			&Disconnect{ReasonCode: SessionTakenOver},
			&Disconnect{ReasonCode: ServerMoved, Properties: pr(disconnectProps)},
			&Auth{},
			&Auth{ReasonCode: ContinueAuthentication, Properties: pr(authProps)},
			&Publish{Topic: "", QoS: 1, PacketID: 9, Properties: Properties{TopicAlias: 4, HasTopicAlias: true}},
		)
	} else {
		ps = append(ps, &Unsuback{PacketID: 11})
	}
	return ps
}

func TestRoundTrip(t *testing.T) {
	for _, v := range []Version{V31, V311, V5} {
		for i, p := range samples(v) {
			t.Run(fmt.Sprintf("%s/%d/%s", v, i, p.Type()), func(t *testing.T) {
				b, err := Append(nil, p, v)
				if err != nil {
					t.Fatalf("Append: %v", err)
				}
				n, err := Size(p, v)
				if err != nil || n != len(b) {
					t.Fatalf("Size = %d, %v; encoded %d bytes", n, err, len(b))
				}
				// Through a Reader, as a connection reads it.
				r := NewReader(bytes.NewReader(b), 0)
				if _, ok := p.(*Connect); !ok {
					r.SetVersion(v)
				}
				got, err := r.ReadPacket()
				if err != nil {
					t.Fatalf("ReadPacket(% X): %v", b, err)
				}
				if !equalPackets(p, got) {
					t.Fatalf("decoded\n%#v\nwant\n%#v", got, p)
				}
				b2, err := Append(nil, got, v)
				if err != nil || !bytes.Equal(b, b2) {
					t.Fatalf("re-encoded % X, %v; first % X", b2, err, b)
				}
				if _, err := r.ReadPacket(); err != io.EOF {
					t.Fatalf("after the packet: %v, want io.EOF", err)
				}
			})
		}
	}
}

// equalPackets compares packets treating nil and empty slices as equal.
func equalPackets(a, b Packet) bool {
	return reflect.DeepEqual(normalize(a), normalize(b))
}

func normalize(p Packet) any {
	v := reflect.New(reflect.TypeOf(p).Elem())
	v.Elem().Set(reflect.ValueOf(p).Elem())
	var walk func(reflect.Value)
	walk = func(v reflect.Value) {
		switch v.Kind() {
		case reflect.Struct:
			for i := 0; i < v.NumField(); i++ {
				walk(v.Field(i))
			}
		case reflect.Slice:
			if v.Len() == 0 {
				v.Set(reflect.Zero(v.Type()))
			}
		}
	}
	walk(v.Elem())
	return v.Interface()
}

func TestReaderSizeLimit(t *testing.T) {
	// A PUBLISH claiming 256 MB: refused from its fixed header alone.
	hdr := []byte{0x30, 0xFF, 0xFF, 0xFF, 0x7F}
	r := NewReader(io.MultiReader(bytes.NewReader(hdr), neverReader{t}), 1024)
	r.SetVersion(V5)
	_, err := r.ReadPacket()
	if !errors.Is(err, ErrPacketTooLarge) {
		t.Fatalf("err = %v, want packet too large", err)
	}
}

// neverReader fails the test if the body is read.
type neverReader struct{ t *testing.T }

func (n neverReader) Read([]byte) (int, error) {
	n.t.Error("body read although the fixed header exceeds the limit")
	return 0, io.EOF
}

// A packet the caller builds on its stack stays there through Size and
// Append: neither lets it escape, so checking or encoding one costs no
// allocation (localbus checks every message Publish and Ingest take so).
func TestEncodeKeepsPacketOnStack(t *testing.T) {
	buf := make([]byte, 0, 512)
	payload := bytes.Repeat([]byte("x"), 200)
	allocs := testing.AllocsPerRun(100, func() {
		p := Publish{QoS: 1, PacketID: 1, Topic: "site/line-3/press-7/telemetry", Payload: payload}
		p.Properties.PayloadFormat, p.Properties.HasPayloadFormat = 1, true
		if _, err := Size(&p, V5); err != nil {
			t.Fatal(err)
		}
		var err error
		if buf, err = Append(buf[:0], &p, V5); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per Size and Append of a packet on the stack, want 0", allocs)
	}
}
