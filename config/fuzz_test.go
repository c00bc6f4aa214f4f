package config

import (
	"errors"
	"strings"
	"testing"
)

// FuzzParse: no input makes Parse panic; a configuration it accepts
// validates again and expands its rules without panicking; every error it
// returns is an *Error (or several) in the documented format.
func FuzzParse(f *testing.F) {
	f.Add([]byte(""))
	f.Add([]byte("upstream:\n  url: mqtts://h:8883\n  tls:\n    alpn: [a]\n"))
	f.Add([]byte("forward:\n  - filter: a/+/#\n    topic: x/{gateway_id}/{topic}\n    strip_prefix: a/{client_id}/\n"))
	f.Add([]byte("downlink:\n  - filter: c/{gateway_id}/#\n    strip_prefix: c/{gateway_id}/\n"))
	f.Add([]byte("a: &x [1, *x]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			if c != nil {
				t.Fatalf("Parse returned a config and an error %v", err)
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %T %v is not an *Error", err, err)
			}
			for _, line := range strings.Split(err.Error(), "\n") {
				if !strings.HasPrefix(line, "config: ") {
					t.Fatalf("error line %q does not start with \"config: \"", line)
				}
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("accepted config does not validate again: %v", err)
		}
		for _, r := range c.Forward {
			r.UpstreamTopic("a/b", "client", c.GatewayID)
			if q := r.UpstreamQoS(0); q < 0 || q > 2 {
				t.Fatalf("rule %q forwards at QoS %d", r.Filter, q)
			}
		}
		for _, r := range c.Downlink {
			r.Subscription(c.Upstream.ClientID, c.GatewayID)
			r.LocalTopicFor("a/b", c.GatewayID)
		}
	})
}

// FuzzParseSize: accepted sizes are not negative and print back to the
// same value.
func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"0", "64MiB", "1 GB", "-1", "9223372036854775807", "8388608TiB", "1.5k"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSize(s)
		if err != nil {
			return
		}
		if n < 0 {
			t.Fatalf("ParseSize(%q) = %d", s, n)
		}
		back, err := ParseSize(n.String())
		if err != nil || back != n {
			t.Fatalf("ParseSize(%q) = %d, printed %q, read back %d, %v", s, n, n.String(), back, err)
		}
	})
}

// FuzzParseDuration: accepted durations are not negative and print back to
// the same value.
func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"0", "90s", "7d", "1d12h", "-1s", "106751d", "1d-1h", "1.5h"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDuration(s)
		if err != nil {
			return
		}
		if d < 0 {
			t.Fatalf("ParseDuration(%q) = %v", s, d)
		}
		back, err := ParseDuration(FormatDuration(d))
		if err != nil || back != d {
			t.Fatalf("ParseDuration(%q) = %v, printed %q, read back %v, %v", s, d, FormatDuration(d), back, err)
		}
	})
}

// FuzzTemplate: a parsed template prints back as written, and expanding it
// with empty values gives its literal text.
func FuzzTemplate(f *testing.F) {
	for _, s := range []string{"{topic}", "a/{gateway_id}/{client_id}/{topic}", "{", "}{", "{x}", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tp, err := ParseTemplate(s)
		if err != nil {
			return
		}
		if tp.String() != s {
			t.Fatalf("ParseTemplate(%q).String() = %q", s, tp.String())
		}
		if got, lit := tp.Expand("", "", ""), tp.literal(); got != lit {
			t.Fatalf("%q expands to %q with empty values, literal %q", s, got, lit)
		}
	})
}
