package auth

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"holdfast/internal/topic"
)

// loadACL loads content as an ACL file, failing the test on error.
func loadACL(t *testing.T, content string) *ACL {
	t.Helper()
	a, err := LoadACL(writeFile(t, "acl", content))
	if err != nil {
		t.Fatalf("LoadACL: %v", err)
	}
	return a
}

const testACL = `# anonymous clients
topic read public/#
topic write public/anon/in

user alice
topic alice/#
topic deny alice/secret/#
topic read $SYS/broker/#
topic read sensors/#

user bob
  topic   write   bob/out
topic read bob/in/+
	topic deny public/private

# every client
pattern write devices/%c/up
pattern read devices/%u/down/#
pattern readwrite users/%u/%c
pattern deny devices/%u/locked

user alice
topic write shared/alice
`

func TestACLRules(t *testing.T) {
	a := loadACL(t, testACL)
	type op int
	const (
		pub op = iota
		sub
		recv
	)
	tests := []struct {
		op           op
		user, client string
		topic        string
		want         bool
		why          string
	}{
		// Anonymous section.
		{recv, "", "c1", "public/news", true, "anonymous read"},
		{sub, "", "c1", "public/#", true, "anonymous subscribe to the granted filter"},
		{pub, "", "c1", "public/news", false, "read is not write"},
		{pub, "", "c1", "public/anon/in", true, "anonymous write"},
		{recv, "", "c1", "public/anon/in", true, "also covered by public/#"},
		{recv, "", "c1", "alice/x", false, "anonymous has no user rules"},
		// Users do not get the anonymous section.
		{recv, "alice", "c1", "public/news", false, "anonymous rules are for anonymous clients only"},
		// Default access is readwrite.
		{pub, "alice", "c1", "alice/x/y", true, "topic without access is readwrite"},
		{recv, "alice", "c1", "alice/x/y", true, "topic without access is readwrite"},
		{sub, "alice", "c1", "alice/+/y", true, "covered by alice/#"},
		// Deny wins.
		{pub, "alice", "c1", "alice/secret/k", false, "deny wins over readwrite"},
		{recv, "alice", "c1", "alice/secret", false, "deny matches its parent level"},
		{sub, "alice", "c1", "alice/secret/#", false, "deny covers the filter"},
		{sub, "alice", "c1", "alice/secret/+", false, "deny covers the filter"},
		{sub, "alice", "c1", "alice/#", true, "deny covers only part: allowed, withheld at delivery"},
		{sub, "alice", "c1", "alice/+/k", true, "deny covers only part: allowed, withheld at delivery"},
		// A second "user alice" section merges.
		{pub, "alice", "c1", "shared/alice", true, "merged section"},
		{pub, "bob", "c1", "shared/alice", false, "alice's rule is not bob's"},
		// Bob, with indented lines and tabs.
		{pub, "bob", "c1", "bob/out", true, "write"},
		{recv, "bob", "c1", "bob/out", false, "write only"},
		{sub, "bob", "c1", "bob/in/+", true, "same filter"},
		{sub, "bob", "c1", "bob/in/x", true, "covered"},
		{sub, "bob", "c1", "bob/in/#", false, "bob/in/+ does not cover bob/in/#"},
		{sub, "bob", "c1", "bob/#", false, "not covered"},
		{recv, "bob", "c1", "public/private", false, "deny with no grant"},
		// Unknown users get only the patterns.
		{recv, "carol", "c1", "public/news", false, "no rules"},
		{pub, "carol", "c9", "devices/c9/up", true, "%c pattern"},
		{pub, "carol", "c8", "devices/c9/up", false, "%c is another client"},
		{recv, "carol", "c9", "devices/carol/down/cmd", true, "%u pattern"},
		{sub, "carol", "c9", "devices/carol/down/#", true, "%u pattern covers"},
		{sub, "carol", "c9", "devices/+/down/#", false, "wildcard in place of %u is not covered"},
		{recv, "carol", "c9", "devices/alice/down/cmd", false, "another user's topic"},
		{pub, "carol", "c9", "users/carol/c9", true, "%u and %c"},
		{pub, "carol", "c9", "users/carol/c8", false, "%u and another %c"},
		{recv, "carol", "c9", "devices/carol/locked", false, "deny pattern (no grant anyway)"},
		// Patterns apply to anonymous clients too, except where %u is needed.
		{pub, "", "c9", "users//c9", false, "empty username is not substituted"},
		{pub, "", "c9", "devices/c9/up", false, "deny devices/%u/locked cannot be substituted for anonymous: all devices/ denied"},
		// $SYS.
		{sub, "alice", "c1", "$SYS/broker/#", true, "$SYS filter under a $SYS grant"},
		{sub, "alice", "c1", "$SYS/broker/clients/+", true, "$SYS filter under a $SYS grant"},
		{sub, "alice", "c1", "$SYS/#", false, "wider than the grant"},
		{recv, "alice", "c1", "$SYS/broker/uptime", true, "$SYS read"},
		// Shared subscriptions are judged on the inner filter.
		{sub, "alice", "c1", "$share/g/sensors/+/temp", true, "shared, covered"},
		{sub, "alice", "c1", "$share/g/other/#", false, "shared, not covered"},
		{sub, "alice", "c1", "$share/g+/sensors/x", false, "invalid shared filter"},
		// Invalid names and filters are refused.
		{pub, "alice", "c1", "alice/+", false, "wildcard in a topic name"},
		{recv, "alice", "c1", "", false, "empty topic name"},
		{sub, "alice", "c1", "alice/#/x", false, "invalid filter"},
		{sub, "alice", "c1", "", false, "empty filter"},
	}
	for _, tt := range tests {
		var got bool
		var name string
		switch tt.op {
		case pub:
			name, got = "CanPublish", a.CanPublish(tt.user, tt.client, tt.topic)
		case sub:
			name, got = "CanSubscribe", a.CanSubscribe(tt.user, tt.client, tt.topic)
		case recv:
			name, got = "CanReceive", a.CanReceive(tt.user, tt.client, tt.topic)
		}
		if got != tt.want {
			t.Errorf("%s(%q, %q, %q) = %v, want %v (%s)", name, tt.user, tt.client, tt.topic, got, tt.want, tt.why)
		}
	}
}

func TestACLUnsafeIdentity(t *testing.T) {
	a := loadACL(t, `
pattern readwrite home/%u/#
pattern read cams/%c
user a/b
topic read home/a/b/#
`)
	tests := []struct {
		op           string
		user, client string
		topic        string
		want         bool
	}{
		// A username holding '/', '+' or '#' must not widen home/%u/# ...
		{"pub", "x/y", "c", "home/x/y/z", false},
		{"pub", "+", "c", "home/alice/z", false},
		{"sub", "#", "c", "home/#", false},
		{"sub", "+", "c", "home/+/#", false},
		{"sub", "+", "c", "home/+", false},
		// ... while a plain one gets its tree ...
		{"pub", "alice", "c", "home/alice/z", true},
		{"sub", "alice", "c", "home/alice/#", true},
		// ... and an unsafe one keeps what its own section grants.
		{"recv", "a/b", "c", "home/a/b/x", true},
		{"pub", "a/b", "c", "home/a/b/x", false},
		// A client id holding a wildcard, or empty, gets nothing from %c.
		{"recv", "alice", "+", "cams/+", false},
		{"recv", "alice", "#", "cams/#", false},
		{"sub", "alice", "#", "cams/#", false},
		{"sub", "alice", "", "cams/+", false},
		{"recv", "alice", "", "cams/", false},
		{"recv", "alice", "front", "cams/front", true},
		{"sub", "alice", "front", "cams/front", true},
		{"recv", "", "front", "cams/front", true}, // %c works for anonymous clients
	}
	for _, tt := range tests {
		var got bool
		switch tt.op {
		case "pub":
			got = a.CanPublish(tt.user, tt.client, tt.topic)
		case "sub":
			got = a.CanSubscribe(tt.user, tt.client, tt.topic)
		case "recv":
			got = a.CanReceive(tt.user, tt.client, tt.topic)
		}
		if got != tt.want {
			t.Errorf("%s(%q, %q, %q) = %v, want %v", tt.op, tt.user, tt.client, tt.topic, got, tt.want)
		}
	}
}

func TestACLUnsafeIdentityDeny(t *testing.T) {
	// A deny pattern that cannot be substituted denies everything below the levels
	// before its first %u or %c, so that an odd identity never escapes it.
	a := loadACL(t, "pattern read #\npattern deny open/%u/private/#\n")
	tests := []struct {
		op, user, topic string
		want            bool
	}{
		{"recv", "alice", "open/news", true},
		{"recv", "alice", "open/alice/private/x", false},
		{"recv", "alice", "open/bob/private/x", true},
		{"sub", "alice", "open/+/private/#", true}, // only part denied: withheld at delivery
		{"sub", "alice", "open/alice/private/+", false},
		{"recv", "x/y", "open/news", false},
		{"recv", "x/y", "open/x/y/private/z", false},
		{"recv", "x/y", "open", false}, // "open/#" matches its parent
		{"recv", "x/y", "other", true},
		{"sub", "x/y", "open/#", false},
		{"sub", "x/y", "#", true}, // only part denied
		{"recv", "", "open/news", false},
		{"recv", "", "other", true},
		{"recv", "#", "open/news", false},
	}
	for _, tt := range tests {
		got := a.CanReceive(tt.user, "c", tt.topic)
		if tt.op == "sub" {
			got = a.CanSubscribe(tt.user, "c", tt.topic)
		}
		if got != tt.want {
			t.Errorf("%s(%q, %q) = %v, want %v", tt.op, tt.user, tt.topic, got, tt.want)
		}
	}

	// With %c in the first level, an unsafe client id is denied everything, $SYS too.
	first := loadACL(t, "pattern read #\npattern read $SYS/#\npattern deny %c/x\n")
	for _, name := range []string{"other", "c/x", "$SYS/uptime"} {
		if first.CanReceive("alice", "c/d", name) {
			t.Errorf("CanReceive(client %q, %q) = true, want false", "c/d", name)
		}
		if !first.CanReceive("alice", "c", name) == (name != "c/x") {
			t.Errorf("CanReceive(client %q, %q) wrong", "c", name)
		}
	}
}

func TestNilACLAllowsAll(t *testing.T) {
	var a *ACL
	if !a.CanPublish("u", "c", "x") || !a.CanSubscribe("u", "c", "#") || !a.CanReceive("", "", "$SYS/x") {
		t.Errorf("nil ACL refused something")
	}
}

func TestEmptyACLDeniesAll(t *testing.T) {
	a := loadACL(t, "# nothing\n\n")
	if a.CanPublish("u", "c", "x") || a.CanSubscribe("u", "c", "#") || a.CanReceive("", "c", "x") {
		t.Errorf("empty ACL allowed something")
	}
}

func TestLoadACLErrors(t *testing.T) {
	tests := []struct {
		name, content string
		line          int
		msg           string
	}{
		{"unknown keyword", "topic a\nfoo bar\n", 2, `unknown keyword "foo"`},
		{"keyword case", "Topic a\n", 1, `unknown keyword "Topic"`},
		{"user without name", "user\n", 1, "without a user name"},
		{"user with blanks only", "user   \t\n", 1, "without a user name"},
		{"topic without filter", "\n\ntopic\n", 3, "without a topic filter"},
		{"topic access only", "topic read\n", 1, "without a topic filter"},
		{"pattern deny only", "pattern deny  \n", 1, "without a topic filter"},
		{"hash not last", "user a\ntopic read a/#/b\n", 2, "invalid topic filter"},
		{"plus in level", "topic write a/b+\n", 1, "invalid topic filter"},
		{"pattern wildcard next to %u", "pattern read a/%u+\n", 1, "invalid topic filter"},
		{"bad utf8", "topic read a/\xff\n", 1, "invalid topic filter"},
		{"crlf line numbers", "topic a\r\n\r\nbogus\r\n", 3, "unknown keyword"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, "acl", tt.content)
			_, err := LoadACL(path)
			var pe *ParseError
			if !errors.As(err, &pe) || !errors.Is(err, ErrSyntax) {
				t.Fatalf("LoadACL error = %v, want a *ParseError wrapping ErrSyntax", err)
			}
			wantPrefix := path + ":" + strconv.Itoa(tt.line) + ": "
			if pe.Line != tt.line || !strings.HasPrefix(err.Error(), wantPrefix) || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q, want prefix %q and %q", err, wantPrefix, tt.msg)
			}
		})
	}
	missing := filepath.Join(t.TempDir(), "acl")
	if _, err := LoadACL(missing); !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing file: error %v, want one naming the file", err)
	}
}

func TestLoadACLAccessWordAsFilter(t *testing.T) {
	// "topic readme" is the filter "readme", not an access word; "topic read write"
	// is read access to the topic "write".
	a := loadACL(t, "topic readme\ntopic read write\ntopic a b c\n")
	if !a.CanPublish("", "c", "readme") || a.CanPublish("", "c", "write") || !a.CanReceive("", "c", "write") {
		t.Errorf("access word parsing wrong")
	}
	if !a.CanPublish("", "c", "a b c") {
		t.Errorf("filter with spaces not kept whole")
	}
}

func TestCoversTable(t *testing.T) {
	tests := []struct {
		pattern, filter string
		want            bool
	}{
		{"sensors/#", "sensors/+/temp", true},
		{"sensors/#", "sensors/#", true},
		{"sensors/#", "sensors", true},
		{"sensors/+", "sensors/#", false},
		{"sensors/+", "sensors/a", true},
		{"sensors/+", "sensors/+", true},
		{"sensors/+", "sensors", false},
		{"sensors/+/#", "sensors/#", false},
		{"sensors/+/#", "sensors/a", true},
		{"#", "#", true},
		{"+/#", "#", true},
		{"+/#", "a/#", true},
		{"a/+/#", "a/#", false},
		{"+/+/#", "#", false},
		{"#", "a/+/#", true},
		{"#", "+/x", true},
		{"#", "$SYS/#", false},
		{"#", "$SYS/broker", false},
		{"+/broker", "$SYS/broker", false},
		{"+/#", "$SYS/x", false},
		{"$SYS/#", "$SYS/broker/+", true},
		{"$SYS/#", "$SYS", true},
		{"$SYS/+", "$SYS/#", false},
		{"a/$x", "a/$x", true},
		{"+/$x", "a/$x", true},
		{"a/b", "a/+", false},
		{"a/b", "a/b/c", false},
		{"a/b/c", "a/b", false},
		{"a//b", "a/+/b", false},
		{"a/+/b", "a//b", true},
	}
	for _, tt := range tests {
		if got := covers(tt.pattern, tt.filter); got != tt.want {
			t.Errorf("covers(%q, %q) = %v, want %v", tt.pattern, tt.filter, got, tt.want)
		}
	}
}

// TestCoversAgreesWithMatch checks covers against its definition on every pair of
// small filters: covers(p, f) exactly when every name in a universe large enough to
// hold a counterexample that f matches, p matches too.
func TestCoversAgreesWithMatch(t *testing.T) {
	filterLevels := []string{"a", "b", "$s", "+", "#"}
	nameLevels := []string{"a", "b", "$s", "", "z"}
	filters := allStrings(filterLevels, 3, func(s string) bool { return topic.ValidFilter(s) == nil })
	names := allStrings(nameLevels, 4, func(string) bool { return true })
	if len(filters) < 100 || len(names) < 700 {
		t.Fatalf("universe too small: %d filters, %d names", len(filters), len(names))
	}
	for _, p := range filters {
		for _, f := range filters {
			want := true
			for _, n := range names {
				if topic.Match(f, n) && !topic.Match(p, n) {
					want = false
					break
				}
			}
			if got := covers(p, f); got != want {
				t.Errorf("covers(%q, %q) = %v, want %v", p, f, got, want)
			}
		}
	}
}

// allStrings returns every string of 1 to maxLevels levels drawn from levels that
// keep reports true for.
func allStrings(levels []string, maxLevels int, keep func(string) bool) []string {
	var out []string
	cur := []string{""}
	for depth := 1; depth <= maxLevels; depth++ {
		var next []string
		for _, prefix := range cur {
			for _, l := range levels {
				s := l
				if depth > 1 {
					s = prefix + "/" + l
				}
				next = append(next, s)
				if keep(s) {
					out = append(out, s)
				}
			}
		}
		cur = next
	}
	return out
}

func TestACLConcurrentUse(t *testing.T) {
	a := loadACL(t, testACL)
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			client := "c" + strconv.Itoa(g)
			for i := 0; i < 500; i++ {
				if !a.CanPublish("carol", client, "devices/"+client+"/up") ||
					a.CanPublish("alice", client, "alice/secret/x") ||
					!a.CanSubscribe("alice", client, "sensors/+/temp") {
					errs <- client
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for c := range errs {
		t.Errorf("wrong answer in goroutine for %s", c)
	}
}

// matchValid is topic.Match restricted to valid filters and names, the inputs covers is
// defined on.
func matchValid(filter, name string) bool {
	return topic.ValidFilter(filter) == nil && topic.ValidName(name) == nil && topic.Match(filter, name)
}
