package main

import (
	"testing"
	"time"

	"holdfast/internal/packet"
	"holdfast/internal/testclient"
	"holdfast/internal/testenv"
)

// TestDownlinkBirthAndWill: a command published upstream reaches a local
// subscriber under the topic the downlink rule maps it to; the upstream sees
// the gateway's birth message when it connects and its will when holdfast
// dies without a DISCONNECT.
func TestDownlinkBirthAndWill(t *testing.T) {
	up := testenv.StartMosquitto(t, testenv.MosquittoOptions{})
	watcher := subscriber(t, up.Addr(), "watcher", packet.Subscription{Filter: "gateways/#", QoS: 1})

	g := newGateway(t, up.Addr(), `gateway_id: gw1
downlink:
  - filter: "cmd/{gateway_id}/#"
    qos: 2
    strip_prefix: "cmd/{gateway_id}/"
    local_topic: "commands/{topic}"
`)
	// The upstream block of newGateway is extended through a second file
	// section: birth and will live under upstream.
	appendUpstream(t, g, `  birth:
    topic: "gateways/{gateway_id}/status"
    payload: online
    retain: true
  will:
    topic: "gateways/{gateway_id}/status"
    payload: offline
    retain: true
`)
	g.start()
	expect := func(c *testclient.Client, topic, payload string) {
		t.Helper()
		p, err := c.Receive(20 * time.Second)
		if err != nil {
			t.Fatalf("waiting for %s %s: %v", topic, payload, err)
		}
		if p.Topic != topic || string(p.Payload) != payload {
			t.Fatalf("got %s %q, want %s %q", p.Topic, p.Payload, topic, payload)
		}
	}
	expect(watcher, "gateways/gw1/status", "online")

	local, err := testclient.Dial(g.listen, testclient.Options{ClientID: "valve", CleanStart: true})
	if err != nil {
		t.Fatal(err)
	}
	defer local.Close()
	if _, err := local.Subscribe(packet.Subscription{Filter: "commands/#", QoS: 2}); err != nil {
		t.Fatal(err)
	}
	cloud, err := testclient.Dial(up.Addr(), testclient.Options{ClientID: "cloud", CleanStart: true})
	if err != nil {
		t.Fatal(err)
	}
	defer cloud.Disconnect()
	// The uplink subscribes after it connects: publish until the first
	// command comes through, then check that each later one does, in order.
	testenv.WaitFor(t, 20*time.Second, "first command delivered locally", func() bool {
		if _, err := cloud.Publish(&packet.Publish{Topic: "cmd/gw1/valve/open", QoS: 1, Payload: []byte("probe")}); err != nil {
			t.Fatal(err)
		}
		p, err := local.Receive(500 * time.Millisecond)
		return err == nil && p.Topic == "commands/valve/open"
	})
	for _, c := range []struct {
		qos     byte
		payload string
	}{{0, "a"}, {1, "b"}, {2, "c"}} {
		if _, err := cloud.Publish(&packet.Publish{Topic: "cmd/gw1/valve/set", QoS: c.qos, Payload: []byte(c.payload)}); err != nil {
			t.Fatal(err)
		}
		for {
			p, err := local.Receive(20 * time.Second)
			if err != nil {
				t.Fatalf("command %q: %v", c.payload, err)
			}
			if string(p.Payload) == "probe" {
				continue // a late copy of the probe
			}
			if p.Topic != "commands/valve/set" || string(p.Payload) != c.payload {
				t.Fatalf("local got %s %q, want commands/valve/set %q", p.Topic, p.Payload, c.payload)
			}
			break
		}
	}

	g.kill()
	expect(watcher, "gateways/gw1/status", "offline")
}

// appendUpstream adds keys (indented by two spaces) to the upstream section
// of the gateway's configuration file.
func appendUpstream(t testing.TB, g *gateway, keys string) {
	t.Helper()
	setConfig(t, g, "\nupstream:\n", "\nupstream:\n"+keys)
}
