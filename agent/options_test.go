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
