package serial

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// run feeds in to a fresh framer in chunks of the given size (0: all at
// once) and returns the frames and counters.
func runFramer(t testing.TB, cfg Framing, in []byte, chunk int) (frames []string, overlong, garbage uint64) {
	c := PortConfig{Name: "t", Device: "/dev/null", Framing: cfg}
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		t.Fatalf("config: %v", err)
	}
	f := newFramer(c.Framing)
	emit := func(b []byte) { frames = append(frames, string(b)) }
	if chunk <= 0 {
		chunk = len(in) + 1
	}
	for len(in) > 0 {
		n := min(chunk, len(in))
		f.feed(in[:n], emit)
		in = in[n:]
	}
	f.idle(emit)
	overlong, garbage = f.counts()
	return frames, overlong, garbage
}

func TestFramers(t *testing.T) {
	tests := []struct {
		name     string
		cfg      Framing
		in       string
		want     []string
		overlong uint64
		garbage  uint64
	}{
		{"lines", Framing{}, "a\nbb\n\nccc\npartial", []string{"a", "bb", "ccc"}, 0, 0},
		{"crlf stripped", Framing{}, "a\r\nb\r\n\r\n", []string{"a", "b"}, 0, 0},
		{"cr kept with other delimiter", Framing{Delimiter: ";"}, "a\r;b;", []string{"a\r", "b"}, 0, 0},
		{"multi-byte delimiter", Framing{Delimiter: `\r\n`}, "a\rb\r\nc\r\n", []string{"a\rb", "c"}, 0, 0},
		{"hex delimiter", Framing{Delimiter: "hex:ff fe"}, "a\xff\xfeb\xffc\xff\xfe", []string{"a", "b\xffc"}, 0, 0},
		{"overlong skipped to next delimiter", Framing{MaxLength: 4}, "abcd\nabcdefghij\nxy\n", []string{"abcd", "xy"}, 1, 0},
		{"overlong with crlf at the limit", Framing{MaxLength: 4}, "abcd\r\nabcde\r\nz\r\n", []string{"abcd", "z"}, 1, 0},
		{"two overlong", Framing{MaxLength: 2, Delimiter: "XY"}, "abcdefXYabcXYokXY", []string{"ok"}, 2, 0},
		{"fixed", Framing{Mode: FramingFixed, Length: 3}, "abcdefgh", []string{"abc", "def"}, 0, 0},
		{"silence", Framing{Mode: FramingSilence}, "\x01\x03\x04", []string{"\x01\x03\x04"}, 0, 0},
		{"silence overlong", Framing{Mode: FramingSilence, MaxLength: 2}, "abc", nil, 1, 0},
		{"delimited", Framing{Mode: FramingDelimited, Start: `\x02`, End: `\x03`}, "zz\x02abc\x03q\x02de\x03", []string{"abc", "de"}, 0, 3},
		{"delimited keep markers", Framing{Mode: FramingDelimited, Start: "<", End: ">", IncludeMarkers: true}, "<a><>", []string{"<a>", "<>"}, 0, 0},
		{"delimited empty dropped", Framing{Mode: FramingDelimited, Start: "<", End: ">"}, "<><a>", []string{"a"}, 0, 0},
		{"delimited start inside frame is data", Framing{Mode: FramingDelimited, Start: "<", End: ">"}, "<a<b>", []string{"a<b"}, 0, 0},
		{"delimited multi-byte markers", Framing{Mode: FramingDelimited, Start: "<<", End: ">>"}, "x<y<<ab>c>>", []string{"ab>c"}, 0, 3},
		{"delimited overlong", Framing{Mode: FramingDelimited, Start: "<", End: ">", MaxLength: 3}, "<abcdefg>junk<ok>", []string{"ok"}, 1, 4},
	}
	for _, tt := range tests {
		for _, chunk := range []int{0, 1, 2, 3, 7} {
			t.Run(fmt.Sprintf("%s/chunk%d", tt.name, chunk), func(t *testing.T) {
				got, overlong, garbage := runFramer(t, tt.cfg, []byte(tt.in), chunk)
				if !reflect.DeepEqual(got, tt.want) {
					t.Errorf("frames = %q, want %q", got, tt.want)
				}
				if overlong != tt.overlong {
					t.Errorf("overlong = %d, want %d", overlong, tt.overlong)
				}
				if garbage != tt.garbage {
					t.Errorf("garbage = %d, want %d", garbage, tt.garbage)
				}
			})
		}
	}
}

func TestSilenceFramerSplitsOnIdle(t *testing.T) {
	f := newFramer(Framing{Mode: FramingSilence, MaxLength: 10, Silence: DefaultSilence})
	var frames []string
	emit := func(b []byte) { frames = append(frames, string(b)) }
	f.feed([]byte("ab"), emit)
	f.feed([]byte("c"), emit)
	f.idle(emit)
	f.idle(emit) // a second quiet interval emits nothing
	f.feed([]byte("0123456789X"), emit)
	f.idle(emit) // overlong: dropped
	f.feed([]byte("d"), emit)
	f.idle(emit)
	if want := []string{"abc", "d"}; !reflect.DeepEqual(frames, want) {
		t.Fatalf("frames = %q, want %q", frames, want)
	}
	if o, _ := f.counts(); o != 1 {
		t.Fatalf("overlong = %d, want 1", o)
	}
}

func TestLineFramerMemoryBounded(t *testing.T) {
	f := newFramer(Framing{Mode: FramingLine, Delimiter: "\n", MaxLength: 100}).(*lineFramer)
	junk := []byte(strings.Repeat("x", 4096))
	for i := 0; i < 1000; i++ {
		f.feed(junk, func([]byte) { t.Fatal("no frame expected") })
		if len(f.buf) > 101 {
			t.Fatalf("buffer holds %d bytes after %d chunks", len(f.buf), i+1)
		}
	}
	var got []string
	f.feed([]byte("\nok\n"), func(b []byte) { got = append(got, string(b)) })
	if !reflect.DeepEqual(got, []string{"ok"}) {
		t.Fatalf("after overlong: %q", got)
	}
	if o, _ := f.counts(); o != 1 {
		t.Fatalf("overlong = %d, want 1 (one long line)", o)
	}
}

func TestParseBytes(t *testing.T) {
	good := map[string]string{
		`\r\n`:           "\r\n",
		"\r\n":           "\r\n",
		`a\\b`:           `a\b`,
		`\x02\xff\0\t`:   "\x02\xff\x00\t",
		"hex:0d0a":       "\r\n",
		"hex:01 03 FF":   "\x01\x03\xff",
		"":               "",
		"READ?":          "READ?",
		"hex:":           "",
		`\x41\x42`:       "AB",
		`literal\x41end`: "literalAend",
	}
	for in, want := range good {
		got, err := ParseBytes(in)
		if err != nil || string(got) != want {
			t.Errorf("ParseBytes(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{`\`, `\q`, `\x4`, `\xzz`, "hex:0", "hex:zz", `ab\`} {
		if _, err := ParseBytes(in); err == nil {
			t.Errorf("ParseBytes(%q): no error", in)
		}
	}
}
