package config

import (
	"errors"
	"fmt"
	"math/bits"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"holdfast/internal/auth"
	"holdfast/internal/testenv"
	"holdfast/internal/topic"
)

// writeFile writes content to name in dir and returns its path.
func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestFlagsReplaceBadFileValues: a value that a flag replaces is not
// checked in the file, however wrong it is there; the flag's value is
// checked instead, and the other keys of the file still are.
func TestFlagsReplaceBadFileValues(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		file string
		o    Overrides
		want string // "" for no error
	}{
		{"listeners:\n  - address: 0.0.0.0:1883\n", Overrides{Listen: "127.0.0.1:0"}, ""},
		{"listeners:\n  - address: nohostport\n", Overrides{Listen: "127.0.0.1:0"}, ""},
		{"listeners:\n  - address: [a]\n", Overrides{Listen: "127.0.0.1:0"}, ""},
		{"upstream:\n  url: tcp://old\n", Overrides{Upstream: "mqtt://new.example"}, ""},
		{"upstream:\n  url: {a: b}\n", Overrides{Upstream: "mqtt://new.example"}, ""},
		{"queue:\n  dir: \"\"\n", Overrides{DataDir: "d"}, ""},
		{"upstream:\n  client_id: [x]\n", Overrides{ClientID: "gw"}, ""},
		// The flag's own value is checked, and named.
		{"upstream:\n  url: tcp://old\n", Overrides{Upstream: "ftp://x"}, `config: --upstream: unsupported scheme "ftp" (use mqtt, mqtts, ws or wss)`},
		// Other keys of the file are still checked, with file and line.
		{"upstream:\n  url: tcp://old\n  inflight: 0\n", Overrides{Upstream: "mqtt://h"}, "config: FILE: line 3: upstream.inflight: 0: must be between 1 and 65535"},
		// Without the flag, the file's value is the one in error.
		{"upstream:\n  url: tcp://old\n", Overrides{}, `config: FILE: line 2: upstream.url: unsupported scheme "tcp" (use mqtt, mqtts, ws or wss)`},
	} {
		p := writeFile(t, dir, "holdfast.yaml", tc.file)
		c, err := LoadWith(p, tc.o)
		want := strings.ReplaceAll(tc.want, "FILE", p)
		switch {
		case want == "" && err != nil:
			t.Errorf("LoadWith(%q, %+v): %v", tc.file, tc.o, err)
		case want != "" && (err == nil || err.Error() != want):
			t.Errorf("LoadWith(%q, %+v):\n got %v\nwant %s", tc.file, tc.o, err, want)
		case want == "" && tc.o.Upstream != "" && c.Upstream.URL != tc.o.Upstream:
			t.Errorf("LoadWith(%q, %+v): url %q", tc.file, tc.o, c.Upstream.URL)
		}
	}
}

// TestNoKnockOnErrors: a bad listener address is reported once; whether
// anyone could connect to it is not reported on top.
func TestNoKnockOnErrors(t *testing.T) {
	c, err := LoadWith("", Overrides{Listen: "nohostport"})
	if c != nil || err == nil || err.Error() != `config: --listen: invalid address "nohostport": want host:port` {
		t.Errorf("--listen nohostport: %v", err)
	}
	_, err = Parse([]byte("listeners:\n  - address: lan\n"))
	if err == nil || err.Error() != `config: line 2: listeners[0].address: invalid address "lan": want host:port` {
		t.Errorf("address lan: %v", err)
	}
}

// TestSyntaxErrorsHaveALine: YAML errors the parser reports without a line
// still name one: the line the problem is on.
func TestSyntaxErrorsHaveALine(t *testing.T) {
	for doc, want := range map[string]string{
		"log:\n  level: \"\x01\"\n":             "config: line 2: control characters are not allowed",
		"log:\n  level: info\n  format: \xff\n": "config: line 3: invalid leading UTF-8 octet",
		"log:\n  level: *nope\n":                "config: line 2: unknown anchor 'nope' referenced",
		"log:\n  level: a: b\n":                 "config: line 2: mapping values are not allowed in this context",
		"log: {level: info}\nx: [a, b]]\n":      "config: line 2: did not find expected key",
	} {
		_, err := Parse([]byte(doc))
		if err == nil || err.Error() != want || !errors.Is(err, ErrSyntax) {
			t.Errorf("Parse(%q):\n got %v\nwant %s", doc, err, want)
		}
	}
}

// largeDoc is a valid configuration of about size bytes (forward rules,
// two lines each) followed by last, and the number of its lines.
func largeDoc(size int, last string) ([]byte, int) {
	var b strings.Builder
	b.WriteString("forward:\n")
	lines := 1
	for i := 0; b.Len() < size; i++ {
		fmt.Fprintf(&b, "  - filter: \"site/%d/#\"\n    topic: \"up/{topic}\"\n", i)
		lines += 2
	}
	b.WriteString(last)
	return []byte(b.String()), lines + strings.Count(last, "\n")
}

// TestSyntaxErrorInALargeFile: an error on the last line of a 200 KiB
// file is placed on that line by a few dozen parses of the document, not
// one per line (the search used to parse it 6,000 times here, for two
// minutes).
func TestSyntaxErrorInALargeFile(t *testing.T) {
	for _, tc := range []struct {
		last, msg string
	}{
		{"log: {level: \"\x01\"}\n", "control characters are not allowed"}, // the parser gives no line
		{"x: [a, b]]\n", "did not find expected key"},                      // the parser gives the line before
		{"log:\n  level: *nope\n", "unknown anchor 'nope' referenced"},
	} {
		data, lines := largeDoc(200<<10, tc.last)
		perr := parseStream(data)
		if perr == nil {
			t.Fatalf("%q: the document parses", tc.last)
		}
		parses := 0
		e := locateSyntaxError(perr, data, func(b []byte) error { parses++; return parseStream(b) })
		if e.Line != lines || e.Msg != tc.msg {
			t.Errorf("%q: line %d %q, want line %d %q", tc.last, e.Line, e.Msg, lines, tc.msg)
		}
		// Galloping from the parser's line to the last one and halving
		// the last step: at most 2*log2(lines)+2 parses.
		if bound := 2*bits.Len(uint(lines)) + 2; parses > bound {
			t.Errorf("%q: %d parses of the document to find line %d of %d, want at most %d", tc.last, parses, e.Line, lines, bound)
		}
		t.Logf("%q: line %d of %d found in %d parses", tc.last, e.Line, lines, parses)
		_, err := Parse(data)
		if want := fmt.Sprintf("config: line %d: %s", lines, tc.msg); err == nil || err.Error() != want {
			t.Errorf("Parse: %v, want %s", err, want)
		}
	}
}

// BenchmarkSyntaxErrorLargeFile measures Parse of a 200 KiB file with a
// syntax error on its last line that the parser reports without a line.
func BenchmarkSyntaxErrorLargeFile(b *testing.B) {
	data, _ := largeDoc(200<<10, "log: {level: \"\x01\"}\n")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(data); err == nil {
			b.Fatal("no error")
		}
	}
}

// TestAliasErrorAtItsUse: a bad value reached through an alias is reported
// at the line of the alias, where the key is, not at its anchor.
func TestAliasErrorAtItsUse(t *testing.T) {
	_, err := Parse([]byte("gateway_id: &g many\nupstream:\n  url: mqtt://h\n  inflight: *g\n"))
	want := `config: line 4: upstream.inflight: expected an integer, got "many"`
	if err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
}

// TestCheckFilesParses: files that exist but that the agent could not use
// are reported by CheckFiles, naming the key, before anything starts.
func TestCheckFilesParses(t *testing.T) {
	dir := t.TempDir()
	certs := testenv.GenerateCerts(t)
	other := testenv.GenerateCerts(t)
	hash, err := auth.HashPassword("secret", 4)
	if err != nil {
		t.Fatal(err)
	}
	goodPasswd := writeFile(t, dir, "passwd", "dev:"+hash+"\n")
	junkPasswd := writeFile(t, dir, "junk-passwd", "dev:"+hash+"\nthis is not a user line\n")
	goodACL := writeFile(t, dir, "acl", "topic readwrite #\n")
	badACL := writeFile(t, dir, "bad-acl", "topic readwrite #\nfrobnicate all\n")
	notPEM := writeFile(t, dir, "not.pem", "hello\n")
	empty := writeFile(t, dir, "empty", "")
	twoLines := writeFile(t, dir, "two-lines", "a\nb\n")
	pass := writeFile(t, dir, "pass", "s3cret\n")

	tlsListener := func(cert, key, ca string) string {
		return "listeners:\n  - address: 127.0.0.1:0\n    type: tls\n    tls:\n      cert_file: " + cert + "\n      key_file: " + key + "\n      client_ca_file: " + ca + "\n"
	}
	upstreamTLS := func(ca, cert, key string) string {
		return "upstream:\n  url: mqtts://h\n  tls:\n    ca_file: " + ca + "\n    cert_file: " + cert + "\n    key_file: " + key + "\n"
	}
	for _, tc := range []struct {
		doc  string
		want []string // the keys in error, in order; none for a good configuration
	}{
		{"auth:\n  password_file: " + goodPasswd + "\n  acl_file: " + goodACL + "\n", nil},
		{tlsListener(certs.ServerCertFile, certs.ServerKeyFile, certs.CAFile), nil},
		{upstreamTLS(certs.CAFile, certs.ClientCertFile, certs.ClientKeyFile), nil},
		{"upstream:\n  password_file: " + pass + "\n", nil},
		{"auth:\n  password_file: " + junkPasswd + "\n", []string{"line 2: auth.password_file: " + junkPasswd + ":2: "}},
		{"auth:\n  acl_file: " + badACL + "\n", []string{"line 2: auth.acl_file: " + badACL + ":2: "}},
		{tlsListener(notPEM, certs.ServerKeyFile, certs.CAFile), []string{"listeners[0].tls.cert_file: " + notPEM + ": no PEM certificate found"}},
		{tlsListener(certs.ServerCertFile, other.ServerKeyFile, certs.CAFile), []string{"listeners[0].tls.key_file: certificate " + certs.ServerCertFile + " with key " + other.ServerKeyFile + ": tls: private key does not match public key"}},
		{tlsListener(certs.ServerCertFile, notPEM, certs.CAFile), []string{"listeners[0].tls.key_file: "}},
		{tlsListener(certs.ServerCertFile, certs.ServerKeyFile, notPEM), []string{"listeners[0].tls.client_ca_file: ca file " + notPEM + ": no PEM certificate found"}},
		{upstreamTLS(certs.ServerKeyFile, certs.ClientCertFile, certs.ClientKeyFile), []string{"upstream.tls.ca_file: ca file " + certs.ServerKeyFile + ": no PEM certificate found"}},
		{upstreamTLS(certs.CAFile, certs.ClientKeyFile, certs.ClientKeyFile), []string{"upstream.tls.cert_file: " + certs.ClientKeyFile + ": no PEM certificate found"}},
		{"upstream:\n  password_file: " + empty + "\n", []string{"line 2: upstream.password_file: " + empty + ": empty: the file holds no password"}},
		{"upstream:\n  password_file: " + twoLines + "\n", []string{"upstream.password_file: " + twoLines + ": more than one line"}},
		{"auth:\n  password_file: " + filepath.Join(dir, "missing") + "\n", []string{"auth.password_file: open " + filepath.Join(dir, "missing") + ": no such file or directory"}},
		{"log:\n  file: " + filepath.Join(dir, "holdfast.log") + "\n", nil},
		{"log:\n  file: " + pass + "\n", nil},
		{"log:\n  file: " + filepath.Join(dir, "no-such-dir", "holdfast.log") + "\n", []string{"line 2: log.file: directory of " + filepath.Join(dir, "no-such-dir", "holdfast.log") + " does not exist"}},
		{"log:\n  file: " + dir + "\n", []string{"log.file: " + dir + " is not a regular file"}},
		// Several problems come together, one per line.
		{"auth:\n  password_file: " + junkPasswd + "\n  acl_file: " + badACL + "\n" + upstreamTLS(notPEM, certs.ClientCertFile, certs.ClientKeyFile),
			[]string{"auth.password_file: ", "auth.acl_file: ", "upstream.tls.ca_file: "}},
	} {
		c, err := Parse([]byte(tc.doc))
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.doc, err)
			continue
		}
		err = c.CheckFiles()
		if len(tc.want) == 0 {
			if err != nil {
				t.Errorf("CheckFiles(%q): %v", tc.doc, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("CheckFiles(%q): no error, want %q", tc.doc, tc.want)
			continue
		}
		lines := strings.Split(err.Error(), "\n")
		if len(lines) != len(tc.want) {
			t.Errorf("CheckFiles(%q): %d problems, want %d:\n%v", tc.doc, len(lines), len(tc.want), err)
			continue
		}
		for i, l := range lines {
			if !strings.HasPrefix(l, "config: ") || !strings.Contains(l, tc.want[i]) {
				t.Errorf("CheckFiles(%q) line %d: %q, want it to contain %q", tc.doc, i+1, l, tc.want[i])
			}
		}
		if !errors.Is(err, ErrValue) {
			t.Errorf("CheckFiles(%q) = %v, want ErrValue", tc.doc, err)
		}
	}
}

// TestCheckFilesCreatesNoLogFile: checking a configuration with log.file
// leaves the file system as it was.
func TestCheckFilesCreatesNoLogFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "holdfast.log")
	c, err := Parse([]byte("log:\n  file: " + file + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.CheckFiles(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(file); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("CheckFiles created %s (%v)", file, err)
	}
}

// TestCheckedUpstreamTopic: an upstream topic the device's client id or
// topic levels make invalid is refused; a "$" that the rule writes is kept,
// one that comes from the device is not.
func TestCheckedUpstreamTopic(t *testing.T) {
	rule := func(filter, tmpl, strip string) ForwardRule {
		r := DefaultForwardRule()
		r.Filter, r.Topic, r.StripPrefix = filter, mustTemplate(tmpl), mustTemplate(strip)
		return r
	}
	long := strings.Repeat("x", topic.MaxLen)
	for _, tc := range []struct {
		r             ForwardRule
		local, client string
		want          string
		invalid       bool
	}{
		{rule("#", "dev/{client_id}/{topic}", ""), "x", "a+b", "dev/a+b/x", true},
		{rule("#", "dev/{client_id}/{topic}", ""), "x", "a#", "dev/a#/x", true},
		{rule("#", "dev/{client_id}/{topic}", ""), "x", "a\x00b", "dev/a\x00b/x", true},
		{rule("#", "dev/{client_id}/{topic}", ""), "x", "ok", "dev/ok/x", false},
		{rule("#", "{client_id}/{topic}", ""), "x", "$SYS", "$SYS/x", true},
		{rule("#", "{client_id}/{topic}", ""), "x", "a/b", "a/b/x", false},
		{rule("#", "{topic}/{client_id}", ""), long, "c", long + "/c", true},
		{rule("dev/#", "{topic}", "dev/"), "dev/$SYS/x", "c", "$SYS/x", true},
		{rule("$SYS/#", "{topic}", ""), "$SYS/x", "c", "$SYS/x", false},
		{rule("#", "$aws/things/{client_id}/shadow/update", ""), "s", "thing1", "$aws/things/thing1/shadow/update", false},
		{rule("#", "{gateway_id}/{topic}", ""), "x", "c", "gw/x", false},
	} {
		got, err := tc.r.CheckedUpstreamTopic(tc.local, tc.client, "gw")
		if got != tc.want || (err != nil) != tc.invalid {
			t.Errorf("rule %q from %q, client %q: %q, %v; want %q, invalid %v", tc.r.Topic, tc.local, tc.client, got, err, tc.want, tc.invalid)
		}
		if err != nil && !errors.Is(err, topic.ErrInvalidName) {
			t.Errorf("error %v does not wrap topic.ErrInvalidName", err)
		}
		if got != tc.r.UpstreamTopic(tc.local, tc.client, "gw") {
			t.Errorf("CheckedUpstreamTopic and UpstreamTopic disagree on %q", tc.local)
		}
	}
}
