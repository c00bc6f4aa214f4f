package admin

import (
	"context"
	"encoding/json"
	"io"
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
