// Package config loads, validates and describes holdfast's configuration: one
// YAML file (the installed service uses /etc/holdfast/holdfast.yaml) mapped
// onto typed structs, plus the few command-line flags that override it.
//
// Every key has a default, declared as a named constant next to the struct
// that uses it. With no file at all, Default() is the configuration. The
// annotated example packaging/holdfast.yaml lists every key at its default
// and docs/configuration.md describes each; tests keep both in step with
// the structs here.
//
// Parsing goes through yaml.Node, so every problem names the key path and the
// line it was found on:
//
//	config: line 12: upstream.url: unsupported scheme "tcp" (use mqtt, mqtts, ws or wss)
//
// Unknown keys, wrong types and impossible values are all errors; none is
// silently ignored. A key whose value is empty (YAML null, as in "auth:" with
// nothing under it) keeps its default. Lists replace the default list as a
// whole; an explicit empty list ("forward: []") means none.
//
// Durations are Go duration strings with an extra "d" unit for days ("90s",
// "2m", "7d", "1d12h"); the integer 0 is accepted for "none". Sizes are
// integers (bytes) or strings with a unit ("512KiB", "64MiB", "1GB"); see
// ParseSize.
package config

import (
	"holdfast/adapters/serial"
	"log/slog"
	"os"
	"time"
)

// DefaultPath is where the installed service looks for its configuration.
const DefaultPath = "/etc/holdfast/holdfast.yaml"

// Config is the whole configuration. The zero value is not useful: start from
// Default, Parse or Load.
type Config struct {
	// GatewayID names this gateway in topic templates ({gateway_id}) and in the
	// default upstream client id. Default: the host name (DefaultGatewayID when
	// the host name is unknown). An empty string means the default.
	GatewayID string `yaml:"gateway_id"`

	// Listeners are the local MQTT endpoints devices connect to. Default: one
	// plain TCP listener on DefaultListenAddress (loopback, so a fresh install
	// is reachable only from the gateway itself). An empty list means no
	// local listener.
	Listeners []Listener `yaml:"listeners"`

	// Auth holds the local clients' credentials and access rules.
	Auth Auth `yaml:"auth"`

	// Local bounds what the local broker accepts from devices.
	Local Local `yaml:"local"`

	// Upstream is the broker the queue is forwarded to.
	Upstream Upstream `yaml:"upstream"`

	// Queue is the durable on-disk queue between the two sides.
	Queue Queue `yaml:"queue"`

	// Forward rules choose which local messages are queued for upstream, and
	// under which upstream topic and QoS. Rules are tried in order and the
	// first whose filter matches decides. Default (key absent): one rule
	// forwarding every local topic as-is, at QoS 1 at least. An explicit
	// empty list forwards nothing.
	Forward []ForwardRule `yaml:"forward"`

	// Downlink rules choose which upstream topics are subscribed to and
	// published locally. Default: none.
	Downlink []DownlinkRule `yaml:"downlink"`

	// Admin is the HTTP endpoint for status, health and metrics.
	Admin Admin `yaml:"admin"`

	// Log sets the log level and format.
	Log Log `yaml:"log"`

	// Serial lists the serial ports whose sensors are read and published
	// into the local broker like any other client (see docs/serial.md).
	// Default: none.
	Serial []serial.PortConfig `yaml:"serial"`

	src *source // where each key came from, for error messages
}

// DefaultGatewayID is the gateway id used when the host name is unknown.
const DefaultGatewayID = "holdfast"

// Hostname returns the host name used for the default gateway id, or
// DefaultGatewayID when the system does not say.
func Hostname() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return DefaultGatewayID
	}
	return h
}

// ListenerType is the transport of a local listener.
type ListenerType string

// The listener types.
const (
	ListenerTCP ListenerType = "tcp" // MQTT over plain TCP
	ListenerTLS ListenerType = "tls" // MQTT over TLS
	ListenerWS  ListenerType = "ws"  // MQTT over WebSocket
	ListenerWSS ListenerType = "wss" // MQTT over WebSocket over TLS
)

// Listener defaults.
const (
	DefaultListenAddress = "127.0.0.1:1883"
	DefaultListenerType  = ListenerTCP
	DefaultWebSocketPath = "/mqtt"
)

// Listener is one local MQTT endpoint.
type Listener struct {
	// Name labels the listener in logs and metrics. Default: empty, which
	// means the address is used. Names that are set must be unique.
	Name string `yaml:"name"`
	// Address is host:port to listen on. Default: DefaultListenAddress. A
	// host of "" or 0.0.0.0 listens on every interface; port 0 picks a free
	// port (useful in tests).
	Address string `yaml:"address"`
	// Type is tcp, tls, ws or wss. Default: tcp. tls and wss need TLS.CertFile
	// and TLS.KeyFile.
	Type ListenerType `yaml:"type"`
	// Path is the HTTP path of a ws or wss listener. Default: /mqtt. Ignored
	// by tcp and tls.
	Path string `yaml:"path"`
	// TLS is the server certificate (tls and wss only).
	TLS ServerTLS `yaml:"tls"`
	// AllowAnonymous lets clients connect without a user name. Default (nil):
	// true when Address is a loopback address, false otherwise, so exposing a
	// listener to the network never opens it by accident. Use
	// AnonymousAllowed for the effective value.
	AllowAnonymous *bool `yaml:"allow_anonymous"`
}

// AnonymousAllowed is the effective allow_anonymous: the configured value, or
// whether the address is a loopback address when none was configured.
func (l Listener) AnonymousAllowed() bool {
	if l.AllowAnonymous != nil {
		return *l.AllowAnonymous
	}
	return isLoopback(l.Address)
}

// ServerTLS is a local listener's certificate and client verification.
type ServerTLS struct {
	// CertFile is the PEM server certificate (chain). Required for tls/wss.
	CertFile string `yaml:"cert_file"`
	// KeyFile is the PEM private key of CertFile. Required for tls/wss.
	KeyFile string `yaml:"key_file"`
	// ClientCAFile is the PEM bundle client certificates are verified
	// against. Default: empty (client certificates are not requested).
	ClientCAFile string `yaml:"client_ca_file"`
	// RequireClientCert refuses clients without a certificate signed by
	// ClientCAFile. Default: false. Needs ClientCAFile.
	RequireClientCert bool `yaml:"require_client_cert"`
}

// Auth holds local clients' credentials and access rules.
type Auth struct {
	// PasswordFile is a mosquitto-style password file (user:hash lines).
	// Default: empty (no passwords; only anonymous clients, where allowed).
	PasswordFile string `yaml:"password_file"`
	// ACLFile is a mosquitto-style ACL file. Default: empty (every client may
	// publish and subscribe to every topic).
	ACLFile string `yaml:"acl_file"`
}

// Local broker defaults.
const (
	DefaultLocalConnectTimeout = 10 * time.Second
	DefaultMaxConnections      = 1024
	DefaultMaxPacketSize       = 1 * MiB
	DefaultReceiveMaximum      = 64
	DefaultMaxQueuedMessages   = 1000
	DefaultMaxSessionExpiry    = 7 * 24 * time.Hour
	DefaultMaxKeepAlive        = 0
	DefaultRetainAvailable     = true
)

// Local bounds what the local broker accepts from devices. The defaults suit
// a gateway with tens to hundreds of devices.
type Local struct {
	// ConnectTimeout is how long a new connection may take to send CONNECT.
	// Default: 10s. Shorter frees slots from dead peers sooner; too short
	// fails devices on slow links.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// MaxConnections caps concurrent client connections. Default: 1024. Each
	// costs a few KiB of memory and one file descriptor.
	MaxConnections int `yaml:"max_connections"`
	// MaxPacketSize is the largest MQTT packet accepted, in bytes. Default:
	// 1MiB. Larger packets are refused (MQTT 5: reason 0x95). Bounds memory
	// per connection; raise it for large payloads.
	MaxPacketSize Size `yaml:"max_packet_size"`
	// ReceiveMaximum is how many QoS 1/2 publishes a client may have
	// unacknowledged (MQTT 5 Receive Maximum, 1..65535). Default: 64. Higher
	// lets a client stream faster while commits are in flight, at the cost
	// of memory per client.
	ReceiveMaximum int `yaml:"receive_maximum"`
	// MaxQueuedMessages caps messages held for one offline persistent
	// session. Default: 1000. 0 queues nothing for offline sessions. The
	// oldest are dropped (and counted) beyond it.
	MaxQueuedMessages int `yaml:"max_queued_messages"`
	// MaxSessionExpiry caps the session expiry a client may ask for; a
	// 3.1.1 client with clean session false gets this. Default: 7d. 0 ends
	// every session at disconnect.
	MaxSessionExpiry time.Duration `yaml:"max_session_expiry"`
	// MaxKeepAlive caps the keep alive a client may ask for (MQTT 5 Server
	// Keep Alive), in whole seconds up to 65535s. Default: 0 (no cap).
	MaxKeepAlive time.Duration `yaml:"max_keep_alive"`
	// RetainAvailable enables retained messages. Default: true.
	RetainAvailable bool `yaml:"retain_available"`
}

// MQTT protocol versions for the upstream connection.
const (
	Protocol5   = "5"
	Protocol311 = "3.1.1"
)

// Upstream defaults.
const (
	DefaultUpstreamURL            = "mqtt://127.0.0.1:1884"
	DefaultProtocol               = Protocol5
	DefaultClientIDPrefix         = "holdfast-"
	DefaultKeepAlive              = 60 * time.Second
	DefaultSessionExpiry          = 7 * 24 * time.Hour
	DefaultCleanStart             = false
	DefaultInflight               = 64
	DefaultUpstreamConnectTimeout = 30 * time.Second
	DefaultStallTimeout           = 60 * time.Second
)

// Upstream is the broker the queue is forwarded to, and how.
type Upstream struct {
	// Usually modified.

	// URL is the broker: mqtt://, mqtts://, ws:// or wss://, host and optional
	// port (defaults 1883, 8883, 80, 443) and, for ws/wss, path. Default:
	// mqtt://127.0.0.1:1884, unreachable on a fresh machine, so holdfast
	// buffers and retries until it is configured. Credentials do not belong
	// in the URL: use Username and Password.
	URL string `yaml:"url"`
	// Protocol is "5" (MQTT 5.0) or "3.1.1". Default: "5". Use 3.1.1 for
	// brokers without MQTT 5 (Azure IoT Hub).
	Protocol string `yaml:"protocol"`
	// ClientID is the upstream client identifier. Default: empty, which means
	// "holdfast-" + gateway_id. It must be stable across restarts so the
	// upstream session (and QoS 2 state) survives.
	ClientID string `yaml:"client_id"`
	// Username to authenticate with. Default: empty (none).
	Username string `yaml:"username"`
	// Password to authenticate with. Default: empty. Prefer PasswordFile,
	// which keeps the secret out of this file; the two are exclusive.
	Password string `yaml:"password"`
	// PasswordFile holds the password (one line; a trailing newline is
	// ignored). Default: empty.
	PasswordFile string `yaml:"password_file"`
	// TLS configures mqtts:// and wss://; setting it with mqtt:// or ws:// is
	// an error.
	TLS UpstreamTLS `yaml:"tls"`

	// Session and flow.

	// KeepAlive is the MQTT keep alive, whole seconds up to 65535s; 0
	// disables it. Default: 60s. Shorter notices a dead link sooner and
	// costs a PINGREQ per interval when idle.
	KeepAlive time.Duration `yaml:"keep_alive"`
	// SessionExpiry asks the broker to keep the session (subscriptions,
	// in-flight QoS 2 state) this long after a disconnect (MQTT 5 only; up to
	// 4294967295s). Default: 7d. 0 ends it at disconnect.
	SessionExpiry time.Duration `yaml:"session_expiry"`
	// CleanStart discards the upstream session on every connect. Default:
	// false, so in-flight messages resume where they were.
	CleanStart bool `yaml:"clean_start"`
	// Inflight is how many QoS 1/2 messages may await the broker's ack at
	// once (1..65535; lowered to the broker's Receive Maximum). Default: 64.
	// Higher drains a backlog faster over high-latency links.
	Inflight int `yaml:"inflight"`

	// Fine tuning.

	// ConnectTimeout bounds dialing, TLS and CONNACK. Default: 30s.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// StallTimeout drops a connection on which messages are in flight but
	// no ack has come for this long, so "connected" never hides a stalled
	// link. Default: 60s. 0 disables it.
	StallTimeout time.Duration `yaml:"stall_timeout"`
	// Backoff paces reconnects.
	Backoff Backoff `yaml:"backoff"`
	// Birth is published upstream after each successful connect.
	Birth Message `yaml:"birth"`
	// Will is registered with the broker as the last will, published by the
	// broker when holdfast vanishes without a DISCONNECT.
	Will Message `yaml:"will"`
}

// UpstreamTLS configures the upstream TLS connection.
type UpstreamTLS struct {
	// CAFile is the PEM bundle the server certificate is verified against.
	// Default: empty (the system's roots).
	CAFile string `yaml:"ca_file"`
	// CertFile is the PEM client certificate for mutual TLS (AWS IoT Core).
	// Default: empty. Needs KeyFile.
	CertFile string `yaml:"cert_file"`
	// KeyFile is the PEM private key of CertFile. Default: empty.
	KeyFile string `yaml:"key_file"`
	// ServerName overrides the name the certificate is checked against (and
	// sent as SNI). Default: empty (the URL's host).
	ServerName string `yaml:"server_name"`
	// ALPN protocols to offer, e.g. ["x-amzn-mqtt-ca"] for AWS IoT Core on
	// port 443. Default: none.
	ALPN []string `yaml:"alpn"`
	// InsecureSkipVerify accepts any server certificate. Default: false.
	// For tests only: it makes TLS worthless against an active attacker.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

func (t UpstreamTLS) isZero() bool {
	return t.CAFile == "" && t.CertFile == "" && t.KeyFile == "" && t.ServerName == "" &&
		len(t.ALPN) == 0 && !t.InsecureSkipVerify
}

// Backoff defaults.
const (
	DefaultBackoffInitial       = 1 * time.Second
	DefaultBackoffMax           = 2 * time.Minute
	DefaultBackoffMultiplier    = 2.0
	DefaultBackoffRandomization = 0.5
	DefaultBackoffStableAfter   = 1 * time.Minute
)

// Backoff paces reconnect attempts: the n-th wait is
// min(Initial * Multiplier^(n-1), Max), randomized by ±Randomization of
// itself. It never gives up.
type Backoff struct {
	// Initial is the first wait. Default: 1s.
	Initial time.Duration `yaml:"initial"`
	// Max caps the wait (before randomization). Default: 2m. Lower
	// reconnects sooner after a long outage at the cost of more attempts
	// against a broker that is down.
	Max time.Duration `yaml:"max"`
	// Multiplier grows the wait after each failure (≥ 1). Default: 2.
	Multiplier float64 `yaml:"multiplier"`
	// Randomization spreads waits by ±this fraction (0..1) so a fleet does
	// not reconnect in lockstep. Default: 0.5.
	Randomization float64 `yaml:"randomization"`
	// StableAfter is how long a connection must last before the backoff is
	// reset to Initial, so a link that drops right after CONNACK does not
	// cause a reconnect storm. Default: 1m.
	StableAfter time.Duration `yaml:"stable_after"`
}

// Birth and will defaults.
const (
	DefaultBirthPayload = "online"
	DefaultBirthQoS     = 1
	DefaultBirthRetain  = true
	DefaultWillPayload  = "offline"
	DefaultWillQoS      = 1
	DefaultWillRetain   = true
)

// Message is a birth or will message.
type Message struct {
	// Topic is a template with {gateway_id} and {client_id} (the upstream
	// client id), e.g. "gateways/{gateway_id}/status". Default: empty, which
	// disables the message.
	Topic Template `yaml:"topic"`
	// Payload is the message body. Default: "online" (birth), "offline"
	// (will).
	Payload string `yaml:"payload"`
	// QoS is 0, 1 or 2. Default: 1.
	QoS int `yaml:"qos"`
	// Retain sets the retain flag. Default: true, so a new subscriber learns
	// the gateway's state at once.
	Retain bool `yaml:"retain"`
}

// Policy says what the queue does when it is full.
type Policy string

// The queue policies.
const (
	// PolicyDropOldest deletes the oldest messages to make room (counted).
	PolicyDropOldest Policy = "drop_oldest"
	// PolicyRejectNew refuses new messages: MQTT 5 devices get reason 0x97
	// (quota exceeded), 3.1.1 devices are disconnected unacked and resend.
	PolicyRejectNew Policy = "reject_new"
)

// Queue defaults.
const (
	DefaultQueueDir         = "./holdfast-data"
	DefaultQueueMaxBytes    = 1 * GiB
	DefaultQueueMaxMessages = 0
	DefaultQueuePolicy      = PolicyDropOldest
	DefaultQueueTTL         = 0
	DefaultDiskReserve      = 128 * MiB
	DefaultCommitWait       = 0
)

// Queue is the durable queue between the local and upstream sides.
type Queue struct {
	// Dir is the queue's directory, created if missing. Default:
	// ./holdfast-data (the packaged service uses /var/lib/holdfast).
	Dir string `yaml:"dir"`
	// MaxBytes caps the queued messages' size (topics and payloads), in
	// bytes. Default: 1GiB. 0 means no cap other than DiskReserve.
	MaxBytes Size `yaml:"max_bytes"`
	// MaxMessages caps the number of queued messages. Default: 0 (no cap).
	MaxMessages int64 `yaml:"max_messages"`
	// Policy is drop_oldest or reject_new, applied when a cap is reached.
	// Default: drop_oldest (keep the newest data, count the drops).
	Policy Policy `yaml:"policy"`
	// TTL drops messages older than this at the head instead of sending them
	// (counted). Default: 0 (never). MQTT 5 message expiry applies too.
	TTL time.Duration `yaml:"ttl"`
	// DiskReserve is free space on the queue's file system below which new
	// messages are refused, before the store itself runs out of space.
	// Default: 128MiB.
	DiskReserve Size `yaml:"disk_reserve"`
	// CommitWait is the longest a commit waits for more appends to join its
	// batch (up to 1s). Default: 0: appends arriving while a commit is
	// syncing form the next batch anyway; a small wait (1ms) raises
	// throughput with many slow publishers at the cost of latency.
	CommitWait time.Duration `yaml:"commit_wait"`
}

// Forward rule defaults.
const (
	DefaultForwardFilter = "#"
	DefaultForwardTopic  = "{topic}"
	DefaultForwardMinQoS = 1
	DefaultForwardMaxQoS = 2
	DefaultForwardRetain = true
)

// ForwardRule maps local messages to upstream ones.
type ForwardRule struct {
	// Filter is the local topic filter (+ and # wildcards). Default: "#".
	Filter string `yaml:"filter"`
	// Topic is the upstream topic, a template with {topic} (the local topic
	// after StripPrefix), {client_id} (the publishing device's client id)
	// and {gateway_id}. Default: "{topic}".
	Topic Template `yaml:"topic"`
	// StripPrefix is removed from the start of the local topic before it is
	// put into {topic}, when the topic starts with it and is longer. It is a
	// template with {client_id} (the publishing device's client id) and
	// {gateway_id}, e.g. "devices/{client_id}/". Default: empty.
	StripPrefix Template `yaml:"strip_prefix"`
	// MinQoS raises the upstream QoS to at least this. Default: 1, so QoS 0
	// telemetry is stored and forwarded reliably too.
	MinQoS int `yaml:"min_qos"`
	// MaxQoS lowers the upstream QoS to at most this. Default: 2. Set 1 for
	// brokers without QoS 2 (AWS IoT Core).
	MaxQoS int `yaml:"max_qos"`
	// Retain keeps the local retain flag upstream; false clears it. Default:
	// true.
	Retain bool `yaml:"retain"`
}

// Downlink rule defaults.
const (
	DefaultDownlinkQoS        = 1
	DefaultDownlinkLocalTopic = "{topic}"
)

// DownlinkRule subscribes upstream and publishes what arrives locally.
type DownlinkRule struct {
	// Filter is the upstream topic filter, a template with {gateway_id} and
	// {client_id} (the upstream client id), e.g. "cmd/{gateway_id}/#".
	// Required.
	Filter Template `yaml:"filter"`
	// QoS is the subscription's maximum QoS, 0..2. Default: 1.
	QoS int `yaml:"qos"`
	// LocalTopic is the local topic, a template with {topic} (the upstream
	// topic after StripPrefix) and {gateway_id}. Default: "{topic}".
	LocalTopic Template `yaml:"local_topic"`
	// StripPrefix is removed from the start of the upstream topic before it
	// is put into {topic}, when the topic starts with it and is longer. It
	// is a template with {gateway_id}, so that a rule subscribed to
	// "cmd/{gateway_id}/#" can strip "cmd/{gateway_id}/". Default: empty.
	StripPrefix Template `yaml:"strip_prefix"`
}

// Admin defaults.
const DefaultAdminAddress = "127.0.0.1:9183"

// Admin is the HTTP endpoint serving /metrics, /healthz, /readyz,
// /api/status and /api/queue/peek.
type Admin struct {
	// Address is host:port. Default: 127.0.0.1:9183 (loopback only: the
	// endpoint has no authentication). /api/queue/peek, which shows
	// message payloads, is served only on a loopback address. Empty
	// disables the endpoint.
	Address string `yaml:"address"`
}

// Log defaults.
const (
	DefaultLogLevel  = "info"
	DefaultLogFormat = "text"
)

// Log configures logging: to standard error (the journal under systemd),
// or appended to a file.
type Log struct {
	// Level is debug, info, warn or error. Default: info.
	Level string `yaml:"level"`
	// Format is text or json. Default: text.
	Format string `yaml:"format"`
	// File, when set, is where log lines are appended instead of standard
	// error (created 0640 if missing): for a service manager that keeps
	// no standard error, such as Windows'. Not rotated by holdfast (it
	// reopens nothing, so rotate with copytruncate). Default: "" (standard
	// error).
	File string `yaml:"file"`
}

// SlogLevel returns Level as a slog.Level (info for an unknown level, which
// Validate rejects).
func (l Log) SlogLevel() slog.Level {
	switch l.Level {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// DefaultListener returns a listener with every field at its default.
func DefaultListener() Listener {
	return Listener{Address: DefaultListenAddress, Type: DefaultListenerType, Path: DefaultWebSocketPath}
}

// DefaultForwardRule returns a forward rule with every field at its default:
// every local topic, as-is, at QoS 1 or 2.
func DefaultForwardRule() ForwardRule {
	return ForwardRule{
		Filter: DefaultForwardFilter,
		Topic:  mustTemplate(DefaultForwardTopic),
		MinQoS: DefaultForwardMinQoS,
		MaxQoS: DefaultForwardMaxQoS,
		Retain: DefaultForwardRetain,
	}
}

// DefaultDownlinkRule returns a downlink rule with every field at its
// default; its Filter is empty and must be set.
func DefaultDownlinkRule() DownlinkRule {
	return DownlinkRule{QoS: DefaultDownlinkQoS, LocalTopic: mustTemplate(DefaultDownlinkLocalTopic)}
}

// Default returns the built-in configuration, used as-is when there is no
// file. The gateway id is the host name.
func Default() *Config {
	gw := Hostname()
	return &Config{
		GatewayID: gw,
		Listeners: []Listener{DefaultListener()},
		Local: Local{
			ConnectTimeout:    DefaultLocalConnectTimeout,
			MaxConnections:    DefaultMaxConnections,
			MaxPacketSize:     DefaultMaxPacketSize,
			ReceiveMaximum:    DefaultReceiveMaximum,
			MaxQueuedMessages: DefaultMaxQueuedMessages,
			MaxSessionExpiry:  DefaultMaxSessionExpiry,
			MaxKeepAlive:      DefaultMaxKeepAlive,
			RetainAvailable:   DefaultRetainAvailable,
		},
		Upstream: Upstream{
			URL:            DefaultUpstreamURL,
			Protocol:       DefaultProtocol,
			ClientID:       DefaultClientIDPrefix + gw,
			KeepAlive:      DefaultKeepAlive,
			SessionExpiry:  DefaultSessionExpiry,
			CleanStart:     DefaultCleanStart,
			Inflight:       DefaultInflight,
			ConnectTimeout: DefaultUpstreamConnectTimeout,
			StallTimeout:   DefaultStallTimeout,
			Backoff: Backoff{
				Initial:       DefaultBackoffInitial,
				Max:           DefaultBackoffMax,
				Multiplier:    DefaultBackoffMultiplier,
				Randomization: DefaultBackoffRandomization,
				StableAfter:   DefaultBackoffStableAfter,
			},
			Birth: Message{Payload: DefaultBirthPayload, QoS: DefaultBirthQoS, Retain: DefaultBirthRetain},
			Will:  Message{Payload: DefaultWillPayload, QoS: DefaultWillQoS, Retain: DefaultWillRetain},
		},
		Queue: Queue{
			Dir:         DefaultQueueDir,
			MaxBytes:    DefaultQueueMaxBytes,
			MaxMessages: DefaultQueueMaxMessages,
			Policy:      DefaultQueuePolicy,
			TTL:         DefaultQueueTTL,
			DiskReserve: DefaultDiskReserve,
			CommitWait:  DefaultCommitWait,
		},
		Forward:  []ForwardRule{DefaultForwardRule()},
		Downlink: []DownlinkRule{},
		Admin:    Admin{Address: DefaultAdminAddress},
		Log:      Log{Level: DefaultLogLevel, Format: DefaultLogFormat},
	}
}
