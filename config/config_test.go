package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// strip returns a copy of c without its source bookkeeping, for comparing
// configurations by value.
func strip(c *Config) Config {
	cp := *c
	cp.src = nil
	return cp
}

func mustParse(t *testing.T, doc string) *Config {
	t.Helper()
	c, err := Parse([]byte(doc))
	if err != nil {
		t.Fatalf("Parse(%q): %v", doc, err)
	}
	return c
}

// TestDefaultsMatchDesign checks the built-in defaults against the values
// DESIGN.md promises ("Interfaces users touch").
func TestDefaultsMatchDesign(t *testing.T) {
	c := Default()
	if len(c.Listeners) != 1 {
		t.Fatalf("default listeners: %d, want 1", len(c.Listeners))
	}
	l := c.Listeners[0]
	if l.Address != "127.0.0.1:1883" || l.Type != ListenerTCP {
		t.Errorf("default listener %+v, want tcp on 127.0.0.1:1883", l)
	}
	if !l.AnonymousAllowed() {
		t.Error("default loopback listener must allow anonymous clients")
	}
	if c.Queue.Dir != "./holdfast-data" {
		t.Errorf("queue.dir %q, want ./holdfast-data", c.Queue.Dir)
	}
	if c.Admin.Address != "127.0.0.1:9183" {
		t.Errorf("admin.address %q, want 127.0.0.1:9183", c.Admin.Address)
	}
	if c.Upstream.URL != "mqtt://127.0.0.1:1884" {
		t.Errorf("upstream.url %q, want mqtt://127.0.0.1:1884", c.Upstream.URL)
	}
	if c.Upstream.Protocol != "5" {
		t.Errorf("upstream.protocol %q, want 5", c.Upstream.Protocol)
	}
	if len(c.Forward) != 1 {
		t.Fatalf("default forward rules: %d, want 1", len(c.Forward))
	}
	f := c.Forward[0]
	if f.Filter != "#" || f.Topic.String() != "{topic}" || f.MinQoS != 1 || f.MaxQoS != 2 || !f.Retain || !f.StripPrefix.IsZero() {
		t.Errorf("default forward rule %+v, want every topic as-is at QoS 1 at least", f)
	}
	for _, q := range []int{0, 1, 2} {
		if got := f.UpstreamQoS(q); got < 1 || got < q {
			t.Errorf("default rule forwards QoS %d at %d", q, got)
		}
		if got := f.UpstreamTopic("a/b", "dev", "gw"); got != "a/b" {
			t.Errorf("default rule maps a/b to %q", got)
		}
	}
	if len(c.Downlink) != 0 {
		t.Errorf("default downlink rules: %d, want none", len(c.Downlink))
	}
	if c.GatewayID != Hostname() || c.Upstream.ClientID != "holdfast-"+Hostname() {
		t.Errorf("gateway_id %q, client_id %q: want the host name", c.GatewayID, c.Upstream.ClientID)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("defaults do not validate: %v", err)
	}
}

func TestEmptyAndMissingFileGiveDefaults(t *testing.T) {
	want := strip(Default())
	for _, doc := range []string{"", "\n", "# only a comment\n", "---\n", "{}\n", "  \n# x\n\n"} {
		c, err := Parse([]byte(doc))
		if err != nil {
			t.Errorf("Parse(%q): %v", doc, err)
			continue
		}
		if got := strip(c); !reflect.DeepEqual(got, want) {
			t.Errorf("Parse(%q) = %+v, want the defaults %+v", doc, got, want)
		}
	}
	c, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	if got := strip(c); !reflect.DeepEqual(got, want) {
		t.Errorf("Load(\"\") = %+v, want the defaults", got)
	}
	empty := filepath.Join(t.TempDir(), "empty.yaml")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	c, err = Load(empty)
	if err != nil {
		t.Fatal(err)
	}
	if got := strip(c); !reflect.DeepEqual(got, want) {
		t.Errorf("Load(empty file) = %+v, want the defaults", got)
	}
	_, err = Load(filepath.Join(t.TempDir(), "missing.yaml"))
	if err == nil || !strings.Contains(err.Error(), "missing.yaml") || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want a not-exist error naming the file", err)
	}
}

func TestParseSetsValues(t *testing.T) {
	c := mustParse(t, `
gateway_id: gw-7
upstream:
  url: mqtts://broker.example.com:8883
  protocol: "3.1.1"
  username: u
  password_file: /etc/holdfast/upstream.pass
  keep_alive: 30s
  session_expiry: 1d12h
  inflight: 100
  tls:
    ca_file: /etc/ca.pem
    alpn: [x-amzn-mqtt-ca]
queue:
  max_bytes: 64MiB
  max_messages: 1000000
  policy: reject_new
  ttl: 7d
  disk_reserve: 1048576
local:
  max_keep_alive: 300s
`)
	if c.GatewayID != "gw-7" || c.Upstream.ClientID != "holdfast-gw-7" {
		t.Errorf("gateway %q client %q", c.GatewayID, c.Upstream.ClientID)
	}
	u := c.Upstream
	if u.URL != "mqtts://broker.example.com:8883" || u.Protocol != Protocol311 || u.Username != "u" ||
		u.PasswordFile != "/etc/holdfast/upstream.pass" || u.KeepAlive != 30*time.Second ||
		u.SessionExpiry != 36*time.Hour || u.Inflight != 100 || u.TLS.CAFile != "/etc/ca.pem" ||
		!reflect.DeepEqual(u.TLS.ALPN, []string{"x-amzn-mqtt-ca"}) {
		t.Errorf("upstream %+v", u)
	}
	q := c.Queue
	if q.MaxBytes != 64*MiB || q.MaxMessages != 1000000 || q.Policy != PolicyRejectNew || q.TTL != 7*24*time.Hour || q.DiskReserve != MiB {
		t.Errorf("queue %+v", q)
	}
	if c.Local.MaxKeepAlive != 300*time.Second {
		t.Errorf("local.max_keep_alive %v", c.Local.MaxKeepAlive)
	}
	// Untouched sections keep their defaults.
	if c.Admin.Address != DefaultAdminAddress || c.Log.Level != DefaultLogLevel || len(c.Forward) != 1 {
		t.Errorf("defaults lost: admin %+v log %+v forward %d", c.Admin, c.Log, len(c.Forward))
	}
}
