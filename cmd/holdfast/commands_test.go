package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"holdfast/agent"
	"holdfast/internal/packet"
	"holdfast/internal/testenv"
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
	cmd := exec.Command(binPath, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != code {
		t.Fatalf("holdfast %s: %v, want exit code %d; stderr:\n%s", strings.Join(args, " "), err, code, stderr.String())
	}
	return stdout.String(), stderr.String()
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
	g := newGateway(t, fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)), "")
	g.start()
	d := &device{id: "cmds", addr: g.listen, version: packet.V5}
	const n = 5
	for i := 0; i < n; i++ {
		if !d.publish(i, 1, nil) {
			t.Fatalf("publish %d", i)
		}
	}

	human := hf(t, "status", "--config", g.config)
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
	if out := hf(t, "queue", "stats", "--config", g.config); !strings.Contains(out, "messages: 5\n") {
		t.Errorf("queue stats from the running agent:\n%s", out)
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
	stats := hf(t, "queue", "stats", "--config", g.config)
	if !strings.Contains(stats, "messages: 5\n") {
		t.Errorf("queue stats offline:\n%s", stats)
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
	// Reading changed nothing (but the age of the oldest message).
	ageless := func(s string) string { return regexp.MustCompile(`oldest_age: .*\n`).ReplaceAllString(s, "") }
	if out := hf(t, "queue", "stats", "--config", g.config); ageless(out) != ageless(stats) {
		t.Errorf("queue stats after peek and export:\n%s\nbefore:\n%s", out, stats)
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
