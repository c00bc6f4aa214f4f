package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// source remembers where each key came from, so that Validate can name the
// line (or flag) of a bad value.
type source struct {
	file  string
	lines map[string]int    // key path -> line of the key
	flags map[string]string // key path -> flag that set it
}

func (c *Config) source() *source {
	if c.src == nil {
		c.src = &source{lines: map[string]int{}, flags: map[string]string{}}
	}
	return c.src
}

// errAt builds an *Error for path, with the line of path or of its nearest
// parent that appears in the file, or the flag that set it.
func (c *Config) errAt(path string, kind error, format string, args ...any) *Error {
	e := &Error{Path: path, Msg: fmt.Sprintf(format, args...), Err: kind}
	if c.src == nil {
		return e
	}
	if f, ok := c.src.flags[path]; ok {
		e.Flag = f
		return e
	}
	e.File = c.src.file
	for p := path; p != ""; p = parentPath(p) {
		if l, ok := c.src.lines[p]; ok {
			e.Line = l
			break
		}
	}
	return e
}

// parentPath strips the last ".key" or "[n]" from a key path.
func parentPath(p string) string {
	i := strings.LastIndexAny(p, ".[")
	if i < 0 {
		return ""
	}
	return p[:i]
}

// Load reads and parses the file at path and validates it. An empty path
// means no file: the defaults. Errors name the file, key path and line.
func Load(path string) (*Config, error) {
	return LoadWith(path, Overrides{})
}

// LoadWith reads and parses the file at path (the defaults when path is
// empty), applies the command-line overrides o and validates the result
// once. A problem in a value that a flag replaces is not reported: the
// flag's value is checked instead, and an error about it names the flag.
// Every other error names the file, key path and line.
func LoadWith(path string, o Overrides) (*Config, error) {
	if path == "" {
		return parse(nil, "", o)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return parse(data, path, o)
}

// Parse parses a YAML document into a configuration, starting from the
// defaults, and validates it. Empty input (or only comments) gives Default().
func Parse(data []byte) (*Config, error) {
	return parse(data, "", Overrides{})
}

// parse decodes data over the defaults (syntax, keys and types), applies
// the overrides, fills the derived values and validates everything once.
func parse(data []byte, file string, o Overrides) (*Config, error) {
	c := Default()
	src := c.source()
	src.file = file
	c.Upstream.ClientID = "" // derived from gateway_id unless set

	fail := func(errs []*Error) (*Config, error) {
		for _, e := range errs {
			e.File = file
		}
		return nil, joinErrors(errs)
	}

	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	err := dec.Decode(&doc)
	if err != nil && !errors.Is(err, io.EOF) {
		return fail([]*Error{syntaxError(err, data)})
	}
	if err == nil {
		var extra yaml.Node
		if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
			line := extra.Line
			if err != nil {
				return fail([]*Error{syntaxError(err, data)})
			}
			return fail([]*Error{{Msg: "more than one YAML document", Line: line, Err: ErrSyntax}})
		}
		root := &doc
		if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
			root = root.Content[0]
		}
		d := &decoder{src: src}
		d.value(root, reflect.ValueOf(c).Elem(), "")
		// A value the command line replaces does not matter, however
		// wrong it is in the file.
		replaced := o.paths()
		errs := d.errs[:0]
		for _, e := range d.errs {
			if !replaced[e.Path] {
				errs = append(errs, e)
			}
		}
		if len(errs) > 0 {
			return fail(errs)
		}
	}
	c.apply(o)
	c.resolve()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// syntaxError turns a YAML parser error ("yaml: line 3: did not find
// expected key") into an *Error with the line in its field. The parser
// leaves the line out of some errors (control characters, invalid UTF-8,
// an unknown anchor) and gives the line where the enclosing block began for
// others; the line reported is the first one, from the parser's line on, at
// which the document, cut after it, fails the same way: where the problem
// is. When no cut fails that way, or the document is over 1 MiB, the
// parser's line is kept.
func syntaxError(err error, data []byte) *Error {
	return locateSyntaxError(err, data, parseStream)
}

// parseStream parses every document of data and returns the first error,
// nil when all of them parse.
func parseStream(data []byte) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc yaml.Node
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return err
		}
	}
}

// locateSyntaxError is syntaxError with the parser passed in (tests count
// its calls). Whether the document cut after line n fails the same way
// rises from false to true once, at the line of the problem: the search
// tries the cuts after lines L, L+1, L+3, L+7, ... from the parser's line L
// until one fails, then halves the last step. It parses about
// 2*log2(lines after L) times: a 200 KiB file of 8,240 lines with a
// control character on its last line 20 times instead of 8,240.
func locateSyntaxError(err error, data []byte, parse func([]byte) error) *Error {
	e := lineError(err)
	if len(data) > maxSearchBytes {
		return e
	}
	var ends []int // ends[n-1]: the offset just after line n
	for i, b := range data {
		if b == '\n' {
			ends = append(ends, i+1)
		}
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		ends = append(ends, len(data))
	}
	fails := func(n int) bool {
		perr := parse(data[:ends[n-1]])
		return perr != nil && lineError(perr).Msg == e.Msg
	}
	lo := max(e.Line, 1)
	if lo > len(ends) {
		return e
	}
	// ok is a line whose cut is known not to fail (lo-1: assumed), bad one
	// whose cut fails.
	ok, bad, step := lo-1, lo, 1
	for !fails(bad) {
		if bad == len(ends) {
			return e
		}
		ok, bad, step = bad, min(bad+step, len(ends)), step*2
	}
	// The first failing cut is one of ok+1 .. bad.
	e.Line = ok + 1 + sort.Search(bad-ok-1, func(i int) bool { return fails(ok + 1 + i) })
	return e
}

// maxSearchBytes bounds the documents whose syntax errors are placed by
// locateSyntaxError's search (a 200 KiB file takes about 0.3 s); a larger
// one keeps the parser's line.
const maxSearchBytes = 1 << 20

// lineError splits the line number out of a YAML parser error's text.
func lineError(err error) *Error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	e := &Error{Msg: msg, Err: ErrSyntax}
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if i := strings.Index(rest, ": "); i > 0 {
			if n, err := strconv.Atoi(rest[:i]); err == nil && n > 0 {
				e.Line, e.Msg = n, rest[i+2:]
			}
		}
	}
	return e
}

// resolve fills the values that default to other values.
func (c *Config) resolve() {
	if c.GatewayID == "" {
		c.GatewayID = Hostname()
	}
	if c.Upstream.ClientID == "" {
		c.Upstream.ClientID = DefaultClientIDPrefix + c.GatewayID
	}
}

type decoder struct {
	src  *source
	errs []*Error
	// aliasLine is the line of the alias being decoded, if any: what is
	// found under an alias is reported where the alias is used, not at
	// its anchor.
	aliasLine int
}

// line is where a problem found at n is reported.
func (d *decoder) line(n *yaml.Node) int {
	if d.aliasLine > 0 {
		return d.aliasLine
	}
	return n.Line
}

func (d *decoder) fail(n *yaml.Node, path string, kind error, format string, args ...any) {
	d.errs = append(d.errs, &Error{Path: path, Line: d.line(n), Msg: fmt.Sprintf(format, args...), Err: kind})
}

// scalarDecoder is implemented by types decoded from one scalar.
type scalarDecoder interface {
	decodeScalar(n *yaml.Node) error
}

var (
	durationType = reflect.TypeFor[time.Duration]()
	structField  = reflect.TypeFor[scalarDecoder]()
)

// kindName names a node's kind for "expected X, got Y" messages.
func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!int":
			return "integer " + n.Value
		case "!!float":
			return "number " + n.Value
		case "!!bool":
			return "boolean " + n.Value
		case "!!null":
			return "nothing"
		}
		return strconv.Quote(n.Value)
	}
	return "an unsupported node"
}

// value decodes n into v (addressable). A null keeps v's default.
func (d *decoder) value(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			d.fail(n, path, ErrSyntax, "unresolved alias")
			return
		}
		if d.aliasLine == 0 {
			d.aliasLine = n.Line
			defer func() { d.aliasLine = 0 }()
		}
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return
	}
	if n.Kind == 0 { // empty document
		return
	}
	if v.CanAddr() && v.Addr().Type().Implements(structField) {
		if n.Kind != yaml.ScalarNode {
			d.fail(n, path, ErrType, "expected a string, got %s", kindName(n))
			return
		}
		if err := v.Addr().Interface().(scalarDecoder).decodeScalar(n); err != nil {
			d.fail(n, path, errKind(err), "%s", err.Error())
		}
		return
	}
	if v.Type() == durationType {
		dur, err := decodeDuration(n)
		if err != nil {
			d.fail(n, path, errKind(err), "%s", err.Error())
			return
		}
		v.SetInt(int64(dur))
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		d.mapping(n, v, path)
	case reflect.Slice:
		d.sequence(n, v, path)
	case reflect.Pointer: // *bool
		p := reflect.New(v.Type().Elem())
		before := len(d.errs)
		d.scalar(n, p.Elem(), path)
		if len(d.errs) == before {
			v.Set(p)
		}
	default:
		d.scalar(n, v, path)
	}
}

func (d *decoder) mapping(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, ErrType, "expected a mapping, got %s", kindName(n))
		return
	}
	t := v.Type()
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.fail(k, path, ErrType, "expected a key, got %s", kindName(k))
			continue
		}
		name := k.Value
		kp := name
		if path != "" {
			kp = path + "." + name
		}
		if k.ShortTag() == "!!merge" {
			d.fail(k, kp, ErrUnknownKey, "merge keys are not supported")
			continue
		}
		if prev, ok := seen[name]; ok {
			d.fail(k, kp, ErrValue, "duplicate key (first at line %d)", prev)
			continue
		}
		seen[name] = d.line(k)
		f, ok := fieldByKey(t, name)
		if !ok {
			d.fail(k, kp, ErrUnknownKey, "unknown key")
			continue
		}
		d.src.lines[kp] = d.line(k)
		d.value(val, v.FieldByIndex(f.Index), kp)
	}
}

// fieldByKey finds the exported field whose yaml tag is key.
func fieldByKey(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.IsExported() && f.Tag.Get("yaml") == key {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// elementDefaults gives list elements their defaults before decoding.
var elementDefaults = map[reflect.Type]func() any{
	reflect.TypeFor[Listener]():     func() any { return DefaultListener() },
	reflect.TypeFor[ForwardRule]():  func() any { return DefaultForwardRule() },
	reflect.TypeFor[DownlinkRule](): func() any { return DefaultDownlinkRule() },
}

func (d *decoder) sequence(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.SequenceNode {
		d.fail(n, path, ErrType, "expected a list, got %s", kindName(n))
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	def := elementDefaults[v.Type().Elem()]
	for i, el := range n.Content {
		ep := path + "[" + strconv.Itoa(i) + "]"
		d.src.lines[ep] = d.line(el)
		if def != nil {
			s.Index(i).Set(reflect.ValueOf(def()))
		}
		if el.Kind == yaml.ScalarNode && el.ShortTag() == "!!null" && def == nil {
			d.fail(el, ep, ErrType, "expected a string, got nothing")
			continue
		}
		d.value(el, s.Index(i), ep)
	}
	v.Set(s)
}

func (d *decoder) scalar(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.ScalarNode {
		want := "a value"
		switch v.Kind() {
		case reflect.String:
			want = "a string"
		case reflect.Bool:
			want = "true or false"
		case reflect.Int, reflect.Int64:
			want = "an integer"
		case reflect.Float64:
			want = "a number"
		}
		d.fail(n, path, ErrType, "expected %s, got %s", want, kindName(n))
		return
	}
	tag := n.ShortTag()
	switch v.Kind() {
	case reflect.String:
		// Any scalar is a string: client_id: 1234 means "1234".
		v.SetString(n.Value)
	case reflect.Bool:
		if tag != "!!bool" {
			d.fail(n, path, ErrType, "expected true or false, got %s", kindName(n))
			return
		}
		var b bool
		if err := n.Decode(&b); err != nil {
			d.fail(n, path, ErrType, "expected true or false, got %s", kindName(n))
			return
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int64:
		if tag != "!!int" {
			d.fail(n, path, ErrType, "expected an integer, got %s", kindName(n))
			return
		}
		var i int64
		if err := n.Decode(&i); err != nil || v.OverflowInt(i) {
			d.fail(n, path, ErrValue, "integer %s out of range", n.Value)
			return
		}
		v.SetInt(i)
	case reflect.Uint8, reflect.Uint16, reflect.Uint32:
		if tag != "!!int" {
			d.fail(n, path, ErrType, "expected an integer, got %s", kindName(n))
			return
		}
		var u int64
		if err := n.Decode(&u); err != nil || u < 0 || v.OverflowUint(uint64(u)) {
			d.fail(n, path, ErrValue, "integer %s out of range", n.Value)
			return
		}
		v.SetUint(uint64(u))
	case reflect.Float64:
		if tag != "!!int" && tag != "!!float" {
			d.fail(n, path, ErrType, "expected a number, got %s", kindName(n))
			return
		}
		var f float64
		if err := n.Decode(&f); err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			d.fail(n, path, ErrValue, "expected a finite number, got %s", n.Value)
			return
		}
		v.SetFloat(f)
	default:
		d.fail(n, path, ErrType, "unsupported type %s", v.Type())
	}
}

// kindError carries a sentinel through scalar decoders.
type kindError struct {
	kind error
	msg  string
}

func (e *kindError) Error() string { return e.msg }

func errKind(err error) error {
	var ke *kindError
	if errors.As(err, &ke) {
		return ke.kind
	}
	return ErrValue
}

func decodeDuration(n *yaml.Node) (time.Duration, error) {
	if n.Kind != yaml.ScalarNode {
		return 0, &kindError{ErrType, "expected a duration such as \"90s\" or \"7d\", got " + kindName(n)}
	}
	switch n.ShortTag() {
	case "!!int":
		if n.Value == "0" {
			return 0, nil
		}
		return 0, &kindError{ErrValue, "duration " + n.Value + " needs a unit, e.g. \"" + n.Value + "s\""}
	case "!!str":
		return ParseDuration(n.Value)
	}
	return 0, &kindError{ErrType, "expected a duration such as \"90s\" or \"7d\", got " + kindName(n)}
}

func (s *Size) decodeScalar(n *yaml.Node) error {
	switch n.ShortTag() {
	case "!!int":
		var i int64
		if err := n.Decode(&i); err != nil {
			return fmt.Errorf("size %s out of range", n.Value)
		}
		if i < 0 {
			return fmt.Errorf("negative size %s", n.Value)
		}
		*s = Size(i)
		return nil
	case "!!str":
		v, err := ParseSize(n.Value)
		if err != nil {
			return err
		}
		*s = v
		return nil
	}
	return &kindError{ErrType, "expected a size such as 1048576 or \"64MiB\", got " + kindName(n)}
}

func (t *Template) decodeScalar(n *yaml.Node) error {
	v, err := ParseTemplate(n.Value)
	if err != nil {
		return err
	}
	*t = v
	return nil
}
