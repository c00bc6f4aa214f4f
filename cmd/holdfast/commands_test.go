package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os/exec"
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

// TestStatusAndQueueCommands: while the upstream is unreachable, status and
// queue stats report the backlog from the running agent; once it is stopped,
// queue stats, peek and export read the queue directory itself, and leave it
// as it was.
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
	for _, want := range []string{"backlog:   5 messages", "upstream:", "backoff"} {
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

	if code := g.term(); code != 0 {
		t.Fatalf("SIGTERM exit code %d", code)
	}
	if out := hf(t, "queue", "stats", "--config", g.config); !strings.Contains(out, "messages: 5\n") {
		t.Errorf("queue stats offline:\n%s", out)
	}
	records := func(out string) []exportRecord {
		var rs []exportRecord
		sc := bufio.NewScanner(strings.NewReader(out))
		for sc.Scan() {
			var r exportRecord
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				t.Fatalf("line %q: %v", sc.Text(), err)
			}
			rs = append(rs, r)
		}
		return rs
	}
	peek := records(hf(t, "queue", "peek", "-n", "2", "--config", g.config))
	if len(peek) != 2 || string(peek[0].Payload) != "0" || string(peek[1].Payload) != "1" ||
		peek[0].Topic != "e2e/cmds/q1" || peek[0].QoS != 1 || peek[0].Source != "cmds" {
		t.Errorf("queue peek -n 2 = %+v", peek)
	}
	all := records(hf(t, "queue", "export", "--config", g.config))
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
	// Reading changed nothing.
	if out := hf(t, "queue", "stats", "--config", g.config); !strings.Contains(out, "messages: 5\n") {
		t.Errorf("queue stats after peek and export:\n%s", out)
	}
}
