package serial

import (
	"errors"
	"fmt"
	"regexp"
	"runtime"
	"strings"
	"time"

	"holdfast/internal/topic"
)

// Defaults of PortConfig, applied by SetDefaults to keys left empty.
const (
	DefaultBaud     = 9600 // baud
	DefaultDataBits = 8
	DefaultParity   = ParityNone
	DefaultStopBits = "1"

	DefaultFraming        = FramingLine
	DefaultDelimiter      = `\n`
	DefaultMaxLength      = 4096 // bytes per frame, for line, silence and delimited framing
	DefaultSilence        = 20 * time.Millisecond
	DefaultFormat         = FormatRaw
	DefaultParsedFormat   = FormatJSON // the format when payload.parse is set
	DefaultCSVSeparator   = ","
	DefaultTimestampField = "ts"
	DefaultTopic          = "serial/{name}"
	DefaultQoS            = 1
	DefaultOnError        = OnErrorDrop
	DefaultWriteFormat    = WriteRaw
	DefaultReopenInitial  = 1 * time.Second
	DefaultReopenMax      = 30 * time.Second

	// MaxFrameLength bounds framing.max_length and framing.length: the most
	// memory one port's framer holds.
	MaxFrameLength = 1 << 20
)

// Parity values (key parity).
const (
	ParityNone  = "none"
	ParityOdd   = "odd"
	ParityEven  = "even"
	ParityMark  = "mark"
	ParitySpace = "space"
)

// Framing modes (key framing.mode).
const (
	FramingLine      = "line"      // frames end with framing.delimiter
	FramingFixed     = "fixed"     // every frame is framing.length bytes
	FramingSilence   = "silence"   // a frame ends when the line is quiet for framing.silence
	FramingDelimited = "delimited" // frames run from framing.start to framing.end
)

// Payload formats (key payload.format).
const (
	FormatRaw    = "raw"    // the frame's bytes as they are
	FormatText   = "text"   // the frame as UTF-8 text (invalid UTF-8 is a parse error)
	FormatHex    = "hex"    // lower-case hexadecimal of the frame
	FormatBase64 = "base64" // standard base64 of the frame
	FormatJSON   = "json"   // a JSON object: the frame itself, or what payload.parse made of it
)

// Parsers (key payload.parse).
const (
	ParseNone  = ""
	ParseRegex = "regex" // named groups of payload.regex become fields
	ParseCSV   = "csv"   // payload.columns name the fields of a separated line
	ParseNMEA  = "nmea"  // NMEA 0183 sentences, checksum verified
)

// Receive timestamps (key payload.timestamp).
const (
	TimestampNone    = ""
	TimestampRFC3339 = "rfc3339" // "2026-11-25T09:30:00.123456789Z", UTC
	TimestampUnixMS  = "unix_ms" // milliseconds since 1970 as a JSON number
)

// Actions for frames that fail to parse (key on_error.action).
const (
	OnErrorDrop    = "drop"    // count, log (rate-limited) and drop
	OnErrorPublish = "publish" // count, log and publish the raw frame to on_error.topic
)

// Write-back payload encodings (key write.format).
const (
	WriteRaw    = "raw"    // the message payload is written as it is
	WriteHex    = "hex"    // the payload is hexadecimal text, decoded before writing
	WriteBase64 = "base64" // the payload is base64 text, decoded before writing
)

// PortConfig is one serial port: where it is, how its line is set up, how
// its byte stream is cut into frames, what each frame becomes and where it is
// published. It is the YAML of one entry of the config's serial list.
type PortConfig struct {
	// Name identifies the port in topics ({name}), logs and metrics. Required;
	// letters, digits, '-', '_' and '.'.
	Name string `yaml:"name"`
	// Device is the port's path, e.g. /dev/ttyUSB0 or /dev/serial/by-id/....
	// Exactly one of Device and Match must be given.
	Device string `yaml:"device"`
	// Match finds a USB adapter by its ids instead of its path, again on every
	// reopen, so the sensor is found when /dev/ttyUSB0 comes back as ttyUSB1.
	Match Match `yaml:"match"`
	// Baud is the bit rate. Default 9600.
	Baud int `yaml:"baud"`
	// DataBits is 5, 6, 7 or 8. Default 8.
	DataBits int `yaml:"data_bits"`
	// Parity is none, odd, even, mark or space (mark and space on Linux
	// and Windows only). Default none.
	Parity string `yaml:"parity"`
	// StopBits is "1", "1.5" (Windows only) or "2". Default "1".
	StopBits string `yaml:"stop_bits"`

	// Framing says where one frame ends and the next begins.
	Framing Framing `yaml:"framing"`
	// Payload says what a frame becomes.
	Payload Payload `yaml:"payload"`
	// OnError says what happens to a frame that fails to parse.
	OnError OnError `yaml:"on_error"`

	// Topic is the topic template: {name} is the port's name, {port} the
	// kernel's name of the device opened (ttyUSB0, also for a device given
	// as a /dev/serial/by-id/... link, which is resolved), and {field} a
	// top-level field of the parsed JSON frame. Default "serial/{name}".
	Topic string `yaml:"topic"`
	// QoS of the published messages, 0, 1 or 2. Default 1.
	QoS *byte `yaml:"qos"`
	// Retain sets the retain flag on published messages. Default false.
	Retain bool `yaml:"retain"`

	// Write is the write-back topic: what is published there is written to the port.
	Write Write `yaml:"write"`
	// Poll sends a request to the port at a fixed interval.
	Poll Poll `yaml:"poll"`
	// Reopen is the backoff between attempts to reopen a lost port.
	Reopen Reopen `yaml:"reopen"`
}

// Match selects a USB serial adapter by its ids. Empty keys match anything;
// at least one must be set. Comparison ignores case.
type Match struct {
	// VID is the USB vendor id in hexadecimal, e.g. "0403".
	VID string `yaml:"vid"`
	// PID is the USB product id in hexadecimal, e.g. "6001".
	PID string `yaml:"pid"`
	// Serial is the USB serial number string, e.g. "A50285BI".
	Serial string `yaml:"serial"`
}

func (m Match) empty() bool { return m.VID == "" && m.PID == "" && m.Serial == "" }

// Framing cuts the byte stream into frames. Byte strings (delimiter, start,
// end) take escapes: \r \n \t \0 \\ \xHH, or "hex:" followed by hex digits
// (spaces allowed), e.g. "hex:0d0a".
type Framing struct {
	// Mode is line, fixed, silence or delimited. Default line.
	Mode string `yaml:"mode"`
	// Delimiter ends a frame in line mode; it is not part of the frame.
	// Default "\n"; with "\n", a "\r" just before it is removed too.
	Delimiter string `yaml:"delimiter"`
	// MaxLength is the longest frame kept in line, silence and delimited
	// modes, in bytes. A longer frame is counted as overlong and skipped up
	// to the next delimiter (end marker, silence). Default 4096.
	MaxLength int `yaml:"max_length"`
	// Length is the size of every frame in fixed mode, in bytes.
	Length int `yaml:"length"`
	// Silence ends a frame in silence mode when no byte arrives for this
	// long. Default 20ms; it should be longer than a few character times at
	// the baud rate (one character is 10 bits: 1ms at 9600 baud).
	Silence time.Duration `yaml:"silence"`
	// Start and End enclose a frame in delimited mode. Bytes outside a frame
	// are counted as garbage and dropped.
	Start string `yaml:"start"`
	End   string `yaml:"end"`
	// IncludeMarkers keeps Start and End in the frame (delimited mode).
	IncludeMarkers bool `yaml:"include_markers"`
}

// Payload turns a frame into the published payload.
type Payload struct {
	// Format is raw, text, hex, base64 or json. Default raw, or json when
	// Parse is set. json without Parse requires each frame to be a JSON
	// object (a sensor that prints JSON).
	Format string `yaml:"format"`
	// Parse is regex, csv or nmea (needs format json), or empty.
	Parse string `yaml:"parse"`
	// Regex is the regular expression (Go RE2 syntax) for parse: regex. Its
	// named groups become the fields; a frame it does not match is a parse
	// error. Anchor it (^...$) to match whole frames.
	Regex string `yaml:"regex"`
	// Columns names the fields of parse: csv, in order; "" or "_" skips a
	// column. A line with a different number of columns is a parse error.
	Columns []string `yaml:"columns"`
	// Separator is the one-character column separator for csv. Default ",".
	Separator string `yaml:"separator"`
	// Numbers lists fields (of regex or csv) published as JSON numbers
	// instead of strings; a value that is not a number is a parse error.
	Numbers []string `yaml:"numbers"`
	// Timestamp adds the receive time: rfc3339 or unix_ms; empty for none.
	// json payloads get it as a field; text, hex and base64 payloads become
	// {"data": <payload>, <field>: <time>}. Not available with raw.
	Timestamp string `yaml:"timestamp"`
	// TimestampField names the timestamp's field. Default "ts".
	TimestampField string `yaml:"timestamp_field"`
}

// OnError handles frames that fail to parse. Every one is counted and
// logged (rate-limited, without the payload).
type OnError struct {
	// Action is drop or publish. Default drop.
	Action string `yaml:"action"`
	// Topic receives the raw frame with action publish; {name} and {port}
	// are replaced. Required with action publish.
	Topic string `yaml:"topic"`
}

// Write is the write-back path from the local bus to the port.
type Write struct {
	// Topic is a local topic filter; the payload of every message published
	// to it is written to the port. Empty disables writing.
	Topic string `yaml:"topic"`
	// Format is raw, hex or base64: how the payload is decoded before it is
	// written. Default raw.
	Format string `yaml:"format"`
	// Append is written after every payload, with escapes, e.g. "\r\n".
	Append string `yaml:"append"`
}

// Poll writes Request to the port every Interval; the sensor's answer is
// read and published like any other frame.
type Poll struct {
	// Interval between requests; 0 disables polling.
	Interval time.Duration `yaml:"interval"`
	// Request is the bytes sent, with escapes or "hex:...", e.g. "READ\r\n"
	// or "hex:01 03 00 00 00 02 c4 0b".
	Request string `yaml:"request"`
}

// Reopen is the exponential backoff (factor 2, jitter 20%) between attempts
// to open a port that is missing or was lost. It never gives up.
type Reopen struct {
	// Initial wait after a loss or failed open. Default 1s.
	Initial time.Duration `yaml:"initial"`
	// Max caps the wait. Default 30s. A port that stayed open for Max (at
	// most 10s) starts again from Initial after its next loss.
	Max time.Duration `yaml:"max"`
}

// FieldError is a problem with one key of a PortConfig. Key is relative to
// the port ("framing.delimiter"); the config package prefixes it with the
// port's place in the file ("serial[0].framing.delimiter").
type FieldError struct {
	// Key is the key path within the port, e.g. "framing.delimiter".
	Key string
	// Msg says what is wrong with its value.
	Msg string
}

// Error returns "key: message".
func (e *FieldError) Error() string { return e.Key + ": " + e.Msg }

func fieldErr(key, format string, args ...any) error {
	return &FieldError{Key: key, Msg: fmt.Sprintf(format, args...)}
}

// writeFilter is the write-back topic filter with {name} filled in.
func (c *PortConfig) writeFilter() string {
	return strings.ReplaceAll(c.Write.Topic, "{name}", c.Name)
}

// SetDefaults fills every empty key with its default (see the Default*
// constants). Validate does not call it; New does.
func (c *PortConfig) SetDefaults() {
	if c.Baud == 0 {
		c.Baud = DefaultBaud
	}
	if c.DataBits == 0 {
		c.DataBits = DefaultDataBits
	}
	if c.Parity == "" {
		c.Parity = DefaultParity
	}
	if c.StopBits == "" {
		c.StopBits = DefaultStopBits
	}
	f := &c.Framing
	if f.Mode == "" {
		f.Mode = DefaultFraming
	}
	if f.Mode == FramingLine && f.Delimiter == "" {
		f.Delimiter = DefaultDelimiter
	}
	if f.MaxLength == 0 {
		f.MaxLength = DefaultMaxLength
	}
	if f.Mode == FramingSilence && f.Silence == 0 {
		f.Silence = DefaultSilence
	}
	p := &c.Payload
	if p.Format == "" {
		if p.Parse != ParseNone {
			p.Format = DefaultParsedFormat
		} else {
			p.Format = DefaultFormat
		}
	}
	if p.Parse == ParseCSV && p.Separator == "" {
		p.Separator = DefaultCSVSeparator
	}
	if p.Timestamp != TimestampNone && p.TimestampField == "" {
		p.TimestampField = DefaultTimestampField
	}
	if c.OnError.Action == "" {
		c.OnError.Action = DefaultOnError
	}
	if c.Topic == "" {
		c.Topic = DefaultTopic
	}
	if c.QoS == nil {
		q := byte(DefaultQoS)
		c.QoS = &q
	}
	if c.Write.Format == "" {
		c.Write.Format = DefaultWriteFormat
	}
	if c.Reopen.Initial == 0 {
		c.Reopen.Initial = DefaultReopenInitial
	}
	if c.Reopen.Max == 0 {
		c.Reopen.Max = DefaultReopenMax
	}
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

// Validate checks a port whose defaults are set (SetDefaults). It returns
// nil, or one *FieldError per problem joined with errors.Join; keys are
// relative to the port (see FieldError).
func (c *PortConfig) Validate() error {
	var errs []error
	add := func(key, format string, args ...any) { errs = append(errs, fieldErr(key, format, args...)) }

	switch {
	case c.Name == "":
		add("name", "required")
	case !nameRE.MatchString(c.Name):
		add("name", "%q: only letters, digits, '-', '_' and '.' are allowed", c.Name)
	}
	switch {
	case c.Device == "" && c.Match.empty():
		add("device", "one of device and match is required")
	case c.Device != "" && !c.Match.empty():
		add("match", "device and match exclude each other")
	}
	if !usbDetails && !c.Match.empty() {
		add("match", "needs a holdfast built with cgo on macOS to see USB ids: use device (/dev/cu.usbserial-...) instead")
	}
	for _, id := range []struct{ key, v string }{{"match.vid", c.Match.VID}, {"match.pid", c.Match.PID}} {
		if id.v != "" && !isHex(id.v, 4) {
			add(id.key, "%q is not a 4-digit hexadecimal USB id", id.v)
		}
	}
	if c.Baud <= 0 {
		add("baud", "must be positive, got %d", c.Baud)
	}
	if c.DataBits < 5 || c.DataBits > 8 {
		add("data_bits", "must be 5, 6, 7 or 8, got %d", c.DataBits)
	}
	if _, err := parseParity(c.Parity); err != nil {
		add("parity", "%v", err)
	}
	if _, err := parseStopBits(c.StopBits); err != nil {
		add("stop_bits", "%v", err)
	}
	if key, msg := lineSettingError(runtime.GOOS, c.Parity, c.StopBits); key != "" {
		add(key, "%s", msg)
	}

	f := c.Framing
	if f.MaxLength < 1 || f.MaxLength > MaxFrameLength {
		add("framing.max_length", "must be between 1 and %d, got %d", MaxFrameLength, f.MaxLength)
	}
	switch f.Mode {
	case FramingLine:
		if d, err := ParseBytes(f.Delimiter); err != nil {
			add("framing.delimiter", "%v", err)
		} else if len(d) == 0 {
			add("framing.delimiter", "must not be empty")
		}
	case FramingFixed:
		if f.Length < 1 || f.Length > MaxFrameLength {
			add("framing.length", "must be between 1 and %d, got %d", MaxFrameLength, f.Length)
		}
	case FramingSilence:
		if f.Silence < time.Millisecond {
			add("framing.silence", "must be at least 1ms, got %v", f.Silence)
		}
	case FramingDelimited:
		for _, k := range []struct{ key, v string }{{"framing.start", f.Start}, {"framing.end", f.End}} {
			if b, err := ParseBytes(k.v); err != nil {
				add(k.key, "%v", err)
			} else if len(b) == 0 {
				add(k.key, "required with framing.mode delimited")
			}
		}
	default:
		add("framing.mode", "%q: must be line, fixed, silence or delimited", f.Mode)
	}

	p := c.Payload
	fields, parseOK := []string(nil), true
	switch p.Format {
	case FormatRaw, FormatText, FormatHex, FormatBase64, FormatJSON:
	default:
		add("payload.format", "%q: must be raw, text, hex, base64 or json", p.Format)
	}
	switch p.Parse {
	case ParseNone:
	case ParseRegex:
		re, err := regexp.Compile(p.Regex)
		switch {
		case p.Regex == "":
			add("payload.regex", "required with payload.parse regex")
			parseOK = false
		case err != nil:
			add("payload.regex", "%v", err)
			parseOK = false
		default:
			for _, n := range re.SubexpNames() {
				if n != "" {
					fields = append(fields, n)
				}
			}
			if len(fields) == 0 {
				add("payload.regex", "has no named groups (?P<name>...)")
			}
		}
	case ParseCSV:
		if len(p.Columns) == 0 {
			add("payload.columns", "required with payload.parse csv")
		}
		seen := map[string]bool{}
		for i, col := range p.Columns {
			if col == "" || col == "_" {
				continue
			}
			if seen[col] {
				add(fmt.Sprintf("payload.columns[%d]", i), "%q appears twice", col)
			}
			seen[col] = true
			fields = append(fields, col)
		}
		if sep := []rune(p.Separator); len(sep) != 1 || sep[0] == '"' || sep[0] == '\r' || sep[0] == '\n' {
			add("payload.separator", "%q: must be one character other than a quote or line break", p.Separator)
		}
	case ParseNMEA:
		fields = nmeaFieldNames
	default:
		add("payload.parse", "%q: must be regex, csv or nmea", p.Parse)
		parseOK = false
	}
	if p.Parse != ParseNone && p.Format != FormatJSON {
		add("payload.format", "must be json with payload.parse %s, got %q", p.Parse, p.Format)
	}
	if len(p.Numbers) > 0 && p.Parse != ParseRegex && p.Parse != ParseCSV {
		add("payload.numbers", "only for payload.parse regex or csv")
	} else if parseOK {
		for i, n := range p.Numbers {
			if !contains(fields, n) {
				add(fmt.Sprintf("payload.numbers[%d]", i), "%q is not a field of the parsed frame", n)
			}
		}
	}
	switch p.Timestamp {
	case TimestampNone:
	case TimestampRFC3339, TimestampUnixMS:
		if p.Format == FormatRaw {
			add("payload.timestamp", "not available with payload.format raw")
		}
		if p.TimestampField == "" {
			add("payload.timestamp_field", "must not be empty")
		} else if parseOK && contains(fields, p.TimestampField) {
			add("payload.timestamp_field", "%q is also a field of the parsed frame", p.TimestampField)
		}
	default:
		add("payload.timestamp", "%q: must be rfc3339 or unix_ms", p.Timestamp)
	}

	// The topic template may use frame fields only where frames have fields.
	allowFields := p.Format == FormatJSON
	if tmpl, err := parseTemplate(c.Topic, allowFields); err != nil {
		add("topic", "%v", err)
	} else if parseOK && p.Parse != ParseNone {
		for _, fn := range tmpl.fields() {
			if !contains(fields, fn) {
				add("topic", "{%s} is not a field of the parsed frame", fn)
			}
		}
	}
	switch c.OnError.Action {
	case OnErrorDrop:
		if c.OnError.Topic != "" {
			add("on_error.topic", "only with on_error.action publish")
		}
	case OnErrorPublish:
		if c.OnError.Topic == "" {
			add("on_error.topic", "required with on_error.action publish")
		} else if _, err := parseTemplate(c.OnError.Topic, false); err != nil {
			add("on_error.topic", "%v", err)
		}
	default:
		add("on_error.action", "%q: must be drop or publish", c.OnError.Action)
	}
	if c.QoS != nil && *c.QoS > 2 {
		add("qos", "must be 0, 1 or 2, got %d", *c.QoS)
	}

	if c.Write.Topic != "" {
		f := c.writeFilter()
		if strings.Contains(f, "{") {
			add("write.topic", "%q: only {name} may be used here ({port} changes when a USB adapter moves)", c.Write.Topic)
		} else if err := topic.ValidFilter(f); err != nil {
			add("write.topic", "%q: %v", c.Write.Topic, err)
		}
	}
	switch c.Write.Format {
	case WriteRaw, WriteHex, WriteBase64:
	default:
		add("write.format", "%q: must be raw, hex or base64", c.Write.Format)
	}
	if _, err := ParseBytes(c.Write.Append); err != nil {
		add("write.append", "%v", err)
	}

	if c.Poll.Interval < 0 {
		add("poll.interval", "must not be negative")
	}
	if c.Poll.Interval > 0 {
		if c.Poll.Interval < 10*time.Millisecond {
			add("poll.interval", "must be at least 10ms, got %v", c.Poll.Interval)
		}
		if b, err := ParseBytes(c.Poll.Request); err != nil {
			add("poll.request", "%v", err)
		} else if len(b) == 0 {
			add("poll.request", "required with poll.interval")
		}
	} else if c.Poll.Request != "" {
		add("poll.interval", "required with poll.request")
	}

	if c.Reopen.Initial <= 0 {
		add("reopen.initial", "must be positive, got %v", c.Reopen.Initial)
	}
	if c.Reopen.Max < c.Reopen.Initial {
		add("reopen.max", "must be at least reopen.initial (%v), got %v", c.Reopen.Initial, c.Reopen.Max)
	}
	return errors.Join(errs...)
}

// ValidatePorts validates a list of ports whose defaults are set, as the
// config's serial list: each with keys prefixed "serial[i].", and names and
// device paths unique across the list (a port is opened exclusively).
func ValidatePorts(ports []PortConfig) error {
	var errs []error
	names, devices := map[string]int{}, map[string]int{}
	for i := range ports {
		prefix := fmt.Sprintf("serial[%d].", i)
		if err := ports[i].Validate(); err != nil {
			for _, e := range unjoin(err) {
				var fe *FieldError
				if errors.As(e, &fe) {
					e = &FieldError{Key: prefix + fe.Key, Msg: fe.Msg}
				}
				errs = append(errs, e)
			}
		}
		if d := ports[i].Device; d != "" {
			if j, dup := devices[d]; dup {
				errs = append(errs, fieldErr(prefix+"device", "%q is already the device of serial[%d]", d, j))
			} else {
				devices[d] = i
			}
		}
		if n := ports[i].Name; n != "" {
			if j, dup := names[n]; dup {
				errs = append(errs, fieldErr(prefix+"name", "%q is already the name of serial[%d]", n, j))
			} else {
				names[n] = i
			}
		}
	}
	return errors.Join(errs...)
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !strings.ContainsRune("0123456789abcdefABCDEF", rune(s[i])) {
			return false
		}
	}
	return true
}
