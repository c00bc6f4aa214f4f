package agent

import (
	"context"
	"log/slog"
	"slices"
	"testing"

	"holdfast/config"
	"holdfast/localbus"
	"holdfast/queue"
	"holdfast/uplink"
)

var _ uplink.MarkedDownlink = (*downlink)(nil)

// TestDownlinkMarkStoredWithMessage: the mark of a QoS 2 downlink message
// is in the store exactly when the message is (one commit), survives a
// reopen, and goes with Unmark.
func TestDownlinkMarkStoredWithMessage(t *testing.T) {
	dir := t.TempDir()
	cfg := config.Default()
	filter, err := config.ParseTemplate("cmd/#")
	if err != nil {
		t.Fatal(err)
	}
	local, err := config.ParseTemplate("{topic}")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Downlink = []config.DownlinkRule{{Filter: filter, QoS: 2, LocalTopic: local}}
	open := func() (*downlink, func()) {
		q, err := queue.Open(queue.Options{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		a := &Agent{cfg: cfg, log: slog.Default(), q: q}
		b, err := localbus.New(brokerOptions(cfg, a.log), &store{a: a})
		if err != nil {
			t.Fatal(err)
		}
		a.broker = b
		return &downlink{a: a}, func() { b.Close(); q.Close() }
	}
	retained := func(d *downlink) int {
		n := 0
		if err := d.a.q.ScanState("lb/r/", func(string, []byte) error { n++; return nil }); err != nil {
			t.Fatal(err)
		}
		return n
	}

	d, closeAll := open()
	// Retained, so that the delivered message itself is visible in the store.
	if err := d.DeliverMarked(context.Background(), &uplink.Message{Topic: "cmd/x", Payload: []byte("p"), QoS: 2, Retain: true}, 7); err != nil {
		t.Fatal(err)
	}
	if ids, err := d.Marks(); err != nil || !slices.Equal(ids, []uint16{7}) || retained(d) != 1 {
		t.Fatalf("marks %v (%v), %d retained: want mark 7 with the message", ids, err, retained(d))
	}
	closeAll()

	d, closeAll = open()
	defer closeAll()
	if ids, err := d.Marks(); err != nil || !slices.Equal(ids, []uint16{7}) {
		t.Fatalf("after reopen marks %v (%v), want 7", ids, err)
	}
	if err := d.Unmark(7); err != nil {
		t.Fatal(err)
	}
	if ids, err := d.Marks(); err != nil || len(ids) != 0 {
		t.Fatalf("after Unmark marks %v (%v), want none", ids, err)
	}
}
