package localbus

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"testing"

	"holdfast/internal/auth"
	"holdfast/internal/packet"
	"holdfast/internal/testclient"
	"holdfast/internal/testenv"
)

func TestUnsubscribe(t *testing.T) {
	for _, v := range versions() {
		t.Run(v.String(), func(t *testing.T) {
			tb := startBroker(t, Options{}, nil, nil)
			c := dial(t, tb.addr, testclient.Options{ClientID: "u", Version: v, SessionExpiry: 60, CleanStart: v == packet.V5})
			subscribe(t, c, packet.Subscription{Filter: "a", QoS: 1}, packet.Subscription{Filter: "b", QoS: 1})
			id := c.NextID()
			send(t, c, &packet.Unsubscribe{PacketID: id, Filters: []string{"a", "nope"}})
			p, err := c.ReadPacket(wait)
			if err != nil {
				t.Fatal(err)
			}
			ack, ok := p.(*packet.Unsuback)
			if !ok || ack.PacketID != id {
				t.Fatalf("got %#v", p)
			}
			if v == packet.V5 && (len(ack.ReasonCodes) != 2 || ack.ReasonCodes[0] != 0 || ack.ReasonCodes[1] != packet.NoSubscriptionExisted) {
				t.Fatalf("UNSUBACK codes %v", ack.ReasonCodes)
			}
			pub := dial(t, tb.addr, testclient.Options{ClientID: "pub", CleanStart: true})
			publish(t, pub, &packet.Publish{Topic: "a", QoS: 1, Payload: []byte("gone")})
			publish(t, pub, &packet.Publish{Topic: "b", QoS: 1, Payload: []byte("kept")})
			if p := recv(t, c); string(p.Payload) != "kept" {
				t.Fatalf("got %q after unsubscribing", p.Payload)
			}
			// The stored session has only "b" left.
			tb.mu.Lock()
			rec := encodeSession(tb.sessions["u"])
			tb.mu.Unlock()
			s, err := decodeSession("u", rec)
			if err != nil || len(s.subs) != 1 || s.subs["b"] == nil {
				t.Fatalf("%+v %v", s, err)
			}
			testenv.WaitFor(t, wait, "session record updated", func() bool {
				st := tb.store
				st.mu.Lock()
				defer st.mu.Unlock()
				s, err := decodeSession("u", st.data[sessionKey("u")])
				return err == nil && len(s.subs) == 1
			})
		})
	}
}

// The syntax of UNSUBSCRIBE filters is the broker's to check. 5.0: each
// filter that is not one gets UNSUBACK 0x8F Topic Filter invalid, the
// others are handled as usual. 3.1.1 UNSUBACK has no codes, and a filter
// that breaks the wildcard rules (MQTT-4.7.1-2, -3) is a protocol
// violation: the connection is closed (MQTT-4.8.0-1), nothing unsubscribed.
func TestUnsubscribeInvalidFilter(t *testing.T) {
	bad := []string{"a+", "a/#/b", "$share//x"}
	for _, v := range versions() {
		t.Run(v.String(), func(t *testing.T) {
			tb := startBroker(t, Options{}, nil, nil)
			c := dial(t, tb.addr, testclient.Options{ClientID: "u", Version: v, SessionExpiry: 60})
			subscribe(t, c, packet.Subscription{Filter: "a", QoS: 1}, packet.Subscription{Filter: "b", QoS: 1})
			id := c.NextID()
			send(t, c, &packet.Unsubscribe{PacketID: id, Filters: append([]string{"a"}, bad...)})
			if v == packet.V311 {
				expectDisconnect(t, c, 0)
				tb.waitOffline(t, "u")
				if n := tb.Stats().Subscriptions; n != 2 {
					t.Fatalf("%d subscriptions after the refused UNSUBSCRIBE, want both", n)
				}
				return
			}
			p, err := c.ReadPacket(wait)
			if err != nil {
				t.Fatal(err)
			}
			want := []packet.ReasonCode{packet.Success, packet.TopicFilterInvalid, packet.TopicFilterInvalid, packet.TopicFilterInvalid}
			if ack, ok := p.(*packet.Unsuback); !ok || ack.PacketID != id || !slices.Equal(ack.ReasonCodes, want) {
				t.Fatalf("got %#v, want UNSUBACK %d %v", p, id, want)
			}
			if n := tb.Stats().Subscriptions; n != 1 {
				t.Fatalf("%d subscriptions, want 1 (b)", n)
			}
			noPublish(t, c) // still connected
		})
	}
}

func TestACLReceive(t *testing.T) {
	aclFile := filepath.Join(t.TempDir(), "acl")
	writeFile(t, aclFile, "topic readwrite a/#\ntopic deny a/secret\n")
	acl, err := auth.LoadACL(aclFile)
	if err != nil {
		t.Fatal(err)
	}
	tb := startBroker(t, Options{}, nil, &ListenerOptions{AllowAnonymous: true, ACL: acl})
	c := dial(t, tb.addr, testclient.Options{ClientID: "r", CleanStart: true})
	if rcs, err := c.Subscribe(packet.Subscription{Filter: "a/#", QoS: 1}); err != nil || rcs[0] != 1 {
		t.Fatal(rcs, err)
	}
	// The broker itself publishes to a/secret (no ACL on Publish); the
	// subscriber may not read it.
	if err := tb.Publish(t.Context(), &Message{Topic: "a/secret", QoS: 1, Payload: []byte("no")}); err != nil {
		t.Fatal(err)
	}
	if err := tb.Publish(t.Context(), &Message{Topic: "a/open", QoS: 1, Payload: []byte("yes")}); err != nil {
		t.Fatal(err)
	}
	if p := recv(t, c); string(p.Payload) != "yes" {
		t.Fatalf("got %q", p.Payload)
	}
	if tb.Stats().DroppedDenied != 1 {
		t.Fatalf("stats %+v", tb.Stats())
	}
}

func TestRetainNotAvailable(t *testing.T) {
	tb := startBrokerRaw(t, Options{RetainAvailable: false}, nil, nil)
	c := dial(t, tb.addr, testclient.Options{ClientID: "r", CleanStart: true})
	if pr := c.Connack.Properties; !pr.HasRetainAvailable || pr.RetainAvailable != 0 {
		t.Fatalf("CONNACK %+v", pr)
	}
	send(t, c, &packet.Publish{Topic: "t", Retain: true})
	expectDisconnect(t, c, packet.RetainNotSupported)
	// A retained will: 5.0 CONNACK 0x9A; 3.1.1 has no such code, 0x05.
	for v, want := range map[packet.Version]packet.ReasonCode{packet.V5: packet.RetainNotSupported, packet.V311: packet.ConnRefusedNotAuthorized} {
		c, err := testclient.Dial(tb.addr, testclient.Options{ClientID: "w", Version: v, CleanStart: true,
			Will: &packet.Publish{Topic: "w", Retain: true}})
		if err == nil || c == nil || c.Connack.ReasonCode != want {
			t.Fatalf("%s: retained will without retain available: %v, want CONNACK %v", v, err, want)
		}
	}
	if n := len(tb.store.messages()); n != 0 {
		t.Fatalf("%d messages stored", n)
	}
}

// TestPublishWithStoresCallerState: PublishWith stores the caller's state
// ops in the message's write and refuses keys under the broker's prefix.
func TestPublishWithStoresCallerState(t *testing.T) {
	st := newMemStore(t)
	tb := startBroker(t, Options{}, st, nil)
	ctx := context.Background()
	if err := tb.PublishWith(ctx, &Message{Topic: "a", Payload: []byte("x")}, []StateOp{{Key: "lb/s/x", Value: []byte{1}}}); err == nil {
		t.Fatal("a key under the broker's prefix was accepted")
	}
	if err := tb.PublishWith(ctx, &Message{Topic: "a", Payload: []byte("x"), Retain: true}, []StateOp{{Key: "ext/k", Value: []byte{1}}}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(st.keys("ext/"), []string{"ext/k"}) || len(st.keys("lb/r/")) != 1 {
		t.Fatalf("stored %v and %v, want ext/k with the retained message", st.keys("ext/"), st.keys("lb/r/"))
	}
}

// TestIngestOneWrite: Ingest hands the message to Store.Ingest together with
// the copy for a persistent session (one write), and the subscriber gets it.
func TestIngestOneWrite(t *testing.T) {
	st := newMemStore(t)
	tb := startBroker(t, Options{}, st, nil)
	sub := dial(t, tb.addr, testclient.Options{ClientID: "sub", SessionExpiry: 300, CleanStart: true})
	subscribe(t, sub, packet.Subscription{Filter: "s/#", QoS: 1})
	sub.Close()
	testenv.WaitFor(t, wait, "offline", func() bool { return tb.Stats().Connections == 0 })
	st.setHold(true)
	t.Cleanup(func() { st.setHold(false); st.release() })
	done := make(chan error, 1)
	go func() {
		done <- tb.Ingest(context.Background(), &Message{Topic: "s/1", Payload: []byte("v"), QoS: 1, ClientID: "serial:x"})
	}()
	testenv.WaitFor(t, wait, "one store call", func() bool { return st.heldCount() == 1 })
	if st.ingestCount() != 1 {
		t.Fatalf("%d Ingest calls, want the message in one", st.ingestCount())
	}
	st.release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := len(st.keys("lb/q/")); n != 1 || len(st.messages()) != 1 {
		t.Fatalf("%d queued copies and %d messages stored, want 1 and 1", n, len(st.messages()))
	}
	sub = dial(t, tb.addr, testclient.Options{ClientID: "sub", SessionExpiry: 300})
	if p := recv(t, sub); string(p.Payload) != "v" {
		t.Fatalf("got %q", p.Payload)
	}
}

// Broker.Publish, PublishWith and Ingest refuse, with an error and before
// storing or routing anything, a message the codec would refuse to send in
// a PUBLISH: such a message would otherwise take a packet id and a place in
// every 5.0 subscriber's window that no acknowledgement ever frees.
func TestInjectRefusesInvalidFields(t *testing.T) {
	st := newMemStore(t)
	tb := startBroker(t, Options{}, st, nil)
	sub := dial(t, tb.addr, testclient.Options{ClientID: "sub", SessionExpiry: 300, CleanStart: true})
	subscribe(t, sub, packet.Subscription{Filter: "in/#", QoS: 1})
	ctx := context.Background()
	ops := map[string]func(*Message) error{
		"Publish":     func(m *Message) error { return tb.Publish(ctx, m) },
		"PublishWith": func(m *Message) error { return tb.PublishWith(ctx, m, []StateOp{{Key: "ext/k", Value: []byte{1}}}) },
		"Ingest":      func(m *Message) error { return tb.Ingest(ctx, m) },
	}
	bad := []struct {
		name string
		m    Message
		code packet.ReasonCode
	}{
		{"payload format 2", Message{PayloadFormat: 2}, packet.ProtocolError},
		{"response topic with a wildcard", Message{ResponseTopic: "re/+"}, packet.ProtocolError},
		{"content type not UTF-8", Message{ContentType: "text/\xff"}, packet.MalformedPacket},
		{"user property name with U+0000", Message{UserProperties: []packet.UserProperty{{Key: "k\x00", Value: "v"}}}, packet.MalformedPacket},
		{"user property value not UTF-8", Message{UserProperties: []packet.UserProperty{{Key: "k", Value: "\xc3"}}}, packet.MalformedPacket},
		{"correlation data over 65535 bytes", Message{CorrelationData: make([]byte, 65536)}, packet.MalformedPacket},
	}
	for name, op := range ops {
		for _, c := range bad {
			m := c.m
			m.Topic, m.QoS, m.Payload = "in/x", 1, []byte(c.name)
			err := op(&m)
			var pe *packet.Error
			if !errors.As(err, &pe) || pe.Code != c.code {
				t.Errorf("%s with %s: %v, want a %v *packet.Error", name, c.name, err, c.code)
			}
		}
	}
	if n := len(st.keys("")); n != 1 || len(st.messages()) != 0 {
		t.Fatalf("stored %v and %d ingested messages, want only the session record", st.keys(""), len(st.messages()))
	}
	if n := tb.Stats().Queued; n != 0 {
		t.Fatalf("%d messages queued for the subscriber", n)
	}
	noPublish(t, sub)
	// Every field at a valid value passes, and arrives.
	good := &Message{Topic: "in/ok", QoS: 1, Payload: []byte("ok"), PayloadFormat: 1, ContentType: "text/plain",
		ResponseTopic: "re/ply", CorrelationData: make([]byte, 65535), UserProperties: []packet.UserProperty{{Key: "k", Value: "v"}}}
	for name, op := range ops {
		if err := op(good); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if p := recv(t, sub); p.Topic != "in/ok" || p.Properties.PayloadFormat != 1 || len(p.Properties.CorrelationData) != 65535 {
			t.Fatalf("%s delivered %+v", name, p)
		}
	}
}

// A stored message the codec cannot encode for a 5.0 client (here a record
// written without the checks Publish and Ingest make: Payload Format
// Indicator 2) is dropped when its delivery is written, counted
// (DroppedInvalid), and its packet id, place in the client's window and
// stored copy are freed as if it had been acknowledged: the message behind
// it is delivered although the client's Receive Maximum is 1.
func TestUnencodableDeliveryDropped(t *testing.T) {
	st := newMemStore(t)
	s := newSession("d")
	s.version, s.expiry, s.persistent = packet.V5, 600, true
	s.subs["t/#"] = &subscription{Subscription: packet.Subscription{Filter: "t/#", QoS: 1}}
	st.data[sessionKey("d")] = encodeSession(s)
	for i, m := range []Message{
		{Topic: "t/bad", QoS: 1, PayloadFormat: 2, Payload: []byte("bad")},
		{Topic: "t/good", QoS: 1, Payload: []byte("good")},
	} {
		st.data[queuedKey("d", uint64(i+1))] = encodeQueued(&outMsg{qos: 1, m: &stored{Message: m}})
	}
	tb := startBroker(t, Options{}, st, nil)
	var props packet.Properties
	props.ReceiveMaximum, props.HasReceiveMaximum = 1, true
	c := dial(t, tb.addr, testclient.Options{ClientID: "d", SessionExpiry: 600, Properties: props})
	if !c.Connack.SessionPresent {
		t.Fatal("stored session not present")
	}
	p, err := c.ReadPacket(wait)
	if err != nil {
		t.Fatal(err)
	}
	pub, ok := p.(*packet.Publish)
	if !ok || pub.Topic != "t/good" {
		t.Fatalf("got %#v, want the good message", p)
	}
	send(t, c, &packet.Puback{PacketID: pub.PacketID})
	testenv.WaitFor(t, wait, "nothing in flight or stored for the session", func() bool {
		return tb.Stats().Queued == 0 && len(st.keys(keyQueuedPrefix)) == 0
	})
	if n := tb.Stats().DroppedInvalid; n != 1 {
		t.Fatalf("DroppedInvalid %d, want 1", n)
	}
	noPublish(t, c)
}
