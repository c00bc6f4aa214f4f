package main

import (
	"fmt"
	"testing"
	"time"

	"holdfast/internal/packet"
	"holdfast/internal/testclient"
	"holdfast/internal/testenv"
)

// TestLocalSessionSurvivesSIGKILL: a local subscriber with a persistent
// session is offline while QoS 1 messages and a retained message are
// published to it; holdfast is killed with SIGKILL and started again; the
// subscriber reconnects, finds its session and receives every message, and
// a new subscriber gets the retained message.
func TestLocalSessionSurvivesSIGKILL(t *testing.T) {
	g := newGateway(t, fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)), "")
	g.start()
	for _, v := range []packet.Version{packet.V311, packet.V5} {
		id := "display-" + v.String()
		sub, err := testclient.Dial(g.listen, testclient.Options{ClientID: id, Version: v, SessionExpiry: 3600})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sub.Subscribe(packet.Subscription{Filter: "line/+/count", QoS: 1}); err != nil {
			t.Fatal(err)
		}
		sub.Disconnect()
	}
	// Publish only once the broker has seen both sessions go offline, so
	// that every message takes the path of an offline session.
	testenv.WaitFor(t, 10*time.Second, "both subscribers offline", func() bool {
		st, err := g.status()
		return err == nil && st.Local.Connections == 0 && st.Local.Sessions == 2
	})

	pub, err := testclient.Dial(g.listen, testclient.Options{ClientID: "counter", CleanStart: true})
	if err != nil {
		t.Fatal(err)
	}
	const n = 20
	for i := 0; i < n; i++ {
		if _, err := pub.Publish(&packet.Publish{Topic: "line/3/count", QoS: 1, Payload: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := pub.Publish(&packet.Publish{Topic: "line/3/state", QoS: 1, Retain: true, Payload: []byte("running")}); err != nil {
		t.Fatal(err)
	}
	pub.Close()

	g.kill()
	g.start()

	for _, v := range []packet.Version{packet.V311, packet.V5} {
		id := "display-" + v.String()
		sub, err := testclient.Dial(g.listen, testclient.Options{ClientID: id, Version: v, SessionExpiry: 3600})
		if err != nil {
			t.Fatal(err)
		}
		if !sub.Connack.SessionPresent {
			t.Fatalf("%s: session not present after the restart", id)
		}
		for i := 0; i < n; i++ {
			p, err := sub.Receive(20 * time.Second)
			if err != nil {
				t.Fatalf("%s: message %d: %v", id, i, err)
			}
			if p.Topic != "line/3/count" || string(p.Payload) != fmt.Sprint(i) || p.QoS != 1 {
				t.Fatalf("%s: got %s %q QoS %d, want line/3/count %q QoS 1", id, p.Topic, p.Payload, p.QoS, fmt.Sprint(i))
			}
		}
		sub.Disconnect()
	}
	fresh, err := testclient.Dial(g.listen, testclient.Options{ClientID: "fresh", CleanStart: true})
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Disconnect()
	if _, err := fresh.Subscribe(packet.Subscription{Filter: "line/#", QoS: 1}); err != nil {
		t.Fatal(err)
	}
	p, err := fresh.Receive(20 * time.Second)
	if err != nil || p.Topic != "line/3/state" || string(p.Payload) != "running" || !p.Retain {
		t.Fatalf("retained after restart: %+v, %v", p, err)
	}
}
