package serial

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

// Seed corpora are in testdata/fuzz/<FuzzName>/. Run one with e.g.
//
//	go test -run '^$' -fuzz '^FuzzNMEA$' -fuzztime 60s ./adapters/serial/

// framingFor builds a valid framing from fuzz inputs, or reports false.
func framingFor(mode byte, a, b string, maxLen uint16) (Framing, bool) {
	f := Framing{MaxLength: int(maxLen%2048) + 1}
	switch mode % 4 {
	case 0:
		f.Mode, f.Delimiter = FramingLine, a
	case 1:
		f.Mode, f.Length = FramingFixed, int(maxLen%512)+1
	case 2:
		f.Mode, f.Silence = FramingSilence, time.Millisecond
	case 3:
		f.Mode, f.Start, f.End, f.IncludeMarkers = FramingDelimited, a, b, maxLen&1 == 1
	}
	c := PortConfig{Name: "f", Device: "/dev/null", Framing: f}
	c.SetDefaults()
	if c.Validate() != nil {
		return f, false
	}
	return c.Framing, true
}

type framed struct {
	frames            []string
	overlong, garbage uint64
}

// feedChunked feeds data in chunks and, every idleEvery chunks, an idle.
func feedChunked(f framer, data []byte, chunk int, check func(framer)) framed {
	var out framed
	emit := func(b []byte) { out.frames = append(out.frames, string(b)) }
	for len(data) > 0 {
		n := min(chunk, len(data))
		f.feed(data[:n], emit)
		data = data[n:]
		if check != nil {
			check(f)
		}
	}
	f.idle(emit)
	out.overlong, out.garbage = f.counts()
	return out
}

// bufLen reports how much a framer holds.
func bufLen(f framer) int {
	switch f := f.(type) {
	case *lineFramer:
		return len(f.buf)
	case *fixedFramer:
		return len(f.buf)
	case *silenceFramer:
		return len(f.buf)
	case *delimitedFramer:
		return len(f.buf)
	}
	return 0
}

// FuzzFramers: no panic; frames never longer than the maximum; memory held
// bounded by the maximum plus markers plus one read; for line, fixed and
// delimited framing the result does not depend on how reads split the
// stream.
func FuzzFramers(f *testing.F) {
	f.Add(byte(0), `\n`, "", uint16(10), uint8(3), []byte("ab\ncd\r\n\nefghijklmnopq\nz"))
	f.Add(byte(0), `\r\n`, "", uint16(4), uint8(1), []byte("a\r\r\nbcdef\r\nx\r\n"))
	f.Add(byte(1), "", "", uint16(3), uint8(2), []byte("abcdefgh"))
	f.Add(byte(2), "", "", uint16(5), uint8(4), []byte("0123456789"))
	f.Add(byte(3), `\x02`, `\x03`, uint16(4), uint8(2), []byte("z\x02ab\x03\x02toolong\x03q\x02c\x03"))
	f.Add(byte(3), "<<", ">>", uint16(7), uint8(1), []byte("<<<a>>b<<>>>>"))
	f.Fuzz(func(t *testing.T, mode byte, a, b string, maxLen uint16, chunk uint8, data []byte) {
		cfg, ok := framingFor(mode, a, b, maxLen)
		if !ok {
			return
		}
		limit := cfg.MaxLength
		if cfg.Mode == FramingFixed {
			limit = cfg.Length
		}
		markers := 2 + len(cfg.Delimiter) + len(cfg.Start) + len(cfg.End)
		read := int(chunk) + 1
		check := func(fr framer) {
			if n := bufLen(fr); n > limit+markers+read {
				t.Fatalf("framer holds %d bytes (limit %d, read %d)", n, limit, read)
			}
		}
		whole := feedChunked(newFramer(cfg), data, len(data)+1, nil)
		parts := feedChunked(newFramer(cfg), data, read, check)
		for _, fr := range append(whole.frames, parts.frames...) {
			if cfg.Mode == FramingFixed && len(fr) != limit {
				t.Fatalf("fixed frame of %d bytes, want %d", len(fr), limit)
			}
			max := limit
			if cfg.IncludeMarkers {
				max += len(cfg.Start) + len(cfg.End)
			}
			if len(fr) > max {
				t.Fatalf("frame of %d bytes > max %d", len(fr), max)
			}
			if cfg.Mode == FramingLine && strings.Contains(fr, mustBytes(cfg.Delimiter)) {
				t.Fatalf("frame %q contains the delimiter", fr)
			}
		}
		if cfg.Mode != FramingSilence && !reflect.DeepEqual(whole, parts) {
			t.Fatalf("chunking changes the result:\nwhole %+v\nparts %+v", whole, parts)
		}
	})
}

func mustBytes(s string) string {
	b, err := ParseBytes(s)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// FuzzNMEA: no panic; what parses is valid JSON with talker and type, and
// its checksum was right.
func FuzzNMEA(f *testing.F) {
	for _, s := range []string{
		"$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47",
		"$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A\r\n",
		"$GPGSV,3,1,11,03,03,111,00,04,15,270,00,06,01,010,00,13,06,292,00*74",
		"!AIVDM,1,1,,A,13aEOK?P00PD2wVMdLDRhgvL289?,0*3B",
		"$PGRME,15.0,M,45.0,M,25.0,M*1C",
		"$GPGGA,,,,,,0,00,99.99,,,,,,*48",
		"$*00", "$GP*", "",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		rec, err := parseNMEA(frame)
		if err != nil {
			return
		}
		out := rec.appendJSON(nil)
		if !json.Valid(out) {
			t.Fatalf("invalid JSON %s", out)
		}
		if _, ok := rec.get("talker"); !ok {
			t.Fatalf("no talker: %s", out)
		}
		s := strings.TrimRight(string(frame), "\r\n ")
		star := strings.LastIndexByte(s, '*')
		var sum byte
		for i := 1; i < star; i++ {
			sum ^= s[i]
		}
		if got := strings.ToUpper(s[star+1:]); got != strings.ToUpper(string("0123456789ABCDEF"[sum>>4])+string("0123456789ABCDEF"[sum&15])) {
			t.Fatalf("accepted %q with checksum %s, computed %02X", frame, got, sum)
		}
	})
}

// FuzzCodec: every payload mode either fails cleanly or yields what it
// promises (valid JSON for json, the exact bytes for raw).
func FuzzCodec(f *testing.F) {
	f.Add(byte(0), []byte("s1 T=21.5"))
	f.Add(byte(1), []byte(`a,"b,c",3.5`))
	f.Add(byte(2), []byte(`{"id":"x","v":1}`))
	f.Add(byte(3), []byte("\xff\x00text"))
	f.Add(byte(4), []byte("$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47"))
	payloads := []Payload{
		{Parse: ParseRegex, Regex: `^(?P<id>\S+) T=(?P<temp>\S+)(?: (?P<rest>.*))?$`, Numbers: []string{"temp"}, Timestamp: TimestampRFC3339},
		{Parse: ParseCSV, Columns: []string{"a", "_", "b"}, Numbers: []string{"b"}},
		{Format: FormatJSON, Timestamp: TimestampUnixMS},
		{Format: FormatText, Timestamp: TimestampUnixMS},
		{Parse: ParseNMEA, Timestamp: TimestampRFC3339},
		{Format: FormatRaw},
		{Format: FormatHex, Timestamp: TimestampRFC3339},
	}
	codecs := make([]*codec, len(payloads))
	for i, p := range payloads {
		codecs[i] = mustCodec(f, p)
	}
	f.Fuzz(func(t *testing.T, which byte, frame []byte) {
		i := int(which) % len(codecs)
		out, _, err := codecs[i].encode(nil, frame, at)
		if err != nil {
			return
		}
		if payloads[i].Format == FormatRaw {
			if !bytes.Equal(out, frame) {
				t.Fatalf("raw changed the frame")
			}
			return
		}
		if !json.Valid(out) {
			t.Fatalf("mode %d: invalid JSON %q from %q", i, out, frame)
		}
	})
}

// FuzzParseBytes: no panic; text without escapes passes unchanged.
func FuzzParseBytes(f *testing.F) {
	for _, s := range []string{`\r\n`, `\x02`, "hex:0d 0a", `a\\b`, "plain", `\x4`, `\`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := ParseBytes(s)
		if err == nil && !strings.Contains(s, `\`) && !strings.HasPrefix(s, "hex:") && string(b) != s {
			t.Fatalf("%q became %q", s, b)
		}
	})
}

// FuzzTemplate: no panic; a template that parses expands to a valid topic
// for plain field values.
func FuzzTemplate(f *testing.F) {
	for _, s := range []string{"serial/{name}", "{name}/{port}/{talker}/{type}", "a/{", "a/}", "{a/b}", "#", "x/+/y", "{}"} {
		f.Add(s, "value")
	}
	f.Fuzz(func(t *testing.T, s, v string) {
		tmpl, err := parseTemplate(s, true)
		if err != nil {
			return
		}
		out, err := tmpl.expandErr("n", "ttyUSB0", func(string) (string, bool) { return v, true })
		if err != nil {
			if v != "" {
				t.Fatalf("expand: %v", err)
			}
			return
		}
		if strings.ContainsAny(strings.ReplaceAll(out, v, ""), "+#") {
			t.Fatalf("%q expands to %q", s, out)
		}
		if len(tmpl.fields()) > 0 && strings.ContainsAny(levelSafe(v), "/+#\x00") {
			t.Fatalf("levelSafe(%q) leaks separators", v)
		}
	})
}

// FuzzAppendJSONString: always valid JSON.
func FuzzAppendJSONString(f *testing.F) {
	f.Add("plain")
	f.Add("\x00\"\\\xff\u2028")
	f.Fuzz(func(t *testing.T, s string) {
		if b := appendJSONString(nil, s); !json.Valid(b) {
			t.Fatalf("%q -> invalid %s", s, b)
		}
	})
}
