package admin

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
)

type fakeSource struct{ ready atomic.Bool }

func (f *fakeSource) Ready() (bool, string) { return f.ready.Load(), "queue not open" }
func (f *fakeSource) Status() any {
	return map[string]any{"backlog": map[string]int{"messages": 3}}
}
func (f *fakeSource) Metrics(w *MetricsWriter) {
	w.Gauge("holdfast_queue_messages", "Messages in the queue.", 3)
	w.CounterVec("holdfast_queue_dropped_total", "Messages dropped, by reason.", "reason",
		map[string]uint64{"full": 2, "expired": 1})
	w.Family("holdfast_info", "Build information.", "gauge")
	w.Sample("holdfast_info", 1, "version", `v"1\`)
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// serve starts a Server on addr for the rest of the test.
func serve(t *testing.T, addr string, src Source) *Server {
	t.Helper()
	s, err := Listen(addr, src)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go s.Serve(ctx)
	return s
}

func TestEndpoints(t *testing.T) {
	src := &fakeSource{}
	s, err := Listen("127.0.0.1:0", src)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	base := "http://" + s.Addr()

	if code, body := get(t, base+"/healthz"); code != 200 || body != "ok\n" {
		t.Fatalf("/healthz = %d %q", code, body)
	}
	if code, body := get(t, base+"/readyz"); code != 503 || !strings.Contains(body, "queue not open") {
		t.Fatalf("/readyz before ready = %d %q", code, body)
	}
	src.ready.Store(true)
	if code, _ := get(t, base+"/readyz"); code != 200 {
		t.Fatalf("/readyz when ready = %d", code)
	}
	code, body := get(t, base+"/api/status")
	var st struct {
		Backlog struct{ Messages int } `json:"backlog"`
	}
	if code != 200 || json.Unmarshal([]byte(body), &st) != nil || st.Backlog.Messages != 3 {
		t.Fatalf("/api/status = %d %q", code, body)
	}
	code, body = get(t, base+"/metrics")
	want := `# HELP holdfast_queue_messages Messages in the queue.
# TYPE holdfast_queue_messages gauge
holdfast_queue_messages 3
# HELP holdfast_queue_dropped_total Messages dropped, by reason.
# TYPE holdfast_queue_dropped_total counter
holdfast_queue_dropped_total{reason="expired"} 1
holdfast_queue_dropped_total{reason="full"} 2
# HELP holdfast_info Build information.
# TYPE holdfast_info gauge
holdfast_info{version="v\"1\\"} 1
`
	if code != 200 || body != want {
		t.Fatalf("/metrics = %d\n%s\nwant\n%s", code, body, want)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve after cancel: %v", err)
	}
}

func TestListenConflict(t *testing.T) {
	s, err := Listen("127.0.0.1:0", &fakeSource{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.ln.Close()
	if _, err := Listen(s.Addr(), &fakeSource{}); err == nil || !strings.Contains(err.Error(), "admin: listen") {
		t.Fatalf("second Listen on %s: %v", s.Addr(), err)
	}
}

// peekSource is a Source with a queue of numbered records; failAt makes
// Peek fail when it reaches that record (0: never).
type peekSource struct {
	fakeSource
	records int
	failAt  int
	asked   int
}

func (p *peekSource) Peek(n int, fn func(any) error) error {
	p.asked = n
	for i := 1; i <= n && i <= p.records; i++ {
		if i == p.failAt {
			return errors.New("disk gone")
		}
		if err := fn(map[string]int{"seq": i}); err != nil {
			return err
		}
	}
	return nil
}

// TestQueuePeek: /api/queue/peek returns up to n records as JSON lines, n
// bounded, and reports a failure as a status before the first line or as a
// last error line after it; a Source without Peek has no such endpoint.
func TestQueuePeek(t *testing.T) {
	src := &peekSource{records: 50}
	base := "http://" + serve(t, "127.0.0.1:0", src).Addr() + "/api/queue/peek"

	lines := func(body string) []string { return strings.Split(strings.TrimSuffix(body, "\n"), "\n") }
	if code, body := get(t, base); code != 200 || len(lines(body)) != DefaultPeek || src.asked != DefaultPeek {
		t.Errorf("peek without n: %d, %d lines, asked %d", code, len(lines(body)), src.asked)
	}
	code, body := get(t, base+"?n=3")
	if got := lines(body); code != 200 || len(got) != 3 || got[0] != `{"seq":1}` || got[2] != `{"seq":3}` {
		t.Errorf("peek n=3: %d %q", code, body)
	}
	if code, body := get(t, base+"?n=1000"); code != 200 || len(lines(body)) != 50 {
		t.Errorf("peek n=1000 of 50: %d, %d lines", code, len(lines(body)))
	}
	for _, n := range []string{"0", "-1", "1001", "x", "1e3"} {
		if code, body := get(t, base+"?n="+n); code != 400 || !strings.Contains(body, "from 1 to 1000") {
			t.Errorf("peek n=%s: %d %q, want 400", n, code, body)
		}
	}
	src.failAt = 1
	if code, body := get(t, base+"?n=5"); code != 500 || !strings.Contains(body, "disk gone") {
		t.Errorf("failing peek: %d %q, want 500", code, body)
	}
	src.failAt = 3
	if code, body := get(t, base+"?n=5"); code != 200 || lines(body)[2] != `{"error":"disk gone"}` || len(lines(body)) != 3 {
		t.Errorf("peek failing at the third record: %d %q", code, body)
	}

	plain := serve(t, "127.0.0.1:0", &fakeSource{})
	if code, _ := get(t, "http://"+plain.Addr()+"/api/queue/peek"); code != 404 {
		t.Errorf("peek on a Source without Peek: %d, want 404", code)
	}
}

// TestQueuePeekOnlyOnLoopback: on an endpoint listening on every address
// (as for a Prometheus server elsewhere), /api/queue/peek shows no payload
// and says why, even to a client on the gateway itself; the counts of
// /api/status and /metrics are still served there.
func TestQueuePeekOnlyOnLoopback(t *testing.T) {
	src := &peekSource{records: 5}
	src.ready.Store(true)
	_, port, _ := net.SplitHostPort(serve(t, ":0", src).Addr())
	base := "http://127.0.0.1:" + port
	if code, body := get(t, base+"/api/queue/peek?n=3"); code != http.StatusForbidden || body != ErrPeekNotLoopback.Error()+"\n" || src.asked != 0 {
		t.Errorf("peek on an endpoint on every address: %d %q (asked %d), want 403 %q", code, body, src.asked, ErrPeekNotLoopback)
	}
	for _, path := range []string{"/api/status", "/metrics", "/healthz", "/readyz"} {
		if code, _ := get(t, base+path); code != 200 {
			t.Errorf("%s on an endpoint on every address: %d, want 200", path, code)
		}
	}
	local := serve(t, "localhost:0", src)
	if code, _ := get(t, "http://"+local.Addr()+"/api/queue/peek?n=3"); code != 200 || src.asked != 3 {
		t.Errorf("peek on localhost: %d (asked %d), want 200", code, src.asked)
	}
}
