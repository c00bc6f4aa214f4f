package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"holdfast/agent"
	"holdfast/config"
	"holdfast/internal/packet"
	"holdfast/internal/testclient"
	"holdfast/internal/testenv"
)

// proc is the binary started with an arbitrary command line in a working
// directory, for the tests that do not go through a gateway's config file.
type proc struct {
	t     *testing.T
	admin string
	log   testenv.LockedBuffer
	cmd   *exec.Cmd
	done  chan struct{}
}

// startProc runs holdfast with args in dir and waits until the admin endpoint
// at admin says it is ready.
func startProc(t *testing.T, dir, admin string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, admin: admin, done: make(chan struct{})}
	p.cmd = exec.Command(binPath, args...)
	p.cmd.Dir = dir
	p.cmd.Stdout, p.cmd.Stderr = &p.log, &p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("holdfast %v log (last 8 KiB):\n%s", args, tail(p.log.String(), 8<<10))
		}
	})
	testenv.WaitFor(t, 20*time.Second, "holdfast ready on "+admin, func() bool {
		select {
		case <-p.done:
			t.Fatalf("holdfast %v exited at start: %v\n%s", args, p.cmd.ProcessState, p.log.String())
		default:
		}
		resp, err := http.Get("http://" + admin + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return p
}

// term sends SIGTERM and returns the exit code and how long the exit took.
func (p *proc) term() (int, time.Duration) {
	p.t.Helper()
	start := time.Now()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.t.Fatalf("holdfast did not stop within 30s of SIGTERM")
	}
	return p.cmd.ProcessState.ExitCode(), time.Since(start)
}

func (p *proc) status() agent.Status {
	p.t.Helper()
	var st agent.Status
	resp, err := http.Get("http://" + p.admin + "/api/status")
	if err != nil {
		p.t.Fatalf("/api/status: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &st); err != nil {
		p.t.Fatalf("/api/status: %v in %q", err, b)
	}
	return st
}

// publishQoS1 connects as id, publishes payload on topic at QoS 1 and fails
// the test unless holdfast acknowledges it with success.
func publishQoS1(t *testing.T, addr, id, topic, payload string) {
	t.Helper()
	c, err := testclient.Dial(addr, testclient.Options{ClientID: id, CleanStart: true})
	if err != nil {
		t.Fatalf("connect to %s: %v", addr, err)
	}
	defer c.Disconnect()
	rc, err := c.Publish(&packet.Publish{Topic: topic, QoS: 1, Payload: []byte(payload)})
	if err != nil || rc.IsError() {
		t.Fatalf("publish %s: reason %v, %v", topic, rc, err)
	}
}

// subscriber connects to the broker at addr as id with a clean session,
// subscribes to subs and is closed when the test ends.
func subscriber(t *testing.T, addr, id string, subs ...packet.Subscription) *testclient.Client {
	t.Helper()
	c, err := testclient.Dial(addr, testclient.Options{ClientID: id, CleanStart: true})
	if err != nil {
		t.Fatalf("subscriber %s: connect to %s: %v", id, addr, err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Subscribe(subs...); err != nil {
		t.Fatalf("subscriber %s: subscribe: %v", id, err)
	}
	return c
}

// expectUpstream reads from sub until a message on topic arrives and checks
// its payload.
func expectUpstream(t *testing.T, sub *testclient.Client, topic, payload string) *packet.Publish {
	t.Helper()
	for {
		p, err := sub.Receive(20 * time.Second)
		if err != nil {
			t.Fatalf("waiting upstream for %s %q: %v", topic, payload, err)
		}
		if p.Topic == topic {
			if string(p.Payload) != payload {
				t.Fatalf("upstream %s: payload %q, want %q", topic, p.Payload, payload)
			}
			return p
		}
	}
}

// TestNoArgumentsRunsOnDefaults: `holdfast` with no argument and no config
// file, in an empty working directory, listens on 127.0.0.1:1883, serves its
// admin endpoint on 127.0.0.1:9183, stores into ./holdfast-data and buffers a
// QoS 1 publish while its default upstream (127.0.0.1:1884) does not answer.
// Started again with only --upstream pointing at a mosquitto, it delivers the
// buffered message under the default client id holdfast-<host name>.
//
// The defaults are fixed loopback ports: the test holds the machine's lock
// of them (testenv.LockDefaultPorts) so that no other test binary uses them
// meanwhile, and skips when another program has one (fails with
// HOLDFAST_REQUIRE_TOOLS=1, as in CI). Nothing is written outside the
// temporary working directory.
func TestNoArgumentsRunsOnDefaults(t *testing.T) {
	testenv.LockDefaultPorts(t)
	testenv.RequireBindable(t, config.DefaultListenAddress, config.DefaultAdminAddress,
		strings.TrimPrefix(config.DefaultUpstreamURL, "mqtt://"))
	up := testenv.StartMosquitto(t, testenv.MosquittoOptions{})
	sub := subscriber(t, up.Addr(), "defaults-sub", packet.Subscription{Filter: "defaults/#", QoS: 2})

	dir := t.TempDir()
	p := startProc(t, dir, config.DefaultAdminAddress)
	publishQoS1(t, config.DefaultListenAddress, "thermo", "defaults/temp", "21.5")
	st := p.status()
	if st.Backlog.Messages != 1 || st.Upstream.State == "connected" || st.Upstream.URL != config.DefaultUpstreamURL {
		t.Errorf("status on defaults: backlog %d, upstream %s %s; want 1 buffered for an unanswered %s",
			st.Backlog.Messages, st.Upstream.URL, st.Upstream.State, config.DefaultUpstreamURL)
	}
	if fi, err := os.Stat(filepath.Join(dir, "holdfast-data")); err != nil || !fi.IsDir() {
		t.Errorf("no ./holdfast-data in the working directory: %v", err)
	}
	if code, _ := p.term(); code != 0 {
		t.Fatalf("SIGTERM exit code %d, want 0", code)
	}

	p = startProc(t, dir, config.DefaultAdminAddress, "--upstream", up.URL())
	got := expectUpstream(t, sub, "defaults/temp", "21.5")
	if got.QoS != 1 {
		t.Errorf("forwarded at QoS %d, want 1", got.QoS)
	}
	wantID := config.DefaultClientIDPrefix + config.Hostname()
	if !strings.Contains(up.Log(), " as "+wantID) {
		t.Errorf("upstream never saw client id %q; broker log:\n%s", wantID, up.Log())
	}
	testenv.WaitFor(t, 10*time.Second, "backlog drained", func() bool { return p.status().Backlog.Messages == 0 })
	if code, _ := p.term(); code != 0 {
		t.Fatalf("SIGTERM exit code %d, want 0", code)
	}
}

// TestOverrideFlags: --listen, --data-dir, --upstream and --client-id take
// precedence over the config file: the file's own listener, queue directory,
// upstream and client id are not used. The file only moves the admin
// endpoint to a free port, which no flag does.
func TestOverrideFlags(t *testing.T) {
	up := testenv.StartMosquitto(t, testenv.MosquittoOptions{})
	sub := subscriber(t, up.Addr(), "flags-sub", packet.Subscription{Filter: "flags/#", QoS: 2})

	dir := t.TempDir()
	fileListen := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	fileUpstream := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	admin := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	cfg := filepath.Join(dir, "holdfast.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`listeners:
  - address: %s
upstream:
  url: mqtt://%s
  client_id: from-the-file
queue:
  dir: %s
admin:
  address: %s
`, fileListen, fileUpstream, filepath.Join(dir, "file-data"), admin)), 0o600)

	listen := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	data := filepath.Join(dir, "flag-data")
	p := startProc(t, dir, admin, "run", "--config", cfg,
		"--listen", listen, "--data-dir", data, "--upstream", up.URL(), "--client-id", "gw-from-flag")

	publishQoS1(t, listen, "meter", "flags/energy", "42")
	expectUpstream(t, sub, "flags/energy", "42")
	if !strings.Contains(up.Log(), " as gw-from-flag") || strings.Contains(up.Log(), "from-the-file") {
		t.Errorf("upstream client id is not the --client-id one; broker log:\n%s", up.Log())
	}
	if st := p.status(); st.Upstream.URL != up.URL() {
		t.Errorf("status upstream URL %q, want %q", st.Upstream.URL, up.URL())
	}
	if c, err := net.DialTimeout("tcp", fileListen, time.Second); err == nil {
		c.Close()
		t.Errorf("the file's listener %s accepts connections despite --listen", fileListen)
	}
	if _, err := os.Stat(data); err != nil {
		t.Errorf("--data-dir %s not used: %v", data, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "file-data")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the file's queue.dir was created despite --data-dir: %v", err)
	}
	if code, _ := p.term(); code != 0 {
		t.Fatalf("SIGTERM exit code %d, want 0", code)
	}
}

// TestForwardRules: several forward rules, first match wins. A telemetry rule
// strips the device's own prefix, builds the upstream topic from
// {gateway_id} and {client_id}, caps QoS at 1 and clears retain; an alarm
// rule raises QoS to 2 and keeps retain; a metrics rule sends at QoS 0.
// Topics no rule selects stay local: a local subscriber gets them, the
// upstream never does, and /api/status counts them as local_only.
func TestForwardRules(t *testing.T) {
	up := testenv.StartMosquitto(t, testenv.MosquittoOptions{})
	sub := subscriber(t, up.Addr(), "rules-sub", packet.Subscription{Filter: "#", QoS: 2, RetainAsPublished: true})
	g := newGateway(t, up.Addr(), `gateway_id: gw7
forward:
  - filter: "devices/+/telemetry/#"
    strip_prefix: "devices/{client_id}/"
    topic: "site/{gateway_id}/{client_id}/{topic}"
    retain: false
    max_qos: 1
  - filter: "alarms/#"
    min_qos: 2
  - filter: "metrics/#"
    min_qos: 0
    max_qos: 0
`)
	g.start()
	local, err := testclient.Dial(g.listen, testclient.Options{ClientID: "display", CleanStart: true})
	if err != nil {
		t.Fatal(err)
	}
	defer local.Close()
	if _, err := local.Subscribe(packet.Subscription{Filter: "local/#", QoS: 1}); err != nil {
		t.Fatal(err)
	}

	dev, err := testclient.Dial(g.listen, testclient.Options{ClientID: "sensor9", CleanStart: true})
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Disconnect()
	type want struct {
		topic  string
		qos    byte
		retain bool
	}
	for _, c := range []struct {
		topic   string
		qos     byte
		retain  bool
		payload string
		want    *want // nil: stays local
	}{
		{"devices/sensor9/telemetry/temp", 2, true, "t1", &want{"site/gw7/sensor9/telemetry/temp", 1, false}},
		// Another device's prefix is not stripped: {client_id} is the publisher's.
		{"devices/other/telemetry/hum", 1, false, "h1", &want{"site/gw7/sensor9/devices/other/telemetry/hum", 1, false}},
		{"alarms/door", 0, true, "open", &want{"alarms/door", 2, true}},
		{"metrics/cpu", 1, false, "55", &want{"metrics/cpu", 0, false}},
		{"local/display", 1, false, "hello", nil},
		{"devices/sensor9/config", 1, true, "cfg", nil},
		{"alarms/end", 1, false, "end", &want{"alarms/end", 2, false}},
	} {
		rc, err := dev.Publish(&packet.Publish{Topic: c.topic, QoS: c.qos, Retain: c.retain, Payload: []byte(c.payload)})
		if err != nil || rc.IsError() {
			t.Fatalf("publish %s: %v %v", c.topic, rc, err)
		}
		if c.want == nil {
			continue
		}
		p, err := sub.Receive(20 * time.Second)
		if err != nil {
			t.Fatalf("upstream waiting for %s: %v", c.want.topic, err)
		}
		if p.Topic != c.want.topic || string(p.Payload) != c.payload || p.QoS != c.want.qos || p.Retain != c.want.retain {
			t.Errorf("local %s (QoS %d retain %v) arrived upstream as %s %q QoS %d retain %v; want %s QoS %d retain %v",
				c.topic, c.qos, c.retain, p.Topic, p.Payload, p.QoS, p.Retain, c.want.topic, c.want.qos, c.want.retain)
		}
	}
	// Everything forwarded after the local-only messages has arrived; any
	// leak would have come before it, and nothing more may come.
	if p, err := sub.Receive(time.Second); err == nil {
		t.Errorf("upstream received unexpected %s %q", p.Topic, p.Payload)
	}
	if p, err := local.Receive(10 * time.Second); err != nil || p.Topic != "local/display" {
		t.Errorf("local subscriber: %v, %v; want local/display", p, err)
	}
	st, err := g.status()
	if err != nil {
		t.Fatal(err)
	}
	if st.LocalOnly != 2 {
		t.Errorf("status local_only = %d, want 2", st.LocalOnly)
	}

	// The broker kept only what was forwarded with retain.
	late := subscriber(t, up.Addr(), "rules-late", packet.Subscription{Filter: "#", QoS: 2})
	var retained []string
	for {
		p, err := late.Receive(time.Second)
		if err != nil {
			break
		}
		retained = append(retained, p.Topic)
	}
	if len(retained) != 1 || retained[0] != "alarms/door" {
		t.Errorf("retained upstream: %q, want only alarms/door", retained)
	}
}

// TestStatusFields: with a five-message queue under drop_oldest and the
// upstream down, a steady publisher makes /api/status report the backlog
// (messages, bytes, oldest age), a non-zero ingest rate and evictions; once
// the upstream is up, a non-zero drain rate; after the drain, an empty
// backlog. `holdfast status` shows the same. Every acknowledged message is
// delivered upstream or counted as evicted (an in-flight one may be both).
//
// Rates are sampled every 5 s by the agent, so this test takes about 15 s.
func TestStatusFields(t *testing.T) {
	up := offlineUpstream(t)
	g := newGateway(t, up.Addr(), "")
	setConfig(t, g, "queue:\n", "queue:\n  max_messages: 5\n  policy: drop_oldest\n")
	g.start()

	d := &device{id: "status", addr: g.listen, version: packet.V5}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			if !d.publish(i, 1, stop) {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		<-done
	}()

	human := func() string { return hf(t, "status", "--config", g.config) }
	var st agent.Status
	testenv.WaitFor(t, 20*time.Second, "ingest rate and evictions reported", func() bool {
		st, _ = g.status()
		return st.Rates.IngestPerSecond > 0 && st.Drops["evicted"] > 0 && st.Backlog.Messages == 5
	})
	// Each record holds at least its topic and payload.
	if min := uint64(5 * len("e2e/status/q1x")); st.Backlog.Bytes < min || st.Backlog.Bytes > 64<<10 {
		t.Errorf("backlog bytes %d for 5 small messages", st.Backlog.Bytes)
	}
	if st.Backlog.OldestAgeSeconds <= 0 {
		t.Errorf("oldest age %v with 5 messages queued", st.Backlog.OldestAgeSeconds)
	}
	for _, reason := range []string{"evicted", "expired", "dead_lettered", "corrupt", "refused_full", "refused_disk"} {
		if _, ok := st.Drops[reason]; !ok {
			t.Errorf("drops has no %q: %v", reason, st.Drops)
		}
	}
	out := human()
	for _, re := range []string{
		`backlog:   5 messages, [0-9.]+ (B|KiB), oldest [0-9.]+m?s`,
		`rates:     [0-9]*[1-9][0-9]*\.[0-9]/s in, `,
		`dropped:   [1-9][0-9]*  evicted=[1-9][0-9]*\n`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("holdfast status does not match %q:\n%s", re, out)
		}
	}

	up.Start()
	testenv.WaitFor(t, 20*time.Second, "drain rate reported", func() bool {
		st, _ = g.status()
		return st.Rates.DrainPerSecond > 0
	})
	if out := human(); !regexp.MustCompile(`/s in, [0-9]*[1-9][0-9]*\.[0-9]/s out`).MatchString(out) {
		t.Errorf("holdfast status shows no drain rate:\n%s", out)
	}
	close(stop)
	<-done
	if d.c != nil {
		d.c.Disconnect()
	}
	g.waitDrained(30 * time.Second)
	st, _ = g.status()
	if st.Backlog.Messages != 0 || st.Backlog.Bytes != 0 || st.Backlog.OldestAgeSeconds != 0 {
		t.Errorf("drained backlog: %+v", st.Backlog)
	}
	if out := human(); !strings.Contains(out, "backlog:   0 messages, 0 B\n") {
		t.Errorf("holdfast status after the drain:\n%s", out)
	}
	got := collect(t, up.Addr())["e2e/status/q1"]
	delivered := map[int]bool{}
	for _, n := range got {
		delivered[n] = true
	}
	// A record evicted while in flight upstream may still arrive there
	// (queue.DropOldest leaves it with the uplink), so it can be both
	// delivered and counted as evicted: what was acknowledged is at most
	// what was delivered and evicted.
	if evicted := st.Drops["evicted"]; uint64(len(delivered))+evicted < uint64(len(d.acked)) {
		t.Errorf("%d acknowledged, only %d delivered + %d evicted", len(d.acked), len(delivered), evicted)
	}
	t.Logf("%d acknowledged, %d delivered, %d evicted", len(d.acked), len(delivered), st.Drops["evicted"])
}

// TestAddressInUse: when the MQTT listener's or the admin endpoint's address
// is taken, holdfast does not hang: it exits with code 1 and one error line
// naming the part, the address and the problem.
func TestAddressInUse(t *testing.T) {
	for _, part := range []string{"listeners[0]", "admin"} {
		t.Run(part, func(t *testing.T) {
			g := newGateway(t, fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)), "")
			addr := g.listen
			if part == "admin" {
				addr = g.admin
			}
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			cmd := exec.Command(binPath, "run", "--config", g.config)
			var stderr testenv.LockedBuffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			select {
			case err = <-exited:
			case <-time.After(30 * time.Second):
				cmd.Process.Kill()
				<-exited
				t.Fatalf("holdfast still running 30s after start with %s taken:\n%s", addr, stderr.String())
			}
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 {
				t.Fatalf("exit %v, want code 1; stderr:\n%s", err, stderr.String())
			}
			var errLines []string
			for _, l := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
				if strings.HasPrefix(l, "holdfast: ") {
					errLines = append(errLines, l)
				}
			}
			if len(errLines) != 1 || !strings.Contains(errLines[0], part+": ") ||
				!strings.Contains(errLines[0], addr) || !strings.Contains(errLines[0], "address already in use") {
				t.Errorf("want one error line naming %s, %s and the problem; stderr:\n%s", part, addr, stderr.String())
			}
		})
	}
}

// TestSIGTERMUnderLoad: SIGTERM while four devices (QoS 1 and 2, MQTT 5 and
// 3.1.1) publish as fast as they are acknowledged stops holdfast with exit
// code 0 before systemd's stop timeout (TimeoutStopSec=30s in the unit,
// after which gateway.stop fails the test and kills it); started again, it
// delivers every message it had acknowledged, QoS 2 exactly once.
func TestSIGTERMUnderLoad(t *testing.T) {
	up := offlineUpstream(t)
	g := newGateway(t, up.Addr(), "")
	g.start()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var devs []*device
	for _, qos := range []byte{1, 2} {
		for _, v := range []packet.Version{packet.V5, packet.V311} {
			d := &device{id: fmt.Sprintf("term%d-%s", qos, v), addr: g.listen, version: v}
			devs = append(devs, d)
			wg.Add(1)
			go func(qos byte) {
				defer wg.Done()
				for i := 0; d.publish(i, qos, stop); i++ {
				}
			}(qos)
		}
	}
	testenv.WaitFor(t, 20*time.Second, "traffic flowing", func() bool {
		st, err := g.status()
		return err == nil && st.Backlog.Messages >= 200
	})
	start := time.Now()
	code := g.term()
	took := time.Since(start)
	close(stop)
	wg.Wait()
	t.Logf("SIGTERM under load: exit %d after %v", code, took)
	if code != 0 {
		t.Errorf("SIGTERM exit code %d, want 0", code)
	}

	g.start()
	up.Start()
	g.waitDrained(60 * time.Second)
	got := collect(t, up.Addr())
	for _, d := range devs {
		qos := byte(1)
		if strings.HasPrefix(d.id, "term2") {
			qos = 2
		}
		topic := fmt.Sprintf("e2e/%s/q%d", d.id, qos)
		if len(d.acked) == 0 {
			t.Errorf("%s: nothing acknowledged", d.id)
		}
		checkDelivery(t, topic, d.acked, got[topic], qos == 2)
	}
}
