package queue

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// envCrashChild makes the test binary run crashChild instead of the tests.
const envCrashChild = "HOLDFAST_QUEUE_CRASH_CHILD"

func TestMain(m *testing.M) {
	if spec := os.Getenv(envCrashChild); spec != "" {
		crashChild(spec)
		return
	}
	if spec := os.Getenv(envRSSChild); spec != "" {
		rssChild(spec)
		return
	}
	os.Exit(m.Run())
}

// crashChild appends from several goroutines until it is killed,
// printing "<writer> <n>" as soon as each Commit returned. Every write
// carries a state op naming the same message, to check atomicity.
// spec is "<dir>,<round>,<writers>".
func crashChild(spec string) {
	parts := strings.Split(spec, ",")
	writers, _ := strconv.Atoi(parts[2])
	q, err := Open(Options{Dir: parts[0], Logger: quiet})
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(2)
	}
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				id := fmt.Sprintf("r%s/w%d/%d", parts[1], w, n)
				err := q.Commit(context.Background(), Write{
					Messages: []Message{{Topic: id, Payload: make([]byte, 100+n%300), QoS: 1}},
					State:    []StateOp{{Key: "crash/" + id, Value: []byte(id)}},
				})
				if err != nil {
					fmt.Fprintln(os.Stderr, "commit:", err)
					os.Exit(3)
				}
				mu.Lock()
				fmt.Fprintf(out, "%d %d\n", w, n)
				out.Flush()
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

func TestCrashRecovery(t *testing.T) {
	rounds, writers := 20, 6
	if testing.Short() {
		rounds = 5
	}
	dir := t.TempDir()
	deadline := time.Now().Add(90 * time.Second)
	for round := 0; round < rounds && time.Now().Before(deadline); round++ {
		printed := runAndKill(t, dir, round, writers)
		verifyAfterCrash(t, dir, round, writers, printed)
	}
}

// runAndKill starts a child, kills it with SIGKILL at a random moment
// after it started acknowledging, and returns the highest n printed per
// writer (-1 when none).
func runAndKill(t *testing.T, dir string, round, writers int) []int {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s,%d,%d", envCrashChild, dir, round, writers))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	last := make([]int, writers)
	for i := range last {
		last[i] = -1
	}
	first := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stdout)
		once := sync.Once{}
		for sc.Scan() {
			var w, n int
			if _, err := fmt.Sscanf(sc.Text(), "%d %d", &w, &n); err != nil || w < 0 || w >= writers {
				t.Errorf("child printed %q", sc.Text())
				continue
			}
			if n != last[w]+1 {
				t.Errorf("writer %d printed %d after %d", w, n, last[w])
			}
			last[w] = n
			once.Do(func() { close(first) })
		}
	}()
	select {
	case <-first:
	case <-done:
		cmd.Wait()
		t.Fatalf("round %d: child exited before acknowledging: %s", round, stderr.String())
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("round %d: child acknowledged nothing in 30s", round)
	}
	time.Sleep(time.Duration(rand.IntN(250)) * time.Millisecond) // the random kill moment, not synchronisation
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-done
	err = cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("round %d: child did not die of SIGKILL: %v, stderr %s", round, err, stderr.String())
	}
	return last
}

// verifyAfterCrash reopens the queue and checks that every acknowledged
// write of this round is there exactly once, in order, with its state,
// then checks the queue still works and empties it for the next round.
func verifyAfterCrash(t *testing.T, dir string, round, writers int, printed []int) {
	t.Helper()
	q, err := Open(Options{Dir: dir, Logger: quiet})
	if err != nil {
		t.Fatalf("round %d: reopen after SIGKILL: %v", round, err)
	}
	defer q.Close()
	st := q.Stats()
	var recs []Record
	for uint64(len(recs)) < st.Messages {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		r, err := q.Lease(ctx, 1000)
		cancel()
		if err != nil {
			t.Fatalf("round %d: lease %d of %d: %v", round, len(recs), st.Messages, err)
		}
		recs = append(recs, r...)
	}
	next := make([]int, writers)
	var total int
	for i, r := range recs {
		if i > 0 && r.Seq <= recs[i-1].Seq {
			t.Fatalf("round %d: seqs out of order", round)
		}
		var rr, w, n int
		if _, err := fmt.Sscanf(r.Topic, "r%d/w%d/%d", &rr, &w, &n); err != nil || rr != round {
			t.Fatalf("round %d: unexpected record %q", round, r.Topic)
		}
		if n != next[w] {
			t.Fatalf("round %d: writer %d: record %d where %d expected (lost, duplicated or reordered)", round, w, n, next[w])
		}
		next[w]++
		if v, err := q.GetState("crash/" + r.Topic); err != nil || string(v) != r.Topic {
			t.Fatalf("round %d: state for %s: %q %v", round, r.Topic, v, err)
		}
		total++
	}
	for w := range printed {
		// Everything acknowledged is there; at most the one write in
		// flight at the kill may be there too.
		if next[w]-1 < printed[w] || next[w]-1 > printed[w]+1 {
			t.Fatalf("round %d: writer %d acknowledged up to %d, stored up to %d", round, w, printed[w], next[w]-1)
		}
	}
	var states int
	err = q.ScanState(fmt.Sprintf("crash/r%d/", round), func(string, []byte) error { states++; return nil })
	if err != nil || states != total {
		t.Fatalf("round %d: %d state entries for %d records (%v)", round, states, total, err)
	}
	// The queue keeps working: append, lease, ack.
	if err := q.Append(context.Background(), Message{Topic: "after"}); err != nil {
		t.Fatalf("round %d: append after reopen: %v", round, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	r, err := q.Lease(ctx, 1)
	cancel()
	if err != nil || len(r) != 1 || r[0].Topic != "after" {
		t.Fatalf("round %d: lease after reopen: %v %v", round, r, err)
	}
	recs = append(recs, r...)
	if err := q.Ack(seqs(recs)...); err != nil {
		t.Fatal(err)
	}
	if st := q.Stats(); st.Messages != 0 || st.Bytes != 0 || st.Leased != 0 {
		t.Fatalf("round %d: after acking all: %+v", round, st)
	}
	t.Logf("round %d: %d acknowledged writes survived SIGKILL", round, total)
}
