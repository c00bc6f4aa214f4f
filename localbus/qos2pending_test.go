package localbus

import (
	"errors"
	"fmt"
	"testing"

	"holdfast/internal/packet"
	"holdfast/internal/testclient"
	"holdfast/internal/testenv"
)

// noPubrec asserts that no PUBREC arrives before the answer to a PINGREQ,
// which the broker sends at once.
func noPubrec(t *testing.T, c *testclient.Client) {
	t.Helper()
	untilPingresp(t, c, func(p packet.Packet) {
		if r, ok := p.(*packet.Pubrec); ok {
			t.Fatalf("PUBREC id %d before the original QoS 2 PUBLISH is durable", r.PacketID)
		}
	})
}

// readPubrec reads the next packet and checks it is PUBREC id with rc.
func readPubrec(t *testing.T, c *testclient.Client, id uint16, rc packet.ReasonCode) {
	t.Helper()
	p, err := c.ReadPacket(wait)
	if err != nil {
		t.Fatalf("waiting for PUBREC %d: %v", id, err)
	}
	if r, ok := p.(*packet.Pubrec); !ok || r.PacketID != id || r.ReasonCode != rc {
		t.Fatalf("got %#v, want PUBREC %d rc %#x", p, id, byte(rc))
	}
}

// A QoS 2 PUBLISH sent again (DUP) while the first copy is not yet durable
// is answered only once the first copy is: a device whose connection dropped
// before PUBREC, and which resends on a new connection of its persistent
// session, is never told a message arrived that a crash could still lose or
// that the store then refuses (MQTT 5.0 section 4.3.3: PUBREC only after
// taking ownership of the message).
func TestQoS2DuplicateWaitsForOriginal(t *testing.T) {
	for _, v := range versions() {
		for _, refuse := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/refuse=%v", v, refuse), func(t *testing.T) {
				st := newMemStore(t)
				tb := startBroker(t, Options{}, st, nil)
				t.Cleanup(func() { st.setHold(false); st.release() }) // before the broker closes
				o := testclient.Options{ClientID: "dev", Version: v, SessionExpiry: 300}
				c1 := dial(t, tb.addr, o)
				if refuse {
					st.setRefuse(fmt.Errorf("queue full: %w", ErrRefused))
				}
				st.setHold(true)
				if err := c1.Send(&packet.Publish{Topic: "q2", QoS: 2, PacketID: 7, Payload: []byte("x")}); err != nil {
					t.Fatal(err)
				}
				testenv.WaitFor(t, wait, "the first copy handed to the store", func() bool { return st.heldCount() == 1 })
				c1.Close()

				c2 := dial(t, tb.addr, o)
				if err := c2.Send(&packet.Publish{Topic: "q2", QoS: 2, PacketID: 7, Dup: true, Payload: []byte("x")}); err != nil {
					t.Fatal(err)
				}
				noPubrec(t, c2)
				st.setHold(false)
				st.release()
				switch {
				case !refuse:
					readPubrec(t, c2, 7, 0)
					if err := c2.Send(&packet.Pubrel{PacketID: 7}); err != nil {
						t.Fatal(err)
					}
					p, err := c2.ReadPacket(wait)
					if err != nil {
						t.Fatal(err)
					}
					if pc, ok := p.(*packet.Pubcomp); !ok || pc.PacketID != 7 || pc.ReasonCode != 0 {
						t.Fatalf("got %#v, want PUBCOMP 7", p)
					}
					if n := len(st.messages()); n != 1 {
						t.Fatalf("%d stored, want 1", n)
					}
				case v == packet.V5:
					readPubrec(t, c2, 7, packet.QuotaExceeded)
				default:
					// 3.1.1 cannot refuse: the connection closes unanswered.
					p, err := c2.ReadPacket(wait)
					if err == nil {
						t.Fatalf("got %#v, want the connection closed", p)
					}
				}
			})
		}
	}
}

// The same on one connection: the resend is answered after the original,
// with its outcome.
func TestQoS2DuplicateSameConnectionWaits(t *testing.T) {
	for _, v := range versions() {
		t.Run(v.String(), func(t *testing.T) {
			st := newMemStore(t)
			tb := startBroker(t, Options{}, st, nil)
			c := dial(t, tb.addr, testclient.Options{ClientID: "dev", Version: v, CleanStart: true})
			st.setHold(true)
			for _, dup := range []bool{false, true} {
				if err := c.Send(&packet.Publish{Topic: "q2", QoS: 2, PacketID: 7, Dup: dup}); err != nil {
					t.Fatal(err)
				}
			}
			noPubrec(t, c)
			st.setHold(false)
			st.release()
			readPubrec(t, c, 7, 0)
			readPubrec(t, c, 7, 0)
			if n := len(st.messages()); n != 1 {
				t.Fatalf("%d stored, want 1", n)
			}
		})
	}
}

// A QoS 2 PUBLISH to a persistent session goes out only once its packet id
// is stored, and PUBREL only once the PUBREC is: after a crash the broker
// resends with the same id (DUP) or releases, and never delivers the
// message to the device a second time as a new one.
func TestQoS2DeliveryStateStoredBeforeSend(t *testing.T) {
	for _, v := range versions() {
		t.Run(v.String(), func(t *testing.T) {
			st := newMemStore(t)
			tb := startBroker(t, Options{}, st, nil)
			t.Cleanup(func() { st.setHold(false); st.release() })
			sub := dial(t, tb.addr, testclient.Options{ClientID: "sub", Version: v, SessionExpiry: 300})
			subscribe(t, sub, packet.Subscription{Filter: "q2", QoS: 2})
			pub := dial(t, tb.addr, testclient.Options{ClientID: "pub", Version: v, CleanStart: true})
			nothingYet := func(what string) {
				untilPingresp(t, sub, func(p packet.Packet) { t.Fatalf("%T before %s is stored", p, what) })
			}

			st.setHold(true)
			if err := pub.Send(&packet.Publish{Topic: "q2", QoS: 2, PacketID: 1, Payload: []byte("m")}); err != nil {
				t.Fatal(err)
			}
			testenv.WaitFor(t, wait, "the message handed to the store", func() bool { return st.heldCount() == 1 })
			st.release()
			testenv.WaitFor(t, wait, "the packet id handed to the store", func() bool { return st.heldCount() == 1 })
			nothingYet("its packet id")
			st.release()
			p, err := sub.ReadPacket(wait)
			if err != nil {
				t.Fatal(err)
			}
			pp, ok := p.(*packet.Publish)
			if !ok || pp.QoS != 2 || string(pp.Payload) != "m" {
				t.Fatalf("got %#v, want the QoS 2 PUBLISH", p)
			}

			if err := sub.Send(&packet.Pubrec{PacketID: pp.PacketID}); err != nil {
				t.Fatal(err)
			}
			testenv.WaitFor(t, wait, "the PUBREC handed to the store", func() bool { return st.heldCount() == 1 })
			nothingYet("the PUBREC")
			st.setHold(false)
			st.release()
			p, err = sub.ReadPacket(wait)
			if err != nil {
				t.Fatal(err)
			}
			if rel, ok := p.(*packet.Pubrel); !ok || rel.PacketID != pp.PacketID {
				t.Fatalf("got %#v, want PUBREL %d", p, pp.PacketID)
			}
		})
	}
}

// The wait for the delivery state survives a takeover: a new connection of
// the session gets its resends (PUBREL here) only once the save its
// predecessor started is durable.
func TestQoS2DeliveryStateWaitSurvivesTakeover(t *testing.T) {
	for _, v := range versions() {
		t.Run(v.String(), func(t *testing.T) {
			st, tb, o, sub, pp := qos2Delivered(t, v)
			st.setHold(true)
			if err := sub.Send(&packet.Pubrec{PacketID: pp.PacketID}); err != nil {
				t.Fatal(err)
			}
			testenv.WaitFor(t, wait, "the PUBREC handed to the store", func() bool { return st.heldCount() == 1 })
			sub2 := dial(t, tb.addr, o)
			if !sub2.Connack.SessionPresent {
				t.Fatal("session not present")
			}
			untilPingresp(t, sub2, func(p packet.Packet) { t.Fatalf("%T before the PUBREC is stored", p) })
			st.setHold(false)
			st.release()
			p, err := sub2.ReadPacket(wait)
			if err != nil {
				t.Fatal(err)
			}
			if rel, ok := p.(*packet.Pubrel); !ok || rel.PacketID != pp.PacketID {
				t.Fatalf("got %#v, want PUBREL %d", p, pp.PacketID)
			}
		})
	}
}

// A QoS 2 resend on a new connection, of a message received on the one
// before, counts against the new connection's Receive Maximum until its
// PUBCOMP (it is that connection's flow now).
func TestQoS2ResendCountsOnNewConnection(t *testing.T) {
	st := newMemStore(t)
	tb := startBroker(t, Options{ReceiveMaximum: 2}, st, nil)
	t.Cleanup(func() { st.setHold(false); st.release() })
	o := testclient.Options{ClientID: "dev", Version: packet.V5, SessionExpiry: 300}
	c1 := dial(t, tb.addr, o)
	if err := c1.Send(&packet.Publish{Topic: "q2", QoS: 2, PacketID: 1, Payload: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	readPubrec(t, c1, 1, 0)
	c1.Close()

	c2 := dial(t, tb.addr, o)
	if err := c2.Send(&packet.Publish{Topic: "q2", QoS: 2, PacketID: 1, Dup: true, Payload: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	readPubrec(t, c2, 1, 0)
	st.setHold(true)
	for id := uint16(2); id <= 3; id++ {
		if err := c2.Send(&packet.Publish{Topic: "q1", QoS: 1, PacketID: id, Payload: []byte("y")}); err != nil {
			t.Fatal(err)
		}
	}
	// Ids 1 and 2 fill the window of 2: id 3 exceeds it.
	expectDisconnect(t, c2, packet.ReceiveMaximumExceeded)
}

// A failed save of delivery state closes the connection without sending
// what depended on it, and the next connection stores the state again
// before its resends go out.
func TestQoS2DeliveryStateSavedAgainAfterFailure(t *testing.T) {
	st, tb, o, sub, pp := qos2Delivered(t, packet.V5)
	st.setSaveErr(errors.New("disk gone"))
	if err := sub.Send(&packet.Pubrec{PacketID: pp.PacketID}); err != nil {
		t.Fatal(err)
	}
	expectDisconnect(t, sub, packet.UnspecifiedError)

	st.setSaveErr(nil)
	st.setHold(true)
	sub = dial(t, tb.addr, o)
	testenv.WaitFor(t, wait, "the state saved again", func() bool { return st.heldCount() >= 1 })
	untilPingresp(t, sub, func(p packet.Packet) { t.Fatalf("%T before the state is saved again", p) })
	st.setHold(false)
	st.release()
	p, err := sub.ReadPacket(wait)
	if err != nil {
		t.Fatal(err)
	}
	if rel, ok := p.(*packet.Pubrel); !ok || rel.PacketID != pp.PacketID {
		t.Fatalf("got %#v, want PUBREL %d", p, pp.PacketID)
	}
}

// qos2Delivered starts a broker with a persistent QoS 2 subscriber "sub"
// (options o) and returns it with the QoS 2 PUBLISH it has just received,
// not yet answered.
func qos2Delivered(t *testing.T, v packet.Version) (*memStore, *testBroker, testclient.Options, *testclient.Client, *packet.Publish) {
	t.Helper()
	st := newMemStore(t)
	tb := startBroker(t, Options{}, st, nil)
	t.Cleanup(func() { st.setHold(false); st.release() })
	o := testclient.Options{ClientID: "sub", Version: v, SessionExpiry: 300}
	sub := dial(t, tb.addr, o)
	subscribe(t, sub, packet.Subscription{Filter: "q2", QoS: 2})
	pub := dial(t, tb.addr, testclient.Options{ClientID: "pub", Version: v, CleanStart: true})
	if err := pub.Send(&packet.Publish{Topic: "q2", QoS: 2, PacketID: 1, Payload: []byte("m")}); err != nil {
		t.Fatal(err)
	}
	p, err := sub.ReadPacket(wait)
	if err != nil {
		t.Fatal(err)
	}
	pp, ok := p.(*packet.Publish)
	if !ok {
		t.Fatalf("got %#v, want PUBLISH", p)
	}
	return st, tb, o, sub, pp
}
