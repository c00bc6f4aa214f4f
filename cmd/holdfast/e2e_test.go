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
	testenv.WaitFor(g.t, timeout, "backlog drained upstream", func() bool {
		st, err := g.status()
		last = st
		return err == nil && st.Backlog.Messages == 0 && st.Upstream.InFlight == 0
	})
	_ = last
}

// device is a local publisher with a persistent session that resends what
// holdfast did not acknowledge, as real devices do.
type device struct {
	id      string
	addr    string
	version packet.Version
	c       *testclient.Client
	acked   []int // message numbers holdfast acknowledged
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
				d.acked = append(d.acked, n)
			}
			release = true
		}
		if err == nil && release {
			return true
		}
		if err == nil && !rc.IsError() {
			d.acked = append(d.acked, n)
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

// collect reconnects the upstream subscriber and returns, per topic, the
// payloads received in order, reading until the broker is quiet.
func collect(t *testing.T, addr string) map[string][]int {
	t.Helper()
	c, err := testclient.Dial(addr, testclient.Options{ClientID: "e2e-sub", SessionExpiry: 3600})
	if err != nil {
		t.Fatalf("subscriber reconnect: %v", err)
	}
	defer c.Disconnect()
	got := map[string][]int{}
	for {
		p, err := c.Receive(2 * time.Second)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return got
			}
			t.Fatalf("subscriber receive: %v", err)
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

func TestBadConfigAndFlagsExit2(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("upstream:\n  url: tcp://example:1883\n"), 0o600)
	nofile := filepath.Join(dir, "nofile.yaml")
	os.WriteFile(nofile, []byte("auth:\n  password_file: /nonexistent/passwd\n"), 0o600)
	unknown := filepath.Join(dir, "unknown.yaml")
	os.WriteFile(unknown, []byte("queue:\n  dir: x\n  colour: blue\n"), 0o600)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "--config", bad}, "upstream.url"},
		{[]string{"--config", unknown}, "queue.colour"},
		{[]string{"config", "check", "--config", bad}, "line 2"},
		{[]string{"--nope"}, "-nope"},
		{[]string{"run", "--config", nofile}, "auth.password_file"},
		{[]string{"config", "check", "--config", nofile}, "auth.password_file"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"run", "--upstream", "ftp://x"}, "--upstream"},
		{[]string{"--config", filepath.Join(dir, "missing.yaml")}, "missing.yaml"},
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
		lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
		if len(lines) != 1 || !strings.Contains(lines[0], tc.want) {
			t.Errorf("holdfast %v: stderr %q, want one line containing %q", tc.args, stderr.String(), tc.want)
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
	up := testenv.StartMosquitto(t, testenv.MosquittoOptions{Persistent: true})
	upstreamSubscriber(t, up.Addr())
	up.Stop()

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
// twenty times and the upstream flaps: its connection is cut or reset in
// every round and the broker restarts every fourth. Nothing holdfast
// acknowledged may be missing upstream, and QoS 2 has no duplicate.
func TestCrashLoop(t *testing.T) {
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
	const rounds = 20
	for round := 0; round < rounds; round++ {
		// Let traffic flow for a moment, drop the uplink's connection, let
		// it reconnect and resend, then pull the plug.
		time.Sleep(time.Duration(100+round*37%200) * time.Millisecond)
		if round%2 == 0 {
			proxy.Cut()
		} else {
			proxy.Reset()
		}
		time.Sleep(time.Duration(100+round*53%200) * time.Millisecond)
		g.kill()
		if round%4 == 3 {
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
	if total < rounds {
		t.Fatalf("only %d messages acknowledged over %d rounds: the test did not exercise anything", total, rounds)
	}
	t.Logf("%d messages acknowledged across %d SIGKILLs", total, rounds)
}

// TestUpstreamRestart: the upstream broker restarts in the middle of a drain;
// nothing is lost.
func TestUpstreamRestart(t *testing.T) {
	up := testenv.StartMosquitto(t, testenv.MosquittoOptions{Persistent: true})
	upstreamSubscriber(t, up.Addr())
	up.Stop()
	g := newGateway(t, up.Addr(), "")
	g.start()
	d := &device{id: "restart", addr: g.listen, version: packet.V5}
	const n = 3000
	for i := 0; i < n; i++ {
		if !d.publish(i, 1, nil) {
			t.Fatalf("publish %d failed", i)
		}
	}
	up.Start()
	testenv.WaitFor(t, 30*time.Second, "drain under way", func() bool {
		st, err := g.status()
		return err == nil && st.Upstream.Forwarded > 0
	})
	up.Restart()
	g.waitDrained(60 * time.Second)
	got := collect(t, up.Addr())
	checkDelivery(t, "e2e/restart/q1", d.acked, got["e2e/restart/q1"], false)
}
