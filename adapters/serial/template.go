package serial

import (
	"errors"
	"fmt"
	"strings"

	"holdfast/internal/topic"
)

// A template is a topic with placeholders: {name}, {port} and, where frames
// are parsed, {field} for a top-level field of the frame.
type template struct {
	parts []tmplPart
}

type tmplPart struct {
	lit   string // literal text, or
	field string // placeholder name when lit is ""
}

// errMissingField means a frame lacks a field the topic template needs.
var errMissingField = errors.New("topic field missing or empty")

func parseTemplate(s string, allowFields bool) (*template, error) {
	if s == "" {
		return nil, errors.New("must not be empty")
	}
	t := &template{}
	rest := s
	for rest != "" {
		i := strings.IndexAny(rest, "{}")
		if i < 0 {
			t.parts = append(t.parts, tmplPart{lit: rest})
			break
		}
		if rest[i] == '}' {
			return nil, fmt.Errorf("%q: '}' without '{'", s)
		}
		if i > 0 {
			t.parts = append(t.parts, tmplPart{lit: rest[:i]})
		}
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			return nil, fmt.Errorf("%q: '{' without '}'", s)
		}
		name := rest[i+1 : i+j]
		if name == "" || strings.ContainsAny(name, "{/+#") {
			return nil, fmt.Errorf("%q: bad placeholder {%s}", s, name)
		}
		if name != "name" && name != "port" && !allowFields {
			return nil, fmt.Errorf("%q: {%s}: only {name} and {port} are known here (frame fields need payload.format json)", s, name)
		}
		t.parts = append(t.parts, tmplPart{field: name})
		rest = rest[i+j+1:]
	}
	// Check the static shape: placeholders expand to one non-empty level
	// fragment without wildcards, so "x" stands in for each.
	sample := t.expand("x", "x", func(string) (string, bool) { return "x", true })
	if err := topic.ValidName(sample); err != nil {
		return nil, fmt.Errorf("%q: %v", s, err)
	}
	return t, nil
}

// fields lists the frame fields the template uses.
func (t *template) fields() []string {
	var out []string
	for _, p := range t.parts {
		if p.lit == "" && p.field != "name" && p.field != "port" {
			out = append(out, p.field)
		}
	}
	return out
}

func (t *template) static() bool { return len(t.fields()) == 0 }

// expand fills the template. lookup returns a frame field as text.
func (t *template) expand(name, port string, lookup func(string) (string, bool)) string {
	s, _ := t.expandErr(name, port, lookup)
	return s
}

func (t *template) expandErr(name, port string, lookup func(string) (string, bool)) (string, error) {
	var b strings.Builder
	for _, p := range t.parts {
		switch {
		case p.lit != "":
			b.WriteString(p.lit)
		case p.field == "name":
			b.WriteString(name)
		case p.field == "port":
			b.WriteString(levelSafe(port))
		default:
			v, ok := "", false
			if lookup != nil {
				v, ok = lookup(p.field)
			}
			if !ok || v == "" {
				return "", fmt.Errorf("{%s}: %w", p.field, errMissingField)
			}
			b.WriteString(levelSafe(v))
		}
	}
	return b.String(), nil
}

// levelSafe keeps a substituted value inside one topic level: '/', '+', '#'
// and NUL become '_'.
func levelSafe(s string) string {
	if !strings.ContainsAny(s, "/+#\x00") {
		return s
	}
	return strings.Map(func(r rune) rune {
		switch r {
		case '/', '+', '#', 0:
			return '_'
		}
		return r
	}, s)
}
