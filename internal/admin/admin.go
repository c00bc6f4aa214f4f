// Package admin serves holdfast's admin endpoint: /healthz (the process is
// up), /readyz (the agent is started and can accept messages), /api/status
// (the JSON that `holdfast status` renders), /metrics (the Prometheus text
// exposition format, version 0.0.4) and /api/queue/peek (the head of the
// queue, payloads included, for `holdfast queue peek` while the agent runs).
//
// The endpoint has no authentication. Counts and states may be shown to
// whoever can reach it (operators move it off loopback for Prometheus);
// message payloads may not: /api/queue/peek is served only when the
// endpoint listens on a loopback address, where only the gateway itself
// can ask, and answers 403 Forbidden elsewhere.
//
// The package knows nothing of queues or brokers: the agent hands it a Source.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Source is what the endpoint reports on; the agent implements it.
type Source interface {
	// Ready reports whether the agent accepts messages, and if not, why.
	Ready() (bool, string)
	// Status returns a JSON-marshalable snapshot for /api/status.
	Status() any
	// Metrics writes the current metric families.
	Metrics(w *MetricsWriter)
}

// Peeker is a Source that can also show the first records of its queue,
// on /api/queue/peek.
type Peeker interface {
	// Peek calls fn with up to n records from the head of the queue, in
	// order, without changing anything; each record is marshaled to one
	// line of JSON.
	Peek(n int, fn func(record any) error) error
}

// Peek limits of /api/queue/peek?n=N.
const (
	DefaultPeek = 10   // records when n is not given
	MaxPeek     = 1000 // most records one request may ask for
)

// Handler returns the endpoint's HTTP handler. When src is also a Peeker
// and payloads is true, it serves GET /api/queue/peek?n=N: up to N records
// (default DefaultPeek, at most MaxPeek) as JSON lines
// (application/x-ndjson); a failure after the first line is reported as a
// last line {"error": "..."}. With payloads false that path answers 403
// Forbidden with the reason (ErrPeekNotLoopback). Listen sets payloads to
// whether it bound a loopback address.
func Handler(src Source, payloads bool) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if ok, why := src.Ready(); !ok {
			http.Error(w, "not ready: "+why, http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready\n")
	})
	mux.HandleFunc("GET /api/status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(src.Status()); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
	if p, ok := src.(Peeker); ok {
		mux.HandleFunc("GET /api/queue/peek", func(w http.ResponseWriter, r *http.Request) {
			if !payloads {
				http.Error(w, ErrPeekNotLoopback.Error(), http.StatusForbidden)
				return
			}
			servePeek(w, r, p)
		})
	}
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		mw := &MetricsWriter{w: w}
		src.Metrics(mw)
	})
	return mux
}

func servePeek(w http.ResponseWriter, r *http.Request, p Peeker) {
	n := DefaultPeek
	if v := r.URL.Query().Get("n"); v != "" {
		i, err := strconv.Atoi(v)
		if err != nil || i < 1 || i > MaxPeek {
			http.Error(w, fmt.Sprintf("n must be a number from 1 to %d", MaxPeek), http.StatusBadRequest)
			return
		}
		n = i
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	wrote := false
	err := p.Peek(n, func(rec any) error {
		wrote = true
		return enc.Encode(rec)
	})
	switch {
	case err == nil:
	case !wrote:
		http.Error(w, err.Error(), http.StatusInternalServerError)
	default:
		enc.Encode(map[string]string{"error": err.Error()})
	}
}

// ErrPeekNotLoopback is the answer of /api/queue/peek on an endpoint that
// does not listen on a loopback address.
var ErrPeekNotLoopback = errors.New("message payloads are served only when admin.address is a loopback address " +
	"(the endpoint has no authentication): stop the agent to read its queue, or move admin.address to 127.0.0.1")

// Server is a running admin endpoint.
type Server struct {
	ln  net.Listener
	srv *http.Server
}

// Listen binds the endpoint to addr (host:port) so that a port conflict is an
// error before anything else starts; Serve then answers requests.
// /api/queue/peek shows payloads only if the address bound is a loopback
// one (127.0.0.0/8, ::1; "localhost" resolves to one).
func Listen(addr string, src Source) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin: listen %s: %w", addr, err)
	}
	return &Server{ln: ln, srv: &http.Server{
		Handler:           Handler(src, isLoopback(ln.Addr())),
		ReadHeaderTimeout: 5 * time.Second,
	}}, nil
}

// isLoopback reports whether a is a TCP address on a loopback interface;
// an unspecified address (0.0.0.0, ::) is not.
func isLoopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

// Addr is the address the endpoint listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Serve answers requests until ctx is cancelled, then shuts the server down,
// waiting at most two seconds for requests in progress.
func (s *Server) Serve(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("admin: %w", err)
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s.srv.Shutdown(sctx)
		if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("admin: %w", err)
		}
		return nil
	}
}

// MetricsWriter writes metric families in the Prometheus text format. Names
// must be valid metric names; label pairs are given as name, value, name, value.
type MetricsWriter struct {
	w   io.Writer
	err error
}

// Counter writes a counter family with one unlabelled sample.
func (m *MetricsWriter) Counter(name, help string, v float64) {
	m.family(name, help, "counter")
	m.Sample(name, v)
}

// Gauge writes a gauge family with one unlabelled sample.
func (m *MetricsWriter) Gauge(name, help string, v float64) {
	m.family(name, help, "gauge")
	m.Sample(name, v)
}

// CounterVec writes a counter family with one sample per label value, in
// sorted order of the label value.
func (m *MetricsWriter) CounterVec(name, help, label string, values map[string]uint64) {
	m.family(name, help, "counter")
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		m.Sample(name, float64(values[k]), label, k)
	}
}

// Family starts a family of the given type ("counter", "gauge") whose samples
// the caller then writes with Sample.
func (m *MetricsWriter) Family(name, help, typ string) { m.family(name, help, typ) }

func (m *MetricsWriter) family(name, help, typ string) {
	m.printf("# HELP %s %s\n# TYPE %s %s\n", name, escapeHelp(help), name, typ)
}

// Sample writes one sample line.
func (m *MetricsWriter) Sample(name string, v float64, labels ...string) {
	var b strings.Builder
	b.WriteString(name)
	if len(labels) > 0 {
		b.WriteByte('{')
		for i := 0; i+1 < len(labels); i += 2 {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(labels[i])
			b.WriteString(`="`)
			b.WriteString(escapeLabel(labels[i+1]))
			b.WriteByte('"')
		}
		b.WriteByte('}')
	}
	b.WriteByte(' ')
	b.WriteString(formatFloat(v))
	b.WriteByte('\n')
	m.printf("%s", b.String())
}

// Err is the first write error, if any.
func (m *MetricsWriter) Err() error { return m.err }

func (m *MetricsWriter) printf(format string, args ...any) {
	if m.err != nil {
		return
	}
	_, m.err = fmt.Fprintf(m.w, format, args...)
}

func formatFloat(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

var helpEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
var labelEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)

func escapeHelp(s string) string  { return helpEscaper.Replace(s) }
func escapeLabel(s string) string { return labelEscaper.Replace(s) }
