package queue

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// envBigBench makes the reopen and RSS benchmarks use 1,000,000 messages
// (default 20,000 so that -bench . stays quick).
const envBigBench = "HOLDFAST_QUEUE_BENCH_MILLION"

// envRSSChild makes the test binary run rssChild: "<dir>,<n>,<mode>".
const envRSSChild = "HOLDFAST_QUEUE_RSS_CHILD"

func benchMsg(i int) Message {
	return Message{Topic: "sensors/gw1/dev42/temp", Payload: make([]byte, 200), QoS: 1, Source: "dev42"}
}

func benchSize() int {
	switch v := os.Getenv(envBigBench); v {
	case "":
		return 20_000
	case "1":
		return 1_000_000
	default:
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			panic(envBigBench + "=" + v + ": want 1 (a million) or a message count")
		}
		return n
	}
}

// fill appends n 200-byte messages in writes of 1000.
func fill(q *Queue, n int) error {
	for i := 0; i < n; {
		k := min(1000, n-i)
		ms := make([]Message, k)
		for j := range ms {
			ms[j] = benchMsg(i + j)
		}
		if err := q.Append(context.Background(), ms...); err != nil {
			return err
		}
		i += k
	}
	return nil
}

func BenchmarkAppend(b *testing.B) {
	for _, c := range []struct {
		producers int
		wait      time.Duration
	}{{1, 0}, {8, 0}, {64, 0}, {64, 300 * time.Microsecond}} {
		b.Run(fmt.Sprintf("producers=%d/wait=%v", c.producers, c.wait), func(b *testing.B) {
			q := open(b, Options{CommitWait: c.wait})
			producers := c.producers
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			per := (b.N + producers - 1) / producers
			for p := 0; p < producers; p++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < per; i++ {
						if err := q.Append(context.Background(), benchMsg(i)); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			el := time.Since(start)
			b.StopTimer()
			st := q.Stats()
			b.ReportMetric(float64(per*producers)/el.Seconds(), "msgs/s")
			b.ReportMetric(st.AvgBatch, "writes/commit")
			b.ReportMetric(float64(st.AvgCommitLatency.Microseconds()), "us/commit")
		})
	}
}

// BenchmarkAppendAsync: 64 producers that each keep up to 16 messages in
// flight with AppendAsync, as a connection with pipelined acks does.
func BenchmarkAppendAsync(b *testing.B) {
	const producers, window = 64, 16
	q := open(b, Options{})
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	per := (b.N + producers - 1) / producers
	for p := 0; p < producers; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem := make(chan struct{}, window)
			for i := 0; i < per; i++ {
				sem <- struct{}{}
				q.AppendAsync([]Message{benchMsg(i)}, func(err error) {
					if err != nil {
						b.Error(err)
					}
					<-sem
				})
			}
			for i := 0; i < window; i++ {
				sem <- struct{}{}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	b.StopTimer()
	st := q.Stats()
	b.ReportMetric(float64(per*producers)/el.Seconds(), "msgs/s")
	b.ReportMetric(st.AvgBatch, "writes/commit")
	b.ReportMetric(float64(st.AvgCommitLatency.Microseconds()), "us/commit")
}

// BenchmarkCommitEmpty: one producer committing writes that carry
// neither messages nor state, as the agent does for a local publish no
// forward rule selects, only to keep its acknowledgement in order.
func BenchmarkCommitEmpty(b *testing.B) {
	q := open(b, Options{})
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := q.Commit(ctx, Write{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDrain(b *testing.B) {
	q := open(b, Options{})
	if err := fill(q, b.N); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for left := b.N; left > 0; {
		recs, err := q.Lease(context.Background(), min(left, 256))
		if err != nil {
			b.Fatal(err)
		}
		if err := q.Ack(seqs(recs)...); err != nil {
			b.Fatal(err)
		}
		left -= len(recs)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

// BenchmarkReopen measures Open plus the first Lease with benchSize()
// messages queued.
func BenchmarkReopen(b *testing.B) {
	dir := b.TempDir()
	n := benchSize()
	q, err := Open(Options{Dir: dir, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	if err := fill(q, n); err != nil {
		b.Fatal(err)
	}
	q.Close()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		q, err := Open(Options{Dir: dir, Logger: quiet})
		if err != nil {
			b.Fatal(err)
		}
		recs, err := q.Lease(context.Background(), 100)
		if err != nil || len(recs) != 100 {
			b.Fatalf("first lease: %d records, %v", len(recs), err)
		}
		el := time.Since(start)
		b.StopTimer()
		if got := q.Stats().Messages; got != uint64(n) {
			b.Fatalf("%d messages after reopen, want %d", got, n)
		}
		q.Close()
		b.ReportMetric(float64(el.Microseconds())/1000, "ms-to-first-lease")
		b.StartTimer()
	}
}

// rssChild fills (mode "fill") or reopens and leases 1000 (mode
// "reopen") a queue, then prints its peak and current RSS.
func rssChild(spec string) {
	parts := strings.Split(spec, ",")
	n, _ := strconv.Atoi(parts[1])
	stop := make(chan struct{})
	peaks := make(chan [3]int, 1)
	go samplePeaks(stop, peaks)
	q, err := Open(Options{Dir: parts[0], Logger: quiet})
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(2)
	}
	switch parts[2] {
	case "fill":
		start := time.Now()
		err = fill(q, n)
		fmt.Printf("FillRate %d\n", int(float64(n)/time.Since(start).Seconds()))
	case "reopen":
		for left := 1000; left > 0 && err == nil; {
			var recs []Record
			recs, err = q.Lease(context.Background(), left)
			left -= len(recs)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, parts[2]+":", err)
		os.Exit(3)
	}
	fmt.Printf("messages %d\n", q.Stats().Messages)
	close(stop)
	p := <-peaks
	fmt.Printf("PeakAnon %d\nPeakFile %d\nPeakHeap %d\n", p[0], p[1], p[2])
	for k, v := range procStatus() {
		switch k {
		case "VmHWM", "VmRSS", "RssAnon", "RssFile":
			fmt.Println(k, v)
		}
	}
	if err := q.Close(); err != nil {
		os.Exit(4)
	}
}

// procStatus returns the kB figures of /proc/self/status by name.
func procStatus() map[string]int {
	res := map[string]int{}
	status, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(status), "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 {
			v, err := strconv.Atoi(f[1])
			if err == nil {
				res[strings.TrimSuffix(f[0], ":")] = v
			}
		}
	}
	return res
}

// samplePeaks reads RssAnon, RssFile and the Go heap in use every 20ms
// until stop is closed, then sends their highest values (KiB). VmHWM
// alone does not tell anonymous memory (Go heap, Badger's buffers) from
// mapped file pages (value log, tables), which the kernel can drop.
func samplePeaks(stop <-chan struct{}, out chan<- [3]int) {
	var p [3]int
	var ms runtime.MemStats
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		st := procStatus()
		p[0] = max(p[0], st["RssAnon"])
		p[1] = max(p[1], st["RssFile"])
		runtime.ReadMemStats(&ms)
		p[2] = max(p[2], int(ms.HeapInuse>>10))
		select {
		case <-stop:
			out <- p
			return
		case <-t.C:
		}
	}
}

// runRSSChild runs rssChild and returns its figures in KiB by name.
func runRSSChild(tb testing.TB, dir string, n int, mode string) map[string]int {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s,%d,%s", envRSSChild, dir, n, mode))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		tb.Fatalf("rss child %s: %v", mode, err)
	}
	res := map[string]int{}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 {
			v, _ := strconv.Atoi(f[1])
			res[strings.TrimSuffix(f[0], ":")] = v
		}
	}
	return res
}

// BenchmarkRSS reports the peak RSS of a process that fills benchSize()
// messages, and of one that reopens them and leases 1000.
func BenchmarkRSS(b *testing.B) {
	n := benchSize()
	for i := 0; i < b.N; i++ {
		dir := b.TempDir()
		fillRes := runRSSChild(b, dir, n, "fill")
		reopen := runRSSChild(b, dir, n, "reopen")
		if fillRes["messages"] != n || reopen["messages"] != n {
			b.Fatalf("children saw %d and %d messages, want %d", fillRes["messages"], reopen["messages"], n)
		}
		b.ReportMetric(float64(fillRes["VmHWM"])/1024, "fill-peak-MiB")
		b.ReportMetric(float64(fillRes["VmRSS"])/1024, "fill-end-MiB")
		b.ReportMetric(float64(fillRes["PeakAnon"])/1024, "fill-peak-anon-MiB")
		b.ReportMetric(float64(fillRes["PeakFile"])/1024, "fill-peak-file-MiB")
		b.ReportMetric(float64(fillRes["PeakHeap"])/1024, "fill-peak-heap-MiB")
		b.ReportMetric(float64(fillRes["FillRate"]), "fill-msgs/s")
		b.ReportMetric(float64(reopen["VmHWM"])/1024, "reopen-peak-MiB")
		b.ReportMetric(float64(reopen["PeakAnon"])/1024, "reopen-peak-anon-MiB")
	}
}

// TestFillReopenRSSSmall runs the benchmark's fill/reopen/RSS path at a
// small size in the normal test run.
func TestFillReopenRSSSmall(t *testing.T) {
	dir := t.TempDir()
	const n = 5000
	f := runRSSChild(t, dir, n, "fill")
	r := runRSSChild(t, dir, n, "reopen")
	if f["messages"] != n || r["messages"] != n || f["VmHWM"] <= 0 || r["VmHWM"] <= 0 {
		t.Fatalf("fill %v, reopen %v", f, r)
	}
	t.Logf("%d messages: fill peak %d KiB, reopen peak %d KiB", n, f["VmHWM"], r["VmHWM"])
}
