package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"holdfast/agent"
	"holdfast/internal/faultproxy"
	"holdfast/internal/packet"
	"holdfast/internal/testclient"
	"holdfast/internal/testenv"
)

// binPath is the holdfast binary built once for every end-to-end test.
var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "holdfast-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "holdfast")
	// Tests run the binary with the race detector; benchmarks measure it
	// as it ships.
	flag.Parse()
	buildArgs := []string{"build", "-race", "-o", binPath, "."}
	if f := flag.Lookup("test.bench"); f != nil && f.Value.String() != "" {
		buildArgs = []string{"build", "-o", binPath, "."}
	}
	build := exec.Command("go", buildArgs...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building holdfast:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// gateway is one holdfast configuration under test, restartable.
type gateway struct {
	t         testing.TB
	dir       string
	config    string
	listen    string
	admin     string
	upstream  string
	log       testenv.LockedBuffer
	cmd       *exec.Cmd
	done      chan struct{}
	exitState *os.ProcessState
}

// newGateway writes a configuration listening on free ports with its queue in
// a temp dir, forwarding to upstream (a host:port that may not answer).
func newGateway(t testing.TB, upstream string, extra string) *gateway {
	g := &gateway{
		t:        t,
		dir:      t.TempDir(),
		listen:   fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)),
		admin:    fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)),
		upstream: upstream,
	}
	g.config = filepath.Join(g.dir, "holdfast.yaml")
	cfg := fmt.Sprintf(`listeners:
  - address: %s
upstream:
  url: mqtt://%s
  client_id: holdfast-e2e
  stall_timeout: 5s
  backoff:
    initial: 50ms
    max: 500ms
queue:
  dir: %s
admin:
  address: %s
log:
  level: debug
%s`, g.listen, upstream, filepath.Join(g.dir, "data"), g.admin, extra)
	if err := os.WriteFile(g.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		g.kill()
		if t.Failed() {
			t.Logf("holdfast log (last 8 KiB):\n%s", tail(g.log.String(), 8<<10))
		}
	})
	return g
}

// setConfig replaces the first old with new in the configuration file
// newGateway wrote, before the gateway starts: for keys of a section that
// newGateway already writes (upstream, queue, log).
func setConfig(t testing.TB, g *gateway, old, new string) {
	t.Helper()
	b, err := os.ReadFile(g.config)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		t.Fatalf("no %q in the gateway's configuration", old)
	}
	if err := os.WriteFile(g.config, []byte(strings.Replace(string(b), old, new, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// start runs the binary and waits until /readyz answers.
func (g *gateway) start() {
	g.t.Helper()
	if g.cmd != nil {
		g.t.Fatal("gateway already running")
	}
	fmt.Fprintf(&g.log, "=== start %s\n", time.Now().Format(time.StampMilli))
	cmd := exec.Command(binPath, "run", "--config", g.config)
	cmd.Stdout, cmd.Stderr = &g.log, &g.log
	if err := cmd.Start(); err != nil {
		g.t.Fatal(err)
	}
	g.cmd, g.done = cmd, make(chan struct{})
	go func(done chan struct{}) { cmd.Wait(); g.exitState = cmd.ProcessState; close(done) }(g.done)
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + g.admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-g.done:
			g.t.Fatalf("holdfast exited at start: %v", g.exitState)
		default:
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("holdfast not ready after 20s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill stops the process with SIGKILL, as a power cut would.
func (g *gateway) kill() { g.stop(syscall.SIGKILL) }

// term stops the process with SIGTERM and returns its exit code.
func (g *gateway) term() int {
	g.stop(syscall.SIGTERM)
	if g.exitState == nil {
		return -1
	}
	return g.exitState.ExitCode()
}

func (g *gateway) stop(sig syscall.Signal) {
	if g.cmd == nil {
		return
	}
	g.cmd.Process.Signal(sig)
	select {
	case <-g.done:
	case <-time.After(30 * time.Second):
		g.t.Errorf("holdfast did not stop within 30s of %v", sig)
		g.cmd.Process.Kill()
		<-g.done
	}
	fmt.Fprintf(&g.log, "=== stopped by %v: %v\n", sig, g.exitState)
	g.cmd = nil
}

func (g *gateway) status() (agent.Status, error) {
	var st agent.Status
	resp, err := http.Get("http://" + g.admin + "/api/status")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(b, &st)
}

// waitDrained waits until the backlog is empty and nothing is in flight.
func (g *gateway) waitDrained(timeout time.Duration) {
	g.t.Helper()
	var last agent.Status
	deadline := time.Now().Add(timeout)
	for {
		st, err := g.status()
		if err == nil && st.Backlog.Messages == 0 && st.Upstream.InFlight == 0 {
			return
		}
		if err == nil {
			last = st
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("backlog not drained upstream after %v: last status %+v (%v)", timeout, last, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// device is a local publisher with a persistent session that resends what
// holdfast did not acknowledge, as real devices do.
type device struct {
	id      string
	addr    string
	version packet.Version
	c       *testclient.Client
	acked   []int        // message numbers holdfast acknowledged
	nAcked  atomic.Int64 // len(acked), for other goroutines
}

// ack records that holdfast acknowledged message n.
func (d *device) ack(n int) {
	d.acked = append(d.acked, n)
	d.nAcked.Add(1)
}

func (d *device) connect() error {
	c, err := testclient.Dial(d.addr, testclient.Options{
		ClientID: d.id, Version: d.version, SessionExpiry: 3600, Timeout: 5 * time.Second,
	})
	if err != nil {
		return err
	}
	d.c = c
	return nil
}

// publish sends message n at qos until holdfast acknowledges it, reconnecting
// and resending (DUP, same packet id) after a lost connection, until stop is
// closed. It reports whether n was acknowledged.
func (d *device) publish(n int, qos byte, stop <-chan struct{}) bool {
	p := &packet.Publish{
		Topic: fmt.Sprintf("e2e/%s/q%d", d.id, qos), QoS: qos,
		Payload: []byte(strconv.Itoa(n)),
	}
	release := false // PUBREC came: only PUBREL may follow, never the PUBLISH again
	for {
		select {
		case <-stop:
			return release
		default:
		}
		if d.c == nil {
			if err := d.connect(); err != nil {
				time.Sleep(20 * time.Millisecond)
				continue
			}
		}
		var rc packet.ReasonCode
		var err error
		if release {
			err = d.c.Release(p.PacketID)
		} else {
			rc, err = d.c.Publish(p)
		}
		var re *testclient.ReleaseError
		if errors.As(err, &re) || (err == nil && p.QoS == 2 && !rc.IsError()) {
			if !release {
				// holdfast answered PUBREC: it has the message.
				d.ack(n)
			}
			release = true
		}
		if err == nil && release {
			return true
		}
		if err == nil && !rc.IsError() {
			d.ack(n)
			return true
		}
		if err == nil {
			// Refused (quota): the device keeps the message and tries again.
			time.Sleep(20 * time.Millisecond)
			continue
		}
		d.c.Close()
		d.c = nil
		p.Dup = true // the resend keeps its packet id
	}
}

// upstreamSubscriber holds a persistent QoS 2 session on the upstream broker
// for e2e/#, so that messages forwarded while it is offline are kept for it.
func upstreamSubscriber(t *testing.T, addr string) {
	t.Helper()
	c, err := testclient.Dial(addr, testclient.Options{ClientID: "e2e-sub", SessionExpiry: 3600})
	if err != nil {
		t.Fatalf("subscriber connect: %v", err)
	}
	if _, err := c.Subscribe(packet.Subscription{Filter: "e2e/#", QoS: 2}); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	c.Disconnect()
}

// offlineUpstream starts a persistent mosquitto, registers the e2e/#
// subscriber (upstreamSubscriber) and stops the broker again: the upstream
// of a gateway that buffers until up.Start.
func offlineUpstream(t *testing.T) *testenv.Mosquitto {
	t.Helper()
	up := testenv.StartMosquitto(t, testenv.MosquittoOptions{Persistent: true})
	upstreamSubscriber(t, up.Addr())
	up.Stop()
	return up
}

// collect reconnects the upstream subscriber and returns, per topic, the
// payloads received in order. Called once holdfast has drained: an end
// marker published to the broker then is queued for the subscriber after
// everything holdfast sent, so reading stops at it and a late duplicate
// cannot slip past unseen.
func collect(t *testing.T, addr string) map[string][]int {
	t.Helper()
	const end = "e2e/end"
	pub, err := testclient.Dial(addr, testclient.Options{ClientID: "e2e-end", CleanStart: true})
	if err != nil {
		t.Fatalf("end marker: %v", err)
	}
	if rc, err := pub.Publish(&packet.Publish{Topic: end, Payload: []byte("end"), QoS: 1}); err != nil || rc != packet.Success {
		t.Fatalf("end marker: %v %v", rc, err)
	}
	pub.Disconnect()
	c, err := testclient.Dial(addr, testclient.Options{ClientID: "e2e-sub", SessionExpiry: 3600})
	if err != nil {
		t.Fatalf("subscriber reconnect: %v", err)
	}
	defer c.Disconnect()
	got := map[string][]int{}
	for {
		p, err := c.Receive(30 * time.Second)
		if err != nil {
			t.Fatalf("subscriber receive (end marker not reached): %v", err)
		}
		if p.Topic == end {
			return got
		}
		n, err := strconv.Atoi(string(p.Payload))
		if err != nil {
			t.Fatalf("unexpected payload %q on %s", p.Payload, p.Topic)
		}
		got[p.Topic] = append(got[p.Topic], n)
	}
}

// checkDelivery asserts that every acknowledged message arrived, in order of
// first arrival, and for exactlyOnce without duplicates.
func checkDelivery(t *testing.T, topic string, acked []int, got []int, exactlyOnce bool) {
	t.Helper()
	seen := map[int]int{}
	last := -1
	for _, n := range got {
		seen[n]++
		if seen[n] == 1 {
			if n < last {
				t.Errorf("%s: %d arrived after %d (out of order)", topic, n, last)
			}
			last = n
		}
	}
	for _, n := range acked {
		if seen[n] == 0 {
			t.Errorf("%s: message %d was acknowledged by holdfast but never arrived upstream", topic, n)
		}
	}
	if exactlyOnce {
		for n, k := range seen {
			if k > 1 {
				t.Errorf("%s: QoS 2 message %d arrived %d times", topic, n, k)
			}
		}
	}
}

// TestBadConfigAndFlagsExit2: bad configuration, bad files and bad flags
// exit with code 2 before anything starts, every problem on its own line
// of standard error starting with "holdfast: " and naming the key (and
// line) or the flag, and nothing more: no knock-on errors.
func TestBadConfigAndFlagsExit2(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	data := filepath.Join(dir, "data")
	bad := write("bad.yaml", "upstream:\n  url: tcp://example:1883\n")
	nofile := write("nofile.yaml", "auth:\n  password_file: /nonexistent/passwd\n")
	unknown := write("unknown.yaml", "queue:\n  dir: x\n  colour: blue\n")
	junk := write("junk-passwd", "not a password line\n")
	badFiles := write("bad-files.yaml", "queue:\n  dir: "+data+"\nauth:\n  password_file: "+junk+"\n  acl_file: "+write("acl", "topic sideways #\n")+"\n")
	emptyPass := write("empty-pass.yaml", "queue:\n  dir: "+data+"\nupstream:\n  password_file: "+write("pass", "")+"\n")
	several := write("several.yaml", "upstream:\n  inflight: 0\n  url: ftp://x\nqueue:\n  dir: "+data+"\n  policy: drop_newest\nlog:\n  colour: blue\n")
	for _, tc := range []struct {
		args []string
		want []string // what each line of stderr contains, in order
	}{
		{[]string{"run", "--config", bad}, []string{"line 2: upstream.url"}},
		{[]string{"--config", unknown}, []string{"line 3: queue.colour: unknown key"}},
		{[]string{"config", "check", "--config", bad}, []string{"line 2"}},
		{[]string{"--nope"}, []string{"-nope"}},
		{[]string{"run", "--config", nofile}, []string{"auth.password_file"}},
		{[]string{"config", "check", "--config", nofile}, []string{"auth.password_file"}},
		{[]string{"run", "--config", badFiles}, []string{"line 4: auth.password_file: " + junk + ":1: ", "line 5: auth.acl_file: "}},
		{[]string{"config", "check", "--config", emptyPass}, []string{"line 4: upstream.password_file: " + filepath.Join(dir, "pass") + ": empty: the file holds no password"}},
		{[]string{"frobnicate"}, []string{`unknown command "frobnicate"`}},
		{[]string{"run", "--upstream", "ftp://x"}, []string{"config: --upstream: "}},
		{[]string{"--config", filepath.Join(dir, "missing.yaml")}, []string{"missing.yaml"}},
		{[]string{"run", "--listen", "nohostport", "--data-dir", data}, []string{`config: --listen: invalid address "nohostport"`}},
		{[]string{"run", "--config", several}, []string{
			"line 8: log.colour: unknown key",
		}},
		{[]string{"run", "--data-dir", ""}, []string{"--data-dir: empty value"}},
		{[]string{"run", "--client-id="}, []string{"--client-id: empty value"}},
		{[]string{"queue", "stats", "--config", ""}, []string{"--config: empty value"}},
		// A flag the command does not use is a mistake, not ignored.
		{[]string{"queue", "peek", "--dead-letters", "--data-dir", data}, []string{"queue peek: --dead-letters is for queue export"}},
		{[]string{"queue", "export", "-n", "5", "--data-dir", data}, []string{"queue export: -n is for queue peek"}},
		{[]string{"queue", "stats", "-n", "5", "--data-dir", data}, []string{"queue stats: -n is for queue peek"}},
		{[]string{"queue", "stats", "--dead-letters", "--data-dir", data}, []string{"queue stats: --dead-letters is for queue export"}},
		{[]string{"queue", "export", "--admin", "127.0.0.1:9", "--data-dir", data}, []string{"queue export: --admin is for queue stats and queue peek"}},
		{[]string{"status", "--config", bad, "--admin", "127.0.0.1:9"}, []string{"status: --admin and --config: give one"}},
		{[]string{"service", "start", "--config", bad}, []string{"service start: --config applies to service install only"}},
		{[]string{"service", "status", "--config", bad}, []string{"service status: --config applies to service install only"}},
		{[]string{"version", "extra"}, []string{`version: unexpected argument "extra"`}},
		{[]string{"help", "me"}, []string{`help: unexpected argument "me"`}},
	} {
		cmd := exec.Command(binPath, tc.args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Errorf("holdfast %v: exit %v, want 2 (stderr %q)", tc.args, err, stderr.String())
			continue
		}
		lines := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n")
		if len(lines) != len(tc.want) {
			t.Errorf("holdfast %v: %d lines, want %d:\n%s", tc.args, len(lines), len(tc.want), stderr.String())
			continue
		}
		for i, l := range lines {
			if !strings.HasPrefix(l, "holdfast: ") || !strings.Contains(l, tc.want[i]) {
				t.Errorf("holdfast %v: line %q, want it to start with \"holdfast: \" and contain %q", tc.args, l, tc.want[i])
			}
		}
	}
	// The file problems were found before the queue was opened.
	if _, err := os.Stat(data); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the queue directory was created before the configuration was refused: %v", err)
	}
}

// TestSeveralProblemsOneLineEach: a file with several problems gets one
// line for each, in file order, each naming its key and line, and none
// about what the problems imply.
func TestSeveralProblemsOneLineEach(t *testing.T) {
	p := filepath.Join(t.TempDir(), "several.yaml")
	os.WriteFile(p, []byte("upstream:\n  inflight: 0\n  url: ftp://x\nlisteners:\n  - address: lan\nqueue:\n  policy: drop_newest\n"), 0o600)
	_, stderr := hfFail(t, 2, "config", "check", "--config", p)
	want := []string{
		"holdfast: config: " + p + ": line 2: upstream.inflight: 0: must be between 1 and 65535",
		"holdfast: config: " + p + `: line 3: upstream.url: unsupported scheme "ftp" (use mqtt, mqtts, ws or wss)`,
		"holdfast: config: " + p + `: line 5: listeners[0].address: invalid address "lan": want host:port`,
		"holdfast: config: " + p + `: line 7: queue.policy: unknown policy "drop_newest" (use drop_oldest or reject_new)`,
	}
	if got := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("stderr:\n%s\nwant:\n%s", stderr, strings.Join(want, "\n"))
	}
}

// TestFlagsFixABadFile: a flag replaces a bad value of the file instead of
// failing on it.
func TestFlagsFixABadFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "holdfast.yaml")
	os.WriteFile(p, []byte("listeners:\n  - address: 0.0.0.0:1883\nupstream:\n  url: tcp://old\n"), 0o600)
	hfFail(t, 2, "config", "check", "--config", p)
	listen := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	out := hf(t, "config", "check", "--config", p, "--listen", listen, "--upstream", "mqtt://new.example:1883")
	if !strings.Contains(out, "upstream: mqtt://new.example:1883") || !strings.Contains(out, "listeners[0]: tcp "+listen+" (anonymous true)") {
		t.Errorf("config check with the flags:\n%s", out)
	}
}

// TestHelp: -h, --help and help print the usage on standard output and
// exit 0, for the agent and for every command.
func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"--help"}, {"help"}, {"run", "-h"}, {"status", "--help"}, {"queue", "peek", "-h"}, {"queue", "-h"}, {"config", "check", "-h"}} {
		cmd := exec.Command(binPath, args...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil || stderr.Len() != 0 || !strings.HasPrefix(stdout.String(), "holdfast: offline-first") || !strings.Contains(stdout.String(), "Usage:") {
			t.Errorf("holdfast %v: %v, stdout %q, stderr %q; want the usage and exit 0", args, err, stdout.String(), stderr.String())
		}
	}
}

func TestVersionAndConfigCheck(t *testing.T) {
	out, err := exec.Command(binPath, "version").Output()
	if err != nil || !strings.HasPrefix(string(out), "holdfast ") {
		t.Fatalf("version: %q, %v", out, err)
	}
	out, err = exec.Command(binPath, "config", "check").Output()
	if err != nil || !strings.Contains(string(out), "built-in defaults: ok") ||
		!strings.Contains(string(out), "mqtt://127.0.0.1:1884") {
		t.Fatalf("config check on defaults: %q, %v", out, err)
	}
	example := filepath.Join("..", "..", "packaging", "holdfast.yaml")
	out, err = exec.Command(binPath, "config", "check", "--config", example).CombinedOutput()
	if err != nil {
		t.Fatalf("config check of the shipped example: %q, %v", out, err)
	}
}

// TestOutage: devices publish QoS 0, 1 and 2 while the upstream is down;
// holdfast is restarted; the upstream comes up; every message arrives, QoS 2
// exactly once, in order per topic.
func TestOutage(t *testing.T) {
	up := offlineUpstream(t)

	g := newGateway(t, up.Addr(), "")
	g.start()
	const n = 200
	devs := map[byte]*device{}
	for _, qos := range []byte{0, 1, 2} {
		d := &device{id: fmt.Sprintf("dev%d", qos), addr: g.listen, version: packet.V5}
		if qos == 0 {
			d.version = packet.V311
		}
		devs[qos] = d
		for i := 0; i < n; i++ {
			if !d.publish(i, qos, nil) {
				t.Fatalf("publish %d at QoS %d failed", i, qos)
			}
		}
	}
	// QoS 0 has no ack: wait until all three topics are stored.
	testenv.WaitFor(t, 10*time.Second, "600 messages queued", func() bool {
		st, err := g.status()
		return err == nil && st.Backlog.Messages == 3*n
	})
	if code := g.term(); code != 0 {
		t.Fatalf("SIGTERM exit code %d, want 0", code)
	}
	g.start()
	up.Start()
	g.waitDrained(60 * time.Second)
	got := collect(t, up.Addr())
	for qos, d := range devs {
		topic := fmt.Sprintf("e2e/%s/q%d", d.id, qos)
		checkDelivery(t, topic, d.acked, got[topic], qos == 2)
		if len(got[topic]) < n {
			t.Errorf("%s: %d messages arrived, want %d", topic, len(got[topic]), n)
		}
	}
}

// TestCrashLoop: publishers with persistent sessions keep publishing and
// resending what was not acknowledged while holdfast is killed with SIGKILL
// twenty times, at random moments, and the upstream flaps: its connection
// is cut or reset at random and the broker restarts in about one round of
// four. Each kill lands while traffic flows: a message was acknowledged
// after the random moment, just before the kill. Nothing holdfast acknowledged may
// be missing upstream, and QoS 2 has no duplicate.
//
// The moments come from a random source seeded from the clock; the seed is
// logged, and HOLDFAST_TEST_SEED=<seed> replays the same moments.
func TestCrashLoop(t *testing.T) {
	rng := testenv.Rand(t, "kill moments")

	up := testenv.StartMosquitto(t, testenv.MosquittoOptions{Persistent: true})
	upstreamSubscriber(t, up.Addr())
	// The uplink reaches the broker through a proxy that cuts and resets
	// its connection between kills, on top of the broker's own restarts.
	proxy, err := faultproxy.Start(up.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	g := newGateway(t, proxy.Addr(), "")
	g.start()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	devs := []*device{}
	for _, qos := range []byte{1, 2} {
		for k := 0; k < 2; k++ {
			d := &device{id: fmt.Sprintf("crash%d-%d", qos, k), addr: g.listen, version: packet.V5}
			if k == 1 {
				d.version = packet.V311
			}
			devs = append(devs, d)
			wg.Add(1)
			go func(d *device, qos byte) {
				defer wg.Done()
				for i := 0; ; i++ {
					if !d.publish(i, qos, stop) {
						return
					}
				}
			}(d, qos)
		}
	}
	acked := func() int64 {
		var n int64
		for _, d := range devs {
			n += d.nAcked.Load()
		}
		return n
	}
	const rounds = 20
	var atKill int64
	for round := 0; round < rounds; round++ {
		testenv.WaitFor(t, 30*time.Second, fmt.Sprintf("round %d: messages acknowledged since the last kill", round), func() bool {
			return acked() > atKill
		})
		// A random moment of traffic, a random fault on the uplink's
		// connection, another random moment, then the plug is pulled.
		time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
		switch rng.IntN(3) {
		case 0:
			proxy.Cut()
		case 1:
			proxy.Reset()
		}
		time.Sleep(time.Duration(rng.IntN(200)) * time.Millisecond)
		// The kill lands while traffic flows: a message is acknowledged
		// after the random moment, just before the plug is pulled.
		moment := acked()
		testenv.WaitFor(t, 30*time.Second, fmt.Sprintf("round %d: a message acknowledged at the kill", round), func() bool {
			return acked() > moment
		})
		g.kill()
		atKill = acked()
		if rng.IntN(4) == 0 {
			up.Restart()
		}
		g.start()
	}
	close(stop)
	wg.Wait()
	for _, d := range devs {
		if d.c != nil {
			d.c.Disconnect()
		}
	}
	g.waitDrained(90 * time.Second)
	got := collect(t, up.Addr())
	total := 0
	for _, d := range devs {
		qos := byte(1)
		if strings.HasPrefix(d.id, "crash2") {
			qos = 2
		}
		topic := fmt.Sprintf("e2e/%s/q%d", d.id, qos)
		total += len(d.acked)
		checkDelivery(t, topic, d.acked, got[topic], qos == 2)
	}
	t.Logf("%d messages acknowledged across %d SIGKILLs", total, rounds)
}

// TestUpstreamRestart: the upstream broker restarts in the middle of a drain;
// nothing is lost. The uplink reaches the broker through a proxy that
// delays every chunk and keeps a window of 4, so that the drain of 3,000
// messages takes seconds and the restart is sure to land inside it: the
// backlog is checked to be non-empty before and after the restart.
func TestUpstreamRestart(t *testing.T) {
	up := offlineUpstream(t)
	proxy, err := faultproxy.Start(up.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	proxy.SetDelay(2 * time.Millisecond)
	g := newGateway(t, proxy.Addr(), "")
	appendUpstream(t, g, "  inflight: 4\n")
	g.start()
	d := &device{id: "restart", addr: g.listen, version: packet.V5}
	const n = 3000
	for i := 0; i < n; i++ {
		if !d.publish(i, 1, nil) {
			t.Fatalf("publish %d failed", i)
		}
	}
	up.Start()
	var before agent.Status
	testenv.WaitFor(t, 60*time.Second, "a tenth of the backlog drained", func() bool {
		st, err := g.status()
		before = st
		return err == nil && st.Upstream.Forwarded >= n/10
	})
	if before.Backlog.Messages == 0 {
		t.Fatalf("the backlog drained before the restart (%d forwarded): the restart would not be mid-drain", before.Upstream.Forwarded)
	}
	up.Restart()
	after, err := g.status()
	if err != nil {
		t.Fatal(err)
	}
	if after.Backlog.Messages == 0 {
		t.Fatalf("the backlog drained during the restart: it did not land mid-drain")
	}
	t.Logf("restart with %d forwarded and %d queued; %d queued after it", before.Upstream.Forwarded, before.Backlog.Messages, after.Backlog.Messages)
	g.waitDrained(120 * time.Second)
	got := collect(t, up.Addr())
	checkDelivery(t, "e2e/restart/q1", d.acked, got["e2e/restart/q1"], false)
}

// TestLogFile: with log.file set, holdfast appends its log lines to the
// file and writes none to standard error.
func TestLogFile(t *testing.T) {
	g := newGateway(t, fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)), "")
	file := filepath.Join(g.dir, "holdfast.log")
	if err := os.WriteFile(file, []byte("an earlier line\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	setConfig(t, g, "\nlog:\n", "\nlog:\n  file: "+file+"\n")
	g.start()
	if code := g.term(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	logged, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(logged), "an earlier line\n") || !strings.Contains(string(logged), "level=INFO") {
		t.Errorf("log file does not hold the earlier line and then holdfast's lines:\n%s", logged)
	}
	if strings.Contains(g.log.String(), "level=") {
		t.Errorf("log lines on standard error too:\n%s", g.log.String())
	}
}
