package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"holdfast/internal/packet"
	"holdfast/internal/testclient"
	"holdfast/internal/testenv"
)

// TestInvalidUpstreamTopic: with a forward rule that puts the client id
// into the upstream topic, a device whose id is a+b would make the topic
// dev/a+b/x, which mosquitto refuses by disconnecting the uplink. holdfast
// acknowledges that device, delivers its messages locally and counts them
// instead of queueing them; the uplink stays on its one connection, and
// the valid messages published after them arrive.
func TestInvalidUpstreamTopic(t *testing.T) {
	up := testenv.StartMosquitto(t, testenv.MosquittoOptions{})
	sub := subscriber(t, up.Addr(), "invalid-sub", packet.Subscription{Filter: "dev/#", QoS: 1})
	g := newGateway(t, up.Addr(), "forward:\n  - topic: \"dev/{client_id}/{topic}\"\n")
	g.start()
	testenv.WaitFor(t, 20*time.Second, "uplink connected", func() bool {
		st, err := g.status()
		return err == nil && st.Upstream.State == "connected"
	})

	local, err := testclient.Dial(g.listen, testclient.Options{ClientID: "display", CleanStart: true})
	if err != nil {
		t.Fatal(err)
	}
	defer local.Close()
	if _, err := local.Subscribe(packet.Subscription{Filter: "x/#", QoS: 1}); err != nil {
		t.Fatal(err)
	}
	const bad = 3
	for i := 0; i < bad; i++ {
		publishQoS1(t, g.listen, "a+b", "x/t", fmt.Sprint("bad", i))
		if p, err := local.Receive(10 * time.Second); err != nil || string(p.Payload) != fmt.Sprint("bad", i) {
			t.Fatalf("local subscriber, message %d of a+b: %v, %v", i, p, err)
		}
	}
	for i := 0; i < 3; i++ {
		publishQoS1(t, g.listen, "ok", "x/t", fmt.Sprint("good", i))
	}
	for i := 0; i < 3; i++ {
		expectUpstream(t, sub, "dev/ok/x/t", fmt.Sprint("good", i))
	}
	g.waitDrained(20 * time.Second)
	st, err := g.status()
	if err != nil {
		t.Fatal(err)
	}
	if st.Drops["invalid_upstream_topic"] != bad || st.Upstream.Forwarded != 3 {
		t.Errorf("invalid_upstream_topic %d, forwarded %d; want %d and 3", st.Drops["invalid_upstream_topic"], st.Upstream.Forwarded, bad)
	}
	if n := strings.Count(up.Log(), " as holdfast-e2e "); n != 1 {
		t.Errorf("the uplink connected %d times, want once; broker log:\n%s", n, up.Log())
	}
	if out := hf(t, "status", "--config", g.config); !strings.Contains(out, fmt.Sprintf("invalid_upstream_topic=%d", bad)) {
		t.Errorf("holdfast status does not show the drops:\n%s", out)
	}
}

// TestRejectNewAtTheLimit: with queue.max_messages 3 under reject_new and
// the upstream down, an MQTT 5 device gets PUBACK 0x97 (quota exceeded) for
// the fourth message, which is not stored; 3.1.1 devices are disconnected
// without an acknowledgement for theirs. Once the upstream drains the
// queue, their resends (same packet id, DUP) are stored and arrive upstream:
// the QoS 2 one exactly once, the QoS 1 one at least once.
func TestRejectNewAtTheLimit(t *testing.T) {
	up := offlineUpstream(t)
	g := newGateway(t, up.Addr(), "")
	setConfig(t, g, "queue:\n", "queue:\n  max_messages: 3\n  policy: reject_new\n")
	g.start()

	v5, err := testclient.Dial(g.listen, testclient.Options{ClientID: "v5dev", CleanStart: true})
	if err != nil {
		t.Fatal(err)
	}
	defer v5.Close()
	for i := 0; i < 3; i++ {
		if rc, err := v5.Publish(&packet.Publish{Topic: "e2e/v5dev/q1", QoS: 1, Payload: []byte(fmt.Sprint(i))}); err != nil || rc.IsError() {
			t.Fatalf("publish %d under the limit: %v %v", i, rc, err)
		}
	}
	rc, err := v5.Publish(&packet.Publish{Topic: "e2e/v5dev/q1", QoS: 1, Payload: []byte("3")})
	if err != nil || rc != packet.QuotaExceeded {
		t.Fatalf("publish over the limit: reason %v, %v; want 0x97 quota exceeded", rc, err)
	}
	st, err := g.status()
	if err != nil {
		t.Fatal(err)
	}
	if st.Backlog.Messages != 3 || st.Drops["refused_full"] != 1 {
		t.Errorf("backlog %d, refused_full %d; want 3 and 1", st.Backlog.Messages, st.Drops["refused_full"])
	}

	// 3.1.1 devices with persistent sessions: the connection is closed
	// without the ack, so each keeps its message to send again.
	held := map[byte]*packet.Publish{}
	for _, qos := range []byte{1, 2} {
		id := fmt.Sprintf("old%d", qos)
		c, err := testclient.Dial(g.listen, testclient.Options{ClientID: id, Version: packet.V311})
		if err != nil {
			t.Fatal(err)
		}
		p := &packet.Publish{Topic: fmt.Sprintf("e2e/%s/q%d", id, qos), QoS: qos, Payload: []byte("100")}
		rc, err := c.Publish(p)
		if err == nil || !(errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrDeadlineExceeded) || strings.Contains(err.Error(), "reset")) {
			t.Fatalf("3.1.1 QoS %d over the limit: reason %v, %v; want the connection closed without an ack", qos, rc, err)
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("3.1.1 QoS %d over the limit: no answer and no close within the timeout", qos)
		}
		c.Close()
		held[qos] = p
	}
	if st, _ := g.status(); st.Backlog.Messages != 3 || st.Drops["refused_full"] != 3 {
		t.Errorf("after the 3.1.1 refusals: backlog %d, refused_full %d; want 3 and 3", st.Backlog.Messages, st.Drops["refused_full"])
	}

	up.Start()
	g.waitDrained(30 * time.Second)
	for qos, p := range held {
		c, err := testclient.Dial(g.listen, testclient.Options{ClientID: fmt.Sprintf("old%d", qos), Version: packet.V311})
		if err != nil {
			t.Fatal(err)
		}
		p.Dup = true // the same packet id, sent again
		if rc, err := c.Publish(p); err != nil || rc.IsError() {
			t.Fatalf("3.1.1 QoS %d resend after the drain: %v %v", qos, rc, err)
		}
		c.Disconnect()
	}
	g.waitDrained(30 * time.Second)
	got := collect(t, up.Addr())
	checkDelivery(t, "e2e/v5dev/q1", []int{0, 1, 2}, got["e2e/v5dev/q1"], false)
	for _, n := range got["e2e/v5dev/q1"] {
		if n == 3 {
			t.Errorf("the message refused with 0x97 arrived upstream")
		}
	}
	checkDelivery(t, "e2e/old1/q1", []int{100}, got["e2e/old1/q1"], false)
	checkDelivery(t, "e2e/old2/q2", []int{100}, got["e2e/old2/q2"], true)
}
