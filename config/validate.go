package config

import (
	"errors"
	"fmt"
	"holdfast/adapters/serial"
	"math"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// MQTT limits the validation checks against.
const (
	maxTopicLen      = 65535
	maxPacketSize    = 268435455 + 5 // largest remaining length plus fixed header
	minPacketSize    = 16
	maxKeepAlive     = 65535 * time.Second
	maxSessionExpiry = math.MaxUint32 * time.Second
	maxCommitWait    = time.Second
)

// Validate checks every value and the rules between them, and returns every
// problem found (joined, in the order of their lines), each naming its key
// path and line, or the flag that set it. Parse, Load and Apply call it; call it again after changing
// a Config by hand.
func (c *Config) Validate() error {
	v := &validator{c: c}
	v.run()
	// In file order; values from flags and defaults (no line) first.
	sort.SliceStable(v.errs, func(i, j int) bool { return v.errs[i].Line < v.errs[j].Line })
	return joinErrors(v.errs)
}

type validator struct {
	c    *Config
	errs []*Error
}

func (v *validator) bad(path, format string, args ...any) {
	v.errs = append(v.errs, v.c.errAt(path, ErrValue, format, args...))
}

func (v *validator) run() {
	c := v.c
	if c.GatewayID == "" {
		v.bad("gateway_id", "must not be empty")
	} else if strings.ContainsAny(c.GatewayID, "+#\x00") || !utf8.ValidString(c.GatewayID) {
		v.bad("gateway_id", "%q must not contain +, # or NUL (it is used in topics)", c.GatewayID)
	}
	v.listeners()
	v.local()
	v.upstream()
	v.queue()
	v.forward()
	v.downlink()
	v.serial()
	if a := c.Admin.Address; a != "" {
		if err := checkHostPort(a); err != nil {
			v.bad("admin.address", "%v", err)
		}
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		v.bad("log.level", "unknown level %q (use debug, info, warn or error)", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		v.bad("log.format", "unknown format %q (use text or json)", c.Log.Format)
	}
}

func (v *validator) listeners() {
	c := v.c
	addrs := map[string]int{}
	names := map[string]int{}
	for i, l := range c.Listeners {
		p := "listeners[" + strconv.Itoa(i) + "]"
		addrErr := checkHostPort(l.Address)
		if addrErr != nil {
			v.bad(p+".address", "%v", addrErr)
		} else if j, dup := addrs[l.Address]; dup && !strings.HasSuffix(l.Address, ":0") {
			v.bad(p+".address", "%q is also listeners[%d].address", l.Address, j)
		} else {
			addrs[l.Address] = i
		}
		if l.Name != "" {
			if j, dup := names[l.Name]; dup {
				v.bad(p+".name", "%q is also listeners[%d].name", l.Name, j)
			}
			names[l.Name] = i
		}
		secure := false
		switch l.Type {
		case ListenerTCP:
		case ListenerTLS, ListenerWSS:
			secure = true
		case ListenerWS:
		default:
			v.bad(p+".type", "unknown type %q (use tcp, tls, ws or wss)", l.Type)
			continue
		}
		if (l.Type == ListenerWS || l.Type == ListenerWSS) && !strings.HasPrefix(l.Path, "/") {
			v.bad(p+".path", "%q must start with /", l.Path)
		}
		t := l.TLS
		if !secure {
			if t != (ServerTLS{}) {
				v.bad(p+".tls", "set, but type %q does not use TLS (use tls or wss)", l.Type)
			}
		} else {
			if t.CertFile == "" {
				v.bad(p+".tls.cert_file", "required for type %q", l.Type)
			}
			if t.KeyFile == "" {
				v.bad(p+".tls.key_file", "required for type %q", l.Type)
			}
			if t.RequireClientCert && t.ClientCAFile == "" {
				v.bad(p+".tls.require_client_cert", "needs tls.client_ca_file")
			}
		}
		// Whether anyone could connect depends on the address: with a bad
		// one, that problem is the one reported.
		if addrErr == nil && !l.AnonymousAllowed() && c.Auth.PasswordFile == "" && !(secure && t.RequireClientCert) {
			if l.AllowAnonymous == nil {
				v.bad(p+".allow_anonymous", "not set, so false on the non-loopback address %q, and auth.password_file is empty: no client could connect (set auth.password_file, or allow_anonymous: true)", l.Address)
			} else {
				v.bad(p+".allow_anonymous", "false and auth.password_file is empty: no client could connect")
			}
		}
	}
}

func (v *validator) local() {
	l := v.c.Local
	if l.ConnectTimeout <= 0 {
		v.bad("local.connect_timeout", "must be positive")
	}
	if l.MaxConnections < 1 {
		v.bad("local.max_connections", "%d: must be at least 1", l.MaxConnections)
	}
	if l.MaxPacketSize < minPacketSize || l.MaxPacketSize > maxPacketSize {
		v.bad("local.max_packet_size", "%d: must be between %d and %d bytes", l.MaxPacketSize, minPacketSize, maxPacketSize)
	}
	if l.ReceiveMaximum < 1 || l.ReceiveMaximum > 65535 {
		v.bad("local.receive_maximum", "%d: must be between 1 and 65535", l.ReceiveMaximum)
	}
	if l.MaxQueuedMessages < 0 {
		v.bad("local.max_queued_messages", "%d: must not be negative", l.MaxQueuedMessages)
	}
	v.seconds("local.max_session_expiry", l.MaxSessionExpiry, maxSessionExpiry)
	v.seconds("local.max_keep_alive", l.MaxKeepAlive, maxKeepAlive)
}

// seconds checks a duration sent on the wire in whole seconds.
func (v *validator) seconds(path string, d, limit time.Duration) {
	switch {
	case d < 0:
		v.bad(path, "must not be negative")
	case d%time.Second != 0:
		v.bad(path, "%s: must be whole seconds", FormatDuration(d))
	case d > limit:
		v.bad(path, "%s: must be at most %s", FormatDuration(d), FormatDuration(limit))
	}
}

func (v *validator) upstream() {
	u := v.c.Upstream
	scheme, err := checkUpstreamURL(u.URL)
	if err != nil {
		v.bad("upstream.url", "%v", err)
	}
	switch u.Protocol {
	case Protocol5, Protocol311:
	default:
		v.bad("upstream.protocol", "unsupported protocol %q (use \"5\" or \"3.1.1\")", u.Protocol)
	}
	if u.ClientID == "" {
		v.bad("upstream.client_id", "must not be empty")
	} else if len(u.ClientID) > 65535 || !utf8.ValidString(u.ClientID) || strings.ContainsRune(u.ClientID, 0) {
		v.bad("upstream.client_id", "must be valid UTF-8 without NUL, at most 65535 bytes")
	}
	if u.Password != "" && u.PasswordFile != "" {
		v.bad("upstream.password_file", "password and password_file are exclusive; set one")
	}
	if u.Protocol == Protocol311 && u.Username == "" && (u.Password != "" || u.PasswordFile != "") {
		v.bad("upstream.username", "MQTT 3.1.1 sends a password only with a username")
	}
	if err == nil && (scheme == "mqtt" || scheme == "ws") && !u.TLS.isZero() {
		v.bad("upstream.tls", "set, but url scheme %q does not use TLS (use mqtts or wss)", scheme)
	}
	if (u.TLS.CertFile == "") != (u.TLS.KeyFile == "") {
		if u.TLS.CertFile == "" {
			v.bad("upstream.tls.key_file", "needs tls.cert_file")
		} else {
			v.bad("upstream.tls.cert_file", "needs tls.key_file")
		}
	}
	for i, a := range u.TLS.ALPN {
		if a == "" || len(a) > 255 {
			v.bad("upstream.tls.alpn["+strconv.Itoa(i)+"]", "protocol names are 1 to 255 bytes")
		}
	}
	v.seconds("upstream.keep_alive", u.KeepAlive, maxKeepAlive)
	v.seconds("upstream.session_expiry", u.SessionExpiry, maxSessionExpiry)
	if u.Inflight < 1 || u.Inflight > 65535 {
		v.bad("upstream.inflight", "%d: must be between 1 and 65535", u.Inflight)
	}
	if u.ConnectTimeout <= 0 {
		v.bad("upstream.connect_timeout", "must be positive")
	}
	if u.StallTimeout < 0 {
		v.bad("upstream.stall_timeout", "must not be negative")
	}
	b := u.Backoff
	if b.Initial <= 0 {
		v.bad("upstream.backoff.initial", "must be positive")
	}
	if b.Max < b.Initial {
		v.bad("upstream.backoff.max", "%s: must be at least backoff.initial (%s)", FormatDuration(b.Max), FormatDuration(b.Initial))
	}
	if !(b.Multiplier >= 1) || math.IsInf(b.Multiplier, 0) {
		v.bad("upstream.backoff.multiplier", "%g: must be at least 1", b.Multiplier)
	}
	if !(b.Randomization >= 0 && b.Randomization <= 1) {
		v.bad("upstream.backoff.randomization", "%g: must be between 0 and 1", b.Randomization)
	}
	if b.StableAfter < 0 {
		v.bad("upstream.backoff.stable_after", "must not be negative")
	}
	v.message("upstream.birth", u.Birth)
	v.message("upstream.will", u.Will)
}

func (v *validator) message(path string, m Message) {
	if !m.Topic.IsZero() {
		v.template(path+".topic", m.Topic, VarClientID, VarGatewayID)
		v.topicLiteral(path+".topic", m.Topic)
	}
	v.qos(path+".qos", m.QoS)
}

func (v *validator) qos(path string, q int) {
	if q < 0 || q > 2 {
		v.bad(path, "%d: must be 0, 1 or 2", q)
	}
}

// template checks that t uses only the allowed placeholders.
func (v *validator) template(path string, t Template, allowed ...string) {
	for _, name := range varNames {
		if name == "" || !t.Uses(name) {
			continue
		}
		ok := false
		for _, a := range allowed {
			ok = ok || a == name
		}
		if !ok {
			v.bad(path, "placeholder {%s} is not available here (use %s)", name, placeholders(allowed))
		}
	}
}

func placeholders(names []string) string {
	s := make([]string, len(names))
	for i, n := range names {
		s[i] = "{" + n + "}"
	}
	return strings.Join(s, ", ")
}

// topicLiteral checks that a topic template's own text has no wildcards.
func (v *validator) topicLiteral(path string, t Template) {
	if t.IsZero() {
		v.bad(path, "must not be empty")
		return
	}
	if lit := t.literal(); strings.ContainsAny(lit, "+#\x00") || !utf8.ValidString(lit) {
		v.bad(path, "%q: a topic must not contain +, # or NUL", t.String())
	}
}

func (v *validator) queue() {
	q := v.c.Queue
	if q.Dir == "" {
		v.bad("queue.dir", "must not be empty")
	}
	if q.MaxBytes < 0 {
		v.bad("queue.max_bytes", "must not be negative")
	}
	if q.MaxMessages < 0 {
		v.bad("queue.max_messages", "%d: must not be negative", q.MaxMessages)
	}
	switch q.Policy {
	case PolicyDropOldest, PolicyRejectNew:
	default:
		v.bad("queue.policy", "unknown policy %q (use drop_oldest or reject_new)", q.Policy)
	}
	if q.TTL < 0 {
		v.bad("queue.ttl", "must not be negative")
	}
	if q.DiskReserve < 0 {
		v.bad("queue.disk_reserve", "must not be negative")
	}
	if q.CommitWait < 0 || q.CommitWait > maxCommitWait {
		v.bad("queue.commit_wait", "%s: must be between 0s and 1s", FormatDuration(q.CommitWait))
	}
}

func (v *validator) forward() {
	for i, r := range v.c.Forward {
		p := "forward[" + strconv.Itoa(i) + "]"
		if err := checkFilter(r.Filter); err != nil {
			v.bad(p+".filter", "%v", err)
		} else if strings.HasPrefix(r.Filter, "$share/") {
			v.bad(p+".filter", "%q: a shared subscription does not select local messages; use the plain filter", r.Filter)
		}
		v.topicLiteral(p+".topic", r.Topic)
		v.template(p+".topic", r.Topic, VarTopic, VarClientID, VarGatewayID)
		v.prefix(p+".strip_prefix", r.StripPrefix, VarClientID, VarGatewayID)
		v.qos(p+".min_qos", r.MinQoS)
		v.qos(p+".max_qos", r.MaxQoS)
		if r.MinQoS > r.MaxQoS {
			v.bad(p+".min_qos", "%d is above max_qos %d", r.MinQoS, r.MaxQoS)
		}
	}
}

func (v *validator) downlink() {
	c := v.c
	for i, r := range c.Downlink {
		p := "downlink[" + strconv.Itoa(i) + "]"
		if r.Filter.IsZero() {
			v.bad(p+".filter", "required")
		} else {
			n := len(v.errs)
			v.template(p+".filter", r.Filter, VarClientID, VarGatewayID)
			if len(v.errs) == n {
				if err := checkFilter(r.Subscription(c.Upstream.ClientID, c.GatewayID)); err != nil {
					v.bad(p+".filter", "%v", err)
				}
			}
		}
		v.qos(p+".qos", r.QoS)
		v.topicLiteral(p+".local_topic", r.LocalTopic)
		v.template(p+".local_topic", r.LocalTopic, VarTopic, VarGatewayID)
		v.prefix(p+".strip_prefix", r.StripPrefix, VarGatewayID)
	}
}

// prefix checks a strip_prefix template: allowed placeholders, no
// wildcards.
func (v *validator) prefix(path string, t Template, allowed ...string) {
	v.template(path, t, allowed...)
	if lit := t.literal(); strings.ContainsAny(lit, "+#\x00") || !utf8.ValidString(lit) {
		v.bad(path, "%q must not contain +, # or NUL", t.String())
	}
}

// checkFilter is a structural check of an MQTT topic filter: "#" only as
// the whole last level, "+" only as a whole level.
func checkFilter(f string) error {
	if f == "" {
		return fmt.Errorf("empty topic filter")
	}
	if len(f) > maxTopicLen || !utf8.ValidString(f) || strings.ContainsRune(f, 0) {
		return fmt.Errorf("topic filter %q must be valid UTF-8 without NUL, at most %d bytes", f, maxTopicLen)
	}
	levels := strings.Split(f, "/")
	for i, l := range levels {
		if strings.Contains(l, "#") && (l != "#" || i != len(levels)-1) {
			return fmt.Errorf("topic filter %q: # must be the whole last level", f)
		}
		if strings.Contains(l, "+") && l != "+" {
			return fmt.Errorf("topic filter %q: + must be a whole level", f)
		}
	}
	return nil
}

// checkHostPort checks a listen address: host:port with a numeric port.
func checkHostPort(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("invalid address %q: want host:port", addr)
	}
	if strings.ContainsAny(host, " /") {
		return fmt.Errorf("invalid address %q: bad host", addr)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || strconv.FormatUint(n, 10) != port {
		return fmt.Errorf("invalid address %q: port must be a number from 0 to 65535", addr)
	}
	return nil
}

// isLoopback reports whether addr's host is a loopback address or
// "localhost".
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkUpstreamURL checks the upstream URL and returns its scheme.
func checkUpstreamURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("invalid url %q", raw)
	}
	switch u.Scheme {
	case "mqtt", "mqtts", "ws", "wss":
	case "":
		return "", fmt.Errorf("url %q has no scheme (use mqtt://, mqtts://, ws:// or wss://)", raw)
	default:
		return "", fmt.Errorf("unsupported scheme %q (use mqtt, mqtts, ws or wss)", u.Scheme)
	}
	if u.Opaque != "" || u.Hostname() == "" {
		return "", fmt.Errorf("url %q has no host", raw)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.ParseUint(p, 10, 16); err != nil || n == 0 {
			return "", fmt.Errorf("url %q: port must be a number from 1 to 65535", raw)
		}
	}
	if u.User != nil {
		return "", fmt.Errorf("url must not contain credentials: use upstream.username and upstream.password_file")
	}
	if u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
		return "", fmt.Errorf("url %q must not have a query or fragment", raw)
	}
	if (u.Scheme == "mqtt" || u.Scheme == "mqtts") && u.Path != "" && u.Path != "/" {
		return "", fmt.Errorf("url %q: a path needs ws:// or wss://", raw)
	}
	return u.Scheme, nil
}

// serial sets the ports' defaults and checks them; the adapter package
// knows what each key means and names it relative to the list.
func (v *validator) serial() {
	ports := v.c.Serial
	for i := range ports {
		ports[i].SetDefaults()
	}
	err := serial.ValidatePorts(ports)
	if err == nil {
		return
	}
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	for _, e := range errs {
		var fe *serial.FieldError
		if errors.As(e, &fe) {
			v.bad(fe.Key, "%s", fe.Msg)
		} else {
			v.bad("serial", "%v", e)
		}
	}
}
