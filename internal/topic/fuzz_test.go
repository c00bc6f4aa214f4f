package topic

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// refValidFilter is the test oracle for ValidFilter, written on split levels as the
// specification states the rules.
func refValidFilter(filter string) bool {
	if filter == "" || len(filter) > MaxLen || !utf8.ValidString(filter) || strings.ContainsRune(filter, 0) {
		return false
	}
	levels := strings.Split(filter, "/")
	for i, l := range levels {
		if strings.Contains(l, "+") && l != "+" {
			return false
		}
		if strings.Contains(l, "#") && (l != "#" || i != len(levels)-1) {
			return false
		}
	}
	return true
}

// refValidName is the test oracle for ValidName.
func refValidName(name string) bool {
	return refValidFilter(name) && !strings.ContainsAny(name, "+#")
}

func FuzzValidFilter(f *testing.F) {
	for _, s := range []string{"sport/tennis/#", "sport/tennis#", "+/+", "a/#/b", "$share/g/a", "", "\x00", "\xff", "/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, filter string) {
		err := ValidFilter(filter)
		if want := refValidFilter(filter); (err == nil) != want {
			t.Fatalf("ValidFilter(%q) = %v, oracle says valid = %v", filter, err, want)
		}
		if err != nil && !errors.Is(err, ErrInvalidFilter) {
			t.Fatalf("ValidFilter(%q) = %v, does not wrap ErrInvalidFilter", filter, err)
		}
		nameErr := ValidName(filter)
		if want := refValidName(filter); (nameErr == nil) != want {
			t.Fatalf("ValidName(%q) = %v, oracle says valid = %v", filter, nameErr, want)
		}
		if nameErr != nil && !errors.Is(nameErr, ErrInvalidName) {
			t.Fatalf("ValidName(%q) = %v, does not wrap ErrInvalidName", filter, nameErr)
		}
		if nameErr == nil && err != nil {
			t.Fatalf("%q is a valid name but not a valid filter: %v", filter, err)
		}
		if err == nil && !strings.ContainsAny(filter, "+#") && !Match(filter, filter) {
			t.Fatalf("Match(%q, %q) = false for a valid filter without wildcards", filter, filter)
		}
		group, inner, shared, serr := ParseShared(filter)
		if shared != strings.HasPrefix(filter, SharePrefix) {
			t.Fatalf("ParseShared(%q) shared = %v", filter, shared)
		}
		if serr == nil && shared {
			if group == "" || strings.ContainsAny(group, "/+#") || ValidFilter(inner) != nil ||
				SharePrefix+group+"/"+inner != filter {
				t.Fatalf("ParseShared(%q) = %q, %q accepted a malformed shared filter", filter, group, inner)
			}
		}
		if serr != nil && !errors.Is(serr, ErrInvalidFilter) {
			t.Fatalf("ParseShared(%q) = %v, does not wrap ErrInvalidFilter", filter, serr)
		}
	})
}

func FuzzMatch(f *testing.F) {
	for _, tt := range matchCases {
		f.Add(tt.filter, tt.name)
	}
	f.Fuzz(func(t *testing.T, filter, name string) {
		got := Match(filter, name)
		if want := refMatch(filter, name); got != want {
			t.Fatalf("Match(%q, %q) = %v, oracle says %v", filter, name, got, want)
		}
		if ValidName(name) == nil && ValidFilter(name) == nil && !Match(name, name) {
			t.Fatalf("Match(%q, %q) = false for a valid name used as its own filter", name, name)
		}
		if filter == name && ValidFilter(filter) == nil && ValidName(name) == nil && !got {
			t.Fatalf("Match(%q, %q) = false for equal valid filter and name", filter, name)
		}
	})
}

// FuzzTreeMatch compares Tree.Match with checking every filter on its own. filters and
// names are newline-separated lists; the subscriptions are added, matched against every
// name, half removed, matched again, then all removed, which must leave no node behind.
func FuzzTreeMatch(f *testing.F) {
	f.Add("sport/#\nsport/tennis/+\n#\n+/+\n$SYS/#\n$share/g/sport/#\n$share//x\na/#/b",
		"sport\nsport/tennis/player1\n$SYS/x\n/finance\na/#/b\n$share/g/sport")
	f.Add("+\n/+\n+/+\n//#\n#", "/\n//\n\n$\n$/a")
	f.Fuzz(func(t *testing.T, filterList, nameList string) {
		filters := strings.Split(filterList, "\n")
		names := strings.Split(nameList, "\n")
		if len(filters) > 64 || len(names) > 64 {
			return // keep each input cheap; size comes from the number of inputs
		}
		var tr Tree[string]
		subs := map[sub]bool{}
		var order []sub
		for i, filter := range filters {
			s := sub{filter, []string{"k0", "k1"}[i%2]}
			if replaced := tr.Add(s.filter, s.key, s.filter+"|"+s.key); replaced != subs[s] {
				t.Fatalf("Add(%q, %q) replaced = %v, want %v", s.filter, s.key, replaced, subs[s])
			}
			if !subs[s] {
				order = append(order, s)
			}
			subs[s] = true
		}
		check := func(stage string) {
			if tr.Len() != len(subs) {
				t.Fatalf("%s: Len() = %d, want %d", stage, tr.Len(), len(subs))
			}
			for _, name := range names {
				got := collect(t, &tr, name)
				want := bruteForce(subs, name)
				if !slices.Equal(got, want) {
					t.Fatalf("%s: Tree.Match(%q) = %v, brute force = %v", stage, name, got, want)
				}
			}
		}
		check("after adding")
		for i, s := range order {
			if i%2 == 0 {
				if !tr.Remove(s.filter, s.key) {
					t.Fatalf("Remove(%q, %q) = false for a present subscription", s.filter, s.key)
				}
				delete(subs, s)
			}
		}
		check("after removing half")
		for s := range subs {
			if !tr.Remove(s.filter, s.key) {
				t.Fatalf("Remove(%q, %q) = false for a present subscription", s.filter, s.key)
			}
		}
		if tr.Len() != 0 || nodes(&tr) != 0 {
			t.Fatalf("after removing everything: Len() = %d, nodes = %d, want 0 and 0", tr.Len(), nodes(&tr))
		}
	})
}
