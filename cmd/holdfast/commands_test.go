package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"holdfast/agent"
	"holdfast/internal/packet"
	"holdfast/internal/testenv"
	"holdfast/queue"
)

// hf runs the binary and returns its standard output; it fails the test on a
// non-zero exit.
func hf(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(binPath, args...).Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("holdfast %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	return string(out)
}

// hfFail runs the binary, which must exit with code; it returns standard
// output and standard error.
func hfFail(t *testing.T, code int, args ...string) (string, string) {
	t.Helper()
	stdout, stderr, got := runExit(t, exec.Command(binPath, args...))
	if got != code {
		t.Fatalf("holdfast %s: exit code %d, want %d; stderr:\n%s", strings.Join(args, " "), got, code, stderr)
	}
	return stdout, stderr
}

// runExit runs cmd and returns its standard output, standard error and
// exit code; a command that cannot be started fails the test.
func runExit(t *testing.T, cmd *exec.Cmd) (string, string, int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return stdout.String(), stderr.String(), ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), 0
}

// queuedGateway starts a gateway whose upstream does not answer and
// publishes n QoS 1 messages from device id, each acknowledged once
// queued.
func queuedGateway(t *testing.T, id string, n int) *gateway {
	t.Helper()
	g := newGateway(t, fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)), "")
	g.start()
	d := &device{id: id, addr: g.listen, version: packet.V5}
	for i := 0; i < n; i++ {
		if !d.publish(i, 1, nil) {
			t.Fatalf("publish %d", i)
		}
	}
	return g
}

// records parses JSON lines of `holdfast queue peek|export`.
func records(t *testing.T, out string) []agent.QueueRecord {
	t.Helper()
	var rs []agent.QueueRecord
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var r agent.QueueRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		rs = append(rs, r)
	}
	return rs
}

// TestStatusAndQueueCommands: while the upstream is unreachable, status,
// queue stats and queue peek report from the running agent (which holds the
// queue: the lock is recognised), and export says to stop it; once it is
// stopped, queue stats, peek and export read the queue directory itself and
// leave it as it was, records past queue.ttl included, which are shown
// flagged.
func TestStatusAndQueueCommands(t *testing.T) {
	const n = 5
	g := queuedGateway(t, "cmds", n)

	// The uplink backs off between attempts to reach the upstream, and is
	// "connecting" for the moment of each one: read the status until it
	// is taken during a backoff.
	var human string
	testenv.WaitFor(t, 30*time.Second, "status during a backoff", func() bool {
		human = hf(t, "status", "--config", g.config)
		return strings.Contains(human, "backoff")
	})
	for _, want := range []string{"backlog:   5 messages", "upstream:", "backoff", "local:     1 clients, 1 sessions"} {
		if !strings.Contains(human, want) {
			t.Errorf("holdfast status does not say %q:\n%s", want, human)
		}
	}
	var st agent.Status
	if err := json.Unmarshal([]byte(hf(t, "status", "--json", "--config", g.config)), &st); err != nil {
		t.Fatalf("status --json: %v", err)
	}
	if st.Backlog.Messages != n || st.Upstream.State == "connected" {
		t.Errorf("status --json: backlog %d, state %q; want %d, not connected", st.Backlog.Messages, st.Upstream.State, n)
	}
	liveStats := hf(t, "queue", "stats", "--config", g.config)
	if !strings.Contains(liveStats, "messages: 5\n") {
		t.Errorf("queue stats from the running agent:\n%s", liveStats)
	}
	live := records(t, hf(t, "queue", "peek", "-n", "3", "--config", g.config))
	if len(live) != 3 || string(live[0].Payload) != "0" || string(live[2].Payload) != "2" || live[0].Source != "cmds" {
		t.Errorf("queue peek -n 3 from the running agent = %+v", live)
	}
	if _, stderr := hfFail(t, 1, "queue", "export", "--config", g.config); !strings.Contains(stderr, "in use by a running holdfast: stop it to export") {
		t.Errorf("queue export while running: %q", stderr)
	}
	if st, _ := g.status(); st.Backlog.Messages != n {
		t.Errorf("backlog %d after peeking the running agent, want %d", st.Backlog.Messages, n)
	}

	if code := g.term(); code != 0 {
		t.Fatalf("SIGTERM exit code %d", code)
	}
	data := filepath.Join(g.dir, "data")
	files := dirState(t, data)
	stats := hf(t, "queue", "stats", "--config", g.config)
	if !strings.Contains(stats, "messages: 5\n") {
		t.Errorf("queue stats offline:\n%s", stats)
	}
	// The same lines from the agent and from the directory; only the age
	// of the oldest message moves on.
	ageless := func(s string) string {
		return regexp.MustCompile(`oldest_age: .*\n`).ReplaceAllString(s, "oldest_age: ...\n")
	}
	if ageless(liveStats) != ageless(stats) || !strings.Contains(stats, "\nnext_seq: ") {
		t.Errorf("queue stats from the agent:\n%s\nfrom the directory:\n%s\nwant the same lines, next_seq included", liveStats, stats)
	}
	peek := records(t, hf(t, "queue", "peek", "-n", "2", "--config", g.config))
	if len(peek) != 2 || string(peek[0].Payload) != "0" || string(peek[1].Payload) != "1" ||
		peek[0].Topic != "e2e/cmds/q1" || peek[0].QoS != 1 || peek[0].Source != "cmds" || peek[0].Expired {
		t.Errorf("queue peek -n 2 = %+v", peek)
	}
	all := records(t, hf(t, "queue", "export", "--config", g.config))
	if len(all) != n {
		t.Fatalf("queue export gave %d records, want %d", len(all), n)
	}
	for i, r := range all {
		if string(r.Payload) != fmt.Sprint(i) || (i > 0 && r.Seq <= all[i-1].Seq) {
			t.Errorf("export record %d: seq %d payload %q", i, r.Seq, r.Payload)
		}
	}
	if dl := hf(t, "queue", "export", "--dead-letters", "--config", g.config); dl != "" {
		t.Errorf("dead letters: %q, want none", dl)
	}

	// With a TTL they have all outlived, the records are shown flagged
	// and left where they are.
	ttl := filepath.Join(g.dir, "ttl.yaml")
	b, err := os.ReadFile(g.config)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ttl, bytes.Replace(b, []byte("queue:\n"), []byte("queue:\n  ttl: 1ms\n"), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"peek", "-n", "10"}, {"export"}} {
		rs := records(t, hf(t, append([]string{"queue"}, append(args, "--config", ttl)...)...))
		if len(rs) != n {
			t.Errorf("queue %v with ttl 1ms: %d records, want %d", args, len(rs), n)
		}
		for _, r := range rs {
			if !r.Expired {
				t.Errorf("queue %v with ttl 1ms: record %d not flagged expired", args, r.Seq)
			}
		}
	}
	// Reading changed nothing: not a file of the queue (name, size, mode,
	// mtime, owner), not what stats shows (but the age of the oldest
	// message).
	if out := hf(t, "queue", "stats", "--config", g.config); ageless(out) != ageless(stats) {
		t.Errorf("queue stats after peek and export:\n%s\nbefore:\n%s", out, stats)
	}
	checkDirState(t, data, files, "queue stats, peek and export")
}

// dirState describes every file under dir: size, mode, mtime and owner by
// path, to tell whether a command changed any.
func dirState(t *testing.T, dir string) map[string]string {
	t.Helper()
	st := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		owner := ""
		if s, ok := fi.Sys().(*syscall.Stat_t); ok {
			owner = fmt.Sprintf("%d:%d", s.Uid, s.Gid)
		}
		rel, _ := filepath.Rel(dir, p)
		st[rel] = fmt.Sprintf("%d %v %s %s", fi.Size(), fi.Mode(), fi.ModTime().Format(time.RFC3339Nano), owner)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// checkDirState fails the test if dir is not as before.
func checkDirState(t *testing.T, dir string, before map[string]string, what string) {
	t.Helper()
	after := dirState(t, dir)
	for p, b := range before {
		if a, ok := after[p]; !ok {
			t.Errorf("%s removed %s (was %s)", what, p, b)
		} else if a != b {
			t.Errorf("%s changed %s: %s, was %s", what, p, a, b)
		}
	}
	for p, a := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("%s added %s (%s)", what, p, a)
		}
	}
}

// TestQueueCommandsAfterACrash: a queue holdfast did not close (SIGKILL)
// cannot be read read-only. Run by the owner of its directory, queue stats
// recovers it as holdfast run would and shows what was acknowledged; run
// by another user (root, on a queue that belongs to the service user), it
// is refused with what to do, and the files are left as they are.
func TestQueueCommandsAfterACrash(t *testing.T) {
	const n = 3
	g := queuedGateway(t, "crash", n)
	g.kill()
	data := filepath.Join(g.dir, "data")

	if os.Geteuid() == 0 {
		// The queue of a service user (nobody here), read by root.
		if err := chownTree(data, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		files := dirState(t, data)
		_, stderr := hfFail(t, 1, "queue", "stats", "--config", g.config)
		want := "holdfast: queue " + data + " was not closed cleanly (holdfast crashed or was killed), and recovering it writes to it: run this as its owner: sudo -u "
		if !strings.HasPrefix(stderr, want) || !strings.Contains(stderr, " holdfast queue stats ..., or start holdfast once\n") || strings.Count(stderr, "\n") != 1 {
			t.Errorf("queue stats as root on another user's crashed queue:\n%s\nwant one line starting %q", stderr, want)
		}
		t.Logf("queue stats as root: %s", stderr)
		checkDirState(t, data, files, "the refused queue stats")
		if err := chownTree(data, os.Getuid(), os.Getgid()); err != nil {
			t.Fatal(err)
		}
	} else {
		t.Log("not root: the refusal for a crashed queue of another user is not checked")
	}

	if out := hf(t, "queue", "stats", "--config", g.config); !strings.Contains(out, fmt.Sprintf("messages: %d\n", n)) {
		t.Errorf("queue stats by the owner after a crash:\n%s", out)
	}
	// Recovered and closed cleanly: from now on read-only, changing nothing.
	files := dirState(t, data)
	if rs := records(t, hf(t, "queue", "export", "--config", g.config)); len(rs) != n {
		t.Errorf("queue export after the recovery: %d records, want %d", len(rs), n)
	}
	checkDirState(t, data, files, "queue export after the recovery")
}

// chownTree gives dir and everything under it to uid:gid.
func chownTree(dir string, uid, gid int) error {
	return filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
}

// TestQueueCommandsWithoutPermission: a user who may not read the queue
// directory gets a permission error that says whose it is; stats and peek
// first ask the running agent, which answers them.
func TestQueueCommandsWithoutPermission(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("running the binary as another user needs root: run the tests as root (CI does)")
	}
	g := queuedGateway(t, "perm", 1)
	// The binary where nobody may run it; the queue stays root's (0700).
	binDir := testenv.SharedTempDir(t, "holdfast-perm-")
	bin := filepath.Join(binDir, "holdfast")
	b, err := os.ReadFile(binPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(g.dir, "data")
	asNobody := func(args ...string) (string, string, int) {
		cmd := exec.Command(bin, args...)
		cmd.Dir = "/"
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		return runExit(t, cmd)
	}
	if out, stderr, code := asNobody("queue", "stats", "--data-dir", data, "--admin", g.admin); code != 0 || !strings.Contains(out, "messages: 1\n") {
		t.Errorf("queue stats as nobody, the agent running: exit %d\n%s%s", code, out, stderr)
	}
	if out, stderr, code := asNobody("queue", "peek", "--data-dir", data, "--admin", g.admin); code != 0 || len(records(t, out)) != 1 {
		t.Errorf("queue peek as nobody, the agent running: exit %d\n%s%s", code, out, stderr)
	}
	if code := g.term(); code != 0 {
		t.Fatalf("SIGTERM exit code %d", code)
	}
	for _, args := range [][]string{{"stats", "--admin", g.admin}, {"export"}} {
		sub := args[0]
		_, stderr, code := asNobody(append([]string{"queue"}, append(args, "--data-dir", data)...)...)
		if code != 1 || !strings.Contains(stderr, "permission denied (run this as the queue's owner or as root)") ||
			strings.Count(stderr, "\n") != 1 || (sub == "stats") != strings.Contains(stderr, "; asking a running agent failed too: ") {
			t.Errorf("queue %s as nobody, the agent stopped: exit %d\n%s", sub, code, stderr)
		}
		t.Logf("queue %s as nobody: %s", sub, stderr)
	}
}

// TestQueueCommandsWithoutAQueue: a directory that holds no queue is an
// error (exit code 1) for stats, peek and export, and is not created.
func TestQueueCommandsWithoutAQueue(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no-such-queue")
	for _, sub := range []string{"stats", "peek", "export"} {
		_, stderr := hfFail(t, 1, "queue", sub, "--data-dir", missing)
		if !strings.HasPrefix(stderr, "holdfast: queue: no queue in this directory: "+missing) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("queue %s on a missing directory: %q", sub, stderr)
		}
	}
	if _, err := os.Stat(missing); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("queue commands created %s: %v", missing, err)
	}
	empty := t.TempDir()
	if _, stderr := hfFail(t, 1, "queue", "stats", "--data-dir", empty); !strings.Contains(stderr, "no queue in this directory") {
		t.Errorf("queue stats on an empty directory: %q", stderr)
	}
	if entries, _ := os.ReadDir(empty); len(entries) != 0 {
		t.Errorf("queue stats wrote into an empty directory: %v", entries)
	}
}

// TestWriteRecordsReportsCorrupt: a corrupt record is reported on standard
// error, not mixed into the JSON lines, and fails the command after every
// other record is written.
func TestWriteRecordsReportsCorrupt(t *testing.T) {
	var out, errOut bytes.Buffer
	err := writeRecords(&out, &errOut, func(fn func(agent.QueueRecord) error) error {
		for _, r := range []agent.QueueRecord{
			{Seq: 1, Topic: "a", Payload: []byte("x")},
			{Seq: 2, Corrupt: "record: truncated"},
			{Seq: 3, Topic: "b", Payload: []byte("y")},
		} {
			if err := fn(r); err != nil {
				return err
			}
		}
		return nil
	})
	if rs := records(t, out.String()); len(rs) != 2 || rs[0].Seq != 1 || rs[1].Seq != 3 {
		t.Errorf("stdout: %q", out.String())
	}
	if errOut.String() != "holdfast: queue: record 2 is corrupt (the agent drops it at the head): record: truncated\n" {
		t.Errorf("stderr: %q", errOut.String())
	}
	if err == nil || !strings.Contains(err.Error(), "1 corrupt record") {
		t.Errorf("err = %v", err)
	}
}

// TestExportDeadLetters: queue export --dead-letters writes each message
// of the dead-letter store as a JSON line with the reason and the time the
// uplink gave up on it, and leaves the store as it was.
func TestExportDeadLetters(t *testing.T) {
	dir := t.TempDir()
	q, err := queue.Open(queue.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := q.Append(ctx, queue.Message{Topic: "a/b", Payload: []byte("x"), QoS: 1}, queue.Message{Topic: "c", Payload: []byte("y"), QoS: 2}); err != nil {
		t.Fatal(err)
	}
	leased, err := q.Lease(ctx, 2)
	if err != nil || len(leased) != 2 {
		t.Fatalf("lease: %d records, %v", len(leased), err)
	}
	for _, r := range leased {
		if err := q.DeadLetter(ctx, r.Seq, "refused: "+r.Topic); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		rs := records(t, hf(t, "queue", "export", "--dead-letters", "--data-dir", dir))
		if len(rs) != 2 {
			t.Fatalf("%d dead letters exported, want 2: %+v", len(rs), rs)
		}
		for i, want := range []struct{ topic, payload string }{{"a/b", "x"}, {"c", "y"}} {
			r := rs[i]
			if r.Seq != leased[i].Seq || r.Topic != want.topic || string(r.Payload) != want.payload ||
				r.DeadLetter != "refused: "+want.topic || r.DeadLetterAt.IsZero() {
				t.Errorf("dead letter %d: %+v", i, r)
			}
		}
	}
}
