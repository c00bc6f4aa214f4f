package serial

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// nmeaWithChecksum wraps a sentence body ("GPGGA,...") as "$body*HH".
func nmeaWithChecksum(body string) string {
	var sum byte
	for i := 0; i < len(body); i++ {
		sum ^= body[i]
	}
	return fmt.Sprintf("$%s*%02X", body, sum)
}

func mustCodec(t testing.TB, p Payload) *codec {
	t.Helper()
	c := PortConfig{Name: "t", Device: "/dev/null", Payload: p}
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		t.Fatalf("config: %v", err)
	}
	k, err := newCodec(&c, true)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

var at = time.Date(2026, 11, 25, 9, 30, 0, 123000000, time.UTC)

func TestCodecFormats(t *testing.T) {
	tests := []struct {
		p     Payload
		frame string
		want  string
	}{
		{Payload{}, "\x00\xffab", "\x00\xffab"},
		{Payload{Format: FormatText}, "héllo", "héllo"},
		{Payload{Format: FormatHex}, "\x00\xff", "00ff"},
		{Payload{Format: FormatBase64}, "\x00\xffa", "AP9h"},
		{Payload{Format: FormatHex, Timestamp: TimestampUnixMS}, "\x01", `{"data":"01","ts":1795599000123}`},
		{Payload{Format: FormatText, Timestamp: TimestampRFC3339, TimestampField: "at"}, `a"b`, `{"data":"a\"b","at":"2026-11-25T09:30:00.123Z"}`},
		{Payload{Format: FormatJSON}, ` {"t": 1} `, `{"t": 1}`},
		{Payload{Format: FormatJSON, Timestamp: TimestampUnixMS}, `{"t":1}`, `{"ts":1795599000123,"t":1}`},
		{Payload{Format: FormatJSON, Timestamp: TimestampUnixMS}, `{ }`, `{"ts":1795599000123}`},
		{Payload{Parse: ParseRegex, Regex: `^T=(?P<temp>-?[0-9.]+) H=(?P<hum>[0-9]+)(?: (?P<flag>[A-Z]))?$`, Numbers: []string{"temp", "hum"}},
			"T=-3.50 H=41", `{"temp":-3.5,"hum":41,"flag":null}`},
		{Payload{Parse: ParseCSV, Columns: []string{"id", "_", "temp"}, Numbers: []string{"temp"}, Timestamp: TimestampUnixMS},
			`s1,"x,y",21.5`, `{"id":"s1","temp":21.5,"ts":1795599000123}`},
		{Payload{Parse: ParseCSV, Columns: []string{"a", "b"}, Separator: ";"}, `1;"q""uote"`, `{"a":"1","b":"q\"uote"}`},
	}
	for _, tt := range tests {
		k := mustCodec(t, tt.p)
		got, _, err := k.encode(nil, []byte(tt.frame), at)
		if err != nil {
			t.Errorf("%+v %q: %v", tt.p, tt.frame, err)
			continue
		}
		if string(got) != tt.want {
			t.Errorf("%+v %q:\n got %s\nwant %s", tt.p, tt.frame, got, tt.want)
		}
		if tt.p.Format == FormatJSON || tt.p.Parse != "" || tt.p.Timestamp != "" {
			if !json.Valid(got) {
				t.Errorf("%q: invalid JSON %s", tt.frame, got)
			}
		}
	}
}

func TestCodecParseErrors(t *testing.T) {
	tests := []struct {
		p     Payload
		frame string
	}{
		{Payload{Format: FormatText}, "\xff\xfe"},
		{Payload{Format: FormatJSON}, `[1,2]`},
		{Payload{Format: FormatJSON}, `{"a":`},
		{Payload{Parse: ParseRegex, Regex: `^(?P<a>\d+)$`}, "12x"},
		{Payload{Parse: ParseRegex, Regex: `^(?P<a>\S+)$`, Numbers: []string{"a"}}, "0x10"},
		{Payload{Parse: ParseCSV, Columns: []string{"a", "b"}}, "1,2,3"},
		{Payload{Parse: ParseCSV, Columns: []string{"a", "b"}}, "1"},
		{Payload{Parse: ParseCSV, Columns: []string{"a", "b"}}, ""},
		{Payload{Parse: ParseCSV, Columns: []string{"a", "b"}}, "1,2\n3,4"},
		{Payload{Parse: ParseCSV, Columns: []string{"a", "b"}, Numbers: []string{"b"}}, "1,NaN"},
		{Payload{Parse: ParseCSV, Columns: []string{"a"}}, `"unterminated`},
		{Payload{Parse: ParseNMEA}, "GPGGA,1*00"},
	}
	for _, tt := range tests {
		k := mustCodec(t, tt.p)
		if got, _, err := k.encode(nil, []byte(tt.frame), at); err == nil {
			t.Errorf("%+v %q: no error, got %s", tt.p, tt.frame, got)
		}
	}
}

func TestNMEA(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{
		{"$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47",
			`{"talker":"GP","type":"GGA","time":"123519","lat":48.1173,"lon":11.5166667,"quality":1,"satellites":8,"hdop":0.9,"altitude":545.4,"altitude_unit":"M","geoid_separation":46.9,"geoid_unit":"M","dgps_age":null,"dgps_station":null}`},
		{"$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A\r\n",
			`{"talker":"GP","type":"RMC","time":"123519","status":"A","lat":48.1173,"lon":11.5166667,"speed_knots":22.4,"course":84.4,"date":"230394","datetime":"2094-03-23T12:35:19Z","magnetic_variation":-3.1}`},
		{nmeaWithChecksum("GNRMC,001031.00,A,3355.0000,S,15112.5000,W,0.5,,010125,,,A,V"),
			`{"talker":"GN","type":"RMC","time":"001031.00","status":"A","lat":-33.9166667,"lon":-151.2083333,"speed_knots":0.5,"course":null,"date":"010125","datetime":"2025-01-01T00:10:31.00Z","magnetic_variation":null,"mode":"A","nav_status":"V"}`},
		{nmeaWithChecksum("GPGGA,,,,,,0,00,99.99,,,,,,"),
			`{"talker":"GP","type":"GGA","time":null,"lat":null,"lon":null,"quality":0,"satellites":0,"hdop":99.99,"altitude":null,"altitude_unit":null,"geoid_separation":null,"geoid_unit":null,"dgps_age":null,"dgps_station":null}`},
		{"$GPGSV,3,1,11,03,03,111,00,04,15,270,00,06,01,010,00,13,06,292,00*74",
			`{"talker":"GP","type":"GSV","fields":["3","1","11","03","03","111","00","04","15","270","00","06","01","010","00","13","06","292","00"]}`},
		{nmeaWithChecksum("PGRME,15.0,M,45.0,M,25.0,M"), `{"talker":"P","type":"GRME","fields":["15.0","M","45.0","M","25.0","M"]}`},
		{strings.ToLower(nmeaWithChecksum("GPTXT,01,01,02,x"))[:0] + "!" + nmeaWithChecksum("AIVDM,1,1,,A,13aEOK?P00PD2wVMdLDRhgvL289?,0")[1:],
			`{"talker":"AI","type":"VDM","fields":["1","1","","A","13aEOK?P00PD2wVMdLDRhgvL289?","0"]}`},
	}
	for _, tt := range tests {
		rec, err := parseNMEA([]byte(tt.in))
		if err != nil {
			t.Errorf("%q: %v", tt.in, err)
			continue
		}
		if got := string(rec.appendJSON(nil)); got != tt.want {
			t.Errorf("%q:\n got %s\nwant %s", tt.in, got, tt.want)
		}
	}
	// Lower-case checksum digits are accepted.
	if _, err := parseNMEA([]byte("$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6a")); err != nil {
		t.Errorf("lower-case checksum: %v", err)
	}
}

func TestNMEAErrors(t *testing.T) {
	for _, in := range []string{
		"",
		"GPGGA,1*00",
		"$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*48", // wrong checksum
		"$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,",    // none
		"$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*4",
		"$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*zz",
		nmeaWithChecksum("GPGGA,123519,4807.038,N"),                                   // too few fields
		nmeaWithChecksum("GPGGA,123519,4867.038,N,01131.000,E,1,08,0.9,545.4,M,,M,,"), // 67 minutes
		nmeaWithChecksum("GPGGA,123519,9107.038,N,01131.000,E,1,08,0.9,545.4,M,,M,,"), // 91 degrees
		nmeaWithChecksum("GPGGA,123519,4807.038,X,01131.000,E,1,08,0.9,545.4,M,,M,,"), // hemisphere
		nmeaWithChecksum("GPGGA,123519,4807.038,,01131.000,E,1,08,0.9,545.4,M,,M,,"),  // half a coordinate
		nmeaWithChecksum("GPGGA,993519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,,M,,"), // hour 99
		nmeaWithChecksum("GPGGA,123519,4807.038,N,01131.000,E,x,08,0.9,545.4,M,,M,,"), // quality
		nmeaWithChecksum("GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,320394,003.1,W"),
		nmeaWithChecksum("GPRMC,123519,A,4807.038,N,01131.000,E,inf,084.4,230394,003.1,W"),
		nmeaWithChecksum("gpgga,1"),
		nmeaWithChecksum("G"),
		nmeaWithChecksum("GPXXX,\x01"),
	} {
		if rec, err := parseNMEA([]byte(in)); err == nil {
			t.Errorf("%q: no error, got %s", in, rec.appendJSON(nil))
		}
	}
}

func TestParseNumber(t *testing.T) {
	good := map[string]string{"0": "0", "-12": "-12", "+7": "7", "007": "7", "3.50": "3.5", ".5": "0.5", "5.": "5", "1e3": "1000", "-2.5E-1": "-0.25", "99999999999999999999": "100000000000000000000"}
	for in, want := range good {
		v, err := parseNumber(in)
		if err != nil {
			t.Errorf("%q: %v", in, err)
			continue
		}
		if got := string(appendJSONValue(nil, v)); got != want && !(in == "99999999999999999999" && got == "1e+20") {
			t.Errorf("%q = %s, want %s", in, got, want)
		}
	}
	for _, in := range []string{"", "-", ".", "1e", "0x10", "inf", "NaN", "1_000", "1.2.3", " 1", "1e999"} {
		if v, err := parseNumber(in); err == nil {
			t.Errorf("%q: no error, got %v", in, v)
		}
	}
}

func TestAppendJSONString(t *testing.T) {
	for _, s := range []string{"", "plain", "q\"b\\", "\x00\x1f\n\r\t", "é€😀", "bad\xffutf8\xc3"} {
		b := appendJSONString(nil, s)
		var back string
		if err := json.Unmarshal(b, &back); err != nil {
			t.Errorf("%q -> %s: %v", s, b, err)
			continue
		}
		if want := strings.ToValidUTF8(s, "\ufffd"); back != want && !strings.Contains(s, "\xff") {
			t.Errorf("%q -> %s -> %q", s, b, back)
		}
	}
}
