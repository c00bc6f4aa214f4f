package uplink

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"holdfast/internal/packet"
)

func TestParseMark(t *testing.T) {
	for _, tc := range []struct {
		in   string
		kind string
		id   uint16
		ok   bool
	}{
		{"rec:1", markRec, 1, true},
		{"pub:65535", markPub, 65535, true},
		{"rec:0", "", 0, false},
		{"rec:65536", "", 0, false},
		{"rec:", "", 0, false},
		{"rec:-1", "", 0, false},
		{"xyz:5", "", 0, false},
		{"", "", 0, false},
	} {
		kind, id, ok := parseMark([]byte(tc.in))
		if kind != tc.kind || id != tc.id || ok != tc.ok {
			t.Errorf("parseMark(%q) = %q, %d, %v; want %q, %d, %v", tc.in, kind, id, ok, tc.kind, tc.id, tc.ok)
		}
	}
	if got := string(markData(markRec, 42)); got != "rec:42" {
		t.Errorf("markData = %q", got)
	}
}

func FuzzParseMark(f *testing.F) {
	f.Add([]byte("rec:1"))
	f.Add([]byte("pub:65535"))
	f.Add([]byte("rec:99999"))
	f.Fuzz(func(t *testing.T, b []byte) {
		kind, id, ok := parseMark(b)
		if !ok {
			return
		}
		if id == 0 {
			t.Fatalf("parseMark(%q) accepted id 0", b)
		}
		if got := string(markData(kind, id)); !strings.HasPrefix(string(b), kind) || got == "" {
			t.Fatalf("parseMark(%q) = %q %d", b, kind, id)
		}
		k2, id2, ok2 := parseMark(markData(kind, id))
		if !ok2 || k2 != kind || id2 != id {
			t.Fatalf("round trip of %q %d failed", kind, id)
		}
	})
}

func TestDerivedID(t *testing.T) {
	for seq, want := range map[uint64]uint16{0: 1, 1: 2, maxMsgID - 1: maxMsgID, maxMsgID: 1, maxMsgID + 1: 2,
		65534: 65534 - maxMsgID + 1} {
		if got := derivedID(seq); got != want {
			t.Errorf("derivedID(%d) = %d, want %d", seq, got, want)
		}
	}
}

func TestIDSet(t *testing.T) {
	var s idSet
	s.add(5)
	s.add(6)
	if got := s.next(5); got != 7 {
		t.Errorf("next(5) = %d, want 7", got)
	}
	s.add(maxMsgID)
	if got := s.next(maxMsgID); got != 1 {
		t.Errorf("next(%d) = %d, want 1 (0 and the control ids skipped)", maxMsgID, got)
	}
	s.del(5)
	if got := s.next(5); got != 5 {
		t.Errorf("next(5) after del = %d", got)
	}
	c := &Client{}
	c.ids.add(65535)
	a, _ := c.allocCtrl()
	b, _ := c.allocCtrl()
	if a != 65534 || b != 65533 {
		t.Errorf("allocCtrl = %d, %d; want 65534, 65533", a, b)
	}
	for range ctrlIDs - 3 {
		if id, err := c.allocCtrl(); err != nil || id <= maxMsgID {
			t.Fatalf("allocCtrl = %d, %v; want an id above %d", id, err, maxMsgID)
		}
	}
	if id, err := c.allocCtrl(); err == nil {
		t.Errorf("allocCtrl with every control id in use = %d, want an error", id)
	}
	c.ids.del(65535)
	if id, err := c.allocCtrl(); err != nil || id != 65535 {
		t.Errorf("allocCtrl after a release = %d, %v; want 65535", id, err)
	}
}

func TestAliasCache(t *testing.T) {
	a := newAliasCache(2)
	use := func(topic string) (uint16, bool) {
		alias, known := a.lookup(topic)
		if !known {
			a.assign(topic, alias)
		}
		return alias, known
	}
	steps := []struct {
		topic string
		alias uint16
		known bool
	}{
		{"a", 1, false}, {"b", 2, false}, {"a", 1, true},
		{"c", 2, false}, // b least recently used: its alias goes to c
		{"a", 1, true}, {"c", 2, true},
		{"b", 1, false}, // a is now least recently used
		{"c", 2, true},
	}
	for i, st := range steps {
		alias, known := use(st.topic)
		if alias != st.alias || known != st.known {
			t.Fatalf("step %d (%s): alias %d known %v; want %d %v", i, st.topic, alias, known, st.alias, st.known)
		}
	}
}

func TestOptionsDefaultsAndErrors(t *testing.T) {
	c, err := New(Options{URL: "mqtt://127.0.0.1:1"}, newMemSource(), nil)
	if err != nil {
		t.Fatal(err)
	}
	o := c.opts
	if o.Protocol != packet.V5 || o.Inflight != 64 || o.KeepAlive != 60*time.Second ||
		o.SessionExpiry != 7*24*time.Hour || o.ConnectTimeout != 15*time.Second || o.StallTimeout != 60*time.Second ||
		o.Backoff.Initial != time.Second || o.Backoff.Max != 2*time.Minute || o.Backoff.Multiplier != 2 ||
		o.Backoff.Randomization != 0.5 || o.Backoff.StableAfter != time.Minute {
		t.Errorf("defaults not applied: %+v", o)
	}
	c, err = New(Options{URL: "mqtt://h", Protocol: packet.V311}, newMemSource(), nil)
	if err != nil || !strings.HasPrefix(c.opts.ClientID, DefaultClientIDPrefix) {
		t.Errorf("3.1.1 default client id: %q %v", c.opts.ClientID, err)
	}
	for name, o := range map[string]Options{
		"scheme":      {URL: "tcp://h:1"},
		"no host":     {URL: "mqtt://"},
		"protocol":    {URL: "mqtt://h", Protocol: 3},
		"inflight":    {URL: "mqtt://h", Inflight: 70000},
		"keepalive":   {URL: "mqtt://h", KeepAlive: 70000 * time.Second},
		"password":    {URL: "mqtt://h", Protocol: packet.V311, Password: "x"},
		"will topic":  {URL: "mqtt://h", Will: &WillMessage{Topic: "a/#"}},
		"birth qos":   {URL: "mqtt://h", Birth: &WillMessage{Topic: "a", QoS: 3}},
		"filter":      {URL: "mqtt://h", Subscriptions: []Subscription{{Filter: "a/#/b"}}},
		"no downlink": {URL: "mqtt://h", Subscriptions: []Subscription{{Filter: "a/#"}}},
		"jitter":      {URL: "mqtt://h", Backoff: Backoff{Randomization: 1}},
	} {
		if _, err := New(o, newMemSource(), nil); err == nil {
			t.Errorf("%s: New accepted %+v", name, o)
		}
	}
	if _, err := New(Options{URL: "mqtt://h"}, nil, nil); err == nil {
		t.Error("New accepted a nil Source")
	}
}

// slowAckSource records Ack calls; with entered set, the first waits until
// open is closed (a slow commit while acknowledgements keep arriving).
type slowAckSource struct {
	memSource
	once    sync.Once
	entered chan struct{}
	open    chan struct{}
	mu      sync.Mutex
	calls   [][]uint64
}

func (s *slowAckSource) Ack(seqs ...uint64) error {
	if s.entered != nil {
		s.once.Do(func() { close(s.entered); <-s.open })
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, slices.Clone(seqs))
	return nil
}

// TestAckerBatchesBounded: acknowledgements that pile up while a Source
// Ack is slow are written in batches of at most maxAckBatch (a queue
// refuses a write larger than one transaction), all of them, in order.
func TestAckerBatchesBounded(t *testing.T) {
	src := &slowAckSource{entered: make(chan struct{}), open: make(chan struct{})}
	a := newAcker(src, testLogger(t))
	a.add(1)
	<-src.entered
	const n = 5*maxAckBatch + 17
	for seq := uint64(2); seq <= n; seq++ {
		a.add(seq)
	}
	close(src.open)
	a.close()
	var all []uint64
	for _, c := range src.calls {
		if len(c) > maxAckBatch {
			t.Errorf("Ack of %d seqs, want at most %d", len(c), maxAckBatch)
		}
		all = append(all, c...)
	}
	if len(all) != n || !slices.IsSorted(all) || all[0] != 1 || all[n-1] != n {
		t.Errorf("acked %d seqs (sorted %v), want 1..%d once each", len(all), slices.IsSorted(all), n)
	}
}

// TestAckerGathers: acknowledgements that come one by one are written
// together, at most one Ack per gather interval (each Ack of the queue is
// a synced commit), and close writes what is left.
func TestAckerGathers(t *testing.T) {
	src := &slowAckSource{} // not slow: no gate
	a := newAcker(src, testLogger(t))
	start := time.Now()
	for seq := uint64(1); seq <= 50; seq++ {
		a.add(seq)
		time.Sleep(time.Millisecond)
	}
	a.close()
	el := time.Since(start)
	var all []uint64
	for _, c := range src.calls {
		all = append(all, c...)
	}
	if len(all) != 50 || !slices.IsSorted(all) || all[0] != 1 {
		t.Fatalf("acked %d seqs (sorted %v), want 1..50 once each", len(all), slices.IsSorted(all))
	}
	// A batch is written ackGather after its first seq came, so batches
	// are at least that far apart; close writes the last one at once.
	if max := int(el/ackGather) + 2; len(src.calls) > max {
		t.Errorf("%d Ack calls for 50 seqs added over %v, want at most %d", len(src.calls), el, max)
	}
}

// TestClosedByServer: which endings of a connection count as the server
// closing it because of what it received (see Client.afterLoss).
func TestClosedByServer(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{&serverDisconnect{code: packet.MalformedPacket}, true},
		{&serverDisconnect{code: packet.ProtocolError}, true},
		{&serverDisconnect{code: packet.TopicNameInvalid}, true},
		{&serverDisconnect{code: packet.PacketTooLarge}, true},
		{&serverDisconnect{code: packet.PayloadFormatInvalid}, true},
		{&serverDisconnect{code: packet.RetainNotSupported}, true},
		{&serverDisconnect{code: packet.QoSNotSupported}, true},
		{&serverDisconnect{code: packet.ServerShuttingDown}, false},
		{&serverDisconnect{code: packet.ServerBusy}, false},
		{&serverDisconnect{code: packet.KeepAliveTimeout}, false},
		{fmt.Errorf("read: %w", io.EOF), true},
		{fmt.Errorf("read: %w", syscall.ECONNRESET), true},
		{fmt.Errorf("write: %w", syscall.EPIPE), true},
		{errStalled, false},
		{errors.New("keep alive timeout: no PINGRESP"), false},
		{os.ErrDeadlineExceeded, false},
	} {
		if got := closedByServer(tc.err); got != tc.want {
			t.Errorf("closedByServer(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// TestLeasedSkipsPendingSeqs: a Source that hands out a seq the client
// already holds (the queue once did so for a failed dead letter) does not
// get it sent twice (for QoS 2 under two ids: delivered twice); a seq whose
// entry is done (acked, the Ack failed, the queue leases it again) is
// taken, to be sent again.
func TestLeasedSkipsPendingSeqs(t *testing.T) {
	c := newClient(t, Options{URL: "mqtt://127.0.0.1:1"}, newMemSource(), nil)
	s := &conn{c: c, ctrl: make(map[uint16]string), unrel: make(map[string]int), maxQoS: 2, session: true}
	msg := func(seq uint64, mark string) Message {
		m := Message{Seq: seq, Topic: "t", QoS: 2}
		if mark != "" {
			m.Mark = []byte(mark)
		}
		return m
	}
	seqs := func() []uint64 {
		var out []uint64
		for _, e := range c.pending {
			out = append(out, e.Seq)
		}
		return out
	}
	s.leased(leaseResult{msgs: []Message{msg(1, ""), msg(2, "pub:900")}})
	first := c.byID[900]
	s.leased(leaseResult{msgs: []Message{msg(2, "pub:900"), msg(3, ""), msg(3, "")}})
	if got := seqs(); !slices.Equal(got, []uint64{1, 2, 3}) {
		t.Fatalf("pending seqs %v, want [1 2 3]", got)
	}
	if first == nil || c.byID[900] != first || first.Seq != 2 {
		t.Fatalf("id 900 belongs to %+v, want the first entry of seq 2", c.byID[900])
	}
	c.retire(c.pending[0])
	s.leased(leaseResult{msgs: []Message{msg(1, "")}})
	if got := seqs(); !slices.Equal(got, []uint64{1, 2, 3, 1}) {
		t.Fatalf("pending seqs %v, want [1 2 3 1]: a done seq leased again is sent again", got)
	}
	if c.pending[3].done {
		t.Fatal("the entry leased again is done")
	}
}
