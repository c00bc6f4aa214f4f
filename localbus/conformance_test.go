package localbus

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"holdfast/internal/auth"
	"holdfast/internal/packet"
	"holdfast/internal/testclient"
	"holdfast/internal/testenv"
)

// Tests for normative statements of MQTT 3.1.1 and 5.0 that the feature
// tests do not already cover; docs/conformance.md maps every statement to
// its test.

// Overlapping subscriptions of one client: one copy at the highest granted
// QoS (3.1.1 section 3.3.5; 5.0 MQTT-3.3.4-2), carrying the Subscription
// Identifiers of every matching subscription that has one (MQTT-3.3.4-3,
// MQTT-3.3.4-4).
func TestOverlappingSubscriptions(t *testing.T) {
	for _, v := range versions() {
		t.Run(v.String(), func(t *testing.T) {
			tb := startBroker(t, Options{}, nil, nil)
			sub := dial(t, tb.addr, testclient.Options{ClientID: "sub", Version: v, CleanStart: true})
			id := sub.NextID()
			s := &packet.Subscribe{PacketID: id, Subscriptions: []packet.Subscription{{Filter: "o/#", QoS: 2}}}
			if v == packet.V5 {
				s.Properties.SubscriptionIdentifiers = []uint32{3}
			}
			send(t, sub, s)
			// The second subscription has no identifier.
			send(t, sub, &packet.Subscribe{PacketID: id + 1, Subscriptions: []packet.Subscription{{Filter: "o/+", QoS: 1}}})
			for range 2 {
				if p, err := sub.ReadPacket(wait); err != nil || p.Type() != packet.SUBACK {
					t.Fatalf("%v %v", p, err)
				}
			}
			pub := dial(t, tb.addr, testclient.Options{ClientID: "pub", Version: v, CleanStart: true})
			for qos := byte(0); qos <= 2; qos++ {
				publish(t, pub, &packet.Publish{Topic: "o/x", QoS: qos, Payload: []byte{qos}})
				p := recv(t, sub)
				if p.QoS != qos || p.Payload[0] != qos {
					t.Fatalf("QoS %d publish delivered at QoS %d (%v)", qos, p.QoS, p.Payload)
				}
				if ids := p.Properties.SubscriptionIdentifiers; v == packet.V5 && !slices.Equal(ids, []uint32{3}) {
					t.Fatalf("subscription identifiers %v, want [3]", ids)
				}
			}
			// Exactly one copy of each.
			noPublish(t, sub)
		})
	}
}

// A SUBSCRIBE with a filter identical to an existing one replaces the
// subscription (3.1.1 MQTT-3.8.4-3; 5.0 MQTT-3.8.4-3) and, with Retain
// Handling 0, re-sends the retained messages (5.0 MQTT-3.8.4-4).
func TestSubscriptionReplaced(t *testing.T) {
	for _, v := range versions() {
		t.Run(v.String(), func(t *testing.T) {
			tb := startBroker(t, Options{}, nil, nil)
			pub := dial(t, tb.addr, testclient.Options{ClientID: "pub", Version: v, CleanStart: true})
			publish(t, pub, &packet.Publish{Topic: "rs/1", QoS: 1, Retain: true, Payload: []byte("kept")})
			sub := dial(t, tb.addr, testclient.Options{ClientID: "sub", Version: v, CleanStart: true})
			for i, qos := range []byte{0, 1} {
				if rcs, err := sub.Subscribe(packet.Subscription{Filter: "rs/+", QoS: qos}); err != nil || rcs[0] != packet.ReasonCode(qos) {
					t.Fatalf("subscribe %d: %v %v", i, rcs, err)
				}
				if p := recv(t, sub); !p.Retain || p.QoS != qos || string(p.Payload) != "kept" {
					t.Fatalf("retained after subscribe %d: %+v", i, p)
				}
			}
			publish(t, pub, &packet.Publish{Topic: "rs/1", QoS: 2, Payload: []byte("live")})
			if p := recv(t, sub); p.QoS != 1 || string(p.Payload) != "live" {
				t.Fatalf("after replacement: %+v", p)
			}
			noPublish(t, sub)
			// The non-retained "live" left the retained message alone (5.0
			// MQTT-3.3.1-8; 3.1.1 MQTT-3.3.1-12).
			late := dial(t, tb.addr, testclient.Options{ClientID: "late", Version: v, CleanStart: true})
			subscribe(t, late, packet.Subscription{Filter: "rs/1", QoS: 1})
			if p := recv(t, late); !p.Retain || string(p.Payload) != "kept" {
				t.Fatalf("retained after a non-retained publish: %+v", p)
			}
			if n := tb.Stats().Subscriptions; n != 2 {
				t.Fatalf("%d subscriptions, want 2 (one each)", n)
			}
		})
	}
}

// The server sends no more unacknowledged QoS 1/2 PUBLISH packets than the
// client's Receive Maximum (MQTT-3.3.4-9, MQTT-4.9.0-2) and keeps answering
// other packets while the quota is zero (MQTT-3.3.4-10, MQTT-4.9.0-3).
func TestClientReceiveMaximum(t *testing.T) {
	tb := startBroker(t, Options{}, nil, nil)
	var props packet.Properties
	props.ReceiveMaximum, props.HasReceiveMaximum = 2, true
	sub := dial(t, tb.addr, testclient.Options{ClientID: "sub", CleanStart: true, Properties: props})
	subscribe(t, sub, packet.Subscription{Filter: "fc", QoS: 2})
	pub := dial(t, tb.addr, testclient.Options{ClientID: "pub", CleanStart: true})
	for i := range 5 {
		publish(t, pub, &packet.Publish{Topic: "fc", QoS: byte(1 + i%2), Payload: []byte{byte(i)}})
	}
	var held []*packet.Publish
	for range 2 {
		p, err := sub.ReadPacket(wait)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, p.(*packet.Publish))
	}
	// Quota zero: PINGREQ is still answered and no third PUBLISH comes.
	noPublish(t, sub)
	// Completing the first flow (QoS 1 PUBACK) frees one slot.
	send(t, sub, &packet.Puback{PacketID: held[0].PacketID})
	p, err := sub.ReadPacket(wait)
	if err != nil {
		t.Fatal(err)
	}
	if q, ok := p.(*packet.Publish); !ok || q.Payload[0] != 2 {
		t.Fatalf("got %#v, want the third message", p)
	}
	noPublish(t, sub)
	// A PUBREC alone does not free the slot of a QoS 2 message; PUBCOMP does.
	send(t, sub, &packet.Pubrec{PacketID: held[1].PacketID})
	if p, err := sub.ReadPacket(wait); err != nil || p.Type() != packet.PUBREL {
		t.Fatalf("got %v %v, want PUBREL", p, err)
	}
	noPublish(t, sub)
	send(t, sub, &packet.Pubcomp{PacketID: held[1].PacketID})
	if p := recv(t, sub); p.Payload[0] != 3 {
		t.Fatalf("got %v, want the fourth message", p.Payload)
	}
}

// A client silent for 1.5 x its keep alive is disconnected as if the network
// had failed (3.1.1 MQTT-3.1.2-24; 5.0 MQTT-3.1.2-22), so its will is
// published (3.1.1 MQTT-3.1.2-8; 5.0 MQTT-3.1.2-8), retained when Will
// Retain is set (3.1.1 MQTT-3.1.2-17; 5.0 MQTT-3.1.2-15).
func TestKeepAliveTimeoutPublishesWill(t *testing.T) {
	for _, v := range versions() {
		t.Run(v.String(), func(t *testing.T) {
			t.Parallel()
			tb := startBroker(t, Options{}, nil, nil)
			sub := dial(t, tb.addr, testclient.Options{ClientID: "sub", Version: v, CleanStart: true})
			subscribe(t, sub, packet.Subscription{Filter: "#", QoS: 1})
			// Without a will, a timed-out client leaves nothing (3.1.1
			// MQTT-3.1.2-12).
			rc := packet.KeepAliveTimeout
			if v == packet.V311 {
				rc = 0
			}
			nw := dial(t, tb.addr, testclient.Options{ClientID: "nowill", Version: v, CleanStart: true, KeepAlive: 1})
			expectKeepAliveClose(t, nw, time.Second, rc)
			testenv.WaitFor(t, wait, "session gone", func() bool { return tb.Stats().Sessions == 1 })
			noPublish(t, sub)
			w := dial(t, tb.addr, testclient.Options{ClientID: "ka", Version: v, CleanStart: true, KeepAlive: 1,
				Will: &packet.Publish{Topic: "will/ka", QoS: 1, Retain: true, Payload: []byte("timed out")}})
			expectKeepAliveClose(t, w, time.Second, rc)
			if p := recv(t, sub); p.Topic != "will/ka" || string(p.Payload) != "timed out" {
				t.Fatalf("%+v", p)
			}
			late := dial(t, tb.addr, testclient.Options{ClientID: "late", Version: v, CleanStart: true})
			subscribe(t, late, packet.Subscription{Filter: "will/ka", QoS: 1})
			if p := recv(t, late); !p.Retain || string(p.Payload) != "timed out" {
				t.Fatalf("will not retained: %+v", p)
			}
		})
	}
}

// Session lifetime: 3.1.1 clean session (MQTT-3.1.2-4, MQTT-3.1.2-6,
// MQTT-3.2.2-1..3) and 5.0 Clean Start with Session Expiry Interval
// (MQTT-3.1.2-4..6, MQTT-3.1.2-23, MQTT-3.2.2-2, MQTT-3.2.2-3, MQTT-4.1.0-2).
func TestSessionLifetime(t *testing.T) {
	tb := startBroker(t, Options{}, nil, nil)
	pub := dial(t, tb.addr, testclient.Options{ClientID: "pub", CleanStart: true})

	// 3.1.1: clean session 0 keeps the session and its messages.
	o := testclient.Options{ClientID: "c311", Version: packet.V311}
	c := dial(t, tb.addr, o)
	if c.Connack.SessionPresent {
		t.Fatal("3.1.1 new session: Session Present 1")
	}
	subscribe(t, c, packet.Subscription{Filter: "sl/311", QoS: 1})
	disconnect(t, c)
	tb.waitOffline(t, "c311")
	publish(t, pub, &packet.Publish{Topic: "sl/311", QoS: 1, Payload: []byte("held")})
	c = dial(t, tb.addr, o)
	if !c.Connack.SessionPresent {
		t.Fatal("3.1.1 stored session: Session Present 0")
	}
	if p := recv(t, c); string(p.Payload) != "held" {
		t.Fatalf("%+v", p)
	}
	disconnect(t, c)
	tb.waitOffline(t, "c311")
	// Clean session 1 discards it: Session Present 0, no subscription.
	o.CleanStart = true
	c = dial(t, tb.addr, o)
	if c.Connack.SessionPresent {
		t.Fatal("3.1.1 clean session 1: Session Present 1")
	}
	publish(t, pub, &packet.Publish{Topic: "sl/311", QoS: 1, Payload: []byte("not subscribed")})
	noPublish(t, c)
	disconnect(t, c)
	tb.waitOffline(t, "c311")
	// ... and the clean session did not outlive its connection.
	o.CleanStart = false
	if c = dial(t, tb.addr, o); c.Connack.SessionPresent {
		t.Fatal("3.1.1 clean session survived its connection")
	}

	// 5.0: Clean Start 0 with Session Expiry 0 ends the session with the
	// connection.
	c = dial(t, tb.addr, testclient.Options{ClientID: "e0"})
	subscribe(t, c, packet.Subscription{Filter: "sl/5", QoS: 1})
	disconnect(t, c)
	tb.waitOffline(t, "e0")
	if c = dial(t, tb.addr, testclient.Options{ClientID: "e0"}); c.Connack.SessionPresent {
		t.Fatal("session with expiry 0 survived its connection")
	}
	// Session Expiry 1: present while it lasts, gone after.
	c = dial(t, tb.addr, testclient.Options{ClientID: "e1", SessionExpiry: 1, CleanStart: true})
	subscribe(t, c, packet.Subscription{Filter: "sl/5", QoS: 1})
	c.Close()
	tb.waitSession(t, "e1", "expired", func(s *session) bool { return s == nil })
	publish(t, pub, &packet.Publish{Topic: "sl/5", QoS: 1, Payload: []byte("after expiry")})
	c = dial(t, tb.addr, testclient.Options{ClientID: "e1", SessionExpiry: 60})
	if c.Connack.SessionPresent {
		t.Fatal("expired session present")
	}
	noPublish(t, c)
	// A DISCONNECT may set a new expiry for a session that had one:
	// setting it to 0 ends the session at once.
	subscribe(t, c, packet.Subscription{Filter: "sl/5", QoS: 1})
	d := &packet.Disconnect{}
	d.Properties.SessionExpiry, d.Properties.HasSessionExpiry = 0, true
	send(t, c, d)
	tb.waitOffline(t, "e1")
	if c = dial(t, tb.addr, testclient.Options{ClientID: "e1", SessionExpiry: 60}); c.Connack.SessionPresent {
		t.Fatal("session present after DISCONNECT set its expiry to 0")
	}
	// Setting a non-zero expiry when CONNECT had 0 is a protocol error
	// (5.0 section 3.14.2.2.2).
	c = dial(t, tb.addr, testclient.Options{ClientID: "e2", CleanStart: true})
	d.Properties.SessionExpiry = 60
	if err := c.Send(d); err != nil {
		t.Fatal(err)
	}
	expectDisconnect(t, c, packet.ProtocolError)
}

// A shared subscription member answering PUBACK with 0x80 or above: the
// message is discarded, not sent to another member (MQTT-4.8.2-6).
func TestSharedSubscriptionRejectedNotRedistributed(t *testing.T) {
	tb := startBroker(t, Options{}, nil, nil)
	a := dial(t, tb.addr, testclient.Options{ClientID: "a", CleanStart: true})
	subscribe(t, a, packet.Subscription{Filter: "$share/g/sr", QoS: 1})
	b := dial(t, tb.addr, testclient.Options{ClientID: "b", CleanStart: true})
	subscribe(t, b, packet.Subscription{Filter: "$share/g/sr", QoS: 1})
	pub := dial(t, tb.addr, testclient.Options{ClientID: "pub", CleanStart: true})
	publish(t, pub, &packet.Publish{Topic: "sr", QoS: 1, Payload: []byte("one")})
	// Whichever member got it refuses it.
	var got, other *testclient.Client
	for i := 0; got == nil; i++ {
		if i == 40 {
			t.Fatal("the shared message reached no member")
		}
		for _, c := range []*testclient.Client{a, b} {
			p, err := c.ReadPacket(wait / 20)
			if err != nil {
				continue
			}
			q := p.(*packet.Publish)
			send(t, c, &packet.Puback{PacketID: q.PacketID, ReasonCode: packet.UnspecifiedError})
			got = c
		}
	}
	other = a
	if got == a {
		other = b
	}
	noPublish(t, other)
	noPublish(t, got)
	// The group goes on working: the next message is delivered.
	publish(t, pub, &packet.Publish{Topic: "sr", QoS: 1, Payload: []byte("two")})
	p := recvAny(t, a, b)
	if string(p.Payload) != "two" {
		t.Fatalf("got %q, want two (one was refused and must not come back)", p.Payload)
	}
}

// recvAny returns the next PUBLISH that arrives on either client.
func recvAny(t *testing.T, cs ...*testclient.Client) *packet.Publish {
	t.Helper()
	for range 40 {
		for _, c := range cs {
			if p, err := c.Receive(wait / 20); err == nil {
				return p
			}
		}
	}
	t.Fatal("no PUBLISH on any client")
	return nil
}

// Topic Alias mappings do not carry over to a new connection (MQTT-3.3.2-7):
// a PUBLISH with only an alias set on the old connection is a protocol error.
func TestTopicAliasNotCarriedOver(t *testing.T) {
	tb := startBroker(t, Options{}, nil, nil)
	o := testclient.Options{ClientID: "ta", SessionExpiry: 60, CleanStart: true}
	c := dial(t, tb.addr, o)
	p := &packet.Publish{Topic: "alias/topic", QoS: 1, Payload: []byte("x")}
	p.Properties.TopicAlias, p.Properties.HasTopicAlias = 1, true
	publish(t, c, p)
	c.Close()
	o.CleanStart = false
	c = dial(t, tb.addr, o)
	p = &packet.Publish{QoS: 1, PacketID: 1, Payload: []byte("y")}
	p.Properties.TopicAlias, p.Properties.HasTopicAlias = 1, true
	if err := c.Send(p); err != nil {
		t.Fatal(err)
	}
	expectDisconnect(t, c, packet.ProtocolError)
}

// A CONNECT with an Authentication Method is refused with CONNACK 0x8C and
// the connection closed (MQTT-4.12.0-1), and nothing the client sent after
// a refused CONNECT is processed (5.0 MQTT-3.1.4-6; 3.1.1 MQTT-3.1.4-5,
// here with a bad password).
func TestRefusedConnectIgnoresFollowingData(t *testing.T) {
	pwFile := filepath.Join(t.TempDir(), "passwd")
	writeFile(t, pwFile, "")
	pw, err := auth.LoadPasswords(pwFile)
	if err != nil {
		t.Fatal(err)
	}
	tb := startBroker(t, Options{}, nil, &ListenerOptions{Name: "t", AllowAnonymous: true, Auth: pw})
	for _, v := range versions() {
		cp := &packet.Connect{ProtocolName: "MQTT", Version: v, ClientID: "r" + v.String(), CleanStart: true}
		want := packet.ConnRefusedBadUsernameOrPass
		if v == packet.V5 {
			cp.Properties.AuthMethod, cp.Properties.HasAuthMethod = "SCRAM-SHA-1", true
			want = packet.BadAuthenticationMethod
		} else {
			cp.UsernameFlag, cp.Username = true, "nobody"
			cp.PasswordFlag, cp.Password = true, []byte("wrong")
		}
		raw, err := packet.Append(nil, cp, v)
		if err != nil {
			t.Fatal(err)
		}
		// Sent in the same write as the CONNECT: a retained PUBLISH and a
		// SUBSCRIBE.
		for _, p := range []packet.Packet{
			&packet.Publish{Topic: "refused/" + v.String(), QoS: 1, PacketID: 1, Retain: true, Payload: []byte("x")},
			&packet.Subscribe{PacketID: 2, Subscriptions: []packet.Subscription{{Filter: "#"}}},
		} {
			if raw, err = packet.Append(raw, p, v); err != nil {
				t.Fatal(err)
			}
		}
		nc := rawConn(t, tb.addr, raw)
		nc.SetReadDeadline(time.Now().Add(wait))
		r := packet.NewReader(nc, 0)
		r.SetVersion(v)
		p, err := r.ReadPacket()
		if err != nil {
			t.Fatal(err)
		}
		if ca, ok := p.(*packet.Connack); !ok || ca.ReasonCode != want || ca.SessionPresent {
			t.Fatalf("%s: got %#v, want CONNACK %v", v, p, want)
		}
		if p, err := r.ReadPacket(); err == nil {
			t.Fatalf("%s: %#v after a refused CONNACK", v, p)
		} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("%s: connection left open after a refused CONNACK", v)
		}
	}
	if n := len(tb.store.messages()); n != 0 {
		t.Fatalf("%d messages ingested from refused connections", n)
	}
	if got := tb.store.keys("lb/r/"); len(got) != 0 {
		t.Fatalf("retained from refused connections: %v", got)
	}
	if st := tb.Stats(); st.Subscriptions != 0 || st.Sessions != 0 {
		t.Fatalf("state from refused connections: %+v", st)
	}
}

// After UNSUBSCRIBE the server stops adding messages for the filter but
// completes the QoS 1 and QoS 2 deliveries it has started (3.1.1 and 5.0
// MQTT-3.10.4-2, MQTT-3.10.4-3).
func TestUnsubscribeCompletesInflight(t *testing.T) {
	for _, v := range versions() {
		t.Run(v.String(), func(t *testing.T) {
			tb := startBroker(t, Options{}, nil, nil)
			sub := dial(t, tb.addr, testclient.Options{ClientID: "sub", Version: v, CleanStart: true})
			subscribe(t, sub, packet.Subscription{Filter: "u/#", QoS: 2})
			pub := dial(t, tb.addr, testclient.Options{ClientID: "pub", Version: v, CleanStart: true})
			publish(t, pub, &packet.Publish{Topic: "u/1", QoS: 1, Payload: []byte("one")})
			publish(t, pub, &packet.Publish{Topic: "u/2", QoS: 2, Payload: []byte("two")})
			var held []*packet.Publish
			for range 2 {
				p, err := sub.ReadPacket(wait)
				if err != nil {
					t.Fatal(err)
				}
				held = append(held, p.(*packet.Publish))
			}
			id := sub.NextID()
			send(t, sub, &packet.Unsubscribe{PacketID: id, Filters: []string{"u/#"}})
			if p, err := sub.ReadPacket(wait); err != nil || p.Type() != packet.UNSUBACK {
				t.Fatalf("got %v %v, want UNSUBACK", p, err)
			}
			publish(t, pub, &packet.Publish{Topic: "u/3", QoS: 1, Payload: []byte("after")})
			send(t, sub, &packet.Puback{PacketID: held[0].PacketID})
			send(t, sub, &packet.Pubrec{PacketID: held[1].PacketID})
			p, err := sub.ReadPacket(wait)
			if err != nil {
				t.Fatal(err)
			}
			if rel, ok := p.(*packet.Pubrel); !ok || rel.PacketID != held[1].PacketID {
				t.Fatalf("got %#v, want PUBREL %d", p, held[1].PacketID)
			}
			send(t, sub, &packet.Pubcomp{PacketID: held[1].PacketID})
			noPublish(t, sub)
			testenv.WaitFor(t, wait, "in-flight completed", func() bool { return tb.Stats().Queued == 0 })
		})
	}
}

// A QoS 0 retained message replaces the retained message and is delivered
// to new subscribers (3.1.1 MQTT-3.3.1-5, MQTT-3.3.1-7), also after the
// publisher's session has ended.
func TestRetainedQoS0(t *testing.T) {
	for _, v := range versions() {
		t.Run(v.String(), func(t *testing.T) {
			tb := startBroker(t, Options{}, nil, nil)
			pub := dial(t, tb.addr, testclient.Options{ClientID: "pub", Version: v, CleanStart: true})
			publish(t, pub, &packet.Publish{Topic: "r0", QoS: 1, Retain: true, Payload: []byte("old")})
			publish(t, pub, &packet.Publish{Topic: "r0", QoS: 0, Retain: true, Payload: []byte("new")})
			testenv.WaitFor(t, wait, "QoS 0 retained stored", func() bool { return len(tb.store.messages()) == 2 })
			// Retained messages are not session state: they outlive the
			// publisher's session (3.1.1 section 3.1.2.4).
			disconnect(t, pub)
			testenv.WaitFor(t, wait, "publisher's session gone", func() bool { return tb.Stats().Sessions == 0 })
			sub := dial(t, tb.addr, testclient.Options{ClientID: "sub", Version: v, CleanStart: true})
			subscribe(t, sub, packet.Subscription{Filter: "r0", QoS: 2})
			if p := recv(t, sub); !p.Retain || p.QoS != 0 || string(p.Payload) != "new" {
				t.Fatalf("%+v", p)
			}
			noPublish(t, sub)
		})
	}
}

// A 5.0 will carries its properties, user properties in order
// (MQTT-3.1.3-10), Payload Format Indicator, Content Type, Response Topic
// and Correlation Data unaltered (MQTT-3.3.2-4, -15, -16, -20).
func TestWillProperties(t *testing.T) {
	tb := startBroker(t, Options{}, nil, nil)
	sub := dial(t, tb.addr, testclient.Options{ClientID: "sub", CleanStart: true})
	subscribe(t, sub, packet.Subscription{Filter: "will/#", QoS: 1})
	w := &packet.Publish{Topic: "will/props", QoS: 1, Payload: []byte("bye")}
	pr := &w.Properties
	pr.PayloadFormat, pr.HasPayloadFormat = 1, true
	pr.ContentType, pr.HasContentType = "text/plain", true
	pr.ResponseTopic, pr.HasResponseTopic = "reply", true
	pr.CorrelationData, pr.HasCorrelationData = []byte{9}, true
	pr.UserProperties = []packet.UserProperty{{Key: "b", Value: "2"}, {Key: "a", Value: "1"}, {Key: "b", Value: "3"}}
	c := dial(t, tb.addr, testclient.Options{ClientID: "w", CleanStart: true, Will: w})
	c.Close()
	p := recv(t, sub)
	got := p.Properties
	if p.Topic != "will/props" || got.PayloadFormat != 1 || got.ContentType != "text/plain" || got.ResponseTopic != "reply" ||
		!bytes.Equal(got.CorrelationData, []byte{9}) || !slices.Equal(got.UserProperties, pr.UserProperties) {
		t.Fatalf("will properties %+v", got)
	}
}

// A Subscription Identifier in a client's PUBLISH (which MQTT-3.3.4-6
// forbids) is not passed on: subscribers see only their own identifiers
// (MQTT-3.3.4-3).
func TestClientSubscriptionIdentifierNotForwarded(t *testing.T) {
	tb := startBroker(t, Options{}, nil, nil)
	sub := dial(t, tb.addr, testclient.Options{ClientID: "sub", CleanStart: true})
	send(t, sub, &packet.Subscribe{PacketID: 1, Properties: packet.Properties{SubscriptionIdentifiers: []uint32{5}},
		Subscriptions: []packet.Subscription{{Filter: "si", QoS: 1}}})
	if p, err := sub.ReadPacket(wait); err != nil || p.Type() != packet.SUBACK {
		t.Fatalf("%v %v", p, err)
	}
	plain := dial(t, tb.addr, testclient.Options{ClientID: "plain", CleanStart: true})
	subscribe(t, plain, packet.Subscription{Filter: "si", QoS: 1})
	pub := dial(t, tb.addr, testclient.Options{ClientID: "pub", CleanStart: true})
	in := &packet.Publish{Topic: "si", QoS: 1, Payload: []byte("x")}
	in.Properties.SubscriptionIdentifiers = []uint32{99}
	publish(t, pub, in)
	if p := recv(t, sub); !slices.Equal(p.Properties.SubscriptionIdentifiers, []uint32{5}) {
		t.Fatalf("subscription identifiers %v, want [5]", p.Properties.SubscriptionIdentifiers)
	}
	if p := recv(t, plain); len(p.Properties.SubscriptionIdentifiers) != 0 {
		t.Fatalf("subscription identifiers %v, want none", p.Properties.SubscriptionIdentifiers)
	}
}

// A CONNECT that does not conform (here: the reserved flag set) closes the
// connection: 3.1.1 without a CONNACK (MQTT-3.1.2-3, MQTT-3.1.4-1); 5.0 with
// CONNACK 0x81 first (MQTT-3.1.2-3, MQTT-3.1.4-1, MQTT-3.2.2-7), or 0x84 for
// a protocol name other than MQTT (MQTT-3.1.2-1). A 3.1.1 CONNECT with
// another protocol name is not processed as MQTT (3.1.1 MQTT-3.1.2-1): it
// gets CONNACK 0x01, then the close.
func TestMalformedConnect(t *testing.T) {
	tb := startBroker(t, Options{}, nil, nil)
	for _, c := range []struct {
		v    packet.Version
		raw  []byte
		want packet.ReasonCode // CONNACK before the close; 0: none
	}{
		{packet.V311, []byte{0x10, 0x0D, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x03, 0, 60, 0, 1, 'c'}, 0},
		{packet.V311, []byte{0x10, 0x0D, 0, 4, 'M', 'Q', 'T', 'X', 4, 0x02, 0, 60, 0, 1, 'c'}, packet.ConnRefusedProtocolVersion},
		{packet.V5, []byte{0x10, 0x0E, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x03, 0, 60, 0, 0, 1, 'c'}, packet.MalformedPacket},
		// Level 5 under another protocol name (5.0 MQTT-3.1.2-1): 0x84.
		{packet.V5, []byte{0x10, 0x0E, 0, 4, 'M', 'Q', 'T', 'X', 5, 0x02, 0, 60, 0, 0, 1, 'c'}, packet.UnsupportedProtocolVersion},
	} {
		nc := rawConn(t, tb.addr, c.raw)
		nc.SetReadDeadline(time.Now().Add(wait))
		r := packet.NewReader(nc, 0)
		r.SetVersion(c.v)
		p, err := r.ReadPacket()
		if c.want != 0 {
			if ca, ok := p.(*packet.Connack); !ok || ca.ReasonCode != c.want {
				t.Fatalf("%s: got %#v %v, want CONNACK %v", c.v, p, err, c.want)
			}
			p, err = r.ReadPacket()
		}
		if err == nil {
			t.Fatalf("%s: got %#v, want the connection closed", c.v, p)
		}
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("%s: connection left open", c.v)
		}
	}
	if tb.Stats().Sessions != 0 {
		t.Fatalf("stats %+v", tb.Stats())
	}
}

// An MQTT 3.1 ("MQIsdp", level 3) CONNECT without a client id gets CONNACK
// 0x02, identifier rejected (3.1 section 3.1: 1 to 23 characters); one with a
// client id is accepted (TestMosquittoClients/mqttv31 runs a real 3.1 client).
// A client id over 23 characters is accepted, as mosquitto does: old devices
// that send one worked with it.
//
// 3.1 has no Session Present: the first byte of CONNACK is reserved. A 3.1
// client that resumes its stored session gets 20 02 00 00, as mosquitto
// sends it (it sets the flag for 3.1.1 and 5.0 only), and the session is
// resumed all the same.
func TestMQTT31ClientID(t *testing.T) {
	tb := startBroker(t, Options{}, nil, nil)
	connect := func(id string, flags byte) []byte {
		body := append([]byte{0, 6, 'M', 'Q', 'I', 's', 'd', 'p', 3, flags, 0, 60, 0, byte(len(id))}, id...)
		return append([]byte{0x10, byte(len(body))}, body...)
	}
	for _, c := range []struct {
		id   string
		want packet.ReasonCode
	}{
		{"", packet.ConnRefusedIdentifierRejected},
		{"old-device", packet.Success},
		{strings.Repeat("x", 30), packet.Success},
	} {
		nc := rawConn(t, tb.addr, connect(c.id, 0x02))
		nc.SetReadDeadline(time.Now().Add(wait))
		r := packet.NewReader(nc, 0)
		r.SetVersion(packet.V311)
		p, err := r.ReadPacket()
		if ca, ok := p.(*packet.Connack); !ok || ca.ReasonCode != c.want {
			t.Fatalf("client id %q: got %#v %v, want CONNACK %v", c.id, p, err, c.want)
		}
		nc.Close()
	}

	c := dial(t, tb.addr, testclient.Options{ClientID: "resumed", Version: packet.V31})
	subscribe(t, c, packet.Subscription{Filter: "old/cmd", QoS: 1})
	c.Close()
	tb.waitOffline(t, "resumed")
	nc := rawConn(t, tb.addr, connect("resumed", 0x00)) // clean session 0
	nc.SetReadDeadline(time.Now().Add(wait))
	got := make([]byte, 4)
	if _, err := io.ReadFull(nc, got); err != nil || !bytes.Equal(got, []byte{0x20, 0x02, 0x00, 0x00}) {
		t.Fatalf("CONNACK to a resuming 3.1 client: % x, %v; want 20 02 00 00", got, err)
	}
	tb.waitSession(t, "resumed", "resumed with its subscription", func(s *session) bool {
		return s != nil && s.conn != nil && s.subs["old/cmd"] != nil
	})
}

// A 3.1 SUBACK carries granted QoS only: 0x80 is 3.1.1's. A subscription the
// ACL denies is answered with the QoS asked for and not made (mosquitto
// answers 3.1 clients so); a filter that is not one is a protocol
// violation, which closes the connection with nothing of its SUBSCRIBE
// applied. 3.1.1 and 5.0 get 0x80 and 0x87 / 0x8F (TestAuthAndACL,
// TestInvalidFiltersRefused).
func TestMQTT31SubscribeRefusals(t *testing.T) {
	pw, acl := authFiles(t, "alice", "secret", "user alice\ntopic readwrite alice/#\n")
	tb := startBroker(t, Options{}, nil, &ListenerOptions{Name: "acl", Auth: pw, ACL: acl})
	// Clean session 0: the session outlives the close, so what the
	// refused SUBSCRIBE applied would show.
	o := testclient.Options{ClientID: "old", Version: packet.V31, Username: "alice", Password: "secret"}
	c := dial(t, tb.addr, o)
	rcs, err := c.Subscribe(packet.Subscription{Filter: "alice/#", QoS: 1}, packet.Subscription{Filter: "secret/#", QoS: 2})
	if err != nil || !slices.Equal(rcs, []packet.ReasonCode{1, 2}) {
		t.Fatalf("SUBACK %v, %v; want [1 2], no failure code", rcs, err)
	}
	if n := tb.Stats().Subscriptions; n != 1 {
		t.Fatalf("%d subscriptions, want 1: the denied one must not be made", n)
	}
	malformed := tb.Stats().Malformed
	send(t, c, &packet.Subscribe{PacketID: c.NextID(), Subscriptions: []packet.Subscription{{Filter: "alice/new", QoS: 1}, {Filter: "a+", QoS: 1}}})
	expectDisconnect(t, c, 0)
	tb.waitOffline(t, "old")
	if st := tb.Stats(); st.Subscriptions != 1 || st.Malformed != malformed+1 {
		t.Fatalf("after an invalid filter: %d subscriptions (want 1), %d closed as malformed (want %d)", st.Subscriptions, st.Malformed, malformed+1)
	}
}

// A first packet other than CONNECT closes the connection without an answer
// (3.1.1 and 5.0 MQTT-3.1.0-1), and nothing in it is processed.
func TestFirstPacketNotConnect(t *testing.T) {
	tb := startBroker(t, Options{}, nil, nil)
	for _, raw := range [][]byte{
		{0xc0, 0x00}, // PINGREQ
		{0x30, 0x06, 0x00, 0x01, 'f', 0x00, 'h', 'i'},   // PUBLISH "f"
		{0x82, 0x06, 0x00, 0x01, 0x00, 0x01, '#', 0x00}, // SUBSCRIBE "#" (3.1.1 layout)
	} {
		if got := readToClose(t, rawConn(t, tb.addr, raw)); len(got) != 0 {
			t.Fatalf("% x: got % x, want the connection closed without an answer", raw, got)
		}
	}
	if st := tb.Stats(); st.Sessions != 0 || st.Subscriptions != 0 || st.Malformed != 3 || len(tb.store.messages()) != 0 {
		t.Fatalf("stats %+v, %d stored", st, len(tb.store.messages()))
	}
}

// Topics are matched byte for byte: a leading U+FEFF is neither stripped
// nor skipped (5.0 MQTT-1.5.4-3, MQTT-4.7.3-4; 3.1.1 MQTT-1.5.3-3,
// MQTT-4.7.3-4), and case and Unicode normal forms are kept apart.
func TestTopicNotNormalized(t *testing.T) {
	for _, v := range versions() {
		t.Run(v.String(), func(t *testing.T) {
			tb := startBroker(t, Options{}, nil, nil)
			topics := []string{"\uFEFFbom", "bom", "Bom", "caf\u00e9", "cafe\u0301"}
			subs := make([]*testclient.Client, len(topics))
			for i, tp := range topics {
				subs[i] = dial(t, tb.addr, testclient.Options{ClientID: "s" + string(rune('a'+i)), Version: v, CleanStart: true})
				subs[i].Subscribe(packet.Subscription{Filter: tp, QoS: 1})
			}
			pub := dial(t, tb.addr, testclient.Options{ClientID: "pub", Version: v, CleanStart: true})
			for _, tp := range topics {
				publish(t, pub, &packet.Publish{Topic: tp, QoS: 1, Payload: []byte(tp)})
			}
			for i, tp := range topics {
				if p := recv(t, subs[i]); p.Topic != tp || string(p.Payload) != tp {
					t.Fatalf("subscriber of %q got %q", tp, p.Topic)
				}
				noPublish(t, subs[i])
			}
		})
	}
}

// Invalid topic filters (MQTT-4.7.1-1, MQTT-4.7.1-2, shared subscription
// syntax MQTT-4.8.2-1, MQTT-4.8.2-2) fail in the SUBACK: 5.0 0x8F, 3.1.1
// 0x80; the valid filters of the same SUBSCRIBE are granted (MQTT-3.8.4-5).
func TestInvalidFiltersRefused(t *testing.T) {
	for _, v := range versions() {
		t.Run(v.String(), func(t *testing.T) {
			tb := startBroker(t, Options{}, nil, nil)
			c := dial(t, tb.addr, testclient.Options{ClientID: "c", Version: v, CleanStart: true})
			bad := packet.TopicFilterInvalid
			if v == packet.V311 {
				bad = packet.SubackFailure
			}
			rcs, err := c.Subscribe(
				packet.Subscription{Filter: "a/#/b", QoS: 1},
				packet.Subscription{Filter: "a/b#", QoS: 1},
				packet.Subscription{Filter: "a+/b", QoS: 1},
				packet.Subscription{Filter: "ok/+", QoS: 1},
				packet.Subscription{Filter: "$share//x", QoS: 1},
				packet.Subscription{Filter: "$share/g+/x", QoS: 1},
				packet.Subscription{Filter: "$share/g", QoS: 1},
			)
			if err != nil {
				t.Fatal(err)
			}
			want := []packet.ReasonCode{bad, bad, bad, packet.GrantedQoS1, bad, bad, bad}
			if !slices.Equal(rcs, want) {
				t.Fatalf("SUBACK %v, want %v", rcs, want)
			}
			if n := tb.Stats().Subscriptions; n != 1 {
				t.Fatalf("%d subscriptions, want 1", n)
			}
		})
	}
}

// Packet identifiers the server assigns to QoS 1/2 PUBLISH packets in
// flight at once are non-zero and distinct (5.0 MQTT-2.2.1-4; 3.1.1
// MQTT-2.3.1-4).
func TestServerPacketIDsUnused(t *testing.T) {
	tb := startBroker(t, Options{}, nil, nil)
	var props packet.Properties
	props.ReceiveMaximum, props.HasReceiveMaximum = 20, true
	sub := dial(t, tb.addr, testclient.Options{ClientID: "sub", CleanStart: true, Properties: props})
	subscribe(t, sub, packet.Subscription{Filter: "ids", QoS: 2})
	pub := dial(t, tb.addr, testclient.Options{ClientID: "pub", CleanStart: true})
	seen := map[uint16]bool{}
	for round := range 3 {
		for i := range 20 {
			publish(t, pub, &packet.Publish{Topic: "ids", QoS: byte(1 + i%2), Payload: []byte{byte(i)}})
		}
		var held []*packet.Publish
		for range 20 {
			p, err := sub.ReadPacket(wait)
			if err != nil {
				t.Fatal(err)
			}
			q := p.(*packet.Publish)
			if q.PacketID == 0 || seen[q.PacketID] {
				t.Fatalf("round %d: packet id %d in use", round, q.PacketID)
			}
			seen[q.PacketID] = true
			held = append(held, q)
		}
		// Complete every flow; the ids become free (they may be reused).
		for _, q := range held {
			if q.QoS == 1 {
				send(t, sub, &packet.Puback{PacketID: q.PacketID})
				continue
			}
			send(t, sub, &packet.Pubrec{PacketID: q.PacketID})
			if p, err := sub.ReadPacket(wait); err != nil || p.Type() != packet.PUBREL {
				t.Fatalf("got %v %v, want PUBREL", p, err)
			}
			send(t, sub, &packet.Pubcomp{PacketID: q.PacketID})
		}
		testenv.WaitFor(t, wait, "flows completed", func() bool { return tb.Stats().Queued == 0 })
		clear(seen)
	}
}

// After PUBACK, a QoS 1 PUBLISH with the same packet id is a new message,
// whatever its DUP flag (5.0 MQTT-4.3.2-5; 3.1.1 section 4.3.2). A PUBREL
// for an id not awaiting one gets PUBCOMP 0x92 (5.0 section 3.7.2.1).
func TestInboundPacketIDReuse(t *testing.T) {
	for _, v := range versions() {
		t.Run(v.String(), func(t *testing.T) {
			tb := startBroker(t, Options{}, nil, nil)
			c := dial(t, tb.addr, testclient.Options{ClientID: "c", Version: v, CleanStart: true})
			for i, dup := range []bool{false, true, false} {
				publish(t, c, &packet.Publish{Topic: "reuse", QoS: 1, PacketID: 7, Dup: dup, Payload: []byte{byte(i)}})
			}
			if n := len(tb.store.messages()); n != 3 {
				t.Fatalf("%d messages stored, want 3", n)
			}
			send(t, c, &packet.Pubrel{PacketID: 77})
			p, err := c.ReadPacket(wait)
			if err != nil {
				t.Fatal(err)
			}
			want := packet.ReasonCode(0)
			if v == packet.V5 {
				want = packet.PacketIdentifierNotFound
			}
			if pc, ok := p.(*packet.Pubcomp); !ok || pc.PacketID != 77 || pc.ReasonCode != want {
				t.Fatalf("got %#v, want PUBCOMP 77 %v", p, want)
			}
		})
	}
}

// A QoS 2 message sent to a shared subscription member whose connection
// breaks before the flow completes goes to that member when it reconnects,
// not to another member (MQTT-4.8.2-4).
func TestSharedQoS2CompletedWithSameMember(t *testing.T) {
	tb := startBroker(t, Options{}, nil, nil)
	oa := testclient.Options{ClientID: "a", SessionExpiry: 60, CleanStart: true}
	a := dial(t, tb.addr, oa)
	subscribe(t, a, packet.Subscription{Filter: "$share/g/q2", QoS: 2})
	b := dial(t, tb.addr, testclient.Options{ClientID: "b", SessionExpiry: 60, CleanStart: true})
	subscribe(t, b, packet.Subscription{Filter: "$share/g/q2", QoS: 2})
	pub := dial(t, tb.addr, testclient.Options{ClientID: "pub", CleanStart: true})
	// Publish until a member other than b gets one: a holds it unacknowledged.
	var held *packet.Publish
	for i := 0; held == nil; i++ {
		if i == 20 {
			t.Fatal("round robin never chose a")
		}
		publish(t, pub, &packet.Publish{Topic: "q2", QoS: 2, Payload: []byte{byte(i)}})
		if p, err := a.ReadPacket(wait / 20); err == nil {
			held = p.(*packet.Publish)
			break
		}
		recv(t, b)
	}
	a.Close()
	tb.waitOffline(t, "a")
	noPublish(t, b)
	oa.CleanStart = false
	a = dial(t, tb.addr, oa)
	if p := recv(t, a); !p.Dup || p.PacketID != held.PacketID || !bytes.Equal(p.Payload, held.Payload) {
		t.Fatalf("resent %+v, want %+v with DUP", p, held)
	}
	noPublish(t, b)
}

// Message expiry is not applied to a QoS 2 message once its PUBLISH has
// been sent: on session resumption it is sent again after its expiry
// interval has passed, and the flow completes (MQTT-4.3.3-7, MQTT-4.3.3-13).
func TestInflightQoS2NotExpired(t *testing.T) {
	clock := newTestClock()
	tb := startBroker(t, Options{now: clock.now}, nil, nil)
	o := testclient.Options{ClientID: "x", SessionExpiry: 60, CleanStart: true}
	c := dial(t, tb.addr, o)
	subscribe(t, c, packet.Subscription{Filter: "x", QoS: 2})
	pub := dial(t, tb.addr, testclient.Options{ClientID: "pub", CleanStart: true})
	m := &packet.Publish{Topic: "x", QoS: 2, Payload: []byte("sent")}
	m.Properties.MessageExpiry, m.Properties.HasMessageExpiry = 1, true
	publish(t, pub, m)
	p, err := c.ReadPacket(wait)
	if err != nil {
		t.Fatal(err)
	}
	held := p.(*packet.Publish)
	c.Close()
	tb.waitOffline(t, "x")
	clock.advance(2 * time.Second) // past the message's expiry
	o.CleanStart = false
	c = dial(t, tb.addr, o)
	p, err = c.ReadPacket(wait)
	if err != nil {
		t.Fatal(err)
	}
	got, ok := p.(*packet.Publish)
	if !ok || !got.Dup || got.PacketID != held.PacketID || string(got.Payload) != "sent" {
		t.Fatalf("resent %#v", p)
	}
	send(t, c, &packet.Pubrec{PacketID: got.PacketID})
	if p, err := c.ReadPacket(wait); err != nil {
		t.Fatal(err)
	} else if rel, ok := p.(*packet.Pubrel); !ok || rel.PacketID != got.PacketID || rel.ReasonCode != 0 {
		t.Fatalf("got %#v, want PUBREL %d", p, got.PacketID)
	}
	send(t, c, &packet.Pubcomp{PacketID: got.PacketID})
	testenv.WaitFor(t, wait, "flow completed", func() bool { return tb.Stats().Queued == 0 })
	if n := tb.Stats().DroppedExpired; n != 0 {
		t.Fatalf("%d dropped as expired", n)
	}
}

// Takeover by a connection that resumes the session within the Will Delay:
// the old connection's will is not sent (MQTT-3.1.3-9). Takeover with Clean
// Start 1 ends the old session, so its will is sent at once (MQTT-3.1.2-8).
func TestTakeoverWillDelay(t *testing.T) {
	tb := startBroker(t, Options{}, nil, nil)
	sub := dial(t, tb.addr, testclient.Options{ClientID: "sub", CleanStart: true})
	subscribe(t, sub, packet.Subscription{Filter: "will/#", QoS: 1})
	will := func(topic string) *packet.Publish {
		p := &packet.Publish{Topic: topic, QoS: 1, Payload: []byte(topic)}
		p.Properties.WillDelay, p.Properties.HasWillDelay = 3600, true
		return p
	}
	old := dial(t, tb.addr, testclient.Options{ClientID: "d", SessionExpiry: 7200, CleanStart: true, Will: will("will/resumed")})
	dial(t, tb.addr, testclient.Options{ClientID: "d", SessionExpiry: 7200})
	expectDisconnect(t, old, packet.SessionTakenOver)
	noPublish(t, sub)

	old = dial(t, tb.addr, testclient.Options{ClientID: "e", SessionExpiry: 7200, CleanStart: true, Will: will("will/ended")})
	dial(t, tb.addr, testclient.Options{ClientID: "e", SessionExpiry: 7200, CleanStart: true})
	expectDisconnect(t, old, packet.SessionTakenOver)
	if p := recv(t, sub); p.Topic != "will/ended" {
		t.Fatalf("got %q, want will/ended (will/resumed must not be sent)", p.Topic)
	}
}

// Retained messages: the Message Expiry Interval applies (expired ones are
// not sent to new subscribers, others carry the remaining interval;
// MQTT-3.3.2-5, MQTT-3.3.2-6), and the subscription's identifier is carried
// (MQTT-3.3.4-3). Shared subscriptions get no retained messages (5.0 section
// 4.8.2).
func TestRetainedExpiryAndIdentifiers(t *testing.T) {
	clock := newTestClock()
	tb := startBroker(t, Options{now: clock.now}, nil, nil)
	pub := dial(t, tb.addr, testclient.Options{ClientID: "pub", CleanStart: true})
	short := &packet.Publish{Topic: "rx/short", QoS: 1, Retain: true, Payload: []byte("short")}
	short.Properties.MessageExpiry, short.Properties.HasMessageExpiry = 1, true
	long := &packet.Publish{Topic: "rx/long", QoS: 1, Retain: true, Payload: []byte("long")}
	long.Properties.MessageExpiry, long.Properties.HasMessageExpiry = 600, true
	publish(t, pub, short)
	publish(t, pub, long)
	clock.advance(time.Second) // the short expiry has passed
	sub := dial(t, tb.addr, testclient.Options{ClientID: "sub", CleanStart: true})
	send(t, sub, &packet.Subscribe{PacketID: 1, Properties: packet.Properties{SubscriptionIdentifiers: []uint32{4}},
		Subscriptions: []packet.Subscription{{Filter: "rx/+", QoS: 1}}})
	if p, err := sub.ReadPacket(wait); err != nil || p.Type() != packet.SUBACK {
		t.Fatalf("%v %v", p, err)
	}
	p := recv(t, sub)
	if p.Topic != "rx/long" || !p.Retain || !slices.Equal(p.Properties.SubscriptionIdentifiers, []uint32{4}) ||
		!p.Properties.HasMessageExpiry || p.Properties.MessageExpiry != 599 {
		t.Fatalf("retained %+v", p)
	}
	noPublish(t, sub)
	sh := dial(t, tb.addr, testclient.Options{ClientID: "sh", CleanStart: true})
	subscribe(t, sh, packet.Subscription{Filter: "$share/g/rx/+", QoS: 1})
	noPublish(t, sh)
	// Unsubscribing the shared subscription by its full filter works.
	send(t, sh, &packet.Unsubscribe{PacketID: 9, Filters: []string{"$share/g/rx/+"}})
	q, err := sh.ReadPacket(wait)
	if err != nil {
		t.Fatal(err)
	}
	if ua, ok := q.(*packet.Unsuback); !ok || len(ua.ReasonCodes) != 1 || ua.ReasonCodes[0] != 0 {
		t.Fatalf("got %#v, want UNSUBACK 0x00", q)
	}
	publish(t, pub, &packet.Publish{Topic: "rx/long", QoS: 1, Payload: []byte("live")})
	if p := recv(t, sub); string(p.Payload) != "live" {
		t.Fatalf("%+v", p)
	}
	noPublish(t, sh)
}

// No Local applies per subscription (MQTT-3.8.3-3): a client's own message
// still reaches it through an overlapping subscription without No Local,
// once, carrying only that subscription's identifier.
func TestNoLocalWithOverlap(t *testing.T) {
	tb := startBroker(t, Options{}, nil, nil)
	c := dial(t, tb.addr, testclient.Options{ClientID: "c", CleanStart: true})
	send(t, c, &packet.Subscribe{PacketID: 1, Properties: packet.Properties{SubscriptionIdentifiers: []uint32{1}},
		Subscriptions: []packet.Subscription{{Filter: "nl/#", QoS: 1, NoLocal: true}}})
	send(t, c, &packet.Subscribe{PacketID: 2, Properties: packet.Properties{SubscriptionIdentifiers: []uint32{2}},
		Subscriptions: []packet.Subscription{{Filter: "nl/+", QoS: 1}}})
	for range 2 {
		if p, err := c.ReadPacket(wait); err != nil || p.Type() != packet.SUBACK {
			t.Fatalf("%v %v", p, err)
		}
	}
	publish(t, c, &packet.Publish{Topic: "nl/a", QoS: 1, Payload: []byte("own")})
	p := recv(t, c)
	if string(p.Payload) != "own" || !slices.Equal(p.Properties.SubscriptionIdentifiers, []uint32{2}) {
		t.Fatalf("got %q with identifiers %v, want own with [2]", p.Payload, p.Properties.SubscriptionIdentifiers)
	}
	noPublish(t, c)
	// Only the No Local subscription matches: nothing comes back.
	publish(t, c, &packet.Publish{Topic: "nl/a/b", QoS: 1, Payload: []byte("deep")})
	noPublish(t, c)
}

// Until PUBREL, a QoS 2 PUBLISH with a packet id awaiting it is answered with
// PUBREC again and not delivered twice (5.0 MQTT-4.3.3-10; 3.1.1
// MQTT-4.3.3-2), with or without DUP; PUBREL gets PUBCOMP (MQTT-4.3.3-11).
func TestQoS2DuplicateNotDeliveredTwice(t *testing.T) {
	for _, v := range versions() {
		t.Run(v.String(), func(t *testing.T) {
			tb := startBroker(t, Options{}, nil, nil)
			sub := dial(t, tb.addr, testclient.Options{ClientID: "sub", Version: v, CleanStart: true})
			subscribe(t, sub, packet.Subscription{Filter: "d2", QoS: 2})
			pub := dial(t, tb.addr, testclient.Options{ClientID: "pub", Version: v, CleanStart: true})
			for i, dup := range []bool{false, true, false} {
				if err := pub.Send(&packet.Publish{Topic: "d2", QoS: 2, PacketID: 5, Dup: dup, Payload: []byte{byte(i)}}); err != nil {
					t.Fatal(err)
				}
				p, err := pub.ReadPacket(wait)
				if err != nil {
					t.Fatal(err)
				}
				if rec, ok := p.(*packet.Pubrec); !ok || rec.PacketID != 5 || rec.ReasonCode != 0 {
					t.Fatalf("send %d: got %#v, want PUBREC 5", i, p)
				}
			}
			if err := pub.Send(&packet.Pubrel{PacketID: 5}); err != nil {
				t.Fatal(err)
			}
			p, err := pub.ReadPacket(wait)
			if err != nil {
				t.Fatal(err)
			}
			if pc, ok := p.(*packet.Pubcomp); !ok || pc.PacketID != 5 || pc.ReasonCode != 0 {
				t.Fatalf("got %#v, want PUBCOMP 5", p)
			}
			if got := recv(t, sub); got.Payload[0] != 0 {
				t.Fatalf("delivered %v, want the first copy", got.Payload)
			}
			noPublish(t, sub)
			if n := len(tb.store.messages()); n != 1 {
				t.Fatalf("%d stored, want 1", n)
			}
		})
	}
}

// DISCONNECT 0x04 (Disconnect with Will Message) keeps the will and its
// Will Delay Interval: it is published once the delay has passed
// (MQTT-3.1.2-8, 5.0 section 3.14.2.1).
func TestDisconnectWithWillKeepsDelay(t *testing.T) {
	tb := startBroker(t, Options{}, nil, nil)
	sub := dial(t, tb.addr, testclient.Options{ClientID: "sub", CleanStart: true})
	subscribe(t, sub, packet.Subscription{Filter: "will/#", QoS: 1})
	w := &packet.Publish{Topic: "will/04", QoS: 1, Payload: []byte("delayed")}
	w.Properties.WillDelay, w.Properties.HasWillDelay = 1, true
	c := dial(t, tb.addr, testclient.Options{ClientID: "w", SessionExpiry: 60, CleanStart: true, Will: w})
	start := time.Now()
	if err := c.Send(&packet.Disconnect{ReasonCode: packet.DisconnectWithWill}); err != nil {
		t.Fatal(err)
	}
	p := recv(t, sub)
	if p.Topic != "will/04" {
		t.Fatalf("%+v", p)
	}
	if d := time.Since(start); d < time.Second {
		t.Fatalf("will sent after %v, before its 1s delay", d)
	}
}

// TestPahoInterop runs scenarios of the Eclipse Paho interoperability tests
// with python3 paho (the Debian package) as an independent client:
// overlapping subscriptions in both versions, zero-length client id,
// $-topics, offline message queueing and subscription options.
func TestPahoInterop(t *testing.T) {
	py := "/usr/bin/python3" // Debian's, where python3-paho-mqtt installs
	if out, err := exec.Command(py, "-c", "import paho.mqtt.client").CombinedOutput(); err != nil {
		testenv.Missing(t, "python3-paho-mqtt not installed: %s", out)
	}
	tb := startBroker(t, Options{}, nil, nil)
	i := strings.LastIndexByte(tb.addr, ':')
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, py, "testdata/paho_interop.py", tb.addr[:i], tb.addr[i+1:]).CombinedOutput()
	if err != nil {
		t.Fatalf("paho interop failed: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "ALL OK") {
		t.Fatalf("paho interop output:\n%s", out)
	}
}

// Any control packet within 1.5 x Keep Alive keeps the connection (3.1.1
// MQTT-3.1.2-24, 5.0 MQTT-3.1.2-22, MQTT-3.12.4-1): a client with keep alive
// 2 s that is silent for 1.4 x keep alive (2.8 s, less than the 3 s that
// close it) between packets stays connected over three such gaps, kept
// first by PINGREQ, then by a QoS 0 PUBLISH, then by PINGREQ again.
//
// The gaps are the behaviour under test, not synchronisation. Each is
// measured from before the previous packet was written (the broker cannot
// have read it earlier, so its deadline is no sooner than 1.5 x keep alive
// after that) to after this one was written (by then it is in the broker's
// socket). A gap the test itself stretched to 1.5 x keep alive or more (the
// machine stalled it, before or during the write) shows nothing about the
// broker: that attempt is dropped, whether the broker closed the connection
// or not, and the test starts again on a new connection, at most
// keepAliveAttempts times. Only a close after gaps all under 1.5 x fails it.
func TestKeepAliveKeptByPings(t *testing.T) {
	const ka = 2 * time.Second
	const keepAliveAttempts = 5
	for _, v := range versions() {
		t.Run(v.String(), func(t *testing.T) {
			t.Parallel()
			tb := startBroker(t, Options{}, nil, nil)
			for attempt := 1; ; attempt++ {
				if keptAlive(t, tb, v, ka) {
					break
				}
				if attempt == keepAliveAttempts {
					t.Fatalf("in %d attempts the test never kept its own gaps under 1.5 x keep alive", attempt)
				}
			}
		})
	}
}

// keptAlive runs one attempt of TestKeepAliveKeptByPings on a new
// connection and reports false if the test overslept a gap (the attempt
// proves nothing); a broker that closes the connection after gaps all under
// 1.5 x keep alive fails the test.
func keptAlive(t *testing.T, tb *testBroker, v packet.Version, ka time.Duration) bool {
	t.Helper()
	// The broker's first deadline counts from its reading of CONNECT, which
	// is after this.
	prev := time.Now()
	c := dial(t, tb.addr, testclient.Options{ClientID: "ping", Version: v, CleanStart: true, KeepAlive: uint16(ka / time.Second)})
	defer c.Close()
	stored := len(tb.store.messages())
	overslept := false
	for i, p := range []packet.Packet{&packet.Pingreq{}, &packet.Pingreq{}, &packet.Publish{Topic: "ka", Payload: []byte("alive")}, &packet.Pingreq{}} {
		if i > 0 {
			time.Sleep(time.Until(prev.Add(ka * 14 / 10)))
		}
		start := time.Now()
		err := c.Send(p)
		if gap := time.Since(prev); gap >= ka*3/2 {
			t.Logf("gap %d: %v from before the previous packet to after this one, not less than 1.5 x keep alive: trying again", i, gap)
			overslept = true
		}
		prev = start
		if err != nil {
			if overslept {
				return false
			}
			t.Fatalf("packet %d: %v", i, err)
		}
		if p.Type() != packet.PINGREQ {
			continue
		}
		q, err := c.ReadPacket(wait)
		var fail string
		switch {
		case err != nil:
			fail = fmt.Sprintf("packet %d: connection ended (%v), want PINGRESP", i, err)
		case q.Type() == packet.DISCONNECT:
			fail = fmt.Sprintf("packet %d: DISCONNECT %v, want PINGRESP", i, q.(*packet.Disconnect).ReasonCode)
		case q.Type() != packet.PINGRESP:
			t.Fatalf("packet %d: got %v, want PINGRESP", i, q.Type())
		}
		if fail != "" {
			if overslept {
				return false
			}
			t.Fatal(fail)
		}
	}
	if overslept {
		return false
	}
	if ms := tb.store.messages()[stored:]; len(ms) != 1 || string(ms[0].Payload) != "alive" {
		t.Fatalf("stored %d messages, want the keep-alive PUBLISH", len(ms))
	}
	return true // the last PINGRESP came: still connected
}

// A second CONNECT on a 3.1.1 connection is a protocol violation: the
// connection is closed (3.1.1 MQTT-3.1.0-2, MQTT-4.8.0-1), and only it.
func TestSecondConnect311(t *testing.T) {
	tb := startBroker(t, Options{}, nil, nil)
	other := dial(t, tb.addr, testclient.Options{ClientID: "other", Version: packet.V311, CleanStart: true})
	c := dial(t, tb.addr, testclient.Options{ClientID: "twice", Version: packet.V311, CleanStart: true})
	if err := c.Send(&packet.Connect{ProtocolName: "MQTT", Version: packet.V311, ClientID: "twice", CleanStart: true}); err != nil {
		t.Fatal(err)
	}
	expectDisconnect(t, c, 0)
	noPublish(t, other)
}
