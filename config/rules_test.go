package config

import (
	"strings"
	"testing"
)

func TestOverridesBeatTheFile(t *testing.T) {
	c := mustParse(t, `
listeners:
  - name: lan
    address: 127.0.0.1:2883
  - address: 127.0.0.1:2884
upstream:
  url: mqtt://file.example:1883
  client_id: from-file
queue:
  dir: /from/file
`)
	err := c.Apply(Overrides{Listen: "127.0.0.1:3883", Upstream: "mqtts://flag.example:8883", DataDir: "/from/flag", ClientID: "from-flag"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Listeners[0].Address != "127.0.0.1:3883" || c.Listeners[0].Name != "lan" || c.Listeners[1].Address != "127.0.0.1:2884" {
		t.Errorf("listeners %+v", c.Listeners)
	}
	if c.Upstream.URL != "mqtts://flag.example:8883" || c.Upstream.ClientID != "from-flag" || c.Queue.Dir != "/from/flag" {
		t.Errorf("upstream %q client %q dir %q", c.Upstream.URL, c.Upstream.ClientID, c.Queue.Dir)
	}

	// Empty overrides change nothing.
	c = mustParse(t, "upstream:\n  url: mqtt://file.example\n")
	want := strip(c)
	if err := c.Apply(Overrides{}); err != nil {
		t.Fatal(err)
	}
	if got := strip(c); got.Upstream.URL != want.Upstream.URL || got.Queue.Dir != want.Queue.Dir ||
		got.Listeners[0].Address != want.Listeners[0].Address || got.Upstream.ClientID != want.Upstream.ClientID {
		t.Errorf("empty overrides changed the configuration: %+v", got)
	}

	// Overrides on the defaults (no file).
	c = Default()
	if err := c.Apply(Overrides{Upstream: "ws://h:8080/mqtt", DataDir: "d"}); err != nil {
		t.Fatal(err)
	}
	if c.Upstream.URL != "ws://h:8080/mqtt" || c.Queue.Dir != "d" {
		t.Errorf("got %q %q", c.Upstream.URL, c.Queue.Dir)
	}

	// --listen with no listener configured adds one.
	c = mustParse(t, "listeners: []\n")
	if len(c.Listeners) != 0 {
		t.Fatalf("listeners: [] gave %d listeners", len(c.Listeners))
	}
	if err := c.Apply(Overrides{Listen: "localhost:0"}); err != nil {
		t.Fatal(err)
	}
	if len(c.Listeners) != 1 || c.Listeners[0].Address != "localhost:0" || c.Listeners[0].Type != ListenerTCP {
		t.Errorf("listeners %+v", c.Listeners)
	}
}

func TestOverrideErrorsNameTheFlag(t *testing.T) {
	for _, tc := range []struct {
		o    Overrides
		want string
	}{
		{Overrides{Upstream: "ftp://x"}, `config: --upstream: unsupported scheme "ftp" (use mqtt, mqtts, ws or wss)`},
		{Overrides{Listen: "nope"}, `config: --listen: invalid address "nope": want host:port`},
		{Overrides{ClientID: "a\x00b"}, "config: --client-id: must be valid UTF-8 without NUL, at most 65535 bytes"},
		{Overrides{Listen: "0.0.0.0:1883"}, `config: line 2: listeners[0].allow_anonymous: not set, so false on the non-loopback address "0.0.0.0:1883"`},
	} {
		c := mustParse(t, "listeners:\n  - address: 127.0.0.1:1883\n")
		err := c.Apply(tc.o)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("Apply(%+v) = %v, want %q", tc.o, err, tc.want)
		}
	}
}

// TestAllowAnonymousFollowsAddress: unset allow_anonymous is true exactly on
// loopback addresses.
func TestAllowAnonymousFollowsAddress(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:1883": true, "127.1.2.3:1": true, "[::1]:1883": true, "localhost:1883": true, "LOCALHOST:1": true,
		"0.0.0.0:1883": false, ":1883": false, "192.168.1.10:1883": false, "[::]:1883": false, "gateway.lan:1883": false,
	} {
		l := Listener{Address: addr}
		if got := l.AnonymousAllowed(); got != want {
			t.Errorf("AnonymousAllowed(%q) = %v, want %v", addr, got, want)
		}
	}
	yes, no := true, false
	if !(Listener{Address: "0.0.0.0:1", AllowAnonymous: &yes}).AnonymousAllowed() ||
		(Listener{Address: "127.0.0.1:1", AllowAnonymous: &no}).AnonymousAllowed() {
		t.Error("an explicit allow_anonymous is not obeyed")
	}
	c := mustParse(t, "auth:\n  password_file: /etc/holdfast/passwd\nlisteners:\n  - address: 0.0.0.0:1883\n  - address: 0.0.0.0:1884\n    allow_anonymous: true\n")
	if c.Listeners[0].AnonymousAllowed() || !c.Listeners[1].AnonymousAllowed() {
		t.Errorf("listeners %+v", c.Listeners)
	}
}

func TestListenerDefaults(t *testing.T) {
	c := mustParse(t, `
listeners:
  - type: ws
    address: 127.0.0.1:8080
  - type: wss
    address: 127.0.0.1:8443
    path: /ws
    tls: {cert_file: c.pem, key_file: k.pem, client_ca_file: ca.pem, require_client_cert: true}
  - {}
`)
	if l := c.Listeners[0]; l.Path != "/mqtt" || l.Type != ListenerWS {
		t.Errorf("ws listener %+v", l)
	}
	if l := c.Listeners[1]; l.Path != "/ws" || l.TLS.CertFile != "c.pem" || l.TLS.KeyFile != "k.pem" || l.TLS.ClientCAFile != "ca.pem" || !l.TLS.RequireClientCert {
		t.Errorf("wss listener %+v", l)
	}
	if l := c.Listeners[2]; l.Address != DefaultListenAddress || l.Type != ListenerTCP || l.AllowAnonymous != nil {
		t.Errorf("empty listener %+v, want the default", l)
	}
}

func TestForwardRules(t *testing.T) {
	c := mustParse(t, `
gateway_id: gw1
forward:
  - filter: sensors/#
    topic: site/{gateway_id}/{topic}
    strip_prefix: sensors/
    max_qos: 1
    retain: false
  - filter: devices/+/state
    topic: state/{client_id}/{topic}
    strip_prefix: devices/{client_id}/
    min_qos: 0
  - filter: "#"
`)
	if len(c.Forward) != 3 {
		t.Fatalf("forward rules: %d", len(c.Forward))
	}
	r0, r1, r2 := c.Forward[0], c.Forward[1], c.Forward[2]
	if r0.Retain || !r1.Retain || r0.MinQoS != 1 || r0.MaxQoS != 1 || r1.MinQoS != 0 || r1.MaxQoS != 2 {
		t.Errorf("rules %+v %+v", r0, r1)
	}
	if r2.Topic.String() != "{topic}" || r2.MinQoS != 1 || r2.MaxQoS != 2 || !r2.Retain {
		t.Errorf("rule with only a filter did not get the defaults: %+v", r2)
	}
	for _, tc := range []struct {
		r                  ForwardRule
		topic, client, out string
	}{
		{r0, "sensors/t1/temp", "dev1", "site/gw1/t1/temp"},
		{r0, "sensors/", "dev1", "site/gw1/sensors/"}, // nothing would be left: kept whole
		{r0, "other/t1", "dev1", "site/gw1/other/t1"}, // prefix absent: kept whole
		{r1, "devices/dev7/state", "dev7", "state/dev7/state"},
		{r1, "devices/dev8/state", "dev7", "state/dev7/devices/dev8/state"}, // another device's prefix
		{r1, "devices/dev7", "dev7", "state/dev7/devices/dev7"},
		{r2, "$SYS/x", "c", "$SYS/x"},
	} {
		if got := tc.r.UpstreamTopic(tc.topic, tc.client, c.GatewayID); got != tc.out {
			t.Errorf("rule %q: UpstreamTopic(%q, %q) = %q, want %q", tc.r.Filter, tc.topic, tc.client, got, tc.out)
		}
	}
	for _, tc := range []struct {
		r       ForwardRule
		in, out int
	}{
		{r0, 0, 1}, {r0, 1, 1}, {r0, 2, 1},
		{r1, 0, 0}, {r1, 1, 1}, {r1, 2, 2},
		{r2, 0, 1}, {r2, 1, 1}, {r2, 2, 2},
	} {
		if got := tc.r.UpstreamQoS(tc.in); got != tc.out {
			t.Errorf("rule %q: UpstreamQoS(%d) = %d, want %d", tc.r.Filter, tc.in, got, tc.out)
		}
	}
	if c := mustParse(t, "forward: []\n"); len(c.Forward) != 0 {
		t.Errorf("forward: [] gave %d rules, want none", len(c.Forward))
	}
	if c := mustParse(t, "forward:\n"); len(c.Forward) != 1 {
		t.Errorf("forward: (empty) gave %d rules, want the default", len(c.Forward))
	}
}

func TestDownlinkRules(t *testing.T) {
	c := mustParse(t, `
gateway_id: gw1
upstream:
  client_id: up-1
downlink:
  - filter: cmd/{gateway_id}/#
    strip_prefix: cmd/{gateway_id}/
    local_topic: commands/{topic}
  - filter: fleet/+/config
    qos: 2
  - filter: clients/{client_id}/#
    local_topic: "{gateway_id}/in/{topic}"
    qos: 0
`)
	if len(c.Downlink) != 3 {
		t.Fatalf("downlink rules: %d", len(c.Downlink))
	}
	d0, d1, d2 := c.Downlink[0], c.Downlink[1], c.Downlink[2]
	if d0.QoS != 1 || d1.QoS != 2 || d2.QoS != 0 || d1.LocalTopic.String() != "{topic}" {
		t.Errorf("rules %+v %+v %+v", d0, d1, d2)
	}
	for _, tc := range []struct {
		r    DownlinkRule
		want string
	}{
		{d0, "cmd/gw1/#"}, {d1, "fleet/+/config"}, {d2, "clients/up-1/#"},
	} {
		if got := tc.r.Subscription(c.Upstream.ClientID, c.GatewayID); got != tc.want {
			t.Errorf("Subscription(%q) = %q, want %q", tc.r.Filter, got, tc.want)
		}
	}
	for _, tc := range []struct {
		r       DownlinkRule
		in, out string
	}{
		{d0, "cmd/gw1/reboot", "commands/reboot"},
		{d0, "cmd/gw1/valve/3/open", "commands/valve/3/open"},
		{d0, "cmd/gw2/reboot", "commands/cmd/gw2/reboot"},
		{d0, "cmd/gw1/", "commands/cmd/gw1/"},
		{d1, "fleet/a/config", "fleet/a/config"},
		{d2, "clients/up-1/x", "gw1/in/clients/up-1/x"},
	} {
		if got := tc.r.LocalTopicFor(tc.in, c.GatewayID); got != tc.out {
			t.Errorf("rule %q: LocalTopicFor(%q) = %q, want %q", tc.r.Filter, tc.in, got, tc.out)
		}
	}
	// A client id that would make the filter invalid is caught.
	_, err := Parse([]byte("upstream:\n  client_id: a+b\ndownlink:\n  - filter: c/{client_id}/#\n"))
	want := `config: line 4: downlink[0].filter: topic filter "c/a+b/#": + must be a whole level`
	if err == nil || err.Error() != want {
		t.Errorf("got %v, want %q", err, want)
	}
}

func TestTemplates(t *testing.T) {
	for _, tc := range []struct{ in, out string }{
		{"", ""},
		{"plain/topic", "plain/topic"},
		{"{topic}", "T/x"},
		{"{client_id}", "C"},
		{"{gateway_id}", "G"},
		{"a/{gateway_id}/{client_id}/{topic}/z", "a/G/C/T/x/z"},
		{"{topic}{topic}", "T/xT/x"},
		{"a}b", "a}b"},
	} {
		tp, err := ParseTemplate(tc.in)
		if err != nil {
			t.Errorf("ParseTemplate(%q): %v", tc.in, err)
			continue
		}
		if got := tp.Expand("T/x", "C", "G"); got != tc.out {
			t.Errorf("%q.Expand = %q, want %q", tc.in, got, tc.out)
		}
		if tp.String() != tc.in || tp.IsZero() != (tc.in == "") {
			t.Errorf("%q: String %q IsZero %v", tc.in, tp.String(), tp.IsZero())
		}
	}
	tp, _ := ParseTemplate("a/{client_id}")
	if !tp.Uses(VarClientID) || tp.Uses(VarTopic) || tp.Uses(VarGatewayID) {
		t.Error("Uses is wrong")
	}
	for _, bad := range []string{"{", "a/{topic", "{}", "{Topic}", "{ topic }", "{{topic}}"} {
		if _, err := ParseTemplate(bad); err == nil {
			t.Errorf("ParseTemplate(%q) accepted", bad)
		}
	}
}

func TestStripPrefixDoesNotAllocate(t *testing.T) {
	r := DownlinkRule{StripPrefix: mustTemplate("cmd/{gateway_id}/"), LocalTopic: mustTemplate("{topic}")}
	var got string
	n := testing.AllocsPerRun(100, func() { got = r.LocalTopicFor("cmd/gw1/reboot", "gw1") })
	if n != 0 || got != "reboot" {
		t.Errorf("LocalTopicFor = %q with %v allocations, want \"reboot\" with none", got, n)
	}
}
