package auth

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// mustHash hashes password at bcrypt.MinCost.
func mustHash(t testing.TB, password string) string {
	t.Helper()
	h, err := HashPassword(password, bcrypt.MinCost)
	if err != nil {
		t.Fatalf("HashPassword(%q): %v", password, err)
	}
	return h
}

// writeFile writes content to name in a fresh temporary directory and returns the path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadPasswordsCheck(t *testing.T) {
	alice, bob := mustHash(t, "alice-pw"), mustHash(t, "bob pw with spaces")
	content := "# users of the gateway\n\n  # indented comment\nalice:" + alice + "\r\n\t\nbob:" + bob + "  \n"
	path := writeFile(t, "passwd", content)
	p, err := LoadPasswords(path)
	if err != nil {
		t.Fatalf("LoadPasswords: %v", err)
	}
	if p.Len() != 2 {
		t.Errorf("Len = %d, want 2", p.Len())
	}
	tests := []struct {
		user, password string
		want           bool
	}{
		{"alice", "alice-pw", true},
		{"bob", "bob pw with spaces", true},
		{"alice", "bob pw with spaces", false},
		{"alice", "", false},
		{"alice", "alice-pw ", false},
		{"Alice", "alice-pw", false},
		{"carol", "alice-pw", false}, // unknown user
		{"", "", false},
		{"alice", "alice-pw" + strings.Repeat("x", MaxPasswordLen), false}, // too long
	}
	for _, tt := range tests {
		if got := p.Check(tt.user, tt.password); got != tt.want {
			t.Errorf("Check(%q, %q) = %v, want %v", tt.user, tt.password, got, tt.want)
		}
	}
}

func TestCheckRefusesBeyond72Bytes(t *testing.T) {
	// bcrypt ignores what follows byte 72; Check must not accept a longer password
	// whose first 72 bytes are right.
	pw := strings.Repeat("p", MaxPasswordLen)
	p, err := newPasswords([]passwdEntry{{user: "u", hash: mustHash(t, pw)}})
	if err != nil {
		t.Fatal(err)
	}
	if !p.Check("u", pw) {
		t.Fatalf("Check with the 72-byte password = false, want true")
	}
	if p.Check("u", pw+"extra") {
		t.Errorf("Check with 72 right bytes plus more = true, want false")
	}
}

func TestCheckNilAndEmpty(t *testing.T) {
	var p *Passwords
	if p.Check("alice", "x") || p.Len() != 0 {
		t.Errorf("nil Passwords: Check true or Len %d", p.Len())
	}
	empty, err := LoadPasswords(writeFile(t, "passwd", "# nobody\n"))
	if err != nil {
		t.Fatal(err)
	}
	if empty.Check("alice", "x") || empty.Len() != 0 {
		t.Errorf("empty file: Check true or Len %d", empty.Len())
	}
}

func TestDummyHashHasFileCost(t *testing.T) {
	// Unknown users are compared against the dummy hash: it must cost what the
	// file's hashes cost, or the timing tells which users exist.
	h5, err := HashPassword("x", 5)
	if err != nil {
		t.Fatal(err)
	}
	p, err := newPasswords([]passwdEntry{{user: "a", hash: mustHash(t, "y")}, {user: "b", hash: h5}})
	if err != nil {
		t.Fatal(err)
	}
	cost, err := bcrypt.Cost(p.dummy)
	if err != nil || cost != 5 {
		t.Errorf("dummy cost = %d, %v; want 5", cost, err)
	}
}

func TestParsePasswordsErrors(t *testing.T) {
	good := mustHash(t, "pw")
	tests := []struct {
		name, content string
		line          int
		msg           string
	}{
		{"no colon", "# c\nalice\n", 2, "found no ':'"},
		{"empty user", ":" + good + "\n", 1, "empty"},
		{"user with space first", " alice:" + good + "\n", 1, "white space"},
		{"bad hash", "alice:" + good + "\nbob:plain\n", 2, "not a bcrypt hash"},
		{"mosquitto sha512", "alice:$6$abc$def\n", 1, "not a bcrypt hash"},
		{"hash too short", "alice:" + good[:59] + "\n", 1, "not a bcrypt hash"},
		{"hash bad char", "alice:" + good[:59] + "!\n", 1, "outside bcrypt's alphabet"},
		{"cost too high", "alice:" + good[:4] + "17" + good[6:] + "\n", 1, "cost 17"},
		{"cost not number", "alice:" + good[:4] + "1x" + good[6:] + "\n", 1, "not a number"},
		{"duplicate", "alice:" + good + "\n\nalice:" + good + "\n", 3, "already listed on line 1"},
		{"control char", "al\x01ce:" + good + "\n", 1, "control character"},
		{"bad utf8", "al\xffce:" + good + "\n", 1, "UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, "passwd", tt.content)
			_, err := LoadPasswords(path)
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("LoadPasswords error = %v, want a *ParseError", err)
			}
			if !errors.Is(err, ErrSyntax) {
				t.Errorf("error %v does not wrap ErrSyntax", err)
			}
			if pe.Path != path || pe.Line != tt.line {
				t.Errorf("error at %s:%d, want %s:%d", pe.Path, pe.Line, path, tt.line)
			}
			wantPrefix := path + ":" + strconv.Itoa(tt.line) + ": "
			if !strings.HasPrefix(err.Error(), wantPrefix) || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q, want prefix %q and %q in it", err, wantPrefix, tt.msg)
			}
		})
	}
}

func TestLoadPasswordsMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope")
	_, err := LoadPasswords(path)
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), path) {
		t.Errorf("error = %v, want not-exist naming %s", err, path)
	}
}

func TestHashPasswordRefuses(t *testing.T) {
	for _, tt := range []struct {
		pw   string
		cost int
		want error
	}{
		{"", bcrypt.MinCost, ErrInvalidPassword},
		{strings.Repeat("x", MaxPasswordLen+1), bcrypt.MinCost, ErrInvalidPassword},
		{"ok", MaxHashCost + 1, nil},
		{"ok", bcrypt.MinCost - 1, nil},
	} {
		_, err := HashPassword(tt.pw, tt.cost)
		if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
			t.Errorf("HashPassword(%d bytes, cost %d) error = %v, want one wrapping %v", len(tt.pw), tt.cost, err, tt.want)
		}
	}
	h, err := HashPassword(strings.Repeat("x", MaxPasswordLen), bcrypt.MinCost)
	if err != nil || checkHash(h) != nil {
		t.Errorf("HashPassword(72 bytes) = %q, %v; want a valid hash", h, err)
	}
}

func TestValidUsername(t *testing.T) {
	for _, u := range []string{"alice", "a b", "sensor-01", "ünïcode", "a#b", "a/b+c"} {
		if err := ValidUsername(u); err != nil {
			t.Errorf("ValidUsername(%q) = %v, want nil", u, err)
		}
	}
	for _, u := range []string{"", "a:b", "#a", " a", "a\t", "a\nb", "a\x7fb", "\xff"} {
		if err := ValidUsername(u); !errors.Is(err, ErrInvalidUsername) {
			t.Errorf("ValidUsername(%q) = %v, want ErrInvalidUsername", u, err)
		}
	}
}
