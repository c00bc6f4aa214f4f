package auth

import (
	"fmt"
	"os"
	"strings"

	"holdfast/internal/topic"
)

// access is what a rule grants; deny is a rule of its own.
type access uint8

const (
	accessRead  access = 1 << iota // receive messages, subscribe
	accessWrite                    // publish
	accessDeny                     // no access of any kind; wins over grants
)

// rule is one "topic" or "pattern" line.
type rule struct {
	filter string // as written
	access access
	// subst is set for a pattern line whose filter contains %u or %c.
	subst bool
	// denyPrefix, for a subst deny rule, is the filter's levels before the first one
	// holding %u or %c, and denyAll is set when that is the first level. When the
	// identity cannot be substituted safely (see [ACL]) the rule denies
	// denyPrefix+"/#", or everything.
	denyPrefix string
	denyAll    bool
}

// ACL is a loaded access control list in mosquitto's acl_file format (see the package
// documentation). It is immutable and safe for concurrent use.
//
// The rules that apply to a client are those of its section (the anonymous section,
// before any "user" line, for a client without a username, which is the empty string
// here; the section of "user NAME" for the user NAME, several sections of one name
// merge) and every "pattern" line. An access is granted when a rule grants it and no
// deny rule matches; a client that no rule grants anything has no access.
//
// In pattern lines, %u stands for the username and %c for the client identifier. An
// identity that is empty or contains '+', '#' or '/' would change the shape of the
// filter, so it is never substituted: a granting pattern using it does not apply to
// that client, and a denying one denies all topics below the levels before the first
// %u or %c (everything, if the pattern starts with one). Such an identity can thus lose
// access but never gain it.
//
// A nil *ACL allows everything: it is what a broker runs with when no ACL file is
// configured.
type ACL struct {
	anonymous []rule
	users     map[string][]rule
	patterns  []rule
}

// LoadACL reads and parses the ACL file at path. An unreadable file is an error naming
// the file; a bad line (unknown keyword, unknown access, missing user name or filter,
// invalid topic filter) is a [*ParseError] naming the file and line.
func LoadACL(path string) (*ACL, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read acl file: %w", err)
	}
	return parseACL(path, data)
}

// parseACL parses the content of an ACL file; path is used in errors only.
func parseACL(path string, data []byte) (*ACL, error) {
	a := &ACL{users: make(map[string][]rule)}
	user, inUser := "", false // the section being read
	for i, line := range splitLines(data) {
		n := i + 1
		if isBlankOrComment(line) {
			continue
		}
		fail := func(format string, args ...any) error {
			return &ParseError{Path: path, Line: n, Msg: fmt.Sprintf(format, args...)}
		}
		keyword, rest := cutField(strings.TrimSpace(line))
		switch keyword {
		case "user":
			if rest == "" {
				return nil, fail(`"user" without a user name`)
			}
			user, inUser = rest, true
		case "topic", "pattern":
			acc := accessRead | accessWrite
			word, filter := cutField(rest)
			switch word {
			case "read":
				acc = accessRead
			case "write":
				acc = accessWrite
			case "readwrite":
			case "deny":
				acc = accessDeny
			default:
				filter = rest
			}
			if filter == "" {
				return nil, fail("%q without a topic filter", keyword)
			}
			r := rule{filter: filter, access: acc}
			check := filter
			if keyword == "pattern" {
				r.subst = strings.Contains(filter, "%u") || strings.Contains(filter, "%c")
				check = strings.NewReplacer("%u", "u", "%c", "c").Replace(filter)
			}
			if err := topic.ValidFilter(check); err != nil {
				return nil, fail("%v", err)
			}
			if r.subst && acc == accessDeny {
				r.denyPrefix, r.denyAll = substPrefix(filter)
			}
			switch {
			case keyword == "pattern":
				a.patterns = append(a.patterns, r)
			case inUser:
				a.users[user] = append(a.users[user], r)
			default:
				a.anonymous = append(a.anonymous, r)
			}
		default:
			return nil, fail(`unknown keyword %q (want "user", "topic" or "pattern")`, keyword)
		}
	}
	return a, nil
}

// cutField splits s at its first run of spaces or tabs.
func cutField(s string) (field, rest string) {
	i := strings.IndexAny(s, " \t")
	if i < 0 {
		return s, ""
	}
	return s[:i], strings.TrimLeft(s[i:], " \t")
}

// substPrefix returns the levels of filter before the first one holding %u or %c, and
// whether that is the first level.
func substPrefix(filter string) (prefix string, all bool) {
	levels := strings.Split(filter, "/")
	for i, l := range levels {
		if strings.Contains(l, "%u") || strings.Contains(l, "%c") {
			return strings.Join(levels[:i], "/"), i == 0
		}
	}
	return filter, false // not reached: only called for filters holding one
}

// CanPublish reports whether the client (username, clientID) may publish to the topic
// name: a rule grants write access to a filter matching it and no deny rule matches it.
// An invalid topic name (see [topic.ValidName]) is refused.
func (a *ACL) CanPublish(username, clientID, name string) bool {
	if a == nil {
		return true
	}
	if topic.ValidName(name) != nil {
		return false
	}
	return a.check(username, clientID, accessWrite, name, topic.Match)
}

// CanReceive reports whether a message published to the topic name may be delivered
// to the client (username, clientID): a rule grants read access to a filter matching it
// and no deny rule matches it. The broker asks for every delivery, since a subscription
// that was allowed may match names that a deny rule covers. An invalid topic name is
// refused.
func (a *ACL) CanReceive(username, clientID, name string) bool {
	if a == nil {
		return true
	}
	if topic.ValidName(name) != nil {
		return false
	}
	return a.check(username, clientID, accessRead, name, topic.Match)
}

// CanSubscribe reports whether the client (username, clientID) may subscribe to
// filter: a rule grants read access to a filter that covers it, every name filter
// matches being matched by the rule's filter too ("sensors/#" covers "sensors/+/temp"
// and itself; "sensors/+" does not cover "sensors/#"; "#" does not cover "$SYS/#"), and
// no deny rule covers it. A deny rule that covers only part of what filter matches does
// not refuse the subscription; [ACL.CanReceive] then withholds those messages. A shared
// subscription "$share/GROUP/FILTER" is judged on FILTER. An invalid filter is refused.
func (a *ACL) CanSubscribe(username, clientID, filter string) bool {
	if a == nil {
		return true
	}
	if _, inner, shared, err := topic.ParseShared(filter); shared {
		if err != nil {
			return false
		}
		filter = inner
	} else if topic.ValidFilter(filter) != nil {
		return false
	}
	return a.check(username, clientID, accessRead, filter, covers)
}

// check applies the rules for the client to s (a name or a filter) with match, which
// reports whether a rule's filter applies to s.
func (a *ACL) check(username, clientID string, want access, s string, match func(ruleFilter, s string) bool) bool {
	section := a.anonymous
	if username != "" {
		section = a.users[username]
	}
	allowed := false
	for _, rules := range [2][]rule{section, a.patterns} {
		for i := range rules {
			r := &rules[i]
			f, ok := r.filter, true
			if r.subst {
				f, ok = substitute(r.filter, username, clientID)
			}
			switch {
			case r.access == accessDeny && ok:
				if match(f, s) {
					return false
				}
			case r.access == accessDeny:
				if r.denyAll || match(r.denyPrefix+"/#", s) {
					return false
				}
			case !allowed && ok && r.access&want != 0:
				allowed = match(f, s)
			}
		}
	}
	return allowed
}

// substitute replaces %u with username and %c with clientID in filter. It reports
// false if filter uses an identity that is empty or holds '+', '#' or '/'.
func substitute(filter, username, clientID string) (string, bool) {
	if strings.Contains(filter, "%u") {
		if !safeIdentity(username) {
			return "", false
		}
		filter = strings.ReplaceAll(filter, "%u", username)
	}
	if strings.Contains(filter, "%c") {
		if !safeIdentity(clientID) {
			return "", false
		}
		filter = strings.ReplaceAll(filter, "%c", clientID)
	}
	return filter, true
}

// safeIdentity reports whether id can stand in a topic level without changing the
// shape of a filter.
func safeIdentity(id string) bool {
	return id != "" && !strings.ContainsAny(id, "+#/")
}

// covers reports whether every topic name that filter matches is also matched by
// pattern, following [topic.Match]: "+" matches one level, a last "#" its parent and
// every level below, and a name beginning with '$' is not matched by a first-level
// wildcard.
func covers(pattern, filter string) bool {
	first := true
	for {
		pl, prest, pmore := strings.Cut(pattern, "/")
		fl, frest, fmore := strings.Cut(filter, "/")
		dollar := first && strings.HasPrefix(fl, "$")
		switch {
		case pl == "#" && !pmore:
			return !dollar
		case fl == "#" && !fmore:
			// Only a "#" covers a "#", except that a first-level "#" matches no
			// parent (names have at least one level), so "+/#" covers it too.
			return first && pl == "+" && prest == "#"
		case pl == "+":
			if dollar || fl == "#" {
				return false
			}
		case pl != fl:
			return false
		}
		switch {
		case !pmore && !fmore:
			return true
		case !fmore:
			return prest == "#" // "a/#" matches "a"
		case !pmore:
			return false
		}
		pattern, filter, first = prest, frest, false
	}
}
