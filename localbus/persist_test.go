package localbus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"syscall"
	"testing"
	"time"

	"holdfast/internal/packet"
	"holdfast/internal/testclient"
	"holdfast/internal/testenv"
	"holdfast/queue"
)

// queueStore is the Store the agent builds, on holdfast's Badger queue.
type queueStore struct{ q *queue.Queue }

func stateOps(ops []StateOp) []queue.StateOp {
	out := make([]queue.StateOp, len(ops))
	for i, op := range ops {
		out[i] = queue.StateOp{Key: op.Key, Value: op.Value}
	}
	return out
}

func (s queueStore) Ingest(m *Message, ops []StateOp, done func(error)) {
	w := queue.Write{
		Messages: []queue.Message{{Topic: m.Topic, Payload: m.Payload, QoS: m.QoS, Source: m.ClientID, Expiry: m.Expiry}},
		State:    stateOps(ops),
	}
	s.q.CommitAsync(w, func(err error) {
		if errors.Is(err, queue.ErrFull) || errors.Is(err, queue.ErrDiskFull) {
			err = fmt.Errorf("%w: %w", ErrRefused, err)
		}
		done(err)
	})
}

func (s queueStore) Save(ops []StateOp, done func(error)) {
	s.q.CommitAsync(queue.Write{State: stateOps(ops)}, done)
}

func (s queueStore) Load(prefix string, fn func(string, []byte) error) error {
	return s.q.ScanState(prefix, fn)
}

// TestRestartKeepsState takes a copy of the store while the broker runs (the
// state a crash at that moment leaves) and starts a second broker on it: the
// persistent session, its subscriptions and undelivered QoS 1/2 messages,
// the retained message and the inbound QoS 2 state are all there.
func TestRestartKeepsState(t *testing.T) {
	for _, v := range versions() {
		t.Run(v.String(), func(t *testing.T) {
			tb := startBroker(t, Options{}, nil, nil)
			o := testclient.Options{ClientID: "dev", Version: v, SessionExpiry: 3600, CleanStart: v == packet.V5}
			dev := dial(t, tb.addr, o)
			subscribe(t, dev, packet.Subscription{Filter: "cmd/#", QoS: 2})
			// Inbound QoS 2: PUBREC received, PUBREL not yet sent.
			if err := dev.Send(&packet.Publish{Topic: "up", QoS: 2, PacketID: 7, Payload: []byte("once")}); err != nil {
				t.Fatal(err)
			}
			if p, err := dev.ReadPacket(wait); err != nil || p.Type() != packet.PUBREC {
				t.Fatalf("%v %v", p, err)
			}
			dev.Close()
			testenv.WaitFor(t, wait, "offline", func() bool { return tb.Stats().Connections == 0 })
			pub := dial(t, tb.addr, testclient.Options{ClientID: "pub", CleanStart: true})
			publish(t, pub, &packet.Publish{Topic: "cmd/1", QoS: 1, Payload: []byte("a")})
			publish(t, pub, &packet.Publish{Topic: "cmd/2", QoS: 2, Payload: []byte("b")})
			publish(t, pub, &packet.Publish{Topic: "cfg", QoS: 1, Retain: true, Payload: []byte("r")})
			ingested := len(tb.store.messages())

			st2 := tb.store.reopen(t)
			tb2 := startBroker(t, Options{}, st2, nil)
			if s := tb2.Stats(); s.Sessions != 1 || s.Subscriptions != 1 || s.Retained != 1 || s.Queued != 2 {
				t.Fatalf("restored %+v", s)
			}
			o.CleanStart = false
			dev = dial(t, tb2.addr, o)
			if !dev.Connack.SessionPresent {
				t.Fatal("session not present after restart")
			}
			for _, want := range []string{"a", "b"} {
				if p := recv(t, dev); string(p.Payload) != want {
					t.Fatalf("got %q want %q", p.Payload, want)
				}
			}
			// The device resends its QoS 2 PUBLISH (DUP): recognised, not
			// stored again.
			if err := dev.Send(&packet.Publish{Dup: true, Topic: "up", QoS: 2, PacketID: 7, Payload: []byte("once")}); err != nil {
				t.Fatal(err)
			}
			p, err := dev.ReadPacket(wait)
			for err == nil && p.Type() == packet.PUBREL { // of "b", delivered above
				send(t, dev, &packet.Pubcomp{PacketID: p.(*packet.Pubrel).PacketID})
				p, err = dev.ReadPacket(wait)
			}
			if r, ok := p.(*packet.Pubrec); err != nil || !ok || r.PacketID != 7 || r.ReasonCode != 0 {
				t.Fatalf("%#v %v", p, err)
			}
			if err := dev.Release(7); err != nil {
				t.Fatal(err)
			}
			if n := len(st2.messages()); n != 0 {
				t.Fatalf("the resent QoS 2 message was ingested again (%d)", n)
			}
			if ingested != 4 {
				t.Fatalf("first run ingested %d", ingested)
			}
			subscribe(t, dev, packet.Subscription{Filter: "cfg", QoS: 1})
			if p := recv(t, dev); !p.Retain || string(p.Payload) != "r" {
				t.Fatalf("retained %+v", p)
			}
			testenv.WaitFor(t, wait, "inbound and queued records deleted", func() bool {
				return len(st2.keys("lb/i/")) == 0 && len(st2.keys("lb/q/")) == 0
			})
		})
	}
}

// TestBadgerRestart runs the broker on the Badger queue, closes both, and
// reopens them.
func TestBadgerRestart(t *testing.T) {
	dir := t.TempDir()
	open := func() (*queue.Queue, *Broker, string, func()) {
		q, err := queue.Open(queue.Options{Dir: dir, Logger: testLogger()})
		if err != nil {
			t.Fatal(err)
		}
		b, err := New(Options{RetainAvailable: true, Logger: testLogger()}, queueStore{q})
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { b.Serve(ctx, ln, ListenerOptions{AllowAnonymous: true}); close(done) }()
		return q, b, ln.Addr().String(), func() {
			cancel()
			<-done
			b.Close()
			if err := q.Close(); err != nil {
				t.Error(err)
			}
		}
	}
	q, b, addr, stop := open()
	dev := dial(t, addr, testclient.Options{ClientID: "dev", Version: packet.V311})
	subscribe(t, dev, packet.Subscription{Filter: "cmd", QoS: 1})
	disconnect(t, dev)
	testenv.WaitFor(t, wait, "offline", func() bool { return b.Stats().Connections == 0 })
	pub := dial(t, addr, testclient.Options{ClientID: "pub", CleanStart: true})
	for i := range 3 {
		publish(t, pub, &packet.Publish{Topic: "cmd", QoS: 1, Payload: []byte{byte(i)}})
	}
	publish(t, pub, &packet.Publish{Topic: "state", QoS: 1, Retain: true, Payload: []byte("on")})
	if n := q.Stats().Messages; n != 4 {
		t.Fatalf("queue holds %d messages, want the 4 ingested", n)
	}
	stop()

	_, b, addr, stop = open()
	defer stop()
	if st := b.Stats(); st.Sessions != 1 || st.Retained != 1 || st.Queued != 3 {
		t.Fatalf("reopened broker state %+v", st)
	}
	dev = dial(t, addr, testclient.Options{ClientID: "dev", Version: packet.V311})
	if !dev.Connack.SessionPresent {
		t.Fatal("session lost")
	}
	var got []byte
	for range 3 {
		got = append(got, recv(t, dev).Payload...)
	}
	if !bytes.Equal(got, []byte{0, 1, 2}) {
		t.Fatalf("got %v", got)
	}
	subscribe(t, dev, packet.Subscription{Filter: "state", QoS: 1})
	if p := recv(t, dev); string(p.Payload) != "on" {
		t.Fatalf("%+v", p)
	}
}

// TestCrashChild is the broker process of TestSIGKILLRestart; it runs only
// when re-executed with LOCALBUS_CRASH_DIR set, and serves until killed.
func TestCrashChild(t *testing.T) {
	dir, addr := os.Getenv("LOCALBUS_CRASH_DIR"), os.Getenv("LOCALBUS_CRASH_ADDR")
	if dir == "" {
		t.Skip("only run as TestSIGKILLRestart's child process")
	}
	q, err := queue.Open(queue.Options{Dir: dir, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(Options{RetainAvailable: true, Logger: testLogger()}, queueStore{q})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	b.Serve(context.Background(), ln, ListenerOptions{AllowAnonymous: true})
}

// TestSIGKILLRestart: a persistent session with undelivered QoS 1 messages
// and a retained message; the broker process is killed with SIGKILL and
// started again; the client reconnects and receives them.
func TestSIGKILLRestart(t *testing.T) {
	dir := t.TempDir()
	start := func() (*exec.Cmd, string) {
		addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), "LOCALBUS_CRASH_DIR="+dir, "LOCALBUS_CRASH_ADDR="+addr)
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		testenv.WaitFor(t, 30*time.Second, "child broker listening", func() bool {
			c, err := net.Dial("tcp", addr)
			if err == nil {
				c.Close()
			}
			return err == nil
		})
		return cmd, addr
	}
	cmd, addr := start()
	// The broker runs in another process: dev's will, which the broker
	// publishes once it has seen the connection end, shows the session is
	// offline, so that the messages below are queued for it and not sent
	// to the dead connection.
	pub := dial(t, addr, testclient.Options{ClientID: "pub", CleanStart: true})
	subscribe(t, pub, packet.Subscription{Filter: "gone/#", QoS: 1})
	o := testclient.Options{ClientID: "dev", SessionExpiry: 3600, CleanStart: true,
		Will: &packet.Publish{Topic: "gone/dev", QoS: 1, Payload: []byte("offline")}}
	dev := dial(t, addr, o)
	subscribe(t, dev, packet.Subscription{Filter: "cmd/#", QoS: 1})
	dev.Close()
	if p := recv(t, pub); p.Topic != "gone/dev" {
		t.Fatalf("got %q, want dev's will", p.Topic)
	}
	var want []string
	for i := range 5 {
		s := fmt.Sprintf("m%d", i)
		want = append(want, s)
		if rc, err := pub.Publish(&packet.Publish{Topic: "cmd/x", QoS: 1, Payload: []byte(s)}); err != nil || rc != 0 {
			t.Fatal(rc, err)
		}
	}
	if rc, err := pub.Publish(&packet.Publish{Topic: "status", QoS: 1, Retain: true, Payload: []byte("ok")}); err != nil || rc != 0 {
		t.Fatal(rc, err)
	}
	// Every PUBACK above means durable: kill without warning.
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()

	_, addr = start()
	o.CleanStart, o.Will = false, nil
	dev = dial(t, addr, o)
	if !dev.Connack.SessionPresent {
		t.Fatal("session lost in the crash")
	}
	var got []string
	for range want {
		got = append(got, string(recv(t, dev).Payload))
	}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v want %v", got, want)
	}
	subscribe(t, dev, packet.Subscription{Filter: "status", QoS: 1})
	if p := recv(t, dev); !p.Retain || string(p.Payload) != "ok" {
		t.Fatalf("retained after crash: %+v", p)
	}

}

func TestRecordsRoundTrip(t *testing.T) {
	m := &stored{Message: Message{
		Topic: "a/b", Payload: []byte("p"), QoS: 2, Retain: true, PayloadFormat: 1, ContentType: "ct",
		ResponseTopic: "rt", CorrelationData: []byte{}, ClientID: "c",
		UserProperties: []packet.UserProperty{{Key: "k", Value: "v"}},
	}, deadline: time.Unix(1700000000, 5)}
	got, err := decodeRetained(encodeRetained(m))
	if err != nil || got.Topic != m.Topic || got.CorrelationData == nil || !got.deadline.Equal(m.deadline) ||
		got.ClientID != "c" || len(got.UserProperties) != 1 || got.PayloadFormat != 1 || !got.Retain {
		t.Fatalf("%+v %v", got, err)
	}
	o := &outMsg{m: m, qos: 2, retain: true, subIDs: []uint32{1, maxSubscriptionID}, pid: 9, pubrec: true}
	go2, err := decodeQueued(encodeQueued(o))
	if err != nil || go2.pid != 9 || !go2.pubrec || !slices.Equal(go2.subIDs, o.subIDs) || !go2.retain || go2.m.Topic != "a/b" {
		t.Fatalf("%+v %v", go2, err)
	}
	s := newSession("c/1")
	s.version, s.expiry = packet.V5, 77
	s.subs["x/#"] = &subscription{Subscription: packet.Subscription{Filter: "x/#", QoS: 1, NoLocal: true, RetainAsPublished: true, RetainHandling: 2}, id: 5}
	s.subs["$share/g/y"] = &subscription{Subscription: packet.Subscription{Filter: "$share/g/y", QoS: 2}}
	s2, err := decodeSession("c/1", encodeSession(s))
	if err != nil || s2.expiry != 77 || len(s2.subs) != 2 || *s2.subs["x/#"] != *s.subs["x/#"] || *s2.subs["$share/g/y"] != *s.subs["$share/g/y"] {
		t.Fatalf("%+v %v", s2, err)
	}
	for _, b := range [][]byte{nil, {2}, {1}, {1, 0, 3}} {
		if _, err := decodeRetained(b); !errors.Is(err, errCorrupt) {
			t.Fatalf("%v: %v", b, err)
		}
	}
	if cid, n, err := parseClientKey(fmt.Sprintf("%x/%016x", "a/b", 42)); err != nil || cid != "a/b" || n != 42 {
		t.Fatal(cid, n, err)
	}
}

// The decoders of stored records must never panic, and whatever they accept
// must encode back to the same bytes.
func FuzzDecodeQueued(f *testing.F) {
	m := &stored{Message: Message{Topic: "t", Payload: []byte("x"), QoS: 1, UserProperties: []packet.UserProperty{{Key: "a", Value: "b"}}}}
	f.Add(encodeQueued(&outMsg{m: m, qos: 1, subIDs: []uint32{3}}))
	f.Add(encodeQueued(&outMsg{m: m, qos: 2, pid: 4, pubrec: true}))
	f.Fuzz(func(t *testing.T, b []byte) {
		o, err := decodeQueued(b)
		if err != nil {
			return
		}
		if re := encodeQueued(o); !bytes.Equal(re, b) {
			// Non-canonical varints may decode; the re-encoding must decode
			// to the same thing.
			o2, err := decodeQueued(re)
			if err != nil || o2.pid != o.pid || o2.m.Topic != o.m.Topic || !bytes.Equal(o2.m.Payload, o.m.Payload) {
				t.Fatalf("unstable: %v", err)
			}
		}
	})
}

func FuzzDecodeRetained(f *testing.F) {
	f.Add(encodeRetained(&stored{Message: Message{Topic: "t", Payload: []byte("x"), QoS: 1, ContentType: "c"}, deadline: time.Unix(5, 0)}))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeRetained(b)
		if err != nil {
			return
		}
		m2, err := decodeRetained(encodeRetained(m))
		if err != nil || m2.Topic != m.Topic || !bytes.Equal(m2.Payload, m.Payload) || !m2.deadline.Equal(m.deadline) {
			t.Fatalf("unstable: %v", err)
		}
	})
}

func FuzzDecodeSession(f *testing.F) {
	s := newSession("c")
	s.version, s.expiry = packet.V311, 10
	s.subs["a/+"] = &subscription{Subscription: packet.Subscription{Filter: "a/+", QoS: 2, RetainHandling: 1}, id: 3}
	f.Add(encodeSession(s))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := decodeSession("c", b)
		if err != nil {
			return
		}
		s2, err := decodeSession("c", encodeSession(s))
		if err != nil || len(s2.subs) != len(s.subs) || s2.expiry != s.expiry {
			t.Fatalf("unstable: %v", err)
		}
	})
}
