package config

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// examplePath is the annotated example configuration shipped in the package.
const examplePath = "../packaging/holdfast.yaml"

// packagedDataDir is the one documented difference between the example and
// the built-in defaults: the package keeps its queue in /var/lib/holdfast.
const packagedDataDir = "/var/lib/holdfast"

func readExample(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatalf("the annotated example: %v", err)
	}
	return b
}

// normalize makes nil and empty slices compare equal where they mean the
// same (upstream.tls.alpn: [] and no ALPN).
func normalize(c Config) Config {
	c.src = nil
	if len(c.Upstream.TLS.ALPN) == 0 {
		c.Upstream.TLS.ALPN = nil
	}
	if len(c.Serial) == 0 {
		c.Serial = nil
	}
	return c
}

// TestExampleIsTheDefaults: the shipped example, loaded, equals the built-in
// defaults except for queue.dir.
func TestExampleIsTheDefaults(t *testing.T) {
	c, err := Load(examplePath)
	if err != nil {
		t.Fatalf("the annotated example does not load: %v", err)
	}
	if c.Queue.Dir != packagedDataDir {
		t.Errorf("example queue.dir %q, want %q", c.Queue.Dir, packagedDataDir)
	}
	got := normalize(*c)
	got.Queue.Dir = DefaultQueueDir
	want := normalize(*Default())
	if !reflect.DeepEqual(got, want) {
		t.Errorf("the example differs from the built-in defaults: %s", strings.Join(diff(reflect.ValueOf(got), reflect.ValueOf(want), ""), "; "))
	}
	for _, l := range c.Listeners {
		if !isLoopback(l.Address) {
			t.Errorf("the example listens on %q: a fresh install must listen on loopback only", l.Address)
		}
	}
	if !isLoopback(c.Admin.Address) {
		t.Errorf("the example's admin endpoint is on %q, want loopback", c.Admin.Address)
	}
}

// commentedBlock finds a commented-out top-level key in the example: a line
// "#key:" followed by lines "#  ...". Prose comments start with "# ".
var commentedBlock = regexp.MustCompile(`(?m)^#([a-z_]+):[ \t]*\n(?:#  .*\n)+`)

// exampleDocs returns the example as it is and, for each commented-out
// block, the example with that block uncommented in place of the active key.
func exampleDocs(t *testing.T) map[string][]byte {
	t.Helper()
	b := readExample(t)
	docs := map[string][]byte{"as shipped": b}
	for _, m := range commentedBlock.FindAllSubmatchIndex(b, -1) {
		key := string(b[m[2]:m[3]])
		block := string(b[m[0]:m[1]])
		var un strings.Builder
		for _, line := range strings.SplitAfter(block, "\n") {
			un.WriteString(strings.TrimPrefix(line, "#"))
		}
		active := regexp.MustCompile(`(?m)^` + key + `:.*\n`)
		if !active.Match(b) {
			t.Fatalf("commented-out %q has no active %q key above it", key, key)
		}
		doc := active.ReplaceAllLiteralString(string(b), "")
		doc = strings.Replace(doc, block, un.String(), 1)
		docs["with "+key+" uncommented"] = []byte(doc)
	}
	return docs
}

// TestCommentedExamplesAreValid: every commented-out block of the example,
// uncommented, is a valid configuration.
func TestCommentedExamplesAreValid(t *testing.T) {
	docs := exampleDocs(t)
	if len(docs) < 2 {
		t.Fatal("the example has no commented-out downlink rule")
	}
	for name, doc := range docs {
		if _, err := Parse(doc); err != nil {
			t.Errorf("example %s: %v", name, err)
		}
	}
	c, err := Parse(docs["with downlink uncommented"])
	if err != nil || len(c.Downlink) != 1 {
		t.Fatalf("example with the downlink rule: %v", err)
	}
	if got := c.Downlink[0].LocalTopicFor("commands/"+c.GatewayID+"/valve/open", c.GatewayID); got != "devices/valve/open" {
		t.Errorf("the example downlink rule maps a command to %q", got)
	}
}

// schemaKeys walks t by reflection and returns every key path it accepts,
// with "[]" for list elements.
func schemaKeys(t reflect.Type, prefix string, out map[string]bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("yaml")
		if !f.IsExported() || tag == "" || tag == "-" {
			continue
		}
		p := tag
		if prefix != "" {
			p = prefix + "." + tag
		}
		out[p] = true
		ft := f.Type
		switch {
		case ft == reflect.TypeFor[Template]() || ft == reflect.TypeFor[time.Duration]():
		case ft.Kind() == reflect.Struct:
			schemaKeys(ft, p, out)
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			schemaKeys(ft.Elem(), p+"[]", out)
		}
	}
}

// nodeKeys returns every key path present in a YAML node tree, with "[]"
// for list elements, and the keys that carry no comment.
func nodeKeys(n *yaml.Node, prefix string, out map[string]bool, bare *[]string) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			nodeKeys(c, prefix, out, bare)
		}
	case yaml.SequenceNode:
		for _, c := range n.Content {
			nodeKeys(c, prefix+"[]", out, bare)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			p := k.Value
			if prefix != "" {
				p = prefix + "." + k.Value
			}
			out[p] = true
			v := n.Content[i+1]
			leaf := v.Kind == yaml.ScalarNode || (v.Kind == yaml.SequenceNode && len(v.Content) == 0)
			if c := k.HeadComment + k.LineComment; c == "" || (leaf && !strings.Contains(c, "Default") && !strings.Contains(c, "Required")) {
				*bare = append(*bare, p)
			}
			nodeKeys(n.Content[i+1], p, out, bare)
		}
	}
}

// TestExampleHasEveryKey: every key of the Config struct appears in the
// example (active, or in a commented-out block), each with a comment that
// states the default for values, so the example cannot fall behind the code.
func TestExampleHasEveryKey(t *testing.T) {
	want := map[string]bool{}
	schemaKeys(reflect.TypeFor[Config](), "", want)
	if len(want) < 80 {
		t.Fatalf("schema walk found only %d keys", len(want))
	}
	got := map[string]bool{}
	var bare []string
	for name, doc := range exampleDocs(t) {
		var n yaml.Node
		if err := yaml.Unmarshal(doc, &n); err != nil {
			t.Fatalf("example %s: %v", name, err)
		}
		nodeKeys(&n, "", got, &bare)
	}
	var missing, extra []string
	for k := range want {
		if !got[k] {
			missing = append(missing, k)
		}
	}
	for k := range got {
		if !want[k] {
			extra = append(extra, k)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing) > 0 {
		t.Errorf("keys missing from %s: %s", examplePath, strings.Join(missing, ", "))
	}
	if len(extra) > 0 {
		t.Errorf("keys in %s that the code does not know: %s", examplePath, strings.Join(extra, ", "))
	}
	sort.Strings(bare)
	bare = slices.Compact(bare)
	if len(bare) > 0 {
		t.Errorf("keys without a comment (saying the default, for values) in %s: %s", examplePath, strings.Join(bare, ", "))
	}
}

// diff lists the exported fields where a and b differ, as "path: a != b".
func diff(a, b reflect.Value, path string) []string {
	if reflect.DeepEqual(a.Interface(), b.Interface()) {
		return nil
	}
	switch {
	case a.Type() == reflect.TypeFor[Template]():
	case a.Kind() == reflect.Struct:
		var out []string
		for i := 0; i < a.NumField(); i++ {
			if f := a.Type().Field(i); f.IsExported() {
				out = append(out, diff(a.Field(i), b.Field(i), path+"."+f.Name)...)
			}
		}
		return out // nil: the exported fields agree
	case a.Kind() == reflect.Slice && a.Len() == 0 && b.Len() == 0:
		return nil // nil and empty mean the same
	case a.Kind() == reflect.Slice && a.Len() == b.Len():
		var out []string
		for i := 0; i < a.Len(); i++ {
			out = append(out, diff(a.Index(i), b.Index(i), path+"["+strconv.Itoa(i)+"]")...)
		}
		return out
	case a.Kind() == reflect.Pointer && !a.IsNil() && !b.IsNil():
		return diff(a.Elem(), b.Elem(), path)
	}
	return []string{fmt.Sprintf("%s: %s != %s", path, show(a), show(b))}
}

func show(v reflect.Value) string {
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return "unset"
		}
		v = v.Elem()
	}
	return fmt.Sprintf("%v", v.Interface())
}

const docsPath = "../docs/configuration.md"

// docRow is one key of a reference table in docs/configuration.md.
type docRow struct {
	line int    // line of the row in the page
	def  string // the default as written (first code span of the Default column), "" when it is prose
}

// listSections are the top-level keys whose values are lists of mappings;
// their reference tables name keys relative to one element.
func listSections() map[string]bool {
	out := map[string]bool{}
	t := reflect.TypeFor[Config]()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if tag := f.Tag.Get("yaml"); tag != "" && f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct {
			out[tag] = true
		}
	}
	return out
}

var (
	docHeading = regexp.MustCompile("^### `([a-z_]+)`")
	codeSpan   = regexp.MustCompile("`([^`]*)`")
)

// docRows reads the reference tables of docs/configuration.md and returns
// every key they describe by its full path ("forward[].filter" for a key of
// a list element), with its documented default.
func docRows(t *testing.T) map[string]docRow {
	t.Helper()
	b, err := os.ReadFile(docsPath)
	if err != nil {
		t.Fatal(err)
	}
	lists := listSections()
	rows := map[string]docRow{}
	section, inReference := "", false
	for n, line := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(line, "## "):
			inReference = line == "## Reference"
			section = ""
			continue
		case strings.HasPrefix(line, "### "):
			section = ""
			if m := docHeading.FindStringSubmatch(line); m != nil && inReference {
				section = m[1]
			}
			continue
		case section == "" || !strings.HasPrefix(line, "| `"):
			continue
		}
		cells := strings.Split(line, "|")
		if len(cells) < 5 {
			t.Fatalf("%s:%d: a reference row needs Key, Type, Default and Meaning: %q", docsPath, n+1, line)
		}
		var keys []string
		for _, m := range codeSpan.FindAllStringSubmatch(cells[1], -1) {
			keys = append(keys, m[1])
		}
		def := strings.TrimSpace(cells[3])
		var defs []string
		if strings.HasPrefix(def, "`") {
			for _, m := range codeSpan.FindAllStringSubmatch(def, -1) {
				defs = append(defs, m[1])
			}
		}
		for i, k := range keys {
			full := k
			if lists[section] {
				full = section + "[]." + k
			} else if k != section && !strings.HasPrefix(k, section+".") {
				t.Errorf("%s:%d: key %q in the section of %q", docsPath, n+1, k, section)
			}
			r := docRow{line: n + 1}
			switch {
			case len(defs) == len(keys):
				r.def = defs[i]
			case len(defs) > 0:
				r.def = defs[0]
			}
			if _, dup := rows[full]; dup {
				t.Errorf("%s:%d: %s described twice", docsPath, n+1, full)
			}
			rows[full] = r
		}
	}
	return rows
}

// TestDocsHaveEveryKey: the reference tables of docs/configuration.md
// describe every key of the configuration, each under its own section and
// by its full path, and no key the code does not know.
func TestDocsHaveEveryKey(t *testing.T) {
	keys := map[string]bool{}
	schemaKeys(reflect.TypeFor[Config](), "", keys)
	rows := docRows(t)
	var missing, extra []string
	for k := range keys {
		if _, ok := rows[k]; ok {
			continue
		}
		// A key holding a mapping is described by the rows of its keys.
		covered := false
		for r := range rows {
			covered = covered || strings.HasPrefix(r, k+".") || strings.HasPrefix(r, k+"[].")
		}
		if !covered {
			missing = append(missing, k)
		}
	}
	for r := range rows {
		if !keys[r] {
			extra = append(extra, r)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing) > 0 {
		t.Errorf("keys missing from the reference of %s: %s", docsPath, strings.Join(missing, ", "))
	}
	if len(extra) > 0 {
		t.Errorf("keys in the reference of %s that the code does not know: %s", docsPath, strings.Join(extra, ", "))
	}
}

// elementBase is what an element of a list section needs to be valid, for
// setting one of its keys; key is the key about to be set.
func elementBase(section, key string) []string {
	switch section {
	case "downlink":
		if key != "filter" {
			return []string{"filter: x/#"}
		}
	case "serial":
		switch {
		case key == "device":
			return []string{"name: p", "match:", `  vid: "0403"`}
		case key != "name":
			return []string{"name: p", "device: /dev/null"}
		}
	}
	return nil
}

// defaultContext holds, for the keys whose default applies only with
// another setting, that setting: keys beside the key, in its mapping.
var defaultContext = map[string][]string{
	"serial[].framing.silence":         {"mode: silence"},
	"serial[].payload.separator":       {"parse: csv", "columns: [a]"},
	"serial[].payload.timestamp_field": {"format: json", "timestamp: rfc3339"},
}

// byteStrings are the keys written with the escapes of docs/serial.md
// ("\n" is a backslash and an n); documented as "\n", they are set in YAML
// as '\n'.
var byteStrings = map[string]bool{
	"serial[].framing.delimiter": true, "serial[].framing.start": true, "serial[].framing.end": true,
	"serial[].write.append": true, "serial[].poll.request": true,
}

// yamlValue writes a documented value of key as a YAML scalar: as it is,
// unless YAML would read it as something else ("{topic}", "#").
func yamlValue(key, v string) string {
	switch {
	case v == "":
		return "~"
	case byteStrings[key] && len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"':
		return "'" + strings.ReplaceAll(v[1:len(v)-1], "'", "''") + "'"
	case v == "[]" || v == "~" || v[0] == '"' || v[0] == '\'':
		return v
	case strings.ContainsAny(v[:1], "{}[]#&*!|>%@`,?:-") || strings.Contains(v, " #") || strings.Contains(v, ": "):
		return strconv.Quote(v)
	}
	return v
}

// withKey returns a document that sets the key at path (a full path, with
// "[]" for a list element) to value, and the same document without it.
func withKey(path, value string) (doc, base string) {
	section, rel, _ := strings.Cut(path, ".")
	if rel == "" {
		return section + ": " + yamlValue(path, value) + "\n", ""
	}
	indent := "  "
	var lines []string
	if name, ok := strings.CutSuffix(section, "[]"); ok {
		lines = append(lines, name+":", "  -")
		indent = "    "
		for _, l := range elementBase(name, strings.Split(rel, ".")[0]) {
			lines = append(lines, indent+l)
		}
	} else {
		lines = append(lines, section+":")
	}
	parts := strings.Split(rel, ".")
	for _, p := range parts[:len(parts)-1] {
		lines = append(lines, indent+p+":")
		indent += "  "
	}
	for _, l := range defaultContext[path] {
		lines = append(lines, indent+l)
	}
	base = strings.Join(lines, "\n") + "\n"
	doc = base + indent + parts[len(parts)-1] + ": " + yamlValue(path, value) + "\n"
	return doc, base
}

// checkDefault checks that setting key to its documented default changes
// nothing: the documented default is the code's.
func checkDefault(t *testing.T, where, key, value string) {
	t.Helper()
	doc, base := withKey(key, value)
	want, err := Parse([]byte(base))
	if err != nil {
		t.Fatalf("%s: %s: base document %q: %v", where, key, base, err)
	}
	got, err := Parse([]byte(doc))
	if err != nil {
		t.Errorf("%s: %s: the documented default %q is refused: %v", where, key, value, err)
		return
	}
	if d := diff(reflect.ValueOf(normalize(*got)), reflect.ValueOf(normalize(*want)), ""); len(d) > 0 {
		t.Errorf("%s: %s: documented default %q, but the code's differs: %s", where, key, value, strings.Join(d, "; "))
	}
}

// TestDocsDefaults: every default written in the reference tables of
// docs/configuration.md is the code's default.
func TestDocsDefaults(t *testing.T) {
	checked := 0
	for key, r := range docRows(t) {
		if r.def == "" {
			continue
		}
		checkDefault(t, fmt.Sprintf("%s:%d", docsPath, r.line), key, r.def)
		checked++
	}
	if checked < 80 {
		t.Errorf("checked only %d documented defaults", checked)
	}
}

// exampleDefault finds "Default: X" in a key's comment and returns X: up to
// a parenthesis or the end of the sentence.
var exampleDefault = regexp.MustCompile(`Default: (.*)`)

func defaultIn(comment string) (string, bool) {
	m := exampleDefault.FindStringSubmatch(comment)
	if m == nil {
		return "", false
	}
	v := m[1]
	if i := strings.Index(v, " ("); i >= 0 {
		v = v[:i]
	}
	v = strings.TrimSuffix(strings.TrimSpace(v), ".")
	if v == "empty" {
		v = "~"
	}
	return v, true
}

// exampleDefaults returns, for every leaf key of a YAML tree that has a
// "Default:" in its comment, that default.
func exampleDefaults(n *yaml.Node, prefix string, out map[string]string) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			exampleDefaults(c, prefix, out)
		}
	case yaml.SequenceNode:
		for _, c := range n.Content {
			exampleDefaults(c, prefix+"[]", out)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if prefix != "" {
				p = prefix + "." + k.Value
			}
			leaf := v.Kind == yaml.ScalarNode || (v.Kind == yaml.SequenceNode && len(v.Content) == 0)
			if def, ok := defaultIn(k.HeadComment + "\n" + k.LineComment); ok && leaf {
				out[p] = def
			}
			exampleDefaults(v, p, out)
		}
	}
}

// TestExampleDefaultComments: every "Default:" the annotated example states,
// in the active keys and in the commented-out downlink and serial blocks
// (whose values are examples, not defaults), is the code's default.
func TestExampleDefaultComments(t *testing.T) {
	defs := map[string]string{}
	for name, doc := range exampleDocs(t) {
		var n yaml.Node
		if err := yaml.Unmarshal(doc, &n); err != nil {
			t.Fatalf("example %s: %v", name, err)
		}
		exampleDefaults(&n, "", defs)
	}
	for _, k := range []string{"downlink[].qos", "downlink[].local_topic", "serial[].framing.max_length", "serial[].payload.format", "queue.dir"} {
		if _, ok := defs[k]; !ok {
			t.Errorf("no Default: comment found for %s", k)
		}
	}
	for key, def := range defs {
		checkDefault(t, examplePath, key, def)
	}
	if len(defs) < 100 {
		t.Errorf("checked only %d Default: comments", len(defs))
	}
}

// TestDocsExamplesAreValid: every YAML example in docs/configuration.md
// parses and validates, and the rules do what the comments next to them
// say.
func TestDocsExamplesAreValid(t *testing.T) {
	b, err := os.ReadFile(docsPath)
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllSubmatch(b, -1)
	if len(blocks) < 4 {
		t.Fatalf("found %d YAML examples in %s", len(blocks), docsPath)
	}
	arrow := regexp.MustCompile(`#\s*(?:upstream )?(\S+/\S+)(?:, published by client \S+)? -> (?:local )?(\S+)`)
	checked := 0
	for i, m := range blocks {
		c, err := Parse(m[1])
		if err != nil {
			t.Errorf("example %d: %v\n%s", i+1, err, m[1])
			continue
		}
		// A comment like "# sensors/boiler/temp -> site/plant-7/boiler/temp"
		// above a rule states what that rule does.
		section, pending := "", ""
		for _, line := range strings.Split(string(m[1]), "\n") {
			if k, _, ok := strings.Cut(line, ":"); ok && !strings.HasPrefix(line, " ") && !strings.HasPrefix(line, "#") {
				section = k
			}
			if a := arrow.FindStringSubmatch(line); a != nil {
				pending = line
				continue
			}
			f, ok := strings.CutPrefix(strings.TrimSpace(line), "- filter: ")
			if !ok || pending == "" {
				continue
			}
			a := arrow.FindStringSubmatch(pending)
			in, out := strings.TrimPrefix(a[1], "upstream "), a[2]
			pending = ""
			var got string
			switch section {
			case "forward":
				client := ""
				if cm := regexp.MustCompile(`by client (\S+)`).FindStringSubmatch(a[0]); cm != nil {
					client = cm[1]
				}
				for _, r := range c.Forward {
					if r.Filter == f {
						got = r.UpstreamTopic(in, client, c.GatewayID)
					}
				}
			case "downlink":
				for _, r := range c.Downlink {
					if r.Filter.String() == f {
						got = r.LocalTopicFor(in, c.GatewayID)
					}
				}
			}
			if got != out {
				t.Errorf("example %d: %s rule %q maps %q to %q, its comment says %q", i+1, section, f, in, got, out)
			}
			checked++
		}
	}
	if checked < 3 {
		t.Errorf("checked only %d rule comments", checked)
	}
}

// TestSerialExamplesLoad: the serial port examples that docs/serial.md shows
// load through this package as whole configuration files.
func TestSerialExamplesLoad(t *testing.T) {
	files, err := filepath.Glob("../adapters/serial/testdata/examples/*.yaml")
	if err != nil || len(files) < 3 {
		t.Fatalf("serial examples: %v, %v", files, err)
	}
	for _, f := range files {
		c, err := Load(f)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if len(c.Serial) != 1 || c.Serial[0].Name == "" || c.Serial[0].Baud == 0 {
			t.Errorf("%s: loaded %+v", f, c.Serial)
		}
	}
}
