package topic

import (
	"errors"
	"strings"
	"testing"
)

func TestValidName(t *testing.T) {
	tests := []struct {
		name    string
		wantErr string // substring of the error; "" means valid
	}{
		// MQTT 3.1.1 / 5.0 section 4.7.3 examples and rules.
		{"sport/tennis/player1", ""},
		{"ACCOUNTS", ""},
		{"Accounts", ""},
		{"Accounts payable", ""},
		{"/finance", ""},
		{"finance", ""},
		{"/", ""},
		{"//", ""},
		{"a//b", ""},
		{"$SYS/broker/uptime", ""},
		{"$share/g/a", ""}, // a name may look like anything without wildcards
		{"caf\u00e9/\u6e29\u5ea6", ""},
		{"\ufeffbom", ""},         // U+FEFF must not be stripped, so it is allowed
		{"ctl\x01\x7f\u0085", ""}, // SHOULD NOT, but not refused
		{strings.Repeat("a", MaxLen), ""},
		{"", "empty"},
		{strings.Repeat("a", MaxLen+1), "65536 bytes long"},
		{"a/+", `wildcard '+' at byte 2`},
		{"a/#", `wildcard '#' at byte 2`},
		{"sport+", `wildcard '+' at byte 5`},
		{"a/b#", `wildcard '#' at byte 3`},
		{"a\x00b", "U+0000 at byte 1"},
		{"ok/\xff", "not valid UTF-8 at byte 3"},
		{"\xed\xa0\x80", "not valid UTF-8 at byte 0"}, // U+D800, a surrogate
		{"\xc0\xaf", "not valid UTF-8 at byte 0"},     // overlong '/'
	}
	for _, tt := range tests {
		err := ValidName(tt.name)
		checkErr(t, "ValidName", tt.name, err, tt.wantErr, ErrInvalidName)
	}
}

func TestValidFilter(t *testing.T) {
	tests := []struct {
		filter  string
		wantErr string
	}{
		// Section 4.7.1.2 (multi-level wildcard) examples.
		{"sport/tennis/player1/#", ""},
		{"sport/#", ""},
		{"#", ""},
		{"sport/tennis/#", ""},
		{"sport/tennis#", `"#" at byte 12 is not alone in its level`},
		{"sport/tennis/#/ranking", `"#" at byte 13 is not the last level`},
		// Section 4.7.1.3 (single-level wildcard) examples.
		{"+", ""},
		{"+/tennis/#", ""},
		{"sport+", `"+" at byte 5 is not alone in its level`},
		{"sport/+/player1", ""},
		{"+/+", ""},
		{"/+", ""},
		// Section 4.7.2 and 4.7.3.
		{"$SYS/#", ""},
		{"$SYS/monitor/+", ""},
		{"/", ""},
		{"Accounts payable", ""},
		// Edge cases.
		{"+/+/+", ""},
		{"//#", ""},
		{"a//+//#", ""},
		{"+#", `"+" at byte 0 is not alone in its level`},
		{"#+", `"#" at byte 0 is not alone in its level`},
		{"a/+b", `"+" at byte 2 is not alone in its level`},
		{"a/#/", `"#" at byte 2 is not the last level`},
		{"#/", `"#" at byte 0 is not the last level`},
		{"##", `"#" at byte 0 is not alone in its level`},
		// Filters that a SUBSCRIBE carries and the packet codec leaves to
		// this check (see packet.Subscribe).
		{"a/#/b", `"#" at byte 2 is not the last level`},
		{"a+", `"+" at byte 1 is not alone in its level`},
		{"$share//x", ""},    // a valid filter as a whole; ParseShared refuses it
		{"$share/g/a/+", ""}, // syntax only; ParseShared checks share rules
		{strings.Repeat("+/", MaxLen/2) + "#", ""},
		{strings.Repeat("a", MaxLen+1), "65536 bytes long"},
		{"", "empty"},
		{"a/\x00", "U+0000 at byte 2"},
		{"a/\xff/#", "not valid UTF-8 at byte 2"},
	}
	for _, tt := range tests {
		err := ValidFilter(tt.filter)
		checkErr(t, "ValidFilter", tt.filter, err, tt.wantErr, ErrInvalidFilter)
	}
}

// checkErr fails t unless err matches wantErr ("" for nil, else a substring) and wraps
// sentinel.
func checkErr(t *testing.T, fn, arg string, err error, wantErr string, sentinel error) {
	t.Helper()
	short := arg
	if len(short) > 40 {
		short = short[:40] + "..."
	}
	switch {
	case wantErr == "" && err != nil:
		t.Errorf("%s(%q) = %v, want nil", fn, short, err)
	case wantErr != "" && err == nil:
		t.Errorf("%s(%q) = nil, want error containing %q", fn, short, wantErr)
	case wantErr != "" && !strings.Contains(err.Error(), wantErr):
		t.Errorf("%s(%q) = %v, want error containing %q", fn, short, err, wantErr)
	case wantErr != "" && !errors.Is(err, sentinel):
		t.Errorf("%s(%q) = %v, does not wrap %v", fn, short, err, sentinel)
	}
}

func TestErrorMessageShortensLongInput(t *testing.T) {
	err := ValidName(strings.Repeat("x", 70000))
	if err == nil {
		t.Fatal("ValidName of 70000 bytes = nil, want error")
	}
	if len(err.Error()) > 200 {
		t.Errorf("error message is %d bytes long, want it cut short: %.120s", len(err.Error()), err)
	}
	if !strings.Contains(err.Error(), "(70000 bytes)") {
		t.Errorf("error %q does not give the full length", err)
	}
}

// matchCases are the examples of MQTT sections 4.7.1.2, 4.7.1.3, 4.7.2 and 4.7.3 and
// the edge cases around them. Tree tests reuse them.
var matchCases = []struct {
	filter, name string
	want         bool
}{
	// 4.7.1.2: "sport/tennis/player1/#".
	{"sport/tennis/player1/#", "sport/tennis/player1", true},
	{"sport/tennis/player1/#", "sport/tennis/player1/ranking", true},
	{"sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true},
	{"sport/tennis/player1/#", "sport/tennis/player2", false},
	{"sport/tennis/player1/#", "sport/tennis", false},
	// 4.7.1.2: "sport/#" also matches the singular "sport".
	{"sport/#", "sport", true},
	{"sport/#", "sport/", true},
	{"sport/#", "sport/tennis/player1", true},
	{"sport/#", "sports", false},
	{"sport/#", "/sport", false},
	{"#", "sport", true},
	{"#", "/", true},
	{"#", "sport/tennis/player1", true},
	// 4.7.1.3: "sport/tennis/+".
	{"sport/tennis/+", "sport/tennis/player1", true},
	{"sport/tennis/+", "sport/tennis/player2", true},
	{"sport/tennis/+", "sport/tennis/player1/ranking", false},
	{"sport/tennis/+", "sport/tennis", false},
	// 4.7.1.3: "sport/+" does not match "sport" but does match "sport/".
	{"sport/+", "sport", false},
	{"sport/+", "sport/", true},
	// 4.7.1.3: "/finance" is matched by "+/+" and "/+", not by "+".
	{"+/+", "/finance", true},
	{"/+", "/finance", true},
	{"+", "/finance", false},
	{"+/tennis/#", "sport/tennis/player1", true},
	{"+/tennis/#", "sport/tennis", true},
	{"+/tennis/#", "sport/golf", false},
	{"sport/+/player1", "sport/tennis/player1", true},
	{"sport/+/player1", "sport/tennis/player2", false},
	// 4.7.2: topics beginning with '$'.
	{"#", "$SYS/monitor/Clients", false},
	{"+/monitor/Clients", "$SYS/monitor/Clients", false},
	{"$SYS/#", "$SYS/monitor/Clients", true},
	{"$SYS/#", "$SYS", true},
	{"$SYS/monitor/+", "$SYS/monitor/Clients", true},
	{"+", "$SYS", false},
	{"+/#", "$SYS/x", false},
	{"$SYS/+/Clients", "$SYS/monitor/Clients", true},
	{"#", "a/$SYS", true},              // only the first character of the name counts
	{"+/+", "a/$b", true},              // a '$' in a later level is ordinary
	{"$+", "$+", true},                 // literal, no wildcard here
	{"$share/g/#", "$share/g/a", true}, // Match is literal about $share
	// 4.7.3: case, spaces, leading slash.
	{"ACCOUNTS", "Accounts", false},
	{"Accounts payable", "Accounts payable", true},
	{"finance", "/finance", false},
	{"/finance", "finance", false},
	{"/", "/", true},
	// Empty levels are levels.
	{"a//b", "a//b", true},
	{"a/+/b", "a//b", true},
	{"a/+/b", "a/b", false},
	{"+/+/+", "//", true},
	{"+/+", "//", false},
	{"+", "", true}, // not a valid name, but defined
	{"/#", "/", true},
	{"/#", "/a/b", true},
	{"a/#", "a//", true},
	{"a/+/#", "a/b", true},
	{"a/+/#", "a", false},
	// Literal compare of what the wildcards are not.
	{"a/b", "a/b/c", false},
	{"a/b/c", "a/b", false},
	{"a", "ab", false},
	{"ab", "a", false},
}

func TestMatch(t *testing.T) {
	for _, tt := range matchCases {
		if got := Match(tt.filter, tt.name); got != tt.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tt.filter, tt.name, got, tt.want)
		}
		if got := refMatch(tt.filter, tt.name); got != tt.want {
			t.Errorf("refMatch(%q, %q) = %v, want %v (the test oracle is wrong)", tt.filter, tt.name, got, tt.want)
		}
	}
}

// ValidName of a valid name allocates nothing, on the fast path for ASCII and
// on the full checks for other names; the PUBLISH encoder calls it for every
// message.
func TestValidNameDoesNotAllocate(t *testing.T) {
	names := []string{"site/line-3/press-7/telemetry", "gr\u00fc\u00dfe/\U0002A6D4", "$SYS/x", "/"}
	allocs := testing.AllocsPerRun(100, func() {
		for _, n := range names {
			if err := ValidName(n); err != nil {
				t.Fatal(err)
			}
		}
	})
	if allocs != 0 {
		t.Errorf("ValidName allocates %v times per run of %d names, want 0", allocs, len(names))
	}
}

func TestMatchDoesNotAllocate(t *testing.T) {
	allocs := testing.AllocsPerRun(100, func() {
		for _, tt := range matchCases {
			Match(tt.filter, tt.name)
		}
	})
	if allocs != 0 {
		t.Errorf("Match allocates %v times per run of %d cases, want 0", allocs, len(matchCases))
	}
}

func TestParseShared(t *testing.T) {
	tests := []struct {
		filter       string
		group, inner string
		shared       bool
		wantErr      string
	}{
		// MQTT 5.0 section 4.8.2 examples.
		{"$share/consumer1/sport/tennis/+", "consumer1", "sport/tennis/+", true, ""},
		{"$share/consumer2/sport/tennis/+", "consumer2", "sport/tennis/+", true, ""},
		{"$share/consumer1//finance", "consumer1", "/finance", true, ""},
		{"$share/g/#", "g", "#", true, ""},
		{"$share/g/+", "g", "+", true, ""},
		{"$share/g/$SYS/#", "g", "$SYS/#", true, ""},
		{"$share/g/$share/h/x", "g", "$share/h/x", true, ""},
		{"$share/gr\u00fcppe/a", "gr\u00fcppe", "a", true, ""},
		// Not shared at all.
		{"sport/tennis/+", "", "", false, ""},
		{"$SHARE/g/a", "", "", false, ""}, // case sensitive
		{"$share", "", "", false, ""},
		{"share/g/a", "", "", false, ""},
		{"$shared/g/a", "", "", false, ""},
		// Malformed shared subscriptions.
		{"$share/", "", "", true, "no filter after the share name"},
		{"$share/g", "", "", true, "no filter after the share name"},
		{"$share//a", "", "", true, "empty share name"},
		{"$share//x", "", "", true, "empty share name"},
		{"$share/g/", "", "", true, "empty"},
		{"$share/+/a", "", "", true, `share name "+" contains a wildcard`},
		{"$share/#/a", "", "", true, `share name "#" contains a wildcard`},
		{"$share/g+/a", "", "", true, "contains a wildcard"},
		{"$share/g#/a", "", "", true, "contains a wildcard"},
		{"$share/g/a/#/b", "", "", true, "is not the last level"},
		{"$share/g/a+", "", "", true, "is not alone in its level"},
		{"$share/g\x00/a", "", "", true, "U+0000"},
		{"$share/\xff/a", "", "", true, "not valid UTF-8"},
		{"$share/g/" + strings.Repeat("a", MaxLen), "", "", true, "more than 65535"},
	}
	for _, tt := range tests {
		group, inner, shared, err := ParseShared(tt.filter)
		if group != tt.group || inner != tt.inner || shared != tt.shared {
			t.Errorf("ParseShared(%.40q) = %q, %q, %v, want %q, %q, %v",
				tt.filter, group, inner, shared, tt.group, tt.inner, tt.shared)
		}
		checkErr(t, "ParseShared", tt.filter, err, tt.wantErr, ErrInvalidFilter)
	}
}

func TestParseSharedDoesNotAllocate(t *testing.T) {
	allocs := testing.AllocsPerRun(100, func() {
		ParseShared("$share/consumer1/sport/tennis/+")
		ParseShared("sport/tennis/+")
	})
	if allocs != 0 {
		t.Errorf("ParseShared allocates %v times per run, want 0", allocs)
	}
}

// refMatch is the test oracle: the matching rule written as directly as the
// specification states it, on split levels, with no regard for speed. It follows the
// documented definition of Match for any string: "+" is a wildcard level, "#" only as
// the last level.
func refMatch(filter, name string) bool {
	f := strings.Split(filter, "/")
	n := strings.Split(name, "/")
	if strings.HasPrefix(name, "$") && (f[0] == "+" || (f[0] == "#" && len(f) == 1)) {
		return false
	}
	for i, level := range f {
		if level == "#" && i == len(f)-1 {
			return len(n) >= i // the parent (i levels) or anything below it
		}
		if i >= len(n) || (level != "+" && level != n[i]) {
			return false
		}
	}
	return len(f) == len(n)
}
