package agent

import (
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"holdfast/config"
	"holdfast/internal/packet"
	"holdfast/internal/transport"
	"holdfast/localbus"
	"holdfast/queue"
	"holdfast/uplink"
)

func queueOptions(cfg *config.Config, log *slog.Logger) queue.Options {
	o := queue.Options{
		Dir:         cfg.Queue.Dir,
		MaxMessages: cfg.Queue.MaxMessages,
		MaxBytes:    int64(cfg.Queue.MaxBytes),
		TTL:         cfg.Queue.TTL,
		DiskReserve: int64(cfg.Queue.DiskReserve),
		CommitWait:  cfg.Queue.CommitWait,
		Logger:      log.With("component", "queue"),
	}
	if cfg.Queue.Policy == config.PolicyRejectNew {
		o.Policy = queue.RejectNew
	} else {
		o.Policy = queue.DropOldest
	}
	return o
}

func brokerOptions(cfg *config.Config, log *slog.Logger) localbus.Options {
	l := cfg.Local
	// The config's 0 means "none" for these two; the broker's 0 means its
	// default and a negative value means none.
	if l.MaxQueuedMessages == 0 {
		l.MaxQueuedMessages = -1
	}
	if l.MaxSessionExpiry == 0 {
		l.MaxSessionExpiry = -1
	}
	return localbus.Options{
		MaxPacketSize:     uint32(l.MaxPacketSize),
		ReceiveMaximum:    uint16(l.ReceiveMaximum),
		ConnectTimeout:    l.ConnectTimeout,
		MaxConnections:    l.MaxConnections,
		MaxQueuedMessages: l.MaxQueuedMessages,
		MaxSessionExpiry:  l.MaxSessionExpiry,
		MaxKeepAlive:      l.MaxKeepAlive,
		RetainAvailable:   l.RetainAvailable,
		Logger:            log.With("component", "localbus"),
	}
}

func listenerOptions(cfg *config.Config, i int) localbus.ListenerOptions {
	l := cfg.Listeners[i]
	return localbus.ListenerOptions{Name: l.Name, AllowAnonymous: l.AnonymousAllowed()}
}

func uplinkOptions(cfg *config.Config, log *slog.Logger) (uplink.Options, error) {
	u := cfg.Upstream
	o := uplink.Options{
		URL:            u.URL,
		Protocol:       packet.V5,
		ClientID:       u.ClientID,
		Username:       u.Username,
		Password:       u.Password,
		KeepAlive:      u.KeepAlive,
		SessionExpiry:  u.SessionExpiry,
		CleanStart:     u.CleanStart,
		Inflight:       u.Inflight,
		ConnectTimeout: u.ConnectTimeout,
		StallTimeout:   u.StallTimeout,
		Backoff: uplink.Backoff{
			Initial:       u.Backoff.Initial,
			Max:           u.Backoff.Max,
			Multiplier:    u.Backoff.Multiplier,
			Randomization: u.Backoff.Randomization,
			StableAfter:   u.Backoff.StableAfter,
		},
		Logger: log.With("component", "uplink"),
	}
	// The config's 0 disables keep alive and stall detection and ends the
	// session at disconnect; the uplink reads 0 as its default and a
	// negative value as off.
	for _, d := range []*time.Duration{&o.KeepAlive, &o.SessionExpiry, &o.StallTimeout} {
		if *d == 0 {
			*d = -1
		}
	}
	if u.Protocol == config.Protocol311 {
		o.Protocol = packet.V311
	}
	if u.PasswordFile != "" {
		pw, err := config.ReadPasswordFile(u.PasswordFile)
		if err != nil {
			return o, fmt.Errorf("upstream.password_file: %w", err)
		}
		o.Password = pw
	}
	if u.UsesTLS() {
		tc, err := transport.ClientTLS(transport.ClientTLSOptions{
			CAFile: u.TLS.CAFile, CertFile: u.TLS.CertFile, KeyFile: u.TLS.KeyFile,
			ServerName: u.TLS.ServerName, ALPN: u.TLS.ALPN, InsecureSkipVerify: u.TLS.InsecureSkipVerify,
		})
		if err != nil {
			return o, fmt.Errorf("upstream.tls: %w", err)
		}
		o.TLS = tc
	}
	o.Birth = message(u.Birth, u.ClientID, cfg.GatewayID)
	o.Will = message(u.Will, u.ClientID, cfg.GatewayID)
	for _, r := range cfg.Downlink {
		o.Subscriptions = append(o.Subscriptions, uplink.Subscription{
			Filter: r.Subscription(u.ClientID, cfg.GatewayID), QoS: byte(r.QoS),
		})
	}
	return o, nil
}

// message turns a birth or will setting into the uplink's form; no topic
// means the message is disabled.
func message(m config.Message, clientID, gatewayID string) *uplink.WillMessage {
	if m.Topic.IsZero() {
		return nil
	}
	return &uplink.WillMessage{
		Topic:   m.Topic.Expand("", clientID, gatewayID),
		Payload: []byte(m.Payload),
		QoS:     byte(m.QoS),
		Retain:  m.Retain,
	}
}

// redactURL hides a password in a URL before it is logged.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return s
	}
	return u.Redacted()
}
