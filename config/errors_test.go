package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestErrorsNameKeyAndLine: every unknown key, wrong type and impossible
// value is reported with its key path and line, and wraps the right
// sentinel.
func TestErrorsNameKeyAndLine(t *testing.T) {
	for _, tc := range []struct {
		doc  string
		want string // the whole first line of the message
		kind error
	}{
		// Unknown keys, at every depth.
		{"colour: blue\n", "config: line 1: colour: unknown key", ErrUnknownKey},
		{"upstream:\n  url: mqtt://h\n  tls:\n    cafile: x\n", "config: line 4: upstream.tls.cafile: unknown key", ErrUnknownKey},
		{"listeners:\n  - address: 127.0.0.1:1\n    adress: x\n", "config: line 3: listeners[0].adress: unknown key", ErrUnknownKey},
		{"forward:\n  - filter: a/#\n  - filter: b/#\n    qos: 1\n", "config: line 4: forward[1].qos: unknown key", ErrUnknownKey},
		{"upstream:\n  backoff:\n    factor: 3\n", "config: line 3: upstream.backoff.factor: unknown key", ErrUnknownKey},
		{"serial:\n  - port: /dev/ttyUSB0\n", "config: line 2: serial[0].port: unknown key", ErrUnknownKey},
		{"base: &b {level: info}\nlog:\n  <<: *b\n", "config: line 1: base: unknown key", ErrUnknownKey},

		// Wrong types.
		{"upstream: mqtt://h\n", `config: line 1: upstream: expected a mapping, got "mqtt://h"`, ErrType},
		{"listeners:\n  address: 1.2.3.4:1\n", "config: line 2: listeners: expected a list, got a mapping", ErrType},
		{"upstream:\n  inflight: many\n", `config: line 2: upstream.inflight: expected an integer, got "many"`, ErrType},
		{"upstream:\n  inflight: 1.5\n", "config: line 2: upstream.inflight: expected an integer, got number 1.5", ErrType},
		{"upstream:\n  clean_start: yes\n", `config: line 2: upstream.clean_start: expected true or false, got "yes"`, ErrType},
		{"upstream:\n  backoff:\n    multiplier: [2]\n", "config: line 3: upstream.backoff.multiplier: expected a number, got a list", ErrType},
		{"queue:\n  ttl: true\n", `config: line 2: queue.ttl: expected a duration such as "90s" or "7d", got boolean true`, ErrType},
		{"queue:\n  max_bytes: 1.5\n", `config: line 2: queue.max_bytes: expected a size such as 1048576 or "64MiB", got number 1.5`, ErrType},
		{"forward:\n  - topic: [a]\n", "config: line 2: forward[0].topic: expected a string, got a list", ErrType},
		{"gateway_id: {a: b}\n", "config: line 1: gateway_id: expected a string, got a mapping", ErrType},
		{"- a\n- b\n", "config: line 1: expected a mapping, got a list", ErrType},
		{"upstream:\n  tls:\n    alpn: [~]\n", "config: line 3: upstream.tls.alpn[0]: expected a string, got nothing", ErrType},

		// Impossible values.
		{"queue:\n  max_bytes: -1\n", "config: line 2: queue.max_bytes: negative size -1", ErrValue},
		{"queue:\n  disk_reserve: -5MiB\n", `config: line 2: queue.disk_reserve: invalid size "-5MiB": must not be negative`, ErrValue},
		{"queue:\n  max_messages: -3\n", "config: line 2: queue.max_messages: -3: must not be negative", ErrValue},
		{"queue:\n  ttl: -1h\n", `config: line 2: queue.ttl: invalid duration "-1h": negative duration`, ErrValue},
		{"queue:\n  ttl: 60\n", `config: line 2: queue.ttl: duration 60 needs a unit, e.g. "60s"`, ErrValue},
		{"queue:\n  policy: drop_newest\n", `config: line 2: queue.policy: unknown policy "drop_newest" (use drop_oldest or reject_new)`, ErrValue},
		{"queue:\n  dir: \"\"\n", "config: line 2: queue.dir: must not be empty", ErrValue},
		{"queue:\n  commit_wait: 2s\n", "config: line 2: queue.commit_wait: 2s: must be between 0s and 1s", ErrValue},
		{"upstream:\n  url: tcp://example:1883\n", `config: line 2: upstream.url: unsupported scheme "tcp" (use mqtt, mqtts, ws or wss)`, ErrValue},
		{"upstream:\n  url: example:1883\n", `config: line 2: upstream.url: unsupported scheme "example" (use mqtt, mqtts, ws or wss)`, ErrValue},
		{"upstream:\n  url: broker.example.com\n", `config: line 2: upstream.url: url "broker.example.com" has no scheme (use mqtt://, mqtts://, ws:// or wss://)`, ErrValue},
		{"upstream:\n  url: mqtt://user:pw@h\n", "config: line 2: upstream.url: url must not contain credentials: use upstream.username and upstream.password_file", ErrValue},
		{"upstream:\n  url: mqtt://h:0\n", `config: line 2: upstream.url: url "mqtt://h:0": port must be a number from 1 to 65535`, ErrValue},
		{"upstream:\n  url: mqtt://h/path\n", `config: line 2: upstream.url: url "mqtt://h/path": a path needs ws:// or wss://`, ErrValue},
		{"upstream:\n  protocol: 4\n", `config: line 2: upstream.protocol: unsupported protocol "4" (use "5" or "3.1.1")`, ErrValue},
		{"upstream:\n  inflight: 0\n", "config: line 2: upstream.inflight: 0: must be between 1 and 65535", ErrValue},
		{"upstream:\n  inflight: 70000\n", "config: line 2: upstream.inflight: 70000: must be between 1 and 65535", ErrValue},
		{"upstream:\n  keep_alive: 1500ms\n", "config: line 2: upstream.keep_alive: 1.5s: must be whole seconds", ErrValue},
		{"upstream:\n  keep_alive: 1d\n", "config: line 2: upstream.keep_alive: 1d: must be at most 18h12m15s", ErrValue},
		{"upstream:\n  password: a\n  password_file: b\n", "config: line 3: upstream.password_file: password and password_file are exclusive; set one", ErrValue},
		{"upstream:\n  protocol: \"3.1.1\"\n  password: a\n", "config: line 1: upstream.username: MQTT 3.1.1 sends a password only with a username", ErrValue},
		{"upstream:\n  tls:\n    ca_file: ca.pem\n", `config: line 2: upstream.tls: set, but url scheme "mqtt" does not use TLS (use mqtts or wss)`, ErrValue},
		{"upstream:\n  url: mqtts://h\n  tls:\n    cert_file: c.pem\n", "config: line 4: upstream.tls.cert_file: needs tls.key_file", ErrValue},
		{"upstream:\n  backoff:\n    initial: 10s\n    max: 5s\n", "config: line 4: upstream.backoff.max: 5s: must be at least backoff.initial (10s)", ErrValue},
		{"upstream:\n  backoff:\n    multiplier: 0.5\n", "config: line 3: upstream.backoff.multiplier: 0.5: must be at least 1", ErrValue},
		{"upstream:\n  backoff:\n    randomization: 1.5\n", "config: line 3: upstream.backoff.randomization: 1.5: must be between 0 and 1", ErrValue},
		{"upstream:\n  backoff:\n    multiplier: .nan\n", "config: line 3: upstream.backoff.multiplier: expected a finite number, got .nan", ErrValue},
		{"upstream:\n  will:\n    qos: 3\n", "config: line 3: upstream.will.qos: 3: must be 0, 1 or 2", ErrValue},
		{"upstream:\n  birth:\n    topic: gw/{topic}/status\n", "config: line 3: upstream.birth.topic: placeholder {topic} is not available here (use {client_id}, {gateway_id})", ErrValue},
		{"upstream:\n  birth:\n    topic: gw/+/status\n", `config: line 3: upstream.birth.topic: "gw/+/status": a topic must not contain +, # or NUL`, ErrValue},
		{"local:\n  receive_maximum: 0\n", "config: line 2: local.receive_maximum: 0: must be between 1 and 65535", ErrValue},
		{"local:\n  max_packet_size: 1GiB\n", "config: line 2: local.max_packet_size: 1073741824: must be between 16 and 268435460 bytes", ErrValue},
		{"local:\n  max_connections: 0\n", "config: line 2: local.max_connections: 0: must be at least 1", ErrValue},
		{"local:\n  connect_timeout: 0\n", "config: line 2: local.connect_timeout: must be positive", ErrValue},
		{"local:\n  max_session_expiry: 60000d\n", "config: line 2: local.max_session_expiry: 60000d: must be at most 49710d6h28m15s", ErrValue},
		{"forward:\n  - filter: a/#/b\n", `config: line 2: forward[0].filter: topic filter "a/#/b": # must be the whole last level`, ErrValue},
		{"forward:\n  - filter: a/b+\n", `config: line 2: forward[0].filter: topic filter "a/b+": + must be a whole level`, ErrValue},
		{"forward:\n  - filter: \"\"\n", "config: line 2: forward[0].filter: empty topic filter", ErrValue},
		{"forward:\n  - filter: $share/g/a/#\n", `config: line 2: forward[0].filter: "$share/g/a/#": a shared subscription does not select local messages; use the plain filter`, ErrValue},
		{"forward:\n  - topic: up/#\n", `config: line 2: forward[0].topic: "up/#": a topic must not contain +, # or NUL`, ErrValue},
		{"forward:\n  - topic: up/{topik}\n", `config: line 2: forward[0].topic: unknown placeholder {topik} in "up/{topik}" (use {topic}, {client_id} or {gateway_id})`, ErrValue},
		{"forward:\n  - topic: up/{topic\n", `config: line 2: forward[0].topic: unterminated placeholder in "up/{topic"`, ErrValue},
		{"forward:\n  - topic: \"\"\n", "config: line 2: forward[0].topic: must not be empty", ErrValue},
		{"forward:\n  - strip_prefix: a/+/\n", `config: line 2: forward[0].strip_prefix: "a/+/" must not contain +, # or NUL`, ErrValue},
		{"forward:\n  - strip_prefix: \"{topic}/\"\n", "config: line 2: forward[0].strip_prefix: placeholder {topic} is not available here (use {client_id}, {gateway_id})", ErrValue},
		{"forward:\n  - min_qos: 3\n", "config: line 2: forward[0].min_qos: 3: must be 0, 1 or 2", ErrValue},
		{"forward:\n  - min_qos: 2\n    max_qos: 1\n", "config: line 2: forward[0].min_qos: 2 is above max_qos 1", ErrValue},
		{"forward:\n  - max_qos: -1\n", "config: line 2: forward[0].max_qos: -1: must be 0, 1 or 2", ErrValue},
		{"downlink:\n  - qos: 1\n", "config: line 2: downlink[0].filter: required", ErrValue},
		{"downlink:\n  - filter: cmd/#/x\n", `config: line 2: downlink[0].filter: topic filter "cmd/#/x": # must be the whole last level`, ErrValue},
		{"downlink:\n  - filter: cmd/{topic}\n", "config: line 2: downlink[0].filter: placeholder {topic} is not available here (use {client_id}, {gateway_id})", ErrValue},
		{"downlink:\n  - filter: cmd/#\n    qos: 3\n", "config: line 3: downlink[0].qos: 3: must be 0, 1 or 2", ErrValue},
		{"downlink:\n  - filter: cmd/#\n    local_topic: x/{client_id}\n", "config: line 3: downlink[0].local_topic: placeholder {client_id} is not available here (use {topic}, {gateway_id})", ErrValue},
		{"downlink:\n  - filter: cmd/#\n    strip_prefix: \"{client_id}/\"\n", "config: line 3: downlink[0].strip_prefix: placeholder {client_id} is not available here (use {gateway_id})", ErrValue},
		{"gateway_id: gw/+\n", `config: line 1: gateway_id: "gw/+" must not contain +, # or NUL (it is used in topics)`, ErrValue},
		{"gateway_id: a\ngateway_id: b\n", "config: line 2: gateway_id: duplicate key (first at line 1)", ErrValue},
		{"admin:\n  address: localhost\n", `config: line 2: admin.address: invalid address "localhost": want host:port`, ErrValue},
		{"log:\n  level: verbose\n", `config: line 2: log.level: unknown level "verbose" (use debug, info, warn or error)`, ErrValue},
		{"log:\n  format: xml\n", `config: line 2: log.format: unknown format "xml" (use text or json)`, ErrValue},

		// Listeners.
		{"listeners:\n  - name: a\n    address: 127.0.0.1:1\n  - name: a\n    address: 127.0.0.1:2\n", `config: line 4: listeners[1].name: "a" is also listeners[0].name`, ErrValue},
		{"listeners:\n  - address: 127.0.0.1:1\n  - address: 127.0.0.1:1\n", `config: line 3: listeners[1].address: "127.0.0.1:1" is also listeners[0].address`, ErrValue},
		{"listeners:\n  - address: 127.0.0.1:1\n    type: tls\n", `config: line 2: listeners[0].tls.cert_file: required for type "tls"`, ErrValue},
		{"listeners:\n  - type: wss\n    tls:\n      cert_file: c.pem\n", `config: line 3: listeners[0].tls.key_file: required for type "wss"`, ErrValue},
		{"listeners:\n  - type: quic\n", `config: line 2: listeners[0].type: unknown type "quic" (use tcp, tls, ws or wss)`, ErrValue},
		{"listeners:\n  - type: ws\n    path: mqtt\n", `config: line 3: listeners[0].path: "mqtt" must start with /`, ErrValue},
		{"listeners:\n  - address: 127.0.0.1:1\n    tls:\n      cert_file: c.pem\n", `config: line 3: listeners[0].tls: set, but type "tcp" does not use TLS (use tls or wss)`, ErrValue},
		{"listeners:\n  - address: 127.0.0.1:99999\n", `config: line 2: listeners[0].address: invalid address "127.0.0.1:99999": port must be a number from 0 to 65535`, ErrValue},
		{"listeners:\n  - address: 0.0.0.0:1883\n", `config: line 2: listeners[0].allow_anonymous: not set, so false on the non-loopback address "0.0.0.0:1883", and auth.password_file is empty: no client could connect (set auth.password_file, or allow_anonymous: true)`, ErrValue},
		{"listeners:\n  - allow_anonymous: false\n", "config: line 2: listeners[0].allow_anonymous: false and auth.password_file is empty: no client could connect", ErrValue},
		{"listeners:\n  - type: tls\n    tls: {cert_file: c, key_file: k, require_client_cert: true}\n", "config: line 3: listeners[0].tls.require_client_cert: needs tls.client_ca_file", ErrValue},

		// Not YAML.
		{"upstream:\n  url: [\n", "config: line 2: did not find expected node content", ErrSyntax},
		{"a: 1\n---\nb: 2\n", "config: line 2: more than one YAML document", ErrSyntax},
		{"log:\n\tlevel: info\n", "config: line 2: found character that cannot start any token", ErrSyntax},
	} {
		_, err := Parse([]byte(tc.doc))
		if err == nil {
			t.Errorf("Parse(%q): no error, want %q", tc.doc, tc.want)
			continue
		}
		first := strings.SplitN(err.Error(), "\n", 2)[0]
		if first != tc.want {
			t.Errorf("Parse(%q):\n got %q\nwant %q", tc.doc, first, tc.want)
		}
		if !errors.Is(err, tc.kind) {
			t.Errorf("Parse(%q) = %v, want errors.Is %v", tc.doc, err, tc.kind)
		}
		var ce *Error
		if !errors.As(err, &ce) {
			t.Errorf("Parse(%q) = %T, want *Error", tc.doc, err)
		}
	}
}

// TestEveryProblemReported: several problems come back together, one per
// line, in file order.
func TestEveryProblemReported(t *testing.T) {
	_, err := Parse([]byte("queue:\n  colour: blue\n  dir: x\nupstream:\n  tls:\n    cafile: x\n"))
	want := "config: line 2: queue.colour: unknown key\nconfig: line 6: upstream.tls.cafile: unknown key"
	if err == nil || err.Error() != want {
		t.Errorf("got %v, want %q", err, want)
	}
	_, err = Parse([]byte("upstream:\n  inflight: 0\nqueue:\n  policy: x\n"))
	want = "config: line 2: upstream.inflight: 0: must be between 1 and 65535\nconfig: line 4: queue.policy: unknown policy \"x\" (use drop_oldest or reject_new)"
	if err == nil || err.Error() != want {
		t.Errorf("got %v, want %q", err, want)
	}
}

func TestLoadErrorNamesFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "holdfast.yaml")
	if err := os.WriteFile(p, []byte("upstream:\n  url: tcp://h\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(p)
	want := "config: " + p + `: line 2: upstream.url: unsupported scheme "tcp" (use mqtt, mqtts, ws or wss)`
	if err == nil || err.Error() != want {
		t.Errorf("Load: %v, want %q", err, want)
	}
	if err := os.WriteFile(p, []byte("queue:\n  colour: blue\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Load(p)
	want = "config: " + p + ": line 2: queue.colour: unknown key"
	if err == nil || err.Error() != want {
		t.Errorf("Load: %v, want %q", err, want)
	}
}

// TestValidateByHand: a Config changed in code reports keys without lines.
func TestValidateByHand(t *testing.T) {
	c := Default()
	c.Upstream.Inflight = -1
	c.Forward[0].MaxQoS = 0
	err := c.Validate()
	want := "config: upstream.inflight: -1: must be between 1 and 65535\nconfig: forward[0].min_qos: 1 is above max_qos 0"
	if err == nil || err.Error() != want {
		t.Errorf("Validate: %v, want %q", err, want)
	}
}

// TestManyProblemsCapped: past maxErrors problems, the first maxErrors are
// reported, one line each, and a last line says how many more there are.
func TestManyProblemsCapped(t *testing.T) {
	for _, tc := range []struct {
		problems int
		last     string
	}{
		{maxErrors, "config: f.yaml: line 20: key20: unknown key"},
		{maxErrors + 1, "config: f.yaml: and 1 more problem"},
		{maxErrors + 5, "config: f.yaml: and 5 more problems"},
	} {
		var doc strings.Builder
		for i := 1; i <= tc.problems; i++ {
			fmt.Fprintf(&doc, "key%d: x\n", i)
		}
		p := filepath.Join(t.TempDir(), "f.yaml")
		if err := os.WriteFile(p, []byte(doc.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Load(p)
		if err == nil {
			t.Fatalf("%d unknown keys: no error", tc.problems)
		}
		lines := strings.Split(strings.ReplaceAll(err.Error(), p, "f.yaml"), "\n")
		want := min(tc.problems, maxErrors+1)
		if len(lines) != want || lines[len(lines)-1] != tc.last || !errors.Is(err, ErrUnknownKey) {
			t.Errorf("%d unknown keys: %d lines, last %q, want %d lines, last %q", tc.problems, len(lines), lines[len(lines)-1], want, tc.last)
		}
	}
}
