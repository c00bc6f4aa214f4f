package packet

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// captured is one packet of a capture file (testdata/captures, written by
// TestRecordCaptures): its direction, bytes and the decoded packet.
type captured struct {
	line     int
	toBroker bool
	raw      []byte
	p        Packet
}

// readCapture parses a capture file and decodes its packets as the two ends
// of the connection do: the broker's side with a server Reader that learns
// the version from CONNECT, the client's side with a Reader set to the
// version of the file's "# version:" header.
func readCapture(t *testing.T, path string) (Version, []captured) {
	t.Helper()
	f, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var v Version
	var toBroker, toClient bytes.Buffer
	var out []captured
	for i, l := range strings.Split(string(f), "\n") {
		switch {
		case strings.HasPrefix(l, "# version: "):
			var n int
			fmt.Sscan(strings.TrimPrefix(l, "# version: "), &n)
			v = Version(n)
		case strings.HasPrefix(l, "> "), strings.HasPrefix(l, "< "):
			b, err := hex.DecodeString(l[2:])
			if err != nil {
				t.Fatalf("%s:%d: %v", path, i+1, err)
			}
			c := captured{line: i + 1, toBroker: l[0] == '>', raw: b}
			if c.toBroker {
				toBroker.Write(b)
			} else {
				toClient.Write(b)
			}
			out = append(out, c)
		}
	}
	if v == 0 {
		t.Fatalf("%s: no version header", path)
	}
	server := NewReader(bufio.NewReader(&toBroker), 0)
	client := NewReader(bufio.NewReader(&toClient), 0)
	client.SetVersion(v)
	if v == V31 {
		client.SetVersion(V311) // 3.1 and 3.1.1 packets after CONNECT are the same
	}
	for i := range out {
		r := client
		if out[i].toBroker {
			r = server
		}
		p, err := r.ReadPacket()
		if err != nil {
			t.Fatalf("%s:%d: % X: %v", path, out[i].line, out[i].raw, err)
		}
		out[i].p = p
	}
	if _, err := server.ReadPacket(); err == nil {
		t.Fatalf("%s: more packets to the broker than lines", path)
	}
	if _, err := client.ReadPacket(); err == nil {
		t.Fatalf("%s: more packets to the client than lines", path)
	}
	return v, out
}

// propCount is the number of properties p carries.
func propCount(p Packet) int {
	var pr *Properties
	switch p := p.(type) {
	case *Connect:
		n := propCount(&Connack{Properties: p.WillProperties})
		pr = &p.Properties
		return n + propCount(&Connack{Properties: *pr})
	case *Connack:
		pr = &p.Properties
	case *Publish:
		pr = &p.Properties
	case *Subscribe:
		pr = &p.Properties
	case *Unsubscribe:
		pr = &p.Properties
	case *Disconnect:
		pr = &p.Properties
	default:
		return 0
	}
	n, _ := propsLen(pr, ^propSet(0), "")
	if n == 0 {
		return 0
	}
	// Count by encoding each present property alone.
	c := len(pr.SubscriptionIdentifiers) + len(pr.UserProperties)
	for _, has := range []bool{pr.HasPayloadFormat, pr.HasMessageExpiry, pr.HasContentType, pr.HasResponseTopic,
		pr.HasCorrelationData, pr.HasSessionExpiry, pr.HasAssignedClientID, pr.HasServerKeepAlive, pr.HasAuthMethod,
		pr.HasAuthData, pr.HasRequestProblemInfo, pr.HasWillDelay, pr.HasRequestResponseInfo, pr.HasResponseInfo,
		pr.HasServerReference, pr.HasReasonString, pr.HasReceiveMaximum, pr.HasTopicAliasMaximum, pr.HasTopicAlias,
		pr.HasMaximumQoS, pr.HasRetainAvailable, pr.HasMaximumPacketSize, pr.HasWildcardSubAvailable,
		pr.HasSubIDAvailable, pr.HasSharedSubAvailable} {
		if has {
			c++
		}
	}
	return c
}

func TestCaptures(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "captures", "*.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 20 {
		t.Fatalf("only %d capture files", len(files))
	}
	checked := map[string]bool{}
	reordered := 0
	defer func() { t.Logf("%d captured packets compared decoded because of property order", reordered) }()
	for _, path := range files {
		name := strings.TrimSuffix(filepath.Base(path), ".txt")
		t.Run(name, func(t *testing.T) {
			v, pkts := readCapture(t, path)
			for _, c := range pkts {
				enc, err := Append(nil, c.p, v)
				if err != nil {
					t.Fatalf("line %d: Append(%#v): %v", c.line, c.p, err)
				}
				if bytes.Equal(enc, c.raw) {
					continue
				}
				// mosquitto and libmosquitto write properties in their own
				// order; Append writes them in identifier order with user
				// properties last. The specification leaves the order
				// free, except among user properties (5.0 section
				// 3.3.2.3.7), which decoding keeps. So where a packet has
				// two or more properties and the bytes differ, the bytes
				// must be a reordering of each other and the decoded
				// packets equal.
				if v != V5 || propCount(c.p) < 2 {
					t.Errorf("line %d: %s re-encodes as\n% X\nnot\n% X", c.line, c.p.Type(), enc, c.raw)
					continue
				}
				reordered++
				a, b := slices.Clone(enc), slices.Clone(c.raw)
				slices.Sort(a)
				slices.Sort(b)
				if !bytes.Equal(a, b) {
					t.Errorf("line %d: re-encoding % X is not a reordering of % X", c.line, enc, c.raw)
				}
				p2, err := Decode(enc, v)
				if err != nil || !equalPackets(c.p, p2) {
					t.Errorf("line %d: re-encoding decodes to %#v, %v", c.line, p2, err)
				}
			}
			check, ok := captureChecks[name]
			if !ok {
				t.Fatalf("no field checks for %s", name)
			}
			checked[name] = true
			check(t, pkts)
		})
	}
	for name := range captureChecks {
		if !checked[name] {
			t.Errorf("capture %s is checked but missing", name)
		}
	}
}

// types returns the capture's packet types with their direction, as
// "CONNECT>" (to the broker) or "CONNACK<" (to the client).
func types(pkts []captured) string {
	var s []string
	for _, c := range pkts {
		d := "<"
		if c.toBroker {
			d = ">"
		}
		s = append(s, c.p.Type().String()+d)
	}
	return strings.Join(s, " ")
}

func expect(t *testing.T, ok bool, format string, args ...any) {
	t.Helper()
	if !ok {
		t.Errorf(format, args...)
	}
}

// sequence checks the order of packet types and returns the packets.
func sequence(t *testing.T, pkts []captured, want string) []Packet {
	t.Helper()
	if got := types(pkts); got != want {
		t.Fatalf("packets\n%s\nwant\n%s", got, want)
	}
	ps := make([]Packet, len(pkts))
	for i, c := range pkts {
		ps[i] = c.p
	}
	return ps
}

// plainConnect checks a CONNECT as mosquitto_pub/sub send it by default.
func plainConnect(t *testing.T, p Packet, v Version, id string) *Connect {
	t.Helper()
	c := p.(*Connect)
	name := "MQTT"
	if v == V31 {
		name = "MQIsdp"
	}
	expect(t, c.ProtocolName == name && c.Version == v && c.ClientID == id && c.KeepAlive == 60,
		"CONNECT %q %s %q keep alive %d", c.ProtocolName, c.Version, c.ClientID, c.KeepAlive)
	return c
}

func pubFields(t *testing.T, p Packet, qos byte, retain bool, topic, payload string, id uint16) *Publish {
	t.Helper()
	pub := p.(*Publish)
	expect(t, pub.QoS == qos && pub.Retain == retain && !pub.Dup && pub.Topic == topic && string(pub.Payload) == payload && pub.PacketID == id,
		"PUBLISH %+v, want QoS %d retain %v %q %q id %d", pub, qos, retain, topic, payload, id)
	return pub
}

func ackOf(p Packet) (uint16, ReasonCode) {
	switch a := p.(type) {
	case *Puback:
		return a.PacketID, a.ReasonCode
	case *Pubrec:
		return a.PacketID, a.ReasonCode
	case *Pubrel:
		return a.PacketID, a.ReasonCode
	case *Pubcomp:
		return a.PacketID, a.ReasonCode
	}
	return 0, 0xFF
}

func acks(t *testing.T, id uint16, rc ReasonCode, ps ...Packet) {
	t.Helper()
	for _, p := range ps {
		gid, grc := ackOf(p)
		expect(t, gid == id && grc == rc, "%s: id %d %s, want %d %s", p.Type(), gid, grc, id, rc)
	}
}

// limitsConnack checks mosquitto's CONNACK under the v5-limits configuration
// (max_keepalive 30, max_qos 1, retain_available false, max_topic_alias 5,
// max_packet_size 2000).
func limitsConnack(t *testing.T, p Packet) {
	t.Helper()
	c := p.(*Connack)
	pr := c.Properties
	expect(t, c.ReasonCode == Success && !c.SessionPresent &&
		pr.HasServerKeepAlive && pr.ServerKeepAlive == 30 &&
		pr.HasMaximumQoS && pr.MaximumQoS == 1 &&
		pr.HasRetainAvailable && pr.RetainAvailable == 0 &&
		pr.HasTopicAliasMaximum && pr.TopicAliasMaximum == 5 &&
		pr.HasMaximumPacketSize && pr.MaximumPacketSize == 2000, "CONNACK %+v", c)
}

// defaultConnack checks mosquitto's CONNACK to an MQTT 5 client with its
// default configuration: only Topic Alias Maximum 10.
func defaultConnack(t *testing.T, p Packet) {
	t.Helper()
	c := p.(*Connack)
	want := Properties{TopicAliasMaximum: 10, HasTopicAliasMaximum: true}
	expect(t, c.ReasonCode == Success && !c.SessionPresent && equalPackets(&Connack{Properties: c.Properties}, &Connack{Properties: want}),
		"CONNACK %+v", c)
}

func disconnectWith(t *testing.T, p Packet, rc ReasonCode) {
	t.Helper()
	d := p.(*Disconnect)
	expect(t, d.ReasonCode == rc, "DISCONNECT %s, want %s", d.ReasonCode, rc)
}

// captureChecks checks the key fields of each capture.
var captureChecks = map[string]func(t *testing.T, pkts []captured){
	"v31-pub-qos1": func(t *testing.T, pkts []captured) {
		ps := sequence(t, pkts, "CONNECT> CONNACK< PUBLISH> PUBACK< DISCONNECT>")
		c := plainConnect(t, ps[0], V31, "hf-v31")
		expect(t, c.CleanStart && !c.WillFlag && !c.UsernameFlag, "CONNECT flags %+v", c)
		pubFields(t, ps[2], 1, false, "old/device", "hello 3.1", 1)
		acks(t, 1, Success, ps[3])
	},
	"v311-pub-qos0": func(t *testing.T, pkts []captured) {
		ps := sequence(t, pkts, "CONNECT> CONNACK< PUBLISH> DISCONNECT>")
		plainConnect(t, ps[0], V311, "hf-pub0")
		expect(t, ps[1].(*Connack).ReasonCode == ConnAccepted, "CONNACK %+v", ps[1])
		pubFields(t, ps[2], 0, false, "test/qos0", "hello", 0)
	},
	"v311-pub-qos1-retain": func(t *testing.T, pkts []captured) {
		ps := sequence(t, pkts, "CONNECT> CONNACK< PUBLISH> PUBACK< DISCONNECT>")
		plainConnect(t, ps[0], V311, "hf-pub1")
		pubFields(t, ps[2], 1, true, "test/qos1", "retained one", 1)
		acks(t, 1, Success, ps[3])
	},
	"v311-pub-qos2": func(t *testing.T, pkts []captured) {
		ps := sequence(t, pkts, "CONNECT> CONNACK< PUBLISH> PUBREC< PUBREL> PUBCOMP< DISCONNECT>")
		plainConnect(t, ps[0], V311, "hf-pub2")
		pubFields(t, ps[2], 2, false, "test/qos2", "exactly once", 1)
		acks(t, 1, Success, ps[3], ps[4], ps[5])
	},
	"v311-pub-empty": func(t *testing.T, pkts []captured) {
		ps := sequence(t, pkts, "CONNECT> CONNACK< PUBLISH> DISCONNECT>")
		pub := pubFields(t, ps[2], 0, true, "test/qos1", "", 0)
		expect(t, len(pub.Payload) == 0, "payload %q", pub.Payload)
	},
	"v311-pub-will-auth": func(t *testing.T, pkts []captured) {
		ps := sequence(t, pkts, "CONNECT> CONNACK< PUBLISH> PUBACK< DISCONNECT>")
		c := ps[0].(*Connect)
		expect(t, c.Version == V311 && !c.CleanStart && c.KeepAlive == 30 && c.ClientID == "hf-will" &&
			c.WillFlag && c.WillQoS == 1 && c.WillRetain && c.WillTopic == "dev/hf-will/status" && string(c.WillPayload) == "offline" &&
			c.UsernameFlag && c.Username == "user" && c.PasswordFlag && string(c.Password) == "secret", "CONNECT %+v", c)
		pubFields(t, ps[2], 1, false, "test/auth", "with credentials", 1)
	},
	"v311-sub-qos2": func(t *testing.T, pkts []captured) {
		ps := sequence(t, pkts, "CONNECT> CONNACK< SUBSCRIBE> SUBACK< PUBLISH< PUBACK> PUBLISH< PUBREC> PUBREL< PUBCOMP> DISCONNECT>")
		plainConnect(t, ps[0], V311, "hf-sub")
		s := ps[2].(*Subscribe)
		expect(t, s.PacketID == 1 && len(s.Subscriptions) == 2 &&
			s.Subscriptions[0] == Subscription{Filter: "sensors/#", QoS: 2} &&
			s.Subscriptions[1] == Subscription{Filter: "alarms/+/high", QoS: 2}, "SUBSCRIBE %+v", s)
		sa := ps[3].(*Suback)
		expect(t, sa.PacketID == 1 && slices.Equal(sa.ReasonCodes, []ReasonCode{GrantedQoS2, GrantedQoS2}), "SUBACK %+v", sa)
		pubFields(t, ps[4], 1, false, "sensors/t1", "21.5", 1)
		acks(t, 1, Success, ps[5])
		pubFields(t, ps[6], 2, false, "alarms/p7/high", "overpressure", 2)
		acks(t, 2, Success, ps[7], ps[8], ps[9])
	},
	"v311-sub-unsubscribe": func(t *testing.T, pkts []captured) {
		ps := sequence(t, pkts, "CONNECT> CONNACK< SUBSCRIBE> SUBACK< UNSUBSCRIBE> UNSUBSCRIBE> UNSUBACK< UNSUBACK< DISCONNECT>")
		u := ps[4].(*Unsubscribe)
		expect(t, u.PacketID == 2 && slices.Equal(u.Filters, []string{"keep/#"}), "UNSUBSCRIBE %+v", u)
		u = ps[5].(*Unsubscribe)
		expect(t, u.PacketID == 3 && slices.Equal(u.Filters, []string{"never/subscribed"}), "UNSUBSCRIBE %+v", u)
		expect(t, ps[6].(*Unsuback).PacketID == 2 && ps[7].(*Unsuback).PacketID == 3, "UNSUBACKs %+v %+v", ps[6], ps[7])
	},
	"v311-connack-refused": func(t *testing.T, pkts []captured) {
		ps := sequence(t, pkts, "CONNECT> CONNACK<")
		c := plainConnect(t, ps[0], V311, "hf-refused")
		expect(t, c.Username == "nobody" && string(c.Password) == "wrong", "CONNECT %+v", c)
		ca := ps[1].(*Connack)
		expect(t, ca.ReasonCode == ConnRefusedNotAuthorized && !ca.SessionPresent, "CONNACK %+v", ca)
	},
	"v5-pub-qos0-props": func(t *testing.T, pkts []captured) {
		ps := sequence(t, pkts, "CONNECT> CONNACK< PUBLISH> DISCONNECT>")
		c := plainConnect(t, ps[0], V5, "hf5-pub0")
		expect(t, c.Properties.HasReceiveMaximum && c.Properties.ReceiveMaximum == 20, "CONNECT properties %+v", c.Properties)
		defaultConnack(t, ps[1])
		pr := pubFields(t, ps[2], 0, false, "test/v5", `{"t":21.5}`, 0).Properties
		expect(t, pr.HasPayloadFormat && pr.PayloadFormat == 1 && pr.HasMessageExpiry && pr.MessageExpiry == 120 &&
			pr.HasContentType && pr.ContentType == "application/json" && pr.HasResponseTopic && pr.ResponseTopic == "reply/hf5" &&
			pr.HasCorrelationData && string(pr.CorrelationData) == "req-42" &&
			slices.Equal(pr.UserProperties, []UserProperty{{"site", "line-3"}, {"site", "line-4"}}), "PUBLISH properties %+v", pr)
		disconnectWith(t, ps[3], NormalDisconnection)
	},
	"v5-pub-qos1-session": func(t *testing.T, pkts []captured) {
		ps := sequence(t, pkts, "CONNECT> CONNACK< PUBLISH> PUBACK< DISCONNECT>")
		c := plainConnect(t, ps[0], V5, "hf5-pub1")
		pr := c.Properties
		expect(t, !c.CleanStart && pr.HasSessionExpiry && pr.SessionExpiry == 3600 && pr.ReceiveMaximum == 20 &&
			pr.HasMaximumPacketSize && pr.MaximumPacketSize == 65536 && pr.HasTopicAliasMaximum && pr.TopicAliasMaximum == 10 &&
			pr.HasRequestProblemInfo && pr.RequestProblemInfo == 1 &&
			slices.Equal(pr.UserProperties, []UserProperty{{"fw", "1.2.3"}}), "CONNECT %+v", c)
		defaultConnack(t, ps[1])
		pubFields(t, ps[2], 1, false, "test/v5/qos1", "session", 1)
		acks(t, 1, NoMatchingSubscribers, ps[3])
	},
	"v5-pub-qos2-retain-will-auth": func(t *testing.T, pkts []captured) {
		ps := sequence(t, pkts, "CONNECT> CONNACK< PUBLISH> PUBREC< PUBREL> PUBCOMP< DISCONNECT>")
		c := plainConnect(t, ps[0], V5, "hf5-pub2")
		w := c.WillProperties
		expect(t, c.WillFlag && c.WillQoS == 2 && !c.WillRetain && c.WillTopic == "dev/hf5/status" && string(c.WillPayload) == "gone" &&
			w.HasWillDelay && w.WillDelay == 10 && w.HasMessageExpiry && w.MessageExpiry == 300 &&
			slices.Equal(w.UserProperties, []UserProperty{{"reason", "power"}}) &&
			c.Username == "user" && string(c.Password) == "secret", "CONNECT %+v", c)
		pubFields(t, ps[2], 2, true, "test/v5/qos2", "retained exactly once", 1)
		acks(t, 1, Success, ps[3], ps[4], ps[5])
	},
	"v5-pub-topic-alias": func(t *testing.T, pkts []captured) {
		ps := sequence(t, pkts, "CONNECT> CONNACK< PUBLISH> DISCONNECT>")
		pr := pubFields(t, ps[2], 0, false, "test/v5/alias", "aliased", 0).Properties
		expect(t, pr.HasTopicAlias && pr.TopicAlias == 1, "PUBLISH properties %+v", pr)
	},
	"v5-pub-assigned-id": func(t *testing.T, pkts []captured) {
		ps := sequence(t, pkts, "CONNECT> CONNACK< PUBLISH> DISCONNECT>")
		plainConnect(t, ps[0], V5, "")
		pr := ps[1].(*Connack).Properties
		expect(t, pr.HasAssignedClientID && strings.HasPrefix(pr.AssignedClientID, "auto-") && pr.TopicAliasMaximum == 10,
			"CONNACK properties %+v", pr)
	},
	"v5-pub-retain-unavailable": func(t *testing.T, pkts []captured) {
		ps := sequence(t, pkts, "CONNECT> CONNACK< PUBLISH> DISCONNECT>")
		limitsConnack(t, ps[1])
		// -r was given; libmosquitto drops the flag the broker refuses.
		pubFields(t, ps[2], 0, false, "test/limits", "x", 0)
	},
	"v5-pub-alias-over-maximum": func(t *testing.T, pkts []captured) {
		ps := sequence(t, pkts, "CONNECT> CONNACK< PUBLISH> DISCONNECT<")
		limitsConnack(t, ps[1])
		expect(t, ps[2].(*Publish).Properties.TopicAlias == 9, "PUBLISH %+v", ps[2])
		disconnectWith(t, ps[3], TopicAliasInvalid)
	},
	"v5-connack-limits": func(t *testing.T, pkts []captured) {
		ps := sequence(t, pkts, "CONNECT> CONNACK< PUBLISH> PUBACK< DISCONNECT>")
		limitsConnack(t, ps[1])
		acks(t, 1, NoMatchingSubscribers, ps[3])
	},
	"v5-connack-refused": func(t *testing.T, pkts []captured) {
		ps := sequence(t, pkts, "CONNECT> CONNACK<")
		ca := ps[1].(*Connack)
		expect(t, ca.ReasonCode == NotAuthorized && !ca.SessionPresent, "CONNACK %+v", ca)
	},
	"v5-disconnect-packet-too-large": func(t *testing.T, pkts []captured) {
		ps := sequence(t, pkts, "CONNECT> CONNACK< PUBLISH> DISCONNECT<")
		limitsConnack(t, ps[1])
		expect(t, len(pkts[2].raw) > 2000, "PUBLISH of %d bytes", len(pkts[2].raw))
		disconnectWith(t, ps[3], PacketTooLarge)
	},
	"v5-disconnect-qos-not-supported": func(t *testing.T, pkts []captured) {
		ps := sequence(t, pkts, "CONNECT> CONNACK< PUBLISH> DISCONNECT<")
		expect(t, ps[2].(*Publish).QoS == 2, "PUBLISH %+v", ps[2])
		disconnectWith(t, ps[3], QoSNotSupported)
	},
	"v5-disconnect-topic-alias-invalid": func(t *testing.T, pkts []captured) {
		ps := sequence(t, pkts, "CONNECT> CONNACK< PUBLISH> DISCONNECT<")
		disconnectWith(t, ps[3], TopicAliasInvalid)
	},
	"v5-sub-qos2": func(t *testing.T, pkts []captured) {
		ps := sequence(t, pkts, "CONNECT> CONNACK< SUBSCRIBE> SUBACK< PUBLISH< PUBLISH< PUBACK> PUBREC> PUBREL< PUBCOMP> DISCONNECT>")
		c := plainConnect(t, ps[0], V5, "hf5-sub")
		// -C 2 makes mosquitto_sub announce a receive maximum of 2.
		expect(t, c.Properties.SessionExpiry == 60 && c.Properties.ReceiveMaximum == 2, "CONNECT %+v", c.Properties)
		s := ps[2].(*Subscribe)
		expect(t, s.PacketID == 1 && slices.Equal(s.Properties.UserProperties, []UserProperty{{"app", "dashboard"}}) &&
			len(s.Subscriptions) == 2 && s.Subscriptions[0] == Subscription{Filter: "sensors/#", QoS: 2} &&
			s.Subscriptions[1] == Subscription{Filter: "alarms/+/high", QoS: 2}, "SUBSCRIBE %+v", s)
		sa := ps[3].(*Suback)
		expect(t, slices.Equal(sa.ReasonCodes, []ReasonCode{GrantedQoS2, GrantedQoS2}), "SUBACK %+v", sa)
		pr := pubFields(t, ps[4], 1, false, "sensors/t1", "21.5", 1).Properties
		// The broker forwards the user property and the remaining expiry.
		expect(t, slices.Equal(pr.UserProperties, []UserProperty{{"unit", "C"}}) && pr.HasMessageExpiry && pr.MessageExpiry <= 600 && pr.MessageExpiry > 500,
			"PUBLISH properties %+v", pr)
		pr = pubFields(t, ps[5], 2, false, "alarms/p7/high", "overpressure", 2).Properties
		expect(t, pr.HasContentType && pr.ContentType == "text/plain", "PUBLISH properties %+v", pr)
		acks(t, 1, Success, ps[6])
		acks(t, 2, Success, ps[7], ps[8], ps[9])
	},
	"v5-connack-bad-auth-method": func(t *testing.T, pkts []captured) {
		ps := sequence(t, pkts, "CONNECT> CONNACK<")
		pr := plainConnect(t, ps[0], V5, "hf5-auth").Properties
		expect(t, pr.HasAuthMethod && pr.AuthMethod == "SCRAM-SHA-1" && pr.HasAuthData && string(pr.AuthData) == "client-first",
			"CONNECT properties %+v", pr)
		ca := ps[1].(*Connack)
		expect(t, ca.ReasonCode == BadAuthenticationMethod && !ca.SessionPresent, "CONNACK %+v", ca)
	},
	"v5-sub-rap-subid": func(t *testing.T, pkts []captured) {
		ps := sequence(t, pkts, "CONNECT> CONNACK< SUBSCRIBE> SUBACK< PUBLISH< PUBLISH< PUBACK> PUBACK> DISCONNECT>")
		plainConnect(t, ps[0], V5, "hf5-opts")
		s := ps[2].(*Subscribe)
		// --retain-as-published: options 0x09; -D subscribe
		// subscription-identifier 7.
		expect(t, s.PacketID == 1 && slices.Equal(s.Properties.SubscriptionIdentifiers, []uint32{7}) &&
			len(s.Subscriptions) == 1 && s.Subscriptions[0] == Subscription{Filter: "opts/#", QoS: 1, RetainAsPublished: true},
			"SUBSCRIBE %+v", s)
		expect(t, pkts[2].raw[len(pkts[2].raw)-1] == 0x09, "subscription options byte 0x%02X", pkts[2].raw[len(pkts[2].raw)-1])
		sa := ps[3].(*Suback)
		expect(t, slices.Equal(sa.ReasonCodes, []ReasonCode{GrantedQoS1}), "SUBACK %+v", sa)
		// The retained message on subscribing, then the one published
		// with retain while subscribed, which keeps its flag because of
		// Retain As Published; both carry the identifier.
		pr := pubFields(t, ps[4], 1, true, "opts/kept", "kept", 1).Properties
		expect(t, slices.Equal(pr.SubscriptionIdentifiers, []uint32{7}), "PUBLISH properties %+v", pr)
		pr = pubFields(t, ps[5], 1, true, "opts/feed", "feed", 2).Properties
		expect(t, slices.Equal(pr.SubscriptionIdentifiers, []uint32{7}), "PUBLISH properties %+v", pr)
		acks(t, 1, Success, ps[6])
		acks(t, 2, Success, ps[7])
	},
	"v5-sub-paho-options": func(t *testing.T, pkts []captured) {
		ps := sequence(t, pkts, "CONNECT> CONNACK< SUBSCRIBE> SUBACK< PUBLISH> PUBACK< PUBLISH< PUBACK> DISCONNECT>")
		plainConnect(t, ps[0], V5, "hf5-paho")
		s := ps[2].(*Subscribe)
		// No Local, Retain As Published, Retain Handling 2, QoS 1:
		// options 0x2D; Subscription Identifier 9.
		expect(t, s.PacketID == 1 && slices.Equal(s.Properties.SubscriptionIdentifiers, []uint32{9}) &&
			len(s.Subscriptions) == 1 && s.Subscriptions[0] == Subscription{Filter: "opts/#", QoS: 1, NoLocal: true,
			RetainAsPublished: true, RetainHandling: 2}, "SUBSCRIBE %+v", s)
		expect(t, pkts[2].raw[len(pkts[2].raw)-1] == 0x2D, "subscription options byte 0x%02X", pkts[2].raw[len(pkts[2].raw)-1])
		// Retain Handling 2: the retained opts/kept is not sent. No
		// Local: the client's own opts/self does not come back.
		pubFields(t, ps[4], 1, false, "opts/self", "own", 2)
		acks(t, 2, Success, ps[5])
		pr := pubFields(t, ps[6], 1, true, "opts/feed", "feed", 1).Properties
		expect(t, slices.Equal(pr.SubscriptionIdentifiers, []uint32{9}), "PUBLISH properties %+v", pr)
		acks(t, 1, Success, ps[7])
		disconnectWith(t, ps[8], NormalDisconnection)
	},
	"v5-sub-unsubscribe": func(t *testing.T, pkts []captured) {
		ps := sequence(t, pkts, "CONNECT> CONNACK< SUBSCRIBE> SUBACK< UNSUBSCRIBE> UNSUBSCRIBE> UNSUBACK< UNSUBACK< DISCONNECT>")
		u := ps[4].(*Unsubscribe)
		expect(t, u.PacketID == 2 && slices.Equal(u.Filters, []string{"keep/#"}) &&
			slices.Equal(u.Properties.UserProperties, []UserProperty{{"why", "done"}}), "UNSUBSCRIBE %+v", u)
		ua := ps[6].(*Unsuback)
		expect(t, ua.PacketID == 2 && slices.Equal(ua.ReasonCodes, []ReasonCode{Success}), "UNSUBACK %+v", ua)
		ua = ps[7].(*Unsuback)
		expect(t, ua.PacketID == 3 && slices.Equal(ua.ReasonCodes, []ReasonCode{NoSubscriptionExisted}), "UNSUBACK %+v", ua)
		// -W ends mosquitto_sub with "disconnect with will message".
		disconnectWith(t, ps[8], DisconnectWithWill)
	},
}
