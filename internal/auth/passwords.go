package auth

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/bcrypt"
)

// DefaultHashCost is the bcrypt cost (log2 of the rounds) that [RunPasswd] hashes new
// passwords with. Every CONNECT with a password spends one hash at the cost stored in
// the file: at 10 that is about 50 ms on a current x86 core and a few times more on a
// small ARM gateway. A higher cost slows down an attacker who stole the file by as much
// as it slows down every connecting device.
const DefaultHashCost = bcrypt.DefaultCost

// MaxHashCost is the highest bcrypt cost a password file may hold. At 17 and above one
// check takes many seconds, which would let a few connecting clients occupy the
// gateway's processors; such a line is refused when the file is loaded.
const MaxHashCost = 16

// MaxPasswordLen is the longest password in bytes: bcrypt uses only the first 72 bytes
// of its input, so a longer password would be accepted on its first 72 bytes alone.
const MaxPasswordLen = 72

// Sentinel errors, for callers that branch with errors.Is.
var (
	// ErrSyntax is wrapped by every [ParseError]: a line of a password or ACL file
	// that cannot be understood.
	ErrSyntax = errors.New("syntax error")
	// ErrUnknownUser reports a user that is not in the password file.
	ErrUnknownUser = errors.New("unknown user")
	// ErrInvalidUsername reports a username that cannot be stored in a password file.
	ErrInvalidUsername = errors.New("invalid username")
	// ErrInvalidPassword reports a password that cannot be hashed: empty, or longer
	// than [MaxPasswordLen] bytes.
	ErrInvalidPassword = errors.New("invalid password")
)

// ParseError is a line of a password or ACL file that cannot be understood. It
// unwraps to [ErrSyntax].
type ParseError struct {
	Path string // file name as given to the loader
	Line int    // 1-based line number
	Msg  string // what is wrong with the line
}

// Error returns "path:line: msg".
func (e *ParseError) Error() string {
	return fmt.Sprintf("%s:%d: %s", e.Path, e.Line, e.Msg)
}

// Unwrap returns [ErrSyntax].
func (e *ParseError) Unwrap() error { return ErrSyntax }

// Passwords is a loaded password file: usernames and their bcrypt hashes. It is
// immutable and safe for concurrent use.
type Passwords struct {
	hashes map[string][]byte
	// dummy is compared against for unknown users so that a failed check takes as
	// long whether or not the user exists. It is a hash of a random password at the
	// highest cost in the file; nil when the file has no users.
	dummy []byte
}

// passwdEntry is one user line of a password file.
type passwdEntry struct {
	user, hash string
	line       int // 1-based
}

// LoadPasswords reads and parses the password file at path. An unreadable file is an
// error naming the file; a line that is not a comment, blank, or "username:hash" with a
// well-formed bcrypt hash (cost at most [MaxHashCost]), or a user listed twice, is a
// [*ParseError] naming the file and line.
func LoadPasswords(path string) (*Passwords, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read password file: %w", err)
	}
	entries, err := parsePasswords(path, data)
	if err != nil {
		return nil, err
	}
	return newPasswords(entries)
}

// newPasswords builds the lookup table and the dummy hash for entries.
func newPasswords(entries []passwdEntry) (*Passwords, error) {
	p := &Passwords{hashes: make(map[string][]byte, len(entries))}
	maxCost := 0
	for _, e := range entries {
		p.hashes[e.user] = []byte(e.hash)
		if c, err := bcrypt.Cost([]byte(e.hash)); err == nil && c > maxCost {
			maxCost = c
		}
	}
	if len(entries) > 0 {
		secret := make([]byte, 32)
		rand.Read(secret) // never returns an error (crypto/rand docs)
		dummy, err := bcrypt.GenerateFromPassword(secret, maxCost)
		if err != nil {
			return nil, fmt.Errorf("password file: make dummy hash: %w", err)
		}
		p.dummy = dummy
	}
	return p, nil
}

// Check reports whether password is the password of username. It returns false for an
// unknown user after spending the same bcrypt work as for a known one, so the time it
// takes does not tell which users exist (as long as all hashes in the file have the same
// cost). A password longer than [MaxPasswordLen] bytes is refused. A nil *Passwords
// refuses everyone.
func (p *Passwords) Check(username, password string) bool {
	if p == nil || p.dummy == nil || len(password) > MaxPasswordLen {
		return false
	}
	hash, known := p.hashes[username]
	if !known {
		hash = p.dummy
	}
	err := bcrypt.CompareHashAndPassword(hash, []byte(password))
	return known && err == nil
}

// Len returns the number of users.
func (p *Passwords) Len() int {
	if p == nil {
		return 0
	}
	return len(p.hashes)
}

// parsePasswords parses the content of a password file; path is used in errors only.
func parsePasswords(path string, data []byte) ([]passwdEntry, error) {
	var entries []passwdEntry
	seen := make(map[string]int)
	for i, line := range splitLines(data) {
		n := i + 1
		if isBlankOrComment(line) {
			continue
		}
		fail := func(format string, args ...any) error {
			return &ParseError{Path: path, Line: n, Msg: fmt.Sprintf(format, args...)}
		}
		user, hash, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fail(`want "username:hash", found no ':'`)
		}
		if err := ValidUsername(user); err != nil {
			return nil, fail("%v", err)
		}
		hash = strings.TrimRight(hash, " \t")
		if err := checkHash(hash); err != nil {
			return nil, fail("user %q: %v", user, err)
		}
		if first, dup := seen[user]; dup {
			return nil, fail("user %q is already listed on line %d", user, first)
		}
		seen[user] = n
		entries = append(entries, passwdEntry{user: user, hash: hash, line: n})
	}
	return entries, nil
}

// splitLines splits data at '\n', dropping one '\r' before it, and drops the empty
// piece after a final newline.
func splitLines(data []byte) []string {
	if len(data) == 0 {
		return nil
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimSuffix(l, "\r")
	}
	return lines
}

// isBlankOrComment reports whether line holds nothing but spaces and tabs, or starts
// with '#' after them.
func isBlankOrComment(line string) bool {
	t := strings.TrimLeft(line, " \t")
	return t == "" || t[0] == '#'
}

// ValidUsername returns nil if username can be stored in a password file, or an error
// wrapping [ErrInvalidUsername] saying why not: a username must be non-empty valid
// UTF-8 without ':' or control characters, must not begin with '#' (it would read as a
// comment), and must not begin or end with a space or tab.
func ValidUsername(username string) error {
	bad := func(why string) error {
		return fmt.Errorf("%w %q: %s", ErrInvalidUsername, username, why)
	}
	switch {
	case username == "":
		return bad("empty")
	case !utf8.ValidString(username):
		return bad("not valid UTF-8")
	case username[0] == '#':
		return bad("begins with '#'")
	case strings.TrimSpace(username) != username:
		return bad("begins or ends with white space")
	}
	for _, r := range username {
		switch {
		case r == ':':
			return bad("contains ':'")
		case r < 0x20 || r == 0x7f:
			return bad(fmt.Sprintf("contains control character %U", r))
		}
	}
	return nil
}

// checkHash returns nil if hash is a bcrypt hash in modular crypt form,
// "$2a$NN$" followed by 53 characters of bcrypt's base64 alphabet, with 4 <= NN <=
// [MaxHashCost].
func checkHash(hash string) error {
	const hashLen = 60
	if len(hash) != hashLen || hash[0] != '$' || hash[1] != '2' || hash[3] != '$' || hash[6] != '$' ||
		!strings.ContainsRune("abxy", rune(hash[2])) {
		return errors.New(`hash is not a bcrypt hash "$2a$NN$..." of 60 characters (mosquitto's own $6$/$7$ hashes are not supported: set the password again)`)
	}
	for i := 7; i < hashLen; i++ {
		c := hash[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '/') {
			return fmt.Errorf("hash has %q at byte %d, outside bcrypt's alphabet", c, i)
		}
	}
	if hash[4] < '0' || hash[4] > '9' || hash[5] < '0' || hash[5] > '9' {
		return fmt.Errorf("hash cost %q is not a number", hash[4:6])
	}
	cost := int(hash[4]-'0')*10 + int(hash[5]-'0')
	if cost < bcrypt.MinCost || cost > MaxHashCost {
		return fmt.Errorf("hash cost %d outside %d to %d", cost, bcrypt.MinCost, MaxHashCost)
	}
	return nil
}

// HashPassword returns the bcrypt hash of password at cost, ready to be stored with
// [CreatePasswordFile] or [SetUser]. An empty password or one longer than
// [MaxPasswordLen] bytes is an error wrapping [ErrInvalidPassword].
func HashPassword(password string, cost int) (string, error) {
	switch {
	case password == "":
		return "", fmt.Errorf("%w: empty", ErrInvalidPassword)
	case len(password) > MaxPasswordLen:
		return "", fmt.Errorf("%w: %d bytes long, more than %d", ErrInvalidPassword, len(password), MaxPasswordLen)
	case cost < bcrypt.MinCost || cost > MaxHashCost:
		return "", fmt.Errorf("hash password: cost %d outside %d to %d", cost, bcrypt.MinCost, MaxHashCost)
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), cost)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return string(h), nil
}
