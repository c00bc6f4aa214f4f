package agent

import (
	"context"
	"sync"
	"time"

	"holdfast/internal/admin"
	"holdfast/queue"
	"holdfast/uplink"
)

// Status is what /api/status returns and `holdfast status` renders.
type Status struct {
	Version       string        `json:"version"`
	StartedAt     time.Time     `json:"started_at"`
	UptimeSeconds float64       `json:"uptime_seconds"`
	Upstream      UplinkStatus  `json:"upstream"`
	Backlog       BacklogStatus `json:"backlog"`
	Rates         RateStatus    `json:"rates"`
	// Drops counts messages lost or refused, by reason. The queue's:
	// evicted (drop_oldest at the limit), expired, dead_lettered, corrupt,
	// refused_full (reject_new at the limit) and refused_disk (disk reserve
	// reached). The forward rules': invalid_upstream_topic (not forwarded,
	// delivered locally). The local broker's, on the way to local
	// subscribers: local_queue_full (local.max_queued_messages),
	// local_expired, local_too_large (over the client's maximum packet
	// size), local_offline_qos0 (QoS 0 for an offline session),
	// local_denied (refused by the ACL) and local_invalid (a stored message
	// the codec cannot send to this client). More reasons may come: a
	// reader shows every key.
	Drops map[string]uint64 `json:"drops"`
	// LocalOnly counts local messages that no forward rule selected.
	LocalOnly uint64 `json:"local_only"`
	// Local is the local broker: its clients and sessions.
	Local LocalStatus `json:"local"`
	// Serial has one entry per configured serial port.
	Serial []SerialStatus `json:"serial,omitempty"`
}

// DropReasons are the reasons of Status.Drops, in the order `holdfast
// status` shows them.
var DropReasons = []string{
	"evicted", "expired", "dead_lettered", "corrupt", "refused_full", "refused_disk",
	"invalid_upstream_topic",
	"local_queue_full", "local_expired", "local_too_large", "local_offline_qos0", "local_denied", "local_invalid",
}

// LocalStatus is the local broker as an operator sees it.
type LocalStatus struct {
	// Connections is the number of connected clients.
	Connections int `json:"connections"`
	// Sessions counts sessions, online and offline.
	Sessions int `json:"sessions"`
	// Subscriptions counts client subscriptions.
	Subscriptions int `json:"subscriptions"`
	// Retained counts retained messages.
	Retained int `json:"retained"`
	// Queued counts messages waiting in sessions, in flight included.
	Queued int `json:"queued"`
	// MessagesIn counts PUBLISH packets accepted from clients.
	MessagesIn uint64 `json:"messages_in"`
	// MessagesOut counts PUBLISH packets sent to clients.
	MessagesOut uint64 `json:"messages_out"`
	// ConnectionsRefused counts CONNECTs refused (credentials, limits).
	ConnectionsRefused uint64 `json:"connections_refused"`
}

// SerialStatus is one serial port's adapter: whether its device is open and
// what it has counted.
type SerialStatus struct {
	Name          string `json:"name"`
	Device        string `json:"device,omitempty"`
	Connected     bool   `json:"connected"`
	Frames        uint64 `json:"frames"`
	Bytes         uint64 `json:"bytes"`
	ParseErrors   uint64 `json:"parse_errors"`
	Overlong      uint64 `json:"overlong"`
	Garbage       uint64 `json:"garbage"`
	PublishErrors uint64 `json:"publish_errors"`
	Disconnects   uint64 `json:"disconnects"`
	Reconnects    uint64 `json:"reconnects"`
	OpenFailures  uint64 `json:"open_failures"`
	WriteBacks    uint64 `json:"write_backs"`
	WriteErrors   uint64 `json:"write_errors"`
	Polls         uint64 `json:"polls"`
}

// serialCounters names each SerialStatus counter for /metrics.
var serialCounters = []struct {
	name, help string
	get        func(*SerialStatus) uint64
}{
	{"frames", "Frames published.", func(s *SerialStatus) uint64 { return s.Frames }},
	{"bytes", "Bytes read from the port.", func(s *SerialStatus) uint64 { return s.Bytes }},
	{"parse_errors", "Frames that failed to parse.", func(s *SerialStatus) uint64 { return s.ParseErrors }},
	{"overlong", "Frames over the maximum length, skipped.", func(s *SerialStatus) uint64 { return s.Overlong }},
	{"garbage_bytes", "Bytes outside any frame, dropped.", func(s *SerialStatus) uint64 { return s.Garbage }},
	{"publish_errors", "Frames the local broker refused, dropped.", func(s *SerialStatus) uint64 { return s.PublishErrors }},
	{"disconnects", "Losses of an open port.", func(s *SerialStatus) uint64 { return s.Disconnects }},
	{"reconnects", "Reopens after a loss.", func(s *SerialStatus) uint64 { return s.Reconnects }},
	{"open_failures", "Failed attempts to open or find the port.", func(s *SerialStatus) uint64 { return s.OpenFailures }},
	{"write_backs", "Write-back messages written to the port.", func(s *SerialStatus) uint64 { return s.WriteBacks }},
	{"write_errors", "Write-back messages not written.", func(s *SerialStatus) uint64 { return s.WriteErrors }},
	{"polls", "Poll requests written to the port.", func(s *SerialStatus) uint64 { return s.Polls }},
}

// UplinkStatus is the upstream link as an operator sees it.
type UplinkStatus struct {
	URL string `json:"url"`
	// State is connecting, backoff, waiting (connected, no acknowledgement
	// yet while messages wait), connected, draining or stalled: "connected"
	// means messages are being acknowledged (or none wait). The uplink may
	// add states; readers show any string as it is.
	State     string    `json:"state"`
	Since     time.Time `json:"since,omitzero"`
	LastAck   time.Time `json:"last_ack,omitzero"`
	InFlight  int       `json:"in_flight"`
	Forwarded uint64    `json:"forwarded"`
	LastError string    `json:"last_error,omitempty"`
}

// BacklogStatus is what the queue holds.
type BacklogStatus struct {
	Messages         uint64  `json:"messages"`
	Bytes            uint64  `json:"bytes"`
	OldestAgeSeconds float64 `json:"oldest_age_seconds"`
	DeadLetters      uint64  `json:"dead_letters"`
	// NextSeq is the sequence number the next stored message gets.
	NextSeq  uint64 `json:"next_seq"`
	DiskFull bool   `json:"disk_full"`
}

// BacklogOf returns the backlog that queue statistics s show: what
// /api/status reports, and `holdfast queue stats` prints from a stopped
// agent's queue.
func BacklogOf(s queue.Stats) BacklogStatus {
	return BacklogStatus{
		Messages:         s.Messages,
		Bytes:            s.Bytes,
		OldestAgeSeconds: s.OldestAge.Seconds(),
		DeadLetters:      s.DeadLetters,
		NextSeq:          s.NextSeq,
		DiskFull:         s.DiskFull,
	}
}

// RateStatus holds message rates over the last sampling window and, when the
// backlog drains faster than it fills, an estimate of when it is empty.
type RateStatus struct {
	IngestPerSecond float64 `json:"ingest_per_second"`
	DrainPerSecond  float64 `json:"drain_per_second"`
	// DrainETASeconds is backlog / (drain - ingest) when that is positive, else -1.
	DrainETASeconds float64 `json:"drain_eta_seconds"`
}

// uplinkStates are the uplink states /metrics always has a sample for; a
// state the uplink reports beyond these gets one while it is current.
var uplinkStates = []string{
	uplink.StateConnecting, uplink.StateBackoff, uplink.StateWaiting, uplink.StateConnected,
	uplink.StateDraining, uplink.StateStalled,
}

// rateWindow is how often ingest and drain rates are sampled.
const rateWindow = 5 * time.Second

// rateMeter turns the monotonically growing appended and acked counters into
// per-second rates over the last window.
type rateMeter struct {
	mu            sync.Mutex
	lastAt        time.Time
	lastIn        uint64
	lastOut       uint64
	ingest, drain float64
}

func (r *rateMeter) sample(now time.Time, in, out uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.lastAt.IsZero() {
		if dt := now.Sub(r.lastAt).Seconds(); dt > 0 {
			r.ingest = float64(in-r.lastIn) / dt
			r.drain = float64(out-r.lastOut) / dt
		}
	}
	r.lastAt, r.lastIn, r.lastOut = now, in, out
}

func (r *rateMeter) get() (ingest, drain float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ingest, r.drain
}

// sampleRates updates the rate meter every rateWindow until ctx is done.
func (a *Agent) sampleRates(ctx context.Context) error {
	t := time.NewTicker(rateWindow)
	defer t.Stop()
	a.rates.sample(time.Now(), a.ingested.Load(), a.forwarded.Load())
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			a.rates.sample(now, a.ingested.Load(), a.forwarded.Load())
		}
	}
}

// Ready implements admin.Source: ready once every part has started.
func (a *Agent) Ready() (bool, string) {
	if !a.ready.Load() {
		return false, "starting or stopping"
	}
	return true, ""
}

// Status implements admin.Source.
func (a *Agent) Status() any { return a.status() }

func (a *Agent) status() Status {
	qs := a.q.Stats()
	us := a.up.Status()
	bs := a.broker.Stats()
	in, out := a.rates.get()
	st := Status{
		Version:       Version,
		StartedAt:     a.started,
		UptimeSeconds: time.Since(a.started).Seconds(),
		Upstream: UplinkStatus{
			URL:       redactURL(a.cfg.Upstream.URL),
			State:     us.State,
			Since:     us.Since,
			LastAck:   us.LastAck,
			InFlight:  us.InFlight,
			Forwarded: a.forwarded.Load(),
			LastError: us.LastError,
		},
		Backlog: BacklogOf(qs),
		Rates:   RateStatus{IngestPerSecond: in, DrainPerSecond: out, DrainETASeconds: -1},
		Drops: map[string]uint64{
			"evicted":       qs.Evicted,
			"expired":       qs.Expired,
			"dead_lettered": qs.DeadLettered,
			"corrupt":       qs.Corrupt,
			"refused_full":  qs.RefusedFull,
			"refused_disk":  qs.RefusedDisk,

			"invalid_upstream_topic": a.invalidTopic.Load(),

			"local_queue_full":   bs.DroppedQueueFull,
			"local_expired":      bs.DroppedExpired,
			"local_too_large":    bs.DroppedTooLarge,
			"local_offline_qos0": bs.DroppedOffline,
			"local_denied":       bs.DroppedDenied,
			"local_invalid":      bs.DroppedInvalid,
		},
		LocalOnly: a.localOnly.Load(),
		Local: LocalStatus{
			Connections: bs.Connections, Sessions: bs.Sessions, Subscriptions: bs.Subscriptions,
			Retained: bs.Retained, Queued: bs.Queued, MessagesIn: bs.MessagesIn, MessagesOut: bs.MessagesOut,
			ConnectionsRefused: bs.ConnectionsRefused,
		},
	}
	for _, ad := range a.adapters {
		ss := ad.Stats()
		st.Serial = append(st.Serial, SerialStatus{
			Name: ad.Name(), Device: ss.Device, Connected: ss.Connected, Frames: ss.Frames,
			Bytes: ss.Bytes, ParseErrors: ss.ParseErrors, Overlong: ss.Overlong, Garbage: ss.Garbage,
			PublishErrors: ss.PublishErrors, Disconnects: ss.Disconnects, Reconnects: ss.Reconnects,
			OpenFailures: ss.OpenFailures, WriteBacks: ss.WriteBacks, WriteErrors: ss.WriteErrors,
			Polls: ss.Polls,
		})
	}
	if net := out - in; net > 0 && qs.Messages > 0 {
		st.Rates.DrainETASeconds = float64(qs.Messages) / net
	}
	return st
}

// Metrics implements admin.Source.
func (a *Agent) Metrics(w *admin.MetricsWriter) {
	st := a.status()
	qs := a.q.Stats()
	w.Gauge("holdfast_queue_messages", "Messages stored in the queue.", float64(st.Backlog.Messages))
	w.Gauge("holdfast_queue_bytes", "Bytes of messages stored in the queue.", float64(st.Backlog.Bytes))
	w.Gauge("holdfast_queue_oldest_age_seconds", "Age of the oldest queued message.", st.Backlog.OldestAgeSeconds)
	w.Gauge("holdfast_queue_dead_letters", "Messages in the dead-letter store.", float64(st.Backlog.DeadLetters))
	w.Counter("holdfast_queue_appended_total", "Messages stored in the queue.", float64(qs.Appended))
	w.Counter("holdfast_queue_acked_total", "Messages acknowledged upstream and deleted.", float64(qs.Acked))
	w.CounterVec("holdfast_dropped_total", "Messages dropped or refused, by reason.", "reason", st.Drops)
	w.Counter("holdfast_queue_commits_total", "Group commits of the queue.", float64(qs.Commits))
	w.Gauge("holdfast_queue_commit_batch_avg", "Average writes per group commit.", qs.AvgBatch)
	w.Gauge("holdfast_queue_commit_latency_seconds", "Average group commit latency, sync included.", qs.AvgCommitLatency.Seconds())
	w.Counter("holdfast_local_only_total", "Local messages no forward rule selected.", float64(st.LocalOnly))
	w.Gauge("holdfast_uplink_in_flight", "Messages sent upstream and not yet acknowledged.", float64(st.Upstream.InFlight))
	w.Family("holdfast_uplink_state", "Upstream link state (1 for the current one).", "gauge")
	known := false
	for _, s := range uplinkStates {
		v := 0.0
		if st.Upstream.State == s {
			v, known = 1, true
		}
		w.Sample("holdfast_uplink_state", v, "state", s)
	}
	if !known && st.Upstream.State != "" {
		w.Sample("holdfast_uplink_state", 1, "state", st.Upstream.State)
	}
	w.Gauge("holdfast_local_connections", "Connected local clients.", float64(st.Local.Connections))
	w.Gauge("holdfast_local_sessions", "Local sessions, online and offline.", float64(st.Local.Sessions))
	w.Gauge("holdfast_local_queued", "Messages waiting in local sessions, in flight included.", float64(st.Local.Queued))
	w.Counter("holdfast_local_messages_in_total", "PUBLISH packets accepted from local clients.", float64(st.Local.MessagesIn))
	w.Counter("holdfast_local_messages_out_total", "PUBLISH packets sent to local clients.", float64(st.Local.MessagesOut))
	w.Gauge("holdfast_ingest_per_second", "Local messages stored per second over the last window.", st.Rates.IngestPerSecond)
	w.Gauge("holdfast_drain_per_second", "Messages acknowledged upstream per second over the last window.", st.Rates.DrainPerSecond)
	if len(st.Serial) > 0 {
		w.Family("holdfast_serial_connected", "Whether the serial port is open (1) or not (0).", "gauge")
		for i := range st.Serial {
			v := 0.0
			if st.Serial[i].Connected {
				v = 1
			}
			w.Sample("holdfast_serial_connected", v, "port", st.Serial[i].Name)
		}
		for _, c := range serialCounters {
			name := "holdfast_serial_" + c.name + "_total"
			w.Family(name, "Serial adapter: "+c.help, "counter")
			for i := range st.Serial {
				w.Sample(name, float64(c.get(&st.Serial[i])), "port", st.Serial[i].Name)
			}
		}
	}
	w.Family("holdfast_build_info", "Build information.", "gauge")
	w.Sample("holdfast_build_info", 1, "version", Version)
}
