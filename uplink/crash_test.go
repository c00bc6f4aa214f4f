package uplink

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"holdfast/internal/packet"
	"holdfast/internal/testenv"
	"holdfast/queue"
)

// envCrashChild makes the test binary run crashChild instead of the tests:
// "<queue dir>,<broker url>".
const envCrashChild = "HOLDFAST_UPLINK_CRASH_CHILD"

func TestMain(m *testing.M) {
	if spec := os.Getenv(envCrashChild); spec != "" {
		crashChild(spec)
		return
	}
	os.Exit(m.Run())
}

// crashChild forwards the queue in dir to the broker until SIGTERM (clean
// stop, exit 0) or SIGKILL.
func crashChild(spec string) {
	dir, url, _ := strings.Cut(spec, ",")
	q, err := queue.Open(queue.Options{Dir: dir, Logger: testLogger(nil)})
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(2)
	}
	c, err := New(Options{URL: url, ClientID: "crash", ConnectTimeout: 2 * time.Second,
		Backoff: Backoff{Initial: 50 * time.Millisecond, Max: 200 * time.Millisecond}, Logger: testLogger(nil)},
		queueSource{q}, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "new:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	c.Run(ctx)
	if err := q.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "close:", err)
		os.Exit(3)
	}
}

// TestSIGKILLDuringForwarding kills the forwarding process with SIGKILL
// eight times while it drains the real queue to mosquitto, each time after
// it has forwarded new messages and before the last: every QoS 1 message
// arrives at least once, every QoS 2 message exactly once, each topic in
// order, and the queue ends empty.
func TestSIGKILLDuringForwarding(t *testing.T) {
	m := testenv.StartMosquitto(t, testenv.MosquittoOptions{})
	dir := t.TempDir()
	q, err := queue.Open(queue.Options{Dir: dir, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	const n = 2000 // per topic
	const kills = 8
	msgs := make([]queue.Message, 0, 2*n)
	for i := range n {
		msgs = append(msgs,
			queue.Message{Topic: "kill/q1", Payload: []byte(strconv.Itoa(i)), QoS: 1},
			queue.Message{Topic: "kill/q2", Payload: []byte(strconv.Itoa(i)), QoS: 2})
	}
	for i := 0; i < len(msgs); i += 500 {
		if err := q.Append(context.Background(), msgs[i:i+500]...); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q1 := collectTopic(t, m.Addr(), "kill/q1")
	q2 := collectTopic(t, m.Addr(), "kill/q2")
	start := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), envCrashChild+"="+dir+","+m.URL())
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	// Each child is killed once it has forwarded new messages (so the
	// kill falls mid-stream, not before the first connect), while messages
	// are still left: 8 rounds of about 150 messages out of 2,000 a topic.
	for round := 1; round <= kills; round++ {
		before := q2.unique()
		cmd := start()
		target := before + 120 + round*7
		testenv.WaitFor(t, 60*time.Second, fmt.Sprintf("round %d: %d received", round, target), func() bool {
			return q2.unique() >= target
		})
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		if got := q2.unique(); got >= n {
			t.Fatalf("round %d: all %d messages had arrived at the kill; it was not during forwarding", round, got)
		}
	}
	cmd := start()
	testenv.WaitFor(t, 120*time.Second, "all received", func() bool { return q1.unique() == n && q2.unique() == n })
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("clean stop: %v", err)
	}
	q1.drain(t, m.Addr(), "kill/q1")
	q2.drain(t, m.Addr(), "kill/q2")
	q1.close()
	q2.close()
	checkDelivery(t, q1.received(), n, false)
	checkDelivery(t, q2.received(), n, true)
	q, err = queue.Open(queue.Options{Dir: dir, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if st := q.Stats(); st.Messages != 0 || st.DeadLetters != 0 {
		t.Errorf("queue after the run: %d messages, %d dead letters", st.Messages, st.DeadLetters)
	}
	t.Logf("%d kills; QoS 1: %d received for %d", kills, len(q1.received()), n)
}

// collectTopic subscribes to one topic at QoS 2.
func collectTopic(t testing.TB, addr, topic string) *collector {
	return collect(t, addr, topic, packet.V5)
}
