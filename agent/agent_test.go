package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"holdfast/config"
	"holdfast/internal/packet"
	"holdfast/internal/testclient"
	"holdfast/internal/testenv"
	"holdfast/queue"
)

// running is an agent started in-process by startAgent.
type running struct {
	a    *Agent
	log  *testenv.LockedBuffer
	stop context.CancelFunc
	done chan error
}

// startAgent runs an agent on extra (YAML added to a configuration with a
// listener and the admin endpoint on free ports, the queue in a temporary
// directory and an upstream nobody answers) until it is ready; setup, if
// given, changes the agent before it runs.
func startAgent(t *testing.T, extra string, setup ...func(*Agent)) *running {
	t.Helper()
	doc := fmt.Sprintf(`listeners:
  - address: 127.0.0.1:0
upstream:
  url: mqtt://127.0.0.1:%d
  backoff: {initial: 50ms, max: 200ms}
queue:
  dir: %s
admin:
  address: 127.0.0.1:0
%s`, testenv.FreePort(t), filepath.Join(t.TempDir(), "q"), extra)
	cfg, err := config.Parse([]byte(doc))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	r := &running{log: &testenv.LockedBuffer{}, done: make(chan error, 1)}
	r.a = New(cfg, slog.New(slog.NewTextHandler(r.log, &slog.HandlerOptions{Level: slog.LevelDebug})))
	for _, f := range setup {
		f(r.a)
	}
	ctx, stop := context.WithCancel(context.Background())
	r.stop = stop
	go func() { r.done <- r.a.Run(ctx) }()
	t.Cleanup(func() {
		stop()
		select {
		case <-r.done:
		case <-time.After(30 * time.Second):
			t.Errorf("agent did not stop")
		}
		if t.Failed() {
			t.Logf("agent log:\n%s", r.log.String())
		}
	})
	testenv.WaitFor(t, 10*time.Second, "agent ready", func() bool {
		select {
		case err := <-r.done:
			t.Fatalf("agent stopped at start: %v", err)
		default:
		}
		ok, _ := r.a.Ready()
		return ok
	})
	return r
}

func (r *running) listen() string { return r.a.listeners[0].ln.Addr().String() }

func (r *running) get(t *testing.T, path string) string {
	t.Helper()
	resp, err := http.Get("http://" + r.a.adminSrv.Addr() + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func (r *running) status(t *testing.T) Status {
	t.Helper()
	var st Status
	if err := json.Unmarshal([]byte(r.get(t, "/api/status")), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestInvalidUpstreamTopicIsDropped: a device whose client id makes the
// upstream topic invalid is acknowledged, its messages reach local
// subscribers and are counted, logged once per interval and not queued;
// valid messages behind them are queued as usual.
func TestInvalidUpstreamTopicIsDropped(t *testing.T) {
	r := startAgent(t, "forward:\n  - topic: \"dev/{client_id}/{topic}\"\n")
	sub, err := testclient.Dial(r.listen(), testclient.Options{ClientID: "display", CleanStart: true})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if _, err := sub.Subscribe(packet.Subscription{Filter: "x/#", QoS: 1}); err != nil {
		t.Fatal(err)
	}
	bad, err := testclient.Dial(r.listen(), testclient.Options{ClientID: "a+b", CleanStart: true})
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	for i := 0; i < 3; i++ {
		rc, err := bad.Publish(&packet.Publish{Topic: "x/t", QoS: 1, Payload: []byte(fmt.Sprint(i))})
		if err != nil || rc.IsError() {
			t.Fatalf("publish %d from a+b: %v %v, want acknowledged", i, rc, err)
		}
		if p, err := sub.Receive(5 * time.Second); err != nil || string(p.Payload) != fmt.Sprint(i) {
			t.Fatalf("local subscriber: %v %v", p, err)
		}
	}
	good, err := testclient.Dial(r.listen(), testclient.Options{ClientID: "ok", CleanStart: true})
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	if rc, err := good.Publish(&packet.Publish{Topic: "x/t", QoS: 1, Payload: []byte("v")}); err != nil || rc.IsError() {
		t.Fatalf("publish from ok: %v %v", rc, err)
	}
	st := r.status(t)
	if st.Drops["invalid_upstream_topic"] != 3 || st.Backlog.Messages != 1 || st.LocalOnly != 0 {
		t.Errorf("invalid_upstream_topic %d, backlog %d, local_only %d; want 3, 1, 0",
			st.Drops["invalid_upstream_topic"], st.Backlog.Messages, st.LocalOnly)
	}
	var recs []QueueRecord
	if err := ScanQueue(r.a.q, -1, func(q QueueRecord) error { recs = append(recs, q); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].Topic != "dev/ok/x/t" {
		t.Errorf("queued %+v, want only dev/ok/x/t", recs)
	}
	if n := strings.Count(r.log.String(), "invalid upstream topic"); n != 1 {
		t.Errorf("logged %d times for 3 messages, want once:\n%s", n, r.log.String())
	}
	if !strings.Contains(r.log.String(), "client_id=a+b") {
		t.Errorf("the log line does not name the client:\n%s", r.log.String())
	}
	if m := r.get(t, "/metrics"); !strings.Contains(m, `holdfast_dropped_total{reason="invalid_upstream_topic"} 3`) {
		t.Errorf("/metrics has no invalid_upstream_topic drop:\n%s", m)
	}
}

// TestLocalDropsInStatus: messages the local broker drops for an offline
// session beyond local.max_queued_messages are shown with the other drops
// in /api/status and /metrics, and the local clients and sessions are
// counted.
func TestLocalDropsInStatus(t *testing.T) {
	r := startAgent(t, "local:\n  max_queued_messages: 2\n")
	sub, err := testclient.Dial(r.listen(), testclient.Options{ClientID: "offline", SessionExpiry: 3600})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sub.Subscribe(packet.Subscription{Filter: "m/#", QoS: 1}); err != nil {
		t.Fatal(err)
	}
	if st := r.status(t); st.Local.Connections != 1 || st.Local.Sessions != 1 || st.Local.Subscriptions != 1 {
		t.Errorf("local %+v, want one connection, session and subscription", st.Local)
	}
	sub.Disconnect()
	testenv.WaitFor(t, 5*time.Second, "session offline", func() bool { return r.status(t).Local.Connections == 0 })
	pub, err := testclient.Dial(r.listen(), testclient.Options{ClientID: "pub", CleanStart: true})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	for i := 0; i < 5; i++ {
		if rc, err := pub.Publish(&packet.Publish{Topic: "m/x", QoS: 1, Payload: []byte("p")}); err != nil || rc.IsError() {
			t.Fatalf("publish: %v %v", rc, err)
		}
	}
	st := r.status(t)
	if st.Drops["local_queue_full"] != 3 {
		t.Errorf("local_queue_full %d, want 3 (5 messages, 2 kept): %v", st.Drops["local_queue_full"], st.Drops)
	}
	for _, reason := range DropReasons {
		if _, ok := st.Drops[reason]; !ok {
			t.Errorf("drops has no %q", reason)
		}
	}
	m := r.get(t, "/metrics")
	if !strings.Contains(m, `holdfast_dropped_total{reason="local_queue_full"} 3`) ||
		!strings.Contains(m, "holdfast_local_sessions 2") {
		t.Errorf("/metrics:\n%s", m)
	}
	// Every uplink state has its sample, waiting included.
	for _, s := range uplinkStates {
		if !strings.Contains(m, `holdfast_uplink_state{state="`+s+`"} `) {
			t.Errorf("/metrics has no uplink state %q", s)
		}
	}
}

// TestPartFailingWhileRunning: a listener whose accept fails for good after
// the start ends Run with an error naming it, in order and without a hang;
// the queue is closed and what was stored is kept.
func TestPartFailingWhileRunning(t *testing.T) {
	r := startAgent(t, "")
	r.publishOne(t)
	addr := r.listen()
	r.a.listeners[0].ln.Close() // as a listener whose socket fails would
	err := r.stopped(t, "its listener failed")
	if err == nil || !strings.HasPrefix(err.Error(), "listener tcp://127.0.0.1:0 ("+addr+"): ") {
		t.Fatalf("Run = %v, want an error naming the listener", err)
	}
	if !strings.Contains(r.log.String(), "holdfast stopped") || !strings.Contains(r.log.String(), "level=ERROR") {
		t.Errorf("the failure is not logged:\n%s", r.log.String())
	}
	r.checkQueueKept(t, 1)
}

// publishOne publishes one QoS 1 message, acknowledged once stored.
func (r *running) publishOne(t *testing.T) {
	t.Helper()
	c, err := testclient.Dial(r.listen(), testclient.Options{ClientID: "dev", CleanStart: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if rc, err := c.Publish(&packet.Publish{Topic: "a", QoS: 1, Payload: []byte("p")}); err != nil || rc.IsError() {
		t.Fatalf("publish: %v %v", rc, err)
	}
}

// stopped waits for Run to return on its own after what happened, and
// returns its error.
func (r *running) stopped(t *testing.T, what string) error {
	t.Helper()
	select {
	case err := <-r.done:
		r.done <- err // for the cleanup
		return err
	case <-time.After(20 * time.Second):
		t.Fatalf("Run still running 20s after %s", what)
		return nil
	}
}

// checkQueueKept checks that Run closed the queue and that it holds n
// messages.
func (r *running) checkQueueKept(t *testing.T, n uint64) {
	t.Helper()
	q, err := queue.Open(queueOptions(r.a.cfg, slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatalf("queue not closed by Run: %v", err)
	}
	defer q.Close()
	if got := q.Stats().Messages; got != n {
		t.Errorf("queue holds %d after the failure, want %d", got, n)
	}
}

// failingHealth is a queue health that fails when told to.
type failingHealth struct {
	failed chan struct{}
	err    error
}

func (f *failingHealth) Failed() <-chan struct{} { return f.failed }
func (f *failingHealth) Err() error {
	select {
	case <-f.failed:
		return f.err
	default:
		return nil
	}
}

// TestQueueFailureStopsTheAgent: when the queue fails (a commit or a sync
// failed), Run stops in order and returns the queue's error, so that the
// service manager restarts holdfast and the queue is reopened from the
// disk; what was stored before is there after it.
func TestQueueFailureStopsTheAgent(t *testing.T) {
	h := &failingHealth{failed: make(chan struct{}),
		err: fmt.Errorf("%w: %w", queue.ErrFailed, errors.New("sync 000001.vlog: input/output error"))}
	r := startAgent(t, "", func(a *Agent) { a.health = h })
	r.publishOne(t)
	close(h.failed)
	runErr := r.stopped(t, "the queue failed")
	want := "queue: failed, reopen it: sync 000001.vlog: input/output error"
	if runErr == nil || runErr.Error() != want || !errors.Is(runErr, queue.ErrFailed) {
		t.Fatalf("Run = %v, want %q wrapping queue.ErrFailed", runErr, want)
	}
	if log := r.log.String(); !strings.Contains(log, "level=ERROR msg=\"holdfast stopped\"") || !strings.Contains(log, want) {
		t.Errorf("the failure is not logged:\n%s", log)
	}
	r.checkQueueKept(t, 1)
}

// TestStartErrorsNameThePartOnce: an error that already names its part is
// not prefixed again ("queue: queue: ...").
func TestStartErrorsNameThePartOnce(t *testing.T) {
	cfg := config.Default()
	cfg.Queue.Dir = "/dev/null/q"
	cfg.Listeners = nil
	cfg.Admin.Address = ""
	err := New(cfg, slog.New(slog.DiscardHandler)).Run(context.Background())
	if err == nil || !strings.HasPrefix(err.Error(), "queue: ") || strings.HasPrefix(err.Error(), "queue: queue: ") {
		t.Errorf("Run = %v, want one queue: prefix", err)
	}
}
