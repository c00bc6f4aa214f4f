package auth

import (
	"errors"
	"strings"
	"testing"

	"holdfast/internal/topic"
)

// FuzzParsePasswords feeds arbitrary bytes to the password file parser: it must not
// panic, must fail only with a *ParseError, and every user it returns must be a valid
// username with a well-formed hash, listed once.
func FuzzParsePasswords(f *testing.F) {
	f.Add([]byte("# users\n\nalice:$2a$04$abcdefghijklmnopqrstuu5Wt6mm7hQ5kzMbfbOKm7lNcP5QHCbqm\n"))
	f.Add([]byte("alice:$2y$10$abcdefghijklmnopqrstuu5Wt6mm7hQ5kzMbfbOKm7lNcP5QHCbqm\r\nbob\n"))
	f.Add([]byte("alice:$6$salt$hash\n"))
	f.Add([]byte(":\n#\n \t\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := parsePasswords("fuzz", data)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Line < 1 || !strings.HasPrefix(err.Error(), "fuzz:") {
				t.Fatalf("error %v is not a *ParseError naming file and line", err)
			}
			return
		}
		seen := map[string]bool{}
		for _, e := range entries {
			if ValidUsername(e.user) != nil || checkHash(e.hash) != nil || seen[e.user] {
				t.Fatalf("accepted bad or duplicate entry %+v", e)
			}
			seen[e.user] = true
		}
	})
}

// FuzzLoadACL feeds arbitrary bytes to the ACL parser and asks the result a few
// questions: nothing may panic, a failure must be a *ParseError, and an ACL must refuse
// invalid names and filters.
func FuzzLoadACL(f *testing.F) {
	f.Add([]byte(testACL))
	f.Add([]byte("topic read $SYS/#\nuser a/b\npattern deny %c/#\npattern write %u/%c/+\n"))
	f.Add([]byte("topic\nuser\npattern readwrite\n"))
	f.Add([]byte("topic deny #\r\ntopic a/#/b\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := parseACL("fuzz", data)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Line < 1 || !strings.HasPrefix(err.Error(), "fuzz:") {
				t.Fatalf("error %v is not a *ParseError naming file and line", err)
			}
			return
		}
		for _, user := range []string{"", "alice", "a/b", "+"} {
			for _, client := range []string{"c", "#", ""} {
				a.CanPublish(user, client, "alice/x")
				a.CanReceive(user, client, "$SYS/x")
				a.CanSubscribe(user, client, "a/+/#")
				if a.CanPublish(user, client, "a/+") || a.CanSubscribe(user, client, "a/#/b") {
					t.Fatalf("invalid name or filter allowed")
				}
			}
		}
	})
}

// FuzzCovers checks covers against topic names derived from the fuzz input: when
// covers(pattern, filter) holds, every name the filter matches is matched by pattern.
func FuzzCovers(f *testing.F) {
	f.Add("sensors/#", "sensors/+/temp", "sensors/a/temp")
	f.Add("+/#", "#", "x")
	f.Add("#", "$SYS/#", "$SYS/x")
	f.Fuzz(func(t *testing.T, pattern, filter, name string) {
		if topic.ValidFilter(pattern) != nil || topic.ValidFilter(filter) != nil || !covers(pattern, filter) {
			return
		}
		if matchValid(filter, name) && !matchValid(pattern, name) {
			t.Fatalf("covers(%q, %q) but %q matches only the filter", pattern, filter, name)
		}
	})
}
