// Package topic validates and matches MQTT topic names and topic filters, and indexes
// subscriptions for the local broker and the agent's forward and downlink rules.
//
// The rules are those of MQTT 3.1.1 section 4.7 and MQTT 5.0 sections 4.7 and 4.8:
//
//   - A topic name is what a PUBLISH carries: at least one byte, at most 65535 bytes,
//     valid UTF-8, no U+0000 and no wildcard ('+' or '#'). See [ValidName].
//   - A topic filter is what a SUBSCRIBE carries: the same string rules, plus '+'
//     (one level) and '#' (this level's parent and every level below it), each of
//     which must occupy a whole level, '#' only as the last one. See [ValidFilter].
//   - Levels are separated by '/'; empty levels are levels ("a//b" has three, "/a"
//     has two). Matching is byte for byte and so case sensitive.
//   - A name beginning with '$' (such as "$SYS/broker/uptime") is not matched by a
//     filter whose first level is a wildcard: "#" and "+/broker/uptime" do not match
//     it, "$SYS/#" does. See [Match].
//   - A filter "$share/{ShareName}/{filter}" (MQTT 5.0 section 4.8.2) is a shared
//     subscription: it matches what {filter} matches, and the server hands each message
//     to one member of the group. See [ParseShared].
//
// Control characters (U+0001 to U+001F, U+007F to U+009F) and Unicode non-characters
// are allowed: the specifications say they SHOULD NOT be used but leave refusing them
// to the receiver's discretion, and devices in the field do send them.
//
// [Tree] indexes filters for a server that must find every subscription matching a
// published name; it is safe for concurrent use.
package topic

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxLen is the largest length in bytes of a topic name or filter: the length prefix of
// an MQTT UTF-8 string is 16 bits.
const MaxLen = 65535

// SharePrefix starts every shared subscription filter (MQTT 5.0 section 4.8.2).
const SharePrefix = "$share/"

// Sentinel errors. Every error returned by this package wraps exactly one of them, so a
// broker can answer with reason code 0x90 (Topic Name invalid) or 0x8F (Topic Filter
// invalid) using errors.Is.
var (
	// ErrInvalidName reports a topic name that breaks the rules of MQTT section 4.7.
	ErrInvalidName = errors.New("invalid topic name")
	// ErrInvalidFilter reports a topic filter, or a shared subscription filter, that
	// breaks the rules of MQTT section 4.7 or 4.8.2.
	ErrInvalidFilter = errors.New("invalid topic filter")
)

// ValidName reports whether name may be used as the topic name of a PUBLISH. It returns
// nil or an error wrapping [ErrInvalidName] that says what is wrong and where.
//
// ValidName does not allocate unless it returns an error.
func ValidName(name string) error {
	// The common case, a name of printable ASCII, in one pass; anything else takes
	// the full checks below, which also say what is wrong.
	if name != "" && len(name) <= MaxLen {
		i := 0
		for i < len(name) && !notPlainName[name[i]] {
			i++
		}
		if i == len(name) {
			return nil
		}
	}
	if reason := checkString(name); reason != "" {
		return invalid(ErrInvalidName, name, reason)
	}
	for i := 0; i < len(name); i++ {
		switch name[i] {
		case 0:
			return invalid(ErrInvalidName, name, fmt.Sprintf("contains U+0000 at byte %d", i))
		case '+', '#':
			return invalid(ErrInvalidName, name, fmt.Sprintf("contains wildcard %q at byte %d", name[i], i))
		}
	}
	return nil
}

// notPlainName marks the bytes that ValidName's fast path leaves to the full checks:
// U+0000, the wildcards and every byte of a multi-byte UTF-8 sequence.
var notPlainName = func() (t [256]bool) {
	t[0], t['+'], t['#'] = true, true, true
	for c := utf8.RuneSelf; c < 256; c++ {
		t[c] = true
	}
	return t
}()

// ValidFilter reports whether filter may be used as the topic filter of a SUBSCRIBE or
// UNSUBSCRIBE. It returns nil or an error wrapping [ErrInvalidFilter] that says what is
// wrong and where.
//
// ValidFilter checks the rules shared by MQTT 3.1.1 and 5.0 only. A filter beginning
// with [SharePrefix] passes if it is a well-formed filter as a whole; an MQTT 5.0
// server must also check it with [ParseShared], which applies the stricter rules for
// share names.
func ValidFilter(filter string) error {
	if reason := checkString(filter); reason != "" {
		return invalid(ErrInvalidFilter, filter, reason)
	}
	for i := 0; i < len(filter); i++ {
		switch filter[i] {
		case 0:
			return invalid(ErrInvalidFilter, filter, fmt.Sprintf("contains U+0000 at byte %d", i))
		case '+':
			if (i > 0 && filter[i-1] != '/') || (i+1 < len(filter) && filter[i+1] != '/') {
				return invalid(ErrInvalidFilter, filter, fmt.Sprintf(`"+" at byte %d is not alone in its level`, i))
			}
		case '#':
			if (i > 0 && filter[i-1] != '/') || (i+1 < len(filter) && filter[i+1] != '/') {
				return invalid(ErrInvalidFilter, filter, fmt.Sprintf(`"#" at byte %d is not alone in its level`, i))
			}
			if i+1 < len(filter) {
				return invalid(ErrInvalidFilter, filter, fmt.Sprintf(`"#" at byte %d is not the last level`, i))
			}
		}
	}
	return nil
}

// checkString applies the rules common to names and filters that do not look at
// single bytes: length and UTF-8. It returns "" or the reason the string is refused.
func checkString(s string) string {
	switch {
	case s == "":
		return "empty"
	case len(s) > MaxLen:
		return fmt.Sprintf("%d bytes long, more than %d", len(s), MaxLen)
	case !utf8.ValidString(s):
		return fmt.Sprintf("not valid UTF-8 at byte %d", invalidUTF8At(s))
	}
	return ""
}

// invalidUTF8At returns the offset of the first byte of s that does not start a valid
// UTF-8 sequence (utf8.ValidString rejects surrogates and overlong forms, as MQTT does).
func invalidUTF8At(s string) int {
	for i, r := range s {
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(s[i:]); size == 1 {
				return i
			}
		}
	}
	return len(s)
}

// invalid builds the error for s, which is refused for reason.
func invalid(sentinel error, s, reason string) error {
	return fmt.Errorf("%w %s: %s", sentinel, quoteShort(s), reason)
}

// quoteShort quotes s for an error message, cutting it after 64 bytes so that a
// 64 KiB topic does not end up in a log line.
func quoteShort(s string) string {
	const maxQuoted = 64
	if len(s) <= maxQuoted {
		return strconv.Quote(s)
	}
	return strconv.Quote(s[:maxQuoted]) + fmt.Sprintf("... (%d bytes)", len(s))
}

// Match reports whether the topic filter matches the topic name, by the rules of MQTT
// section 4.7: a level "+" matches exactly one level, a last level "#" matches its
// parent level and any number of levels below it ("sport/#" matches "sport",
// "sport/tennis" and "sport/tennis/player1"), empty levels are levels, and a name
// beginning with '$' is not matched by a filter whose first level is "+" or "#".
//
// Match treats filter literally: a shared subscription filter "$share/g/a/+" matches
// the name "$share/g/a/b" and nothing else. Use [ParseShared] first to match on the
// filter inside it.
//
// Match does not validate; call [ValidFilter] and [ValidName] where the strings enter
// the program. For other strings the result is still defined and free of panics: a
// level of exactly "+" is the single-level wildcard, a last level of exactly "#" is the
// multi-level wildcard, and every other level, "#" in the middle included, is compared
// byte for byte. [Tree] follows the same definition, so the two always agree.
//
// Match does not allocate.
func Match(filter, name string) bool {
	if name != "" && name[0] == '$' && (filter == "#" || filter == "+" || strings.HasPrefix(filter, "+/")) {
		return false
	}
	for {
		fl, frest, fmore := strings.Cut(filter, "/")
		if fl == "#" && !fmore {
			return true
		}
		nl, nrest, nmore := strings.Cut(name, "/")
		if fl != "+" && fl != nl {
			return false
		}
		switch {
		case !fmore:
			return !nmore
		case !nmore:
			// The name has no level left: only a "#" that matches its parent can follow.
			return frest == "#"
		}
		filter, name = frest, nrest
	}
}

// ParseShared splits a shared subscription filter "$share/{ShareName}/{filter}" (MQTT
// 5.0 section 4.8.2) into its share name (group) and the filter inside it (inner).
//
// shared reports whether filter begins with [SharePrefix] at all. If it does not,
// ParseShared returns "", "", false, nil and filter is an ordinary one. If it does, err
// is nil only when the share name is at least one character with no '/', '+' or '#',
// and inner is a valid filter; otherwise err wraps [ErrInvalidFilter].
//
// ParseShared does not allocate unless it returns an error.
func ParseShared(filter string) (group, inner string, shared bool, err error) {
	rest, ok := strings.CutPrefix(filter, SharePrefix)
	if !ok {
		return "", "", false, nil
	}
	group, inner, found := strings.Cut(rest, "/")
	switch {
	case !found:
		return "", "", true, invalid(ErrInvalidFilter, filter, "shared subscription has no filter after the share name")
	case group == "":
		return "", "", true, invalid(ErrInvalidFilter, filter, "shared subscription has an empty share name")
	case strings.ContainsAny(group, "+#"):
		return "", "", true, invalid(ErrInvalidFilter, filter, fmt.Sprintf("share name %s contains a wildcard", quoteShort(group)))
	}
	// Checking the whole string catches what the share name may not contain (U+0000,
	// invalid UTF-8), the overall length and most faults of the inner filter; the inner
	// check adds what only shows on its own, such as being empty ("$share/g/").
	if err := ValidFilter(filter); err != nil {
		return "", "", true, err
	}
	if err := ValidFilter(inner); err != nil {
		return "", "", true, fmt.Errorf("shared subscription %s: %w", quoteShort(filter), err)
	}
	return group, inner, true, nil
}
