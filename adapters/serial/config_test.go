package serial

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func decodeExample(t *testing.T, path string) []PortConfig {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Serial []PortConfig `yaml:"serial"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return doc.Serial
}

// The examples in docs/serial.md are these files: they must load and validate.
func TestExamples(t *testing.T) {
	files, _ := filepath.Glob("testdata/examples/*.yaml")
	if len(files) < 3 {
		t.Fatalf("examples: %v", files)
	}
	for _, f := range files {
		ports := decodeExample(t, f)
		for i := range ports {
			ports[i].SetDefaults()
		}
		if err := ValidatePorts(ports); err != nil {
			t.Errorf("%s: %v", f, err)
		}
		for _, p := range ports {
			if _, err := New(p, newMemBus(), nil); err != nil {
				t.Errorf("%s: New: %v", f, err)
			}
		}
	}
	w := decodeExample(t, "testdata/examples/line-sensor.yaml")[0]
	if w.Match.VID != "0403" || w.Framing.Delimiter != "\n" || w.Write.Append != "\r\n" || w.Reopen.Max != 30*time.Second || *w.QoS != 1 {
		t.Errorf("line sensor decoded as %+v", w)
	}
	m := decodeExample(t, "testdata/examples/modbus-poll.yaml")[0]
	if req, _ := ParseBytes(m.Poll.Request); len(req) != 8 || m.Framing.Silence != 20*time.Millisecond {
		t.Errorf("meter decoded as %+v", m)
	}
}

func TestDefaults(t *testing.T) {
	c := PortConfig{Name: "x", Device: "/dev/ttyS0"}
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Baud != 9600 || c.DataBits != 8 || c.Parity != "none" || c.StopBits != "1" || c.Framing.Mode != "line" ||
		c.Framing.Delimiter != `\n` || c.Framing.MaxLength != 4096 || c.Payload.Format != "raw" || c.Topic != "serial/{name}" ||
		*c.QoS != 1 || c.OnError.Action != "drop" || c.Reopen.Initial != time.Second || c.Reopen.Max != 30*time.Second {
		t.Errorf("defaults: %+v", c)
	}
	p := PortConfig{Name: "x", Device: "/dev/ttyS0", Payload: Payload{Parse: ParseCSV, Columns: []string{"a"}, Timestamp: TimestampUnixMS}}
	p.SetDefaults()
	if p.Payload.Format != FormatJSON || p.Payload.Separator != "," || p.Payload.TimestampField != "ts" {
		t.Errorf("parse defaults: %+v", p.Payload)
	}
}

func TestValidateNamesTheKey(t *testing.T) {
	q3 := byte(3)
	tests := []struct {
		key string
		cfg PortConfig
	}{
		{"name", PortConfig{Device: "/dev/x"}},
		{"name", PortConfig{Name: "a b", Device: "/dev/x"}},
		{"device", PortConfig{Name: "a"}},
		{"match", PortConfig{Name: "a", Device: "/dev/x", Match: Match{VID: "0403"}}},
		{"match.vid", PortConfig{Name: "a", Match: Match{VID: "403"}}},
		{"match.pid", PortConfig{Name: "a", Match: Match{PID: "zzzz"}}},
		{"baud", PortConfig{Name: "a", Device: "/dev/x", Baud: -1}},
		{"data_bits", PortConfig{Name: "a", Device: "/dev/x", DataBits: 9}},
		{"parity", PortConfig{Name: "a", Device: "/dev/x", Parity: "n"}},
		{"stop_bits", PortConfig{Name: "a", Device: "/dev/x", StopBits: "3"}},
		{"framing.mode", PortConfig{Name: "a", Device: "/dev/x", Framing: Framing{Mode: "lines"}}},
		{"framing.delimiter", PortConfig{Name: "a", Device: "/dev/x", Framing: Framing{Delimiter: `\q`}}},
		{"framing.max_length", PortConfig{Name: "a", Device: "/dev/x", Framing: Framing{MaxLength: MaxFrameLength + 1}}},
		{"framing.length", PortConfig{Name: "a", Device: "/dev/x", Framing: Framing{Mode: FramingFixed}}},
		{"framing.silence", PortConfig{Name: "a", Device: "/dev/x", Framing: Framing{Mode: FramingSilence, Silence: time.Microsecond}}},
		{"framing.end", PortConfig{Name: "a", Device: "/dev/x", Framing: Framing{Mode: FramingDelimited, Start: "<"}}},
		{"payload.format", PortConfig{Name: "a", Device: "/dev/x", Payload: Payload{Format: "xml"}}},
		{"payload.format", PortConfig{Name: "a", Device: "/dev/x", Payload: Payload{Format: FormatText, Parse: ParseNMEA}}},
		{"payload.parse", PortConfig{Name: "a", Device: "/dev/x", Payload: Payload{Parse: "xml"}}},
		{"payload.regex", PortConfig{Name: "a", Device: "/dev/x", Payload: Payload{Parse: ParseRegex, Regex: "("}}},
		{"payload.regex", PortConfig{Name: "a", Device: "/dev/x", Payload: Payload{Parse: ParseRegex, Regex: "(a)"}}},
		{"payload.columns", PortConfig{Name: "a", Device: "/dev/x", Payload: Payload{Parse: ParseCSV}}},
		{"payload.columns[1]", PortConfig{Name: "a", Device: "/dev/x", Payload: Payload{Parse: ParseCSV, Columns: []string{"a", "a"}}}},
		{"payload.separator", PortConfig{Name: "a", Device: "/dev/x", Payload: Payload{Parse: ParseCSV, Columns: []string{"a"}, Separator: ",,"}}},
		{"payload.numbers[0]", PortConfig{Name: "a", Device: "/dev/x", Payload: Payload{Parse: ParseCSV, Columns: []string{"a"}, Numbers: []string{"b"}}}},
		{"payload.numbers", PortConfig{Name: "a", Device: "/dev/x", Payload: Payload{Parse: ParseNMEA, Numbers: []string{"lat"}}}},
		{"payload.timestamp", PortConfig{Name: "a", Device: "/dev/x", Payload: Payload{Timestamp: TimestampUnixMS}}},
		{"payload.timestamp", PortConfig{Name: "a", Device: "/dev/x", Payload: Payload{Format: FormatText, Timestamp: "iso"}}},
		{"payload.timestamp_field", PortConfig{Name: "a", Device: "/dev/x", Payload: Payload{Parse: ParseCSV, Columns: []string{"ts"}, Timestamp: TimestampUnixMS}}},
		{"topic", PortConfig{Name: "a", Device: "/dev/x", Topic: "a/#"}},
		{"topic", PortConfig{Name: "a", Device: "/dev/x", Topic: "a/{temp}"}},
		{"topic", PortConfig{Name: "a", Device: "/dev/x", Topic: "a/{nope}", Payload: Payload{Parse: ParseNMEA}}},
		{"topic", PortConfig{Name: "a", Device: "/dev/x", Topic: "a/{name"}},
		{"on_error.topic", PortConfig{Name: "a", Device: "/dev/x", OnError: OnError{Action: OnErrorPublish}}},
		{"on_error.topic", PortConfig{Name: "a", Device: "/dev/x", OnError: OnError{Topic: "x"}}},
		{"on_error.action", PortConfig{Name: "a", Device: "/dev/x", OnError: OnError{Action: "log"}}},
		{"qos", PortConfig{Name: "a", Device: "/dev/x", QoS: &q3}},
		{"write.topic", PortConfig{Name: "a", Device: "/dev/x", Write: Write{Topic: "a/#/b"}}},
		{"write.topic", PortConfig{Name: "a", Device: "/dev/x", Write: Write{Topic: "a/{port}/cmd"}}},
		{"write.format", PortConfig{Name: "a", Device: "/dev/x", Write: Write{Topic: "a", Format: "json"}}},
		{"write.append", PortConfig{Name: "a", Device: "/dev/x", Write: Write{Topic: "a", Append: `\`}}},
		{"poll.request", PortConfig{Name: "a", Device: "/dev/x", Poll: Poll{Interval: time.Second}}},
		{"poll.interval", PortConfig{Name: "a", Device: "/dev/x", Poll: Poll{Request: "x"}}},
		{"poll.interval", PortConfig{Name: "a", Device: "/dev/x", Poll: Poll{Interval: time.Millisecond, Request: "x"}}},
		{"reopen.max", PortConfig{Name: "a", Device: "/dev/x", Reopen: Reopen{Initial: time.Minute, Max: time.Second}}},
	}
	for _, tt := range tests {
		c := tt.cfg
		c.SetDefaults()
		err := c.Validate()
		var fe *FieldError
		if err == nil || !errors.As(err, &fe) {
			t.Errorf("%s: error %v", tt.key, err)
			continue
		}
		found := false
		for _, e := range unjoin(err) {
			if errors.As(e, &fe) && fe.Key == tt.key {
				found = true
			}
		}
		if !found || !strings.Contains(err.Error(), tt.key+": ") {
			t.Errorf("want key %s, got %v", tt.key, err)
		}
		if _, nerr := New(tt.cfg, newMemBus(), nil); nerr == nil {
			t.Errorf("%s: New accepted it", tt.key)
		}
	}
}

func TestValidatePorts(t *testing.T) {
	ports := []PortConfig{{Name: "a", Device: "/dev/x"}, {Name: "b", Device: "/dev/y", Baud: -5}, {Name: "a", Device: "/dev/z"}, {Name: "c", Device: "/dev/x"}}
	for i := range ports {
		ports[i].SetDefaults()
	}
	err := ValidatePorts(ports)
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	for _, want := range []string{"serial[1].baud: must be positive", `serial[2].name: "a" is already the name of serial[0]`, `serial[3].device: "/dev/x" is already the device of serial[0]`} {
		if !strings.Contains(msg, want) {
			t.Errorf("missing %q in %q", want, msg)
		}
	}
}

func TestWriteList(t *testing.T) {
	var b bytes.Buffer
	if err := WriteList(&b, nil); err != nil || b.String() != "no serial ports found\n" {
		t.Errorf("empty: %q %v", b.String(), err)
	}
	b.Reset()
	WriteList(&b, []PortInfo{
		{Name: "/dev/ttyS0"},
		{Name: "/dev/ttyUSB0", IsUSB: true, VID: "0403", PID: "6001", SerialNumber: "A50285BI", Product: "FT232R USB UART"},
	})
	want := "PORT          USB  VID   PID   SERIAL    PRODUCT\n" +
		"/dev/ttyS0    no   -     -     -         -\n" +
		"/dev/ttyUSB0  yes  0403  6001  A50285BI  FT232R USB UART\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}

// List runs against the real machine: it must not fail, and whatever it
// finds has a name and, for USB, ids.
func TestList(t *testing.T) {
	ports, err := List()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ports {
		if p.Name == "" || (p.IsUSB && (p.VID == "" || p.PID == "")) {
			t.Errorf("port %+v", p)
		}
	}
	t.Logf("%d ports", len(ports))
}

func TestMatch(t *testing.T) {
	p := PortInfo{Name: "/dev/ttyUSB3", IsUSB: true, VID: "0403", PID: "6001", SerialNumber: "A5"}
	for m, want := range map[Match]bool{
		{VID: "0403"}:                            true,
		{VID: "0403", PID: "6001", Serial: "A5"}: true,
		{PID: "6001"}:                            true,
		{VID: "10c4"}:                            false,
		{VID: "0403", Serial: "a5"}:              false, // serial numbers are case sensitive
	} {
		if got := m.matches(p); got != want {
			t.Errorf("%v matches = %v", m, got)
		}
	}
	if s := (Match{VID: "0403", Serial: "A5"}).String(); s != "vid=0403 serial=A5" {
		t.Errorf("String = %q", s)
	}
}

// docs/serial.md shows the example files verbatim.
func TestDocsShowExamples(t *testing.T) {
	doc, err := os.ReadFile("../../docs/serial.md")
	if err != nil {
		t.Fatalf("docs/serial.md: %v", err)
	}
	files, _ := filepath.Glob("testdata/examples/*.yaml")
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if !bytes.Contains(doc, append([]byte("```yaml\n"), b...)) {
			t.Errorf("docs/serial.md does not show %s as it is", f)
		}
	}
}

func TestResolve(t *testing.T) {
	a, err := New(PortConfig{Name: "x", Match: Match{VID: "0403"}}, newMemBus(), nil)
	if err != nil {
		t.Fatal(err)
	}
	a.listPorts = func() ([]PortInfo, error) {
		return []PortInfo{
			{Name: "/dev/ttyUSB3", IsUSB: true, VID: "0403", PID: "6015"},
			{Name: "/dev/ttyS0"},
			{Name: "/dev/ttyUSB1", IsUSB: true, VID: "0403", PID: "6001"},
			{Name: "/dev/ttyACM0", IsUSB: true, VID: "2341", PID: "0043"},
		}, nil
	}
	if dev, err := a.resolve(); err != nil || dev != "/dev/ttyUSB1" {
		t.Errorf("resolve = %q, %v; want the first match by name", dev, err)
	}
	a.cfg.Match = Match{VID: "10C4"}
	if _, err := a.resolve(); err == nil || !strings.Contains(err.Error(), "no USB serial port matches vid=10C4") {
		t.Errorf("no match: %v", err)
	}
	a.listPorts = func() ([]PortInfo, error) { return nil, errors.New("sysfs unreadable") }
	if _, err := a.resolve(); err == nil || !strings.Contains(err.Error(), "sysfs unreadable") {
		t.Errorf("list error: %v", err)
	}
}

// TestLineSettingError: what each system's serial driver cannot set is
// refused by name; everything else passes.
func TestLineSettingError(t *testing.T) {
	for _, tc := range []struct {
		goos, parity, stop, key string
	}{
		{"linux", ParityMark, "2", ""},
		{"linux", ParitySpace, "1", ""},
		{"linux", ParityOdd, "1.5", "stop_bits"},
		{"windows", ParityMark, "1.5", ""},
		{"darwin", ParityEven, "2", ""},
		{"darwin", ParityMark, "1", "parity"},
		{"freebsd", ParitySpace, "1", "parity"},
		{"openbsd", ParityNone, "1.5", "stop_bits"},
	} {
		key, msg := lineSettingError(tc.goos, tc.parity, tc.stop)
		if key != tc.key || (key != "") != strings.Contains(msg, tc.goos) {
			t.Errorf("lineSettingError(%s, %s, %s) = %q %q, want key %q", tc.goos, tc.parity, tc.stop, key, msg, tc.key)
		}
	}
}
