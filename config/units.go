package config

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Size is a number of bytes. In YAML it is an integer (bytes) or a string
// with a unit; see ParseSize.
type Size int64

// Size units.
const (
	B   Size = 1
	KiB Size = 1 << 10
	MiB Size = 1 << 20
	GiB Size = 1 << 30
	TiB Size = 1 << 40
	KB  Size = 1000
	MB  Size = 1000 * KB
	GB  Size = 1000 * MB
	TB  Size = 1000 * GB
)

var sizeUnits = []struct {
	name string
	size Size
}{
	{"TiB", TiB}, {"GiB", GiB}, {"MiB", MiB}, {"KiB", KiB},
	{"TB", TB}, {"GB", GB}, {"MB", MB}, {"KB", KB}, {"B", B},
}

// ParseSize parses a size: a non-negative integer optionally followed by a
// unit: B, KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of
// 1024), case-insensitive, with optional space: "512", "64MiB", "1 GB".
func ParseSize(s string) (Size, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	if i == 0 {
		if strings.HasPrefix(t, "-") {
			return 0, fmt.Errorf("invalid size %q: must not be negative", s)
		}
		return 0, fmt.Errorf("invalid size %q: want a number of bytes or e.g. \"64MiB\"", s)
	}
	n, err := strconv.ParseInt(t[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("invalid size %q: too large", s)
	}
	unit := strings.TrimSpace(t[i:])
	if unit == "" {
		return Size(n), nil
	}
	for _, u := range sizeUnits {
		if strings.EqualFold(unit, u.name) {
			if n > math.MaxInt64/int64(u.size) {
				return 0, fmt.Errorf("invalid size %q: too large", s)
			}
			return Size(n) * u.size, nil
		}
	}
	return 0, fmt.Errorf("invalid size %q: unknown unit %q (use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB)", s, unit)
}

// String formats s with the largest binary unit that divides it exactly
// ("64MiB", "1GiB"), or as plain bytes ("1000"). ParseSize reads it back.
func (s Size) String() string {
	if s != 0 {
		for _, u := range sizeUnits[:4] {
			if s%u.size == 0 {
				return strconv.FormatInt(int64(s/u.size), 10) + u.name
			}
		}
	}
	return strconv.FormatInt(int64(s), 10)
}

var errNegativeDuration = errors.New("negative duration")

// ParseDuration parses a non-negative duration: a Go duration string
// ("90s", "1h30m", "250ms") optionally starting with whole days ("7d",
// "1d12h").
func ParseDuration(s string) (time.Duration, error) {
	t := strings.TrimSpace(s)
	if strings.HasPrefix(t, "-") {
		return 0, fmt.Errorf("invalid duration %q: %w", s, errNegativeDuration)
	}
	var days int64
	if i := strings.IndexByte(t, 'd'); i >= 0 {
		n, err := strconv.ParseInt(t[:i], 10, 64)
		if err != nil || i == 0 || t[0] == '+' {
			return 0, fmt.Errorf("invalid duration %q: want e.g. \"90s\", \"2m\" or \"7d\"", s)
		}
		const maxDays = int64(math.MaxInt64 / int64(24*time.Hour))
		if n > maxDays {
			return 0, fmt.Errorf("invalid duration %q: too large", s)
		}
		days = n
		t = t[i+1:]
		if t == "" {
			return time.Duration(days) * 24 * time.Hour, nil
		}
	}
	d, err := time.ParseDuration(t)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q: want e.g. \"90s\", \"2m\" or \"7d\"", s)
	}
	if d < 0 || strings.HasPrefix(t, "-") {
		return 0, fmt.Errorf("invalid duration %q: %w", s, errNegativeDuration)
	}
	total := time.Duration(days)*24*time.Hour + d
	if total < d {
		return 0, fmt.Errorf("invalid duration %q: too large", s)
	}
	return total, nil
}

// FormatDuration formats d the way ParseDuration reads it, with whole days
// as "d": 7*24h is "7d", 36h is "1d12h0m0s", 90s is "1m30s", 0 is "0s".
func FormatDuration(d time.Duration) string {
	const day = 24 * time.Hour
	if d < day {
		return d.String()
	}
	days := d / day
	rest := d % day
	if rest == 0 {
		return strconv.FormatInt(int64(days), 10) + "d"
	}
	return strconv.FormatInt(int64(days), 10) + "d" + rest.String()
}
