package serial

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// NMEA 0183 sentences: "$" (or "!" for encapsulated data such as AIS), an
// address (talker id and sentence type, e.g. "GPGGA"; "P" and a maker's code
// for proprietary sentences), comma-separated fields, "*" and a checksum of
// two hexadecimal digits: the XOR of every byte between "$" and "*". A
// trailing CR LF or spaces are ignored. The checksum is required and verified.
//
// Every sentence becomes {"talker": "GP", "type": "GGA", ...}. GGA and RMC get
// named fields (positions in signed decimal degrees, numbers as numbers,
// empty fields null); any other sentence gets "fields": [...] as text.

// nmeaFieldNames are the fields an NMEA frame may have, for checking topic
// templates and numbers lists.
var nmeaFieldNames = []string{
	"talker", "type", "fields",
	"time", "lat", "lon", "quality", "satellites", "hdop", "altitude", "altitude_unit",
	"geoid_separation", "geoid_unit", "dgps_age", "dgps_station",
	"status", "speed_knots", "course", "date", "datetime", "magnetic_variation", "mode", "nav_status",
}

var errNMEAChecksum = errors.New("nmea: checksum mismatch")

// parseNMEA parses one sentence.
func parseNMEA(frame []byte) (record, error) {
	s := strings.TrimRight(string(frame), "\r\n ")
	if len(s) < 1 || (s[0] != '$' && s[0] != '!') {
		return nil, errors.New("nmea: sentence must start with '$' or '!'")
	}
	star := strings.LastIndexByte(s, '*')
	if star < 0 || star != len(s)-3 {
		return nil, errors.New("nmea: missing checksum (*HH at the end)")
	}
	want, err := strconv.ParseUint(s[star+1:], 16, 8)
	if err != nil {
		return nil, fmt.Errorf("nmea: bad checksum %q", s[star+1:])
	}
	body := s[1:star]
	var sum byte
	for i := 0; i < len(body); i++ {
		c := body[i]
		if c < 0x20 || c > 0x7e {
			return nil, fmt.Errorf("nmea: byte 0x%02x is not printable ASCII", c)
		}
		sum ^= c
	}
	if sum != byte(want) {
		return nil, fmt.Errorf("%w: computed %02X, sentence says %02X", errNMEAChecksum, sum, want)
	}
	parts := strings.Split(body, ",")
	addr := parts[0]
	fields := parts[1:]
	if len(addr) < 2 || len(addr) > 8 {
		return nil, fmt.Errorf("nmea: bad address %q", addr)
	}
	for i := 0; i < len(addr); i++ {
		c := addr[i]
		if (c < 'A' || c > 'Z') && (c < '0' || c > '9') {
			return nil, fmt.Errorf("nmea: bad address %q", addr)
		}
	}
	var talker, typ string
	switch {
	case addr[0] == 'P':
		talker, typ = "P", addr[1:]
	case len(addr) < 3:
		return nil, fmt.Errorf("nmea: bad address %q", addr)
	default:
		talker, typ = addr[:2], addr[2:]
	}
	r := make(record, 0, 16)
	r = append(r, field{"talker", talker}, field{"type", typ})
	if talker != "P" {
		switch typ {
		case "GGA":
			return parseGGA(r, fields)
		case "RMC":
			return parseRMC(r, fields)
		}
	}
	return append(r, field{"fields", fields}), nil
}

// GGA: time, lat, N/S, lon, E/W, quality, satellites, hdop, altitude, M,
// geoid separation, M, age of differential data, station id.
func parseGGA(r record, f []string) (record, error) {
	if len(f) < 14 {
		return nil, fmt.Errorf("nmea: GGA has %d fields, want 14", len(f))
	}
	lat, err := nmeaCoord(f[1], f[2], 'N', 'S', 90)
	if err != nil {
		return nil, fmt.Errorf("nmea: GGA latitude: %w", err)
	}
	lon, err := nmeaCoord(f[3], f[4], 'E', 'W', 180)
	if err != nil {
		return nil, fmt.Errorf("nmea: GGA longitude: %w", err)
	}
	t, err := nmeaTime(f[0])
	if err != nil {
		return nil, fmt.Errorf("nmea: GGA time: %w", err)
	}
	r = append(r, field{"time", t}, field{"lat", lat}, field{"lon", lon})
	for _, n := range []struct {
		key string
		i   int
	}{{"quality", 5}, {"satellites", 6}, {"hdop", 7}, {"altitude", 8}} {
		v, err := nmeaNumber(f[n.i])
		if err != nil {
			return nil, fmt.Errorf("nmea: GGA %s: %w", n.key, err)
		}
		r = append(r, field{n.key, v})
	}
	r = append(r, field{"altitude_unit", nullIfEmpty(f[9])})
	sep, err := nmeaNumber(f[10])
	if err != nil {
		return nil, fmt.Errorf("nmea: GGA geoid_separation: %w", err)
	}
	age, err := nmeaNumber(f[12])
	if err != nil {
		return nil, fmt.Errorf("nmea: GGA dgps_age: %w", err)
	}
	return append(r,
		field{"geoid_separation", sep},
		field{"geoid_unit", nullIfEmpty(f[11])},
		field{"dgps_age", age},
		field{"dgps_station", nullIfEmpty(f[13])},
	), nil
}

// RMC: time, status, lat, N/S, lon, E/W, speed (knots), course, date,
// magnetic variation, E/W, [mode (NMEA 2.3)], [navigational status (4.1)].
func parseRMC(r record, f []string) (record, error) {
	if len(f) < 11 {
		return nil, fmt.Errorf("nmea: RMC has %d fields, want at least 11", len(f))
	}
	t, err := nmeaTime(f[0])
	if err != nil {
		return nil, fmt.Errorf("nmea: RMC time: %w", err)
	}
	lat, err := nmeaCoord(f[2], f[3], 'N', 'S', 90)
	if err != nil {
		return nil, fmt.Errorf("nmea: RMC latitude: %w", err)
	}
	lon, err := nmeaCoord(f[4], f[5], 'E', 'W', 180)
	if err != nil {
		return nil, fmt.Errorf("nmea: RMC longitude: %w", err)
	}
	speed, err := nmeaNumber(f[6])
	if err != nil {
		return nil, fmt.Errorf("nmea: RMC speed: %w", err)
	}
	course, err := nmeaNumber(f[7])
	if err != nil {
		return nil, fmt.Errorf("nmea: RMC course: %w", err)
	}
	date, err := nmeaDate(f[8])
	if err != nil {
		return nil, fmt.Errorf("nmea: RMC date: %w", err)
	}
	variation, err := nmeaCoordless(f[9], f[10])
	if err != nil {
		return nil, fmt.Errorf("nmea: RMC magnetic variation: %w", err)
	}
	var datetime any
	if ts, ok := t.(string); ok {
		if ds, ok := date.(string); ok {
			// ddmmyy and hhmmss[.ss]: two-digit years are taken as 20yy.
			datetime = "20" + ds[4:6] + "-" + ds[2:4] + "-" + ds[0:2] + "T" + ts[0:2] + ":" + ts[2:4] + ":" + ts[4:] + "Z"
		}
	}
	r = append(r,
		field{"time", t}, field{"status", nullIfEmpty(f[1])},
		field{"lat", lat}, field{"lon", lon},
		field{"speed_knots", speed}, field{"course", course},
		field{"date", date}, field{"datetime", datetime},
		field{"magnetic_variation", variation},
	)
	if len(f) > 11 {
		r = append(r, field{"mode", nullIfEmpty(f[11])})
	}
	if len(f) > 12 {
		r = append(r, field{"nav_status", nullIfEmpty(f[12])})
	}
	return r, nil
}

func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func nmeaNumber(s string) (any, error) {
	if s == "" {
		return nil, nil
	}
	v, err := parseNumber(s)
	if err != nil {
		return nil, fmt.Errorf("%q is not a number", s)
	}
	return v, nil
}

// nmeaCoord converts (d)ddmm.mmmm and a hemisphere letter to signed decimal
// degrees, rounded to 1e-7 degrees (about 1 cm). Both empty is null (no fix).
func nmeaCoord(v, hemi string, pos, neg byte, maxDeg float64) (any, error) {
	if v == "" && hemi == "" {
		return nil, nil
	}
	if len(hemi) != 1 || (hemi[0] != pos && hemi[0] != neg) {
		return nil, fmt.Errorf("hemisphere %q", hemi)
	}
	n, err := parseNumber(v)
	if err != nil || strings.ContainsAny(v, "+-eE") {
		return nil, fmt.Errorf("%q is not (d)ddmm.mmmm", v)
	}
	x := toFloat(n)
	deg := math.Floor(x / 100)
	minutes := x - deg*100
	if minutes >= 60 || deg > maxDeg || (deg == maxDeg && minutes > 0) {
		return nil, fmt.Errorf("%q is out of range", v)
	}
	d := deg + minutes/60
	d = math.Round(d*1e7) / 1e7
	if hemi[0] == neg {
		d = -d
	}
	return d, nil
}

// nmeaCoordless is a magnitude with an E/W sign letter (magnetic variation:
// west is negative).
func nmeaCoordless(v, hemi string) (any, error) {
	if v == "" {
		return nil, nil
	}
	n, err := parseNumber(v)
	if err != nil {
		return nil, fmt.Errorf("%q is not a number", v)
	}
	x := toFloat(n)
	switch hemi {
	case "E", "":
	case "W":
		x = -x
	default:
		return nil, fmt.Errorf("direction %q", hemi)
	}
	return x, nil
}

func toFloat(n any) float64 {
	switch n := n.(type) {
	case int64:
		return float64(n)
	case float64:
		return n
	}
	return 0
}

// nmeaTime checks hhmmss[.s...] and returns it as text; empty is null.
func nmeaTime(s string) (any, error) {
	if s == "" {
		return nil, nil
	}
	if len(s) < 6 || !digits(s[:6]) || (len(s) > 6 && (s[6] != '.' || len(s) == 7 || !digits(s[7:]))) {
		return nil, fmt.Errorf("%q is not hhmmss[.ss]", s)
	}
	if s[0:2] > "23" || s[2:4] > "59" || s[4:6] > "60" {
		return nil, fmt.Errorf("%q is out of range", s)
	}
	return s, nil
}

// nmeaDate checks ddmmyy and returns it as text; empty is null.
func nmeaDate(s string) (any, error) {
	if s == "" {
		return nil, nil
	}
	if len(s) != 6 || !digits(s) || s[0:2] < "01" || s[0:2] > "31" || s[2:4] < "01" || s[2:4] > "12" {
		return nil, fmt.Errorf("%q is not ddmmyy", s)
	}
	return s, nil
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
