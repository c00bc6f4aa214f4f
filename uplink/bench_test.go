package uplink

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"holdfast/internal/packet"
	"holdfast/internal/testenv"
	"holdfast/queue"
)

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
		s.msgs[i] = Message{Seq: uint64(i + 1), Topic: "bench/a", Payload: payload, QoS: qos}
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
		for _, inflight := range []int{32, 1} {
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

// BenchmarkPlainPublisher is the upstream's own limit: a bare pipelined
// QoS 1 publisher on the same codec, same message, same window, no queue.
func BenchmarkPlainPublisher(b *testing.B) {
	for _, nodelay := range []bool{false, true} {
		m := benchMosquitto(b, nodelay)
		for _, window := range []int{32, 1} {
			b.Run(fmt.Sprintf("nodelay=%v/inflight=%d", nodelay, window), func(b *testing.B) {
				nc, err := net.Dial("tcp", m.Addr())
				if err != nil {
					b.Fatal(err)
				}
				defer nc.Close()
				r := packet.NewReader(nc, 0)
				r.SetVersion(packet.V5)
				w := bufio.NewWriter(nc)
				send := func(p packet.Packet) {
					buf, err := packet.Append(nil, p, packet.V5)
					if err != nil {
						b.Fatal(err)
					}
					w.Write(buf)
				}
				send(&packet.Connect{ProtocolName: "MQTT", Version: packet.V5, CleanStart: true, ClientID: "plain"})
				w.Flush()
				if _, err := r.ReadPacket(); err != nil {
					b.Fatal(err)
				}
				credits := make(chan struct{}, window)
				for range window {
					credits <- struct{}{}
				}
				acked := make(chan struct{})
				go func() {
					for i := 0; i < b.N; {
						p, err := r.ReadPacket()
						if err != nil {
							b.Error(err)
							return
						}
						if _, ok := p.(*packet.Puback); ok {
							i++
							credits <- struct{}{}
						}
					}
					close(acked)
				}()
				payload := make([]byte, 64)
				var buf []byte
				b.ReportAllocs()
				b.ResetTimer()
				start := time.Now()
				for i := range b.N {
					select {
					case <-credits:
					default:
						w.Flush()
						<-credits
					}
					buf, _ = packet.Append(buf[:0], &packet.Publish{QoS: 1, PacketID: uint16(1 + i%65535), Topic: "bench/a", Payload: payload}, packet.V5)
					w.Write(buf)
				}
				w.Flush()
				<-acked
				b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
			})
		}
	}
}

// BenchmarkDrainQueue drains a backlog of b.N QoS 1 messages from the real
// queue (Badger, durable acks) to mosquitto with the default window.
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
		batch = append(batch, queue.Message{Topic: "bench/q", Payload: payload, QoS: 1})
		if len(batch) == cap(batch) || i == b.N-1 {
			if err := q.Append(context.Background(), batch...); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	c := newClient(b, Options{URL: m.URL(), ClientID: "drain", CleanStart: true}, queueSource{q}, nil)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	stop := run(b, c)
	for q.Stats().Messages > 0 {
		time.Sleep(5 * time.Millisecond)
	}
	el := time.Since(start)
	b.StopTimer()
	stop()
	b.ReportMetric(float64(b.N)/el.Seconds(), "msgs/s")
}
