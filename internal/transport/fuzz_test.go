package transport

import (
	"net"
	"strconv"
	"strings"
	"testing"
)

// FuzzParseTarget checks that any dial URL either fails or yields a
// host:port with a port in range, and that a WebSocket URL, once defaulted,
// parses back to itself.
func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{
		"mqtt://broker", "mqtts://broker:8883", "ws://broker", "wss://[::1]:443/mqtt?x=1",
		"tcp://broker", "mqtt://", "ws://a:0", "127.0.0.1:1883",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		tg, err := parseTarget(raw)
		if err != nil {
			return
		}
		switch tg.scheme {
		case "mqtt", "mqtts", "ws", "wss":
		default:
			t.Fatalf("parseTarget(%q) accepted scheme %q", raw, tg.scheme)
		}
		host, port, err := net.SplitHostPort(tg.addr)
		if err != nil {
			t.Fatalf("parseTarget(%q): addr %q: %v", raw, tg.addr, err)
		}
		if host != tg.host || host == "" {
			t.Fatalf("parseTarget(%q): addr host %q, host %q", raw, host, tg.host)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			t.Fatalf("parseTarget(%q): port %q out of range", raw, port)
		}
		if (tg.wsURL != "") != strings.HasPrefix(tg.scheme, "ws") {
			t.Fatalf("parseTarget(%q): scheme %s with ws URL %q", raw, tg.scheme, tg.wsURL)
		}
		if tg.wsURL != "" {
			again, err := parseTarget(tg.wsURL)
			if err != nil {
				t.Fatalf("parseTarget(%q) gave ws URL %q that does not parse: %v", raw, tg.wsURL, err)
			}
			if again.wsURL != tg.wsURL || again.addr != tg.addr {
				t.Fatalf("parseTarget(%q) = %q, %q; again %q, %q", raw, tg.addr, tg.wsURL, again.addr, again.wsURL)
			}
		}
	})
}

// FuzzOffersMQTT checks the Sec-WebSocket-Protocol parser against a plain
// restatement: the header offers mqtt when one of its comma separated
// tokens, trimmed, is an accepted subprotocol.
func FuzzOffersMQTT(f *testing.F) {
	for _, s := range []string{"mqtt", "mqttv3.1", "chat, mqtt", "mqtt5", " mqtt ,", "", ",,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		want := false
		for _, tok := range strings.Split(header, ",") {
			tok = strings.TrimSpace(tok)
			if tok == "mqtt" || tok == "mqttv3.1" {
				want = true
			}
		}
		if got := offersMQTT([]string{header}); got != want {
			t.Fatalf("offersMQTT(%q) = %v, want %v", header, got, want)
		}
	})
}
