package config

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Size
	}{
		{"0", 0},
		{"512", 512},
		{"1B", 1},
		{"1KB", 1000},
		{"1kb", 1000},
		{"1KiB", 1024},
		{"64MiB", 64 << 20},
		{"64 MiB", 64 << 20},
		{"  2GB ", 2_000_000_000},
		{"1GiB", 1 << 30},
		{"3TiB", 3 << 40},
		{"5TB", 5_000_000_000_000},
		{"8388607TiB", 8388607 << 40},
		{"9223372036854775807", math.MaxInt64},
	} {
		got, err := ParseSize(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"", "want a number of bytes"},
		{"MiB", "want a number of bytes"},
		{"-1", "must not be negative"},
		{"-1KiB", "must not be negative"},
		{"1.5GiB", `unknown unit ".5GiB"`},
		{"10 parsecs", `unknown unit "parsecs"`},
		{"1 Mb", ""}, // case-insensitive: accepted, see below
		{"8388608TiB", "too large"},
		{"9223372036854775808", "too large"},
		{"0x10", `unknown unit "x10"`},
	} {
		_, err := ParseSize(tc.in)
		if tc.want == "" {
			if err != nil {
				t.Errorf("ParseSize(%q): %v", tc.in, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.in) {
			t.Errorf("ParseSize(%q) = %v, want an error naming the input and %q", tc.in, err, tc.want)
		}
	}
}

func TestSizeStringRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		s    Size
		want string
	}{
		{0, "0"}, {1000, "1000"}, {1024, "1KiB"}, {1536, "1536"}, {64 << 20, "64MiB"},
		{1 << 30, "1GiB"}, {3 << 40, "3TiB"}, {5 << 50, "5120TiB"},
	} {
		if got := tc.s.String(); got != tc.want {
			t.Errorf("Size(%d).String() = %q, want %q", int64(tc.s), got, tc.want)
		}
		back, err := ParseSize(tc.s.String())
		if err != nil || back != tc.s {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tc.s.String(), back, err, tc.s)
		}
	}
}

func TestParseDuration(t *testing.T) {
	const day = 24 * time.Hour
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"0", 0},
		{"0s", 0},
		{"90s", 90 * time.Second},
		{"2m", 2 * time.Minute},
		{"1h30m", 90 * time.Minute},
		{"250ms", 250 * time.Millisecond},
		{"7d", 7 * day},
		{"1d12h", 36 * time.Hour},
		{" 1d ", day},
		{"0d", 0},
		{"106751d", 106751 * day},
	} {
		got, err := ParseDuration(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"", "want e.g."},
		{"5", "want e.g."},
		{"d", "want e.g."},
		{"1.5d", "want e.g."},
		{"+1d", "want e.g."},
		{"1d1d", "want e.g."},
		{"-1s", "negative duration"},
		{"-1d", "negative duration"},
		{"1d-5h", "negative duration"},
		{"106752d", "too large"},
		{"106751d23h59m", "too large"},
		{"3000000h", "want e.g."},
		{"1 week", "want e.g."},
	} {
		_, err := ParseDuration(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseDuration(%q) = %v, want an error containing %q", tc.in, err, tc.want)
		}
	}
}

func TestFormatDurationRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{0, "0s"}, {90 * time.Second, "1m30s"}, {7 * 24 * time.Hour, "7d"},
		{36 * time.Hour, "1d12h0m0s"}, {1500 * time.Millisecond, "1.5s"},
	} {
		if got := FormatDuration(tc.d); got != tc.want {
			t.Errorf("FormatDuration(%v) = %q, want %q", tc.d, got, tc.want)
		}
		back, err := ParseDuration(FormatDuration(tc.d))
		if err != nil || back != tc.d {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", FormatDuration(tc.d), back, err, tc.d)
		}
	}
}

// TestSizesAndDurationsInYAML: the YAML forms of sizes and durations.
func TestSizesAndDurationsInYAML(t *testing.T) {
	c := mustParse(t, "queue:\n  max_bytes: 0\n  disk_reserve: \"1 GB\"\n  ttl: 0\n  commit_wait: 1ms\nlocal:\n  max_packet_size: 256KiB\n")
	if c.Queue.MaxBytes != 0 || c.Queue.DiskReserve != GB || c.Queue.TTL != 0 || c.Queue.CommitWait != time.Millisecond || c.Local.MaxPacketSize != 256*KiB {
		t.Errorf("got queue %+v local %+v", c.Queue, c.Local)
	}
}
