package agent

import (
	"log/slog"
	"testing"

	"holdfast/config"
)

// TestBrokerOptionsZeroMeansNone: the config documents 0 for
// max_queued_messages and max_session_expiry as "none", which the broker
// spells as a negative value (its 0 is "default").
func TestBrokerOptionsZeroMeansNone(t *testing.T) {
	cfg := config.Default()
	o := brokerOptions(cfg, slog.Default())
	if o.MaxQueuedMessages != cfg.Local.MaxQueuedMessages || o.MaxSessionExpiry != cfg.Local.MaxSessionExpiry {
		t.Fatalf("defaults not passed through: %+v", o)
	}
	cfg.Local.MaxQueuedMessages, cfg.Local.MaxSessionExpiry = 0, 0
	o = brokerOptions(cfg, slog.Default())
	if o.MaxQueuedMessages >= 0 || o.MaxSessionExpiry >= 0 {
		t.Fatalf("0 in the config became %d and %v, want negative (none)", o.MaxQueuedMessages, o.MaxSessionExpiry)
	}
}

// TestUplinkOptionsZeroMeansOff: 0 in the config disables keep alive and
// stall detection and ends the upstream session at disconnect; the uplink
// spells that as a negative value.
func TestUplinkOptionsZeroMeansOff(t *testing.T) {
	cfg := config.Default()
	o, err := uplinkOptions(cfg, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	if o.KeepAlive != cfg.Upstream.KeepAlive || o.StallTimeout != cfg.Upstream.StallTimeout || o.SessionExpiry != cfg.Upstream.SessionExpiry {
		t.Fatalf("defaults not passed through: %+v", o)
	}
	cfg.Upstream.KeepAlive, cfg.Upstream.StallTimeout, cfg.Upstream.SessionExpiry = 0, 0, 0
	if o, err = uplinkOptions(cfg, slog.Default()); err != nil {
		t.Fatal(err)
	}
	if o.KeepAlive >= 0 || o.StallTimeout >= 0 || o.SessionExpiry >= 0 {
		t.Fatalf("0 in the config became %v, %v, %v; want negative (off)", o.KeepAlive, o.StallTimeout, o.SessionExpiry)
	}
}
