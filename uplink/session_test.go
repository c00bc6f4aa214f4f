package uplink

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"holdfast/internal/faultproxy"
	"holdfast/internal/packet"
	"holdfast/internal/testenv"
)

// TestQoS2SessionLostAfterPubrec: PUBREC came and PUBREL went out, then
// the link drops and the server has lost the session (a non-persistent
// restart, or session expiry). The message is published again as a new
// QoS 2 message, its rec: mark removed first, and acked only after its
// new PUBCOMP.
func TestQoS2SessionLostAfterPubrec(t *testing.T) {
	f := startFake(t)
	src := newMemSource()
	seq := src.add(Message{Topic: "sl/a", Payload: []byte("x"), QoS: 2})
	run(t, newClient(t, Options{URL: f.URL(), ClientID: "sl", KeepAlive: -1}, src, nil))
	fc := f.accept()
	fc.connack(false, packet.Properties{})
	p, ok := fc.read().(*packet.Publish)
	if !ok || string(p.Payload) != "x" {
		t.Fatalf("got %+v, want PUBLISH x", p)
	}
	fc.send(&packet.Pubrec{PacketID: p.PacketID})
	if rel, ok := fc.read().(*packet.Pubrel); !ok || rel.PacketID != p.PacketID {
		t.Fatalf("got %+v, want PUBREL", rel)
	}
	fc.nc.Close() // PUBREL lost with the link; the server restarts without the session

	fc = f.accept()
	fc.connack(false, packet.Properties{})
	p, ok = fc.read().(*packet.Publish)
	if !ok || string(p.Payload) != "x" || p.Dup || p.QoS != 2 {
		t.Fatalf("got %+v, want x published again, QoS 2 without DUP", p)
	}
	checkMarkNames(t, src, seq, p.PacketID)
	if q, a, _, _ := src.counts(); q != 1 || a != 0 {
		t.Fatalf("queued %d, acked %d before the new PUBCOMP", q, a)
	}
	fc.send(&packet.Pubrec{PacketID: p.PacketID})
	if rel, ok := fc.read().(*packet.Pubrel); !ok || rel.PacketID != p.PacketID {
		t.Fatalf("got %+v, want PUBREL", rel)
	}
	fc.send(&packet.Pubcomp{PacketID: p.PacketID})
	testenv.WaitFor(t, 30*time.Second, "acked", func() bool { q, a, _, _ := src.counts(); return q == 0 && a == 1 })
}

// gatedSource is a memSource whose first rec: Mark waits until open is
// closed, whatever its ctx says (a slow disk): PUBREC has come and PUBREL
// is not sent yet.
type gatedSource struct {
	*memSource
	once    sync.Once
	entered chan struct{}
	open    chan struct{}
}

func (s *gatedSource) Mark(ctx context.Context, seq uint64, data []byte) error {
	if strings.HasPrefix(string(data), markRec) {
		first := false
		s.once.Do(func() { first = true })
		if first {
			close(s.entered)
			<-s.open
		}
	}
	return s.memSource.Mark(ctx, seq, data)
}

// TestUpstreamRestartBetweenPubrecAndPubrel: mosquitto without persistence
// has answered PUBREC for ten QoS 2 messages and is restarted before any
// PUBREL reaches it. mosquitto delivers a QoS 2 message only at PUBREL, so
// it never delivered them, and the restarted broker has no session: the
// uplink publishes them again, and each arrives exactly once.
func TestUpstreamRestartBetweenPubrecAndPubrel(t *testing.T) {
	m := testenv.StartMosquitto(t, testenv.MosquittoOptions{})
	col := collectDurable(t, m.Addr(), "pr/#")
	proxy, err := faultproxy.Start(m.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	src := &gatedSource{memSource: newMemSource(), entered: make(chan struct{}), open: make(chan struct{})}
	const n = 10
	for i := range n {
		src.add(Message{Topic: "pr/q2", Payload: []byte(strconv.Itoa(i)), QoS: 2})
	}
	c := newClient(t, Options{URL: "mqtt://" + proxy.Addr(), ClientID: "pr", ConnectTimeout: 2 * time.Second}, src, nil)
	stop := run(t, c)
	select {
	case <-src.entered:
	case <-time.After(30 * time.Second):
		t.Fatal("no PUBREC came")
	}
	// The first message's PUBREL waits for its mark, and the others'
	// PUBRELs wait behind it (they go out in PUBREC order).
	proxy.Refuse(true)
	m.Restart()
	col.subscribed(t)
	testenv.WaitFor(t, 30*time.Second, "link lost", func() bool { return proxy.Open() == 0 })
	close(src.open)
	proxy.Refuse(false)
	testenv.WaitFor(t, 60*time.Second, "all acked", func() bool { q, a, _, _ := src.counts(); return q == 0 && a == n })
	testenv.WaitFor(t, 60*time.Second, "all received", func() bool { return col.unique("pr/q2") == n })
	stop()
	col.drain(t, m.Addr(), "pr/q2")
	col.close()
	checkDelivery(t, col.list("pr/q2"), n, true)
	if st := c.Status(); st.SessionPresent || st.Connects < 2 {
		t.Errorf("status %+v: want a second connect without a session", st)
	}
	t.Logf("received %v", col.list("pr/q2"))
}
