package uplink

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"holdfast/internal/packet"
	"holdfast/internal/testenv"
	"holdfast/queue"
)

// benchTopic is the topic of every benchmark message.
const benchTopic = "bench/q"

// benchSource hands out n prepared messages and counts acks; it is cheap
// enough not to be what is measured.
type benchSource struct {
	mu     sync.Mutex
	msgs   []Message
	next   int
	acked  atomic.Int64
	done   chan struct{}
	target int64
}

func newBenchSource(n int, qos byte) *benchSource {
	s := &benchSource{msgs: make([]Message, n), done: make(chan struct{}), target: int64(n)}
	payload := make([]byte, 64)
	for i := range s.msgs {
		s.msgs[i] = Message{Seq: uint64(i + 1), Topic: benchTopic, Payload: payload, QoS: qos}
	}
	return s
}

func (s *benchSource) Lease(ctx context.Context, max int) ([]Message, error) {
	s.mu.Lock()
	if s.next < len(s.msgs) {
		end := min(s.next+max, len(s.msgs))
		out := s.msgs[s.next:end]
		s.next = end
		s.mu.Unlock()
		return out, nil
	}
	s.mu.Unlock()
	<-ctx.Done()
	return nil, ctx.Err()
}

func (s *benchSource) Ack(seqs ...uint64) error {
	if s.acked.Add(int64(len(seqs))) == s.target {
		close(s.done)
	}
	return nil
}
func (s *benchSource) Release(seqs ...uint64)                           {}
func (s *benchSource) Mark(context.Context, uint64, []byte) error       { return nil }
func (s *benchSource) DeadLetter(context.Context, uint64, string) error { return nil }

// benchWindow is the window of the benchmarks: DefaultInflight, or
// HOLDFAST_BENCH_INFLIGHT to compare others (docs/benchmarks.md).
func benchWindow(b *testing.B) int {
	v := os.Getenv("HOLDFAST_BENCH_INFLIGHT")
	if v == "" {
		return DefaultInflight
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 65535 {
		b.Fatalf("HOLDFAST_BENCH_INFLIGHT=%q: want a window of 1..65535", v)
	}
	return n
}

func benchMosquitto(b *testing.B, nodelay bool) *testenv.Mosquitto {
	extra := ""
	if nodelay {
		extra = "set_tcp_nodelay true\n"
	}
	return testenv.StartMosquitto(b, testenv.MosquittoOptions{Extra: extra})
}

// BenchmarkForward drains b.N QoS 1 messages of 64 bytes to a local
// mosquitto through the uplink.
func BenchmarkForward(b *testing.B) {
	for _, nodelay := range []bool{false, true} {
		m := benchMosquitto(b, nodelay)
		for _, inflight := range []int{benchWindow(b), 1} {
			b.Run(fmt.Sprintf("nodelay=%v/inflight=%d", nodelay, inflight), func(b *testing.B) {
				src := newBenchSource(b.N, 1)
				c := newClient(b, Options{URL: m.URL(), ClientID: fmt.Sprintf("bench%d", inflight), Inflight: inflight,
					CleanStart: true}, src, nil)
				b.ReportAllocs()
				b.ResetTimer()
				start := time.Now()
				stop := run(b, c)
				<-src.done
				el := time.Since(start)
				b.StopTimer()
				stop()
				b.ReportMetric(float64(b.N)/el.Seconds(), "msgs/s")
			})
		}
	}
}

// BenchmarkPlainPublisher is the upstream's own limit: a plain pipelined
// QoS 1 publisher on the same codec, with the same message (64 bytes on
// benchTopic), the same window and the same mosquitto, and nothing else: no
// queue, no state, no status. It is as fast as a simple client written for
// speed: the writer keeps the window full, encoding every PUBLISH the free
// window allows into a buffered writer and flushing once per batch; a reader
// goroutine decodes the PUBACKs and hands credits back. nodelay=false with
// inflight=benchWindow is BenchmarkDrainQueue's setting.
func BenchmarkPlainPublisher(b *testing.B) {
	for _, nodelay := range []bool{false, true} {
		m := benchMosquitto(b, nodelay)
		for _, window := range []int{benchWindow(b), 1} {
			b.Run(fmt.Sprintf("nodelay=%v/inflight=%d", nodelay, window), func(b *testing.B) {
				b.ReportAllocs()
				el := plainPublish(b, m.Addr(), b.N, window)
				b.ReportMetric(float64(b.N)/el.Seconds(), "msgs/s")
			})
		}
	}
}

// plainPublish connects to addr, publishes n QoS 1 messages with at most
// window unacknowledged and returns the time from the first PUBLISH to the
// last PUBACK (the benchmark timer covers the same span).
func plainPublish(b *testing.B, addr string, n, window int) time.Duration {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	r := packet.NewReader(nc, 0)
	r.SetVersion(packet.V5)
	w := bufio.NewWriterSize(nc, 64<<10)
	var buf []byte
	write := func(p packet.Packet) {
		buf, err = packet.Append(buf[:0], p, packet.V5)
		if err != nil {
			b.Fatal(err)
		}
		w.Write(buf)
	}
	write(&packet.Connect{ProtocolName: "MQTT", Version: packet.V5, CleanStart: true, ClientID: "plain"})
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	if p, err := r.ReadPacket(); err != nil {
		b.Fatal(err)
	} else if ack, ok := p.(*packet.Connack); !ok || ack.ReasonCode != 0 {
		b.Fatalf("CONNACK %+v", p)
	}
	var acked atomic.Int64
	wake := make(chan struct{}, 1)
	readErr := make(chan error, 1)
	go func() {
		for acked.Load() < int64(n) {
			p, err := r.ReadPacket()
			if err != nil {
				readErr <- err
				return
			}
			if _, ok := p.(*packet.Puback); ok {
				acked.Add(1)
				select {
				case wake <- struct{}{}:
				default:
				}
			}
		}
		readErr <- nil
	}()
	payload := make([]byte, 64)
	pub := &packet.Publish{QoS: 1, Topic: benchTopic, Payload: payload}
	b.ResetTimer()
	start := time.Now()
	for sent := 0; sent < n; {
		free := window - (sent - int(acked.Load()))
		if free == 0 {
			select {
			case <-wake:
			case err := <-readErr:
				b.Fatalf("reading PUBACKs: %v", err)
			}
			continue
		}
		for ; free > 0 && sent < n; free-- {
			pub.PacketID = uint16(1 + sent%65535)
			write(pub)
			sent++
		}
		if err := w.Flush(); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-readErr; err != nil {
		b.Fatalf("reading PUBACKs: %v", err)
	}
	el := time.Since(start)
	b.StopTimer()
	return el
}

// BenchmarkDrainQueue drains a backlog of b.N QoS 1 messages from the real
// queue (Badger, durable acks) to mosquitto with benchWindow (the default window unless set).
func BenchmarkDrainQueue(b *testing.B) {
	m := benchMosquitto(b, false)
	q, err := queue.Open(queue.Options{Dir: b.TempDir(), Logger: testLogger(b)})
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	payload := make([]byte, 64)
	batch := make([]queue.Message, 0, 1000)
	for i := 0; i < b.N; i++ {
		batch = append(batch, queue.Message{Topic: benchTopic, Payload: payload, QoS: 1})
		if len(batch) == cap(batch) || i == b.N-1 {
			if err := q.Append(context.Background(), batch...); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	c := newClient(b, Options{URL: m.URL(), ClientID: "drain", CleanStart: true, Inflight: benchWindow(b)}, queueSource{q}, nil)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	stop := run(b, c)
	// Polled, not synchronised: the poll costs nothing next to the drain.
	// A drain that stops moving fails the benchmark with the figures.
	last, lastAt := uint64(0), time.Now()
	for q.Stats().Messages > 0 {
		time.Sleep(5 * time.Millisecond)
		if f := c.Status().Forwarded; f != last {
			last, lastAt = f, time.Now()
		} else if time.Since(lastAt) > 30*time.Second {
			b.Fatalf("drain stalled: queue %+v; uplink %+v", q.Stats(), c.Status())
		}
	}
	el := time.Since(start)
	b.StopTimer()
	stop()
	b.ReportMetric(float64(b.N)/el.Seconds(), "msgs/s")
}
