package uplink

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"holdfast/internal/packet"
	"holdfast/internal/testenv"
)

// TestInvalidTopicDeadLettered: a message whose topic is not a valid topic
// name (a forward rule's {client_id} from a device id "a+b", say) goes to
// the dead-letter store before it is sent; mosquitto would close the
// connection, and a resend would follow every reconnect. The messages
// around it arrive on one connection.
func TestInvalidTopicDeadLettered(t *testing.T) {
	m := testenv.StartMosquitto(t, testenv.MosquittoOptions{})
	for _, v := range []packet.Version{packet.V5, packet.V311} {
		t.Run(v.String(), func(t *testing.T) {
			sub := subscriber(t, m.Addr(), "bad/#", v, 1)
			src := newMemSource()
			src.add(Message{Topic: "bad/ok", Payload: []byte("0"), QoS: 1})
			bad := map[uint64]string{}
			for _, tp := range []string{"dev/a+b/x", "dev/#", "", "bad/\xff\xfe", "bad/\x00", "bad/" + strings.Repeat("x", 65536)} {
				bad[src.add(Message{Topic: tp, Payload: []byte("poison"), QoS: 1})] = tp
			}
			src.add(Message{Topic: "bad/ok", Payload: []byte("1"), QoS: 1})
			c := newClient(t, Options{URL: m.URL(), Protocol: v, ClientID: "bad" + v.String()}, src, nil)
			run(t, c)
			checkDelivery(t, payloads(t, receive(t, sub, 2)), 2, true)
			testenv.WaitFor(t, 30*time.Second, "settled", func() bool { q, a, d, _ := src.counts(); return q == 0 && a == 2 && d == len(bad) })
			for seq, tp := range bad {
				if r, ok := src.deadReason(seq); !ok || !strings.Contains(r, "topic") {
					t.Errorf("topic %.20q: dead letter %v, reason %q", tp, ok, r)
				}
			}
			if st := c.Status(); st.Connects != 1 || st.DeadLettered != uint64(len(bad)) {
				t.Errorf("connects %d, dead-lettered %d; want 1 and %d", st.Connects, st.DeadLettered, len(bad))
			}
		})
	}
}

// fakeAction is what scriptedServer does with a PUBLISH.
type fakeAction int

const (
	fakeAck        fakeAction = iota // PUBACK (QoS 1)
	fakeDisconnect                   // 5.0: DISCONNECT 0x82 protocol error, then close; 3.1.1: close
	fakeCut                          // close (FIN) without a word
	fakeReset                        // close with RST
)

// scriptedServer serves connections of f one after the other until stop
// returns true after a PUBACK. For each PUBLISH, decide (given the
// connection's number from 1, and the payloads received on it so far,
// this one included) says what to do; PINGREQ is answered. It returns what
// each connection received: the payloads, and "(ping)" for a PINGREQ.
func scriptedServer(t *testing.T, f *fakeServer, v packet.Version, decide func(conn int, got []string) fakeAction,
	stop func() bool) [][]string {
	t.Helper()
	var conns [][]string
	for n := 1; ; n++ {
		if n > 20 {
			t.Fatalf("still reconnecting after %d connections: %v", n-1, conns[len(conns)-5:])
		}
		fc := f.accept()
		fc.r.SetVersion(v)
		fc.connack(false, packet.Properties{})
		var got, log []string
	serve:
		for {
			p, err := fc.tryRead(30 * time.Second)
			if err != nil {
				t.Fatalf("connection %d: %v (received %v)", n, err, append(conns, log))
			}
			if _, ok := p.(*packet.Pingreq); ok {
				log = append(log, "(ping)")
				fc.send(&packet.Pingresp{})
				continue
			}
			pub, ok := p.(*packet.Publish)
			if !ok {
				continue
			}
			got = append(got, string(pub.Payload))
			log = append(log, string(pub.Payload))
			switch decide(n, got) {
			case fakeAck:
				fc.send(&packet.Puback{PacketID: pub.PacketID})
				if stop() {
					conns = append(conns, log)
					return conns
				}
			case fakeDisconnect:
				if v == packet.V5 {
					fc.send(&packet.Disconnect{ReasonCode: packet.ProtocolError})
				}
				fc.nc.Close()
				break serve
			case fakeCut:
				fc.nc.Close()
				break serve
			case fakeReset:
				fc.nc.(*net.TCPConn).SetLinger(0)
				fc.nc.Close()
				break serve
			}
		}
		conns = append(conns, log)
	}
}

// TestPoisonMessageDeadLettered: the server closes the connection on one
// message (5.0: DISCONNECT 0x82; 3.1.1: a close). The next connection
// sends the oldest unacknowledged message alone, and the close that
// follows makes it a suspect; each connection after that holds it back
// while the link idles (a PINGREQ answered), then sends it alone. When
// that is followed by the server's close MaxRefusals times in a row, it
// goes to the dead-letter store, and the queue moves on.
func TestPoisonMessageDeadLettered(t *testing.T) {
	for _, v := range []packet.Version{packet.V5, packet.V311} {
		t.Run(v.String(), func(t *testing.T) {
			f := startFake(t)
			src := newMemSource()
			var poison uint64
			for _, s := range []string{"a", "b", "p", "c", "d"} {
				seq := src.add(Message{Topic: "pz/x", Payload: []byte(s), QoS: 1})
				if s == "p" {
					poison = seq
				}
			}
			c := newClient(t, Options{URL: f.URL(), Protocol: v, ClientID: "pz", KeepAlive: -1, Inflight: 4,
				Backoff: Backoff{Initial: 10 * time.Millisecond, Max: 20 * time.Millisecond}}, src, nil)
			run(t, c)
			acked := map[string]bool{}
			conns := scriptedServer(t, f, v, func(_ int, got []string) fakeAction {
				if s := got[len(got)-1]; s != "p" {
					acked[s] = true
					return fakeAck
				}
				return fakeDisconnect
			}, func() bool { return acked["d"] })
			if len(conns) != 3+MaxRefusals {
				t.Fatalf("%d connections, want %d: %v", len(conns), 3+MaxRefusals, conns)
			}
			if got := strings.Join(conns[1], " "); got != "p" {
				t.Errorf("connection 2 received %q, want p alone", got)
			}
			for i, got := range conns[2 : len(conns)-1] {
				if strings.Join(got, " ") != "(ping) p" {
					t.Errorf("connection %d received %v, want a PINGREQ, then p alone", i+3, got)
				}
			}
			if got := strings.Join(conns[len(conns)-1], " "); got != "c d" {
				t.Errorf("last connection received %q, want c d", got)
			}
			testenv.WaitFor(t, 30*time.Second, "settled", func() bool { q, a, d, _ := src.counts(); return q == 0 && a == 4 && d == 1 })
			r, ok := src.deadReason(poison)
			if !ok || !strings.Contains(r, "closed the connection") {
				t.Errorf("poison: dead letter %v, reason %q", ok, r)
			}
			if v == packet.V5 && !strings.Contains(r, "0x82") {
				t.Errorf("reason %q does not name the DISCONNECT's reason code", r)
			}
			if st := c.Status(); st.DeadLettered != 1 || st.Forwarded != 4 {
				t.Errorf("status: dead-lettered %d, forwarded %d", st.DeadLettered, st.Forwarded)
			}
		})
	}
}

// TestFlappingNeverDeadLetters: a network that drops the link again and
// again, with a close or a reset, while many messages are in flight, or
// after the one message sent alone has gone unanswered for longer than a
// server takes to refuse it, never sends a good message to the dead-letter
// store.
func TestFlappingNeverDeadLetters(t *testing.T) {
	f := startFake(t)
	src := newMemSource()
	const n = 60
	src.fill(n, 1, "fl", 1)
	c := newClient(t, Options{URL: f.URL(), ClientID: "fl", KeepAlive: -1, Inflight: 8,
		Backoff: Backoff{Initial: 10 * time.Millisecond, Max: 20 * time.Millisecond}}, src, nil)
	c.poisonWin = 250 * time.Millisecond
	run(t, c)
	acked := map[string]bool{}
	conns := scriptedServer(t, f, packet.V5, func(conn int, got []string) fakeAction {
		switch {
		case conn <= 8 && len(got) == 6:
			// Many in flight (the message sent alone was acked).
			return []fakeAction{fakeCut, fakeReset}[conn%2]
		case conn >= 9 && conn <= 14:
			// The message sent alone is unanswered (a blackhole), and
			// the link is reset a second later, well after the poison
			// window of 250ms: the network's timing, not
			// synchronisation.
			time.Sleep(time.Second)
			return fakeReset
		}
		acked[got[len(got)-1]] = true
		return fakeAck
	}, func() bool { return len(acked) == n })
	if len(conns) < 15 {
		t.Fatalf("%d connections, want at least 15", len(conns))
	}
	testenv.WaitFor(t, 30*time.Second, "all acked", func() bool { q, a, _, _ := src.counts(); return q == 0 && a == n })
	if _, _, d, _ := src.counts(); d != 0 {
		t.Fatalf("%d messages dead-lettered", d)
	}
}

// TestPoisonMessageMosquitto: a 3.1.1 CONNACK cannot announce a maximum
// packet size, and mosquitto with max_packet_size closes the connection
// of a client that sends a larger PUBLISH. That message goes to the
// dead-letter store after the close that makes it a suspect and
// MaxRefusals closes after an idle link; the messages around it arrive.
func TestPoisonMessageMosquitto(t *testing.T) {
	m := testenv.StartMosquitto(t, testenv.MosquittoOptions{Extra: "max_packet_size 300\n"})
	sub := subscriber(t, m.Addr(), "pm/#", packet.V311, 1)
	src := newMemSource()
	src.add(Message{Topic: "pm/a", Payload: []byte("0"), QoS: 1})
	big := src.add(Message{Topic: "pm/a", Payload: []byte(strings.Repeat("9", 400)), QoS: 1})
	src.add(Message{Topic: "pm/a", Payload: []byte("1"), QoS: 1})
	c := newClient(t, Options{URL: m.URL(), Protocol: packet.V311, ClientID: "pm"}, src, nil)
	run(t, c)
	got := payloads(t, receive(t, sub, 2))
	checkDelivery(t, got, 2, false)
	testenv.WaitFor(t, 30*time.Second, "settled", func() bool { q, a, d, _ := src.counts(); return q == 0 && a == 2 && d == 1 })
	if r, ok := src.deadReason(big); !ok || !strings.Contains(r, "closed the connection") {
		t.Errorf("big message: dead letter %v, reason %q", ok, r)
	}
	if st := c.Status(); st.Connects != 3+MaxRefusals || st.DeadLettered != 1 {
		t.Errorf("connects %d, dead-lettered %d; want %d and 1", st.Connects, st.DeadLettered, 3+MaxRefusals)
	}
}

// TestSlowDyingLinkNeverDeadLetters: a slow link whose connections die
// soon after they are made, before any answer to the message sent alone:
// on every other connection within the poison window of CONNACK, on the
// others after the message has gone unanswered for a while, though within
// the window. Each close follows the lone PUBLISH within the window (the
// old detector counted five of them and dead-lettered a good message), but
// half of the connections die while the link idles, which is the network,
// not the message. Then the link heals and everything is acknowledged.
func TestSlowDyingLinkNeverDeadLetters(t *testing.T) {
	f := startFake(t)
	src := newMemSource()
	const n = 20
	src.fill(n, 1, "sd", 1)
	const window = 500 * time.Millisecond
	c := newClient(t, Options{URL: f.URL(), ClientID: "sd", KeepAlive: -1, Inflight: 4,
		Backoff: Backoff{Initial: 10 * time.Millisecond, Max: 20 * time.Millisecond}}, src, nil)
	c.poisonWin = window
	run(t, c)
	const dying = 2 * MaxRefusals
	var sent [][]string // payloads each connection received
	for conn := 1; ; conn++ {
		fc := f.accept()
		fc.connack(false, packet.Properties{})
		// Connection 1 acks its first message and is reset with the rest
		// in flight. Connections 2..dying+1 answer PINGREQ, never a
		// PUBLISH, and are reset 200ms (even) or 900ms (odd) after
		// CONNACK: the timing of the fault, not synchronisation. Later
		// ones answer everything.
		life := 900 * time.Millisecond
		if conn%2 == 0 {
			life = 200 * time.Millisecond
		}
		healed := conn > dying+1
		end := time.Now().Add(life)
		var got []string
		for {
			timeout := 30 * time.Second
			if !healed && conn > 1 {
				timeout = time.Until(end)
			}
			p, err := fc.tryRead(timeout)
			if err != nil {
				if !healed && conn > 1 && isTimeout(err) {
					break
				}
				t.Fatalf("connection %d: %v (received %v)", conn, err, append(sent, got))
			}
			switch p := p.(type) {
			case *packet.Pingreq:
				fc.send(&packet.Pingresp{})
			case *packet.Publish:
				got = append(got, string(p.Payload))
				if healed || (conn == 1 && len(got) == 1) {
					fc.send(&packet.Puback{PacketID: p.PacketID})
				}
			}
			if conn == 1 && len(got) == 4 {
				break
			}
			if healed && len(got) > 0 && got[len(got)-1] == strconv.Itoa(n-1) {
				break
			}
		}
		sent = append(sent, got)
		if healed {
			break
		}
		fc.nc.(*net.TCPConn).SetLinger(0)
		fc.nc.Close()
	}
	testenv.WaitFor(t, 30*time.Second, "settled", func() bool { q, _, _, _ := src.counts(); return q == 0 })
	if _, a, d, _ := src.counts(); d != 0 || a != n {
		t.Fatalf("%d acked, %d dead-lettered (connections received %v)", a, d, sent)
	}
	for i, got := range sent[1 : len(sent)-1] {
		if len(got) > 1 || (len(got) == 1 && got[0] != "1") {
			t.Errorf("connection %d received %v, want at most message 1, alone", i+2, got)
		}
	}
	t.Logf("connections received %v", sent)
}
