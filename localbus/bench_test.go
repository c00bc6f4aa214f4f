package localbus

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"holdfast/internal/packet"
	"holdfast/internal/testclient"
)

// publishWindow sends n QoS 1 PUBLISHes keeping up to window unacknowledged,
// as a device with Receive Maximum window does, and waits for every PUBACK.
func publishWindow(b *testing.B, c *testclient.Client, n, window int, payload []byte) {
	sem := make(chan struct{}, window)
	errc := make(chan error, 1)
	go func() {
		for i := 0; i < n; i++ {
			p, err := c.ReadPacket(time.Minute)
			if err != nil {
				errc <- err
				return
			}
			if a, ok := p.(*packet.Puback); !ok || a.ReasonCode != 0 {
				errc <- fmt.Errorf("got %#v", p)
				return
			}
			<-sem
		}
		errc <- nil
	}()
	for i := 0; i < n; i++ {
		sem <- struct{}{}
		if err := c.Send(&packet.Publish{Topic: "bench/t", QoS: 1, PacketID: uint16(i%60000 + 1), Payload: payload}); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
}

// BenchmarkIngestQoS1 measures durable QoS 1 ingest through the broker:
// publishers with a window of 64 (or 1, for comparison), a store that
// completes at once or after a 2 ms commit latency (group commit, as the
// queue's fsync does).
func BenchmarkIngestQoS1(b *testing.B) {
	type run struct {
		lat          time.Duration
		pubs, window int
	}
	runs := []run{
		{0, 1, 64}, {0, 8, 64},
		{2 * time.Millisecond, 1, 1}, // no pipelining possible: one message per commit
		{2 * time.Millisecond, 1, 64}, {2 * time.Millisecond, 8, 64},
	}
	for _, r := range runs {
		lat, pubs, window := r.lat, r.pubs, r.window
		{
			b.Run(fmt.Sprintf("commit=%v/publishers=%d/window=%d", lat, pubs, window), func(b *testing.B) {
				st := newMemStore(b)
				st.discard = true
				if lat > 0 {
					st.withLatency(lat)
				}
				tb := startBroker(b, Options{ReceiveMaximum: 64}, st, nil)
				clients := make([]*testclient.Client, pubs)
				for i := range clients {
					clients[i] = dial(b, tb.addr, testclient.Options{ClientID: fmt.Sprintf("p%d", i), CleanStart: true})
				}
				payload := make([]byte, 64)
				b.ReportAllocs()
				b.ResetTimer()
				start := time.Now()
				var wg sync.WaitGroup
				per := max(b.N/pubs, 1)
				for _, c := range clients {
					wg.Add(1)
					go func() {
						defer wg.Done()
						publishWindow(b, c, per, window, payload)
					}()
				}
				wg.Wait()
				b.ReportMetric(float64(per*pubs)/time.Since(start).Seconds(), "msgs/s")
			})
		}
	}
}

// BenchmarkFanOut measures local delivery: one QoS 0 publisher, ten QoS 0
// subscribers of the same topic; msgs/s counts deliveries. MaxQueuedMessages
// is b.N, so that a subscriber that falls behind on a loaded machine has
// nothing dropped (it would wait for it forever); the drops of a slow reader
// are TestSlowSubscriberQoS0Bounded's.
func BenchmarkFanOut(b *testing.B) {
	const subs = 10
	st := newMemStore(b)
	st.discard = true
	tb := startBroker(b, Options{MaxQueuedMessages: max(b.N, DefaultMaxQueuedMessages)}, st, nil)
	var wg sync.WaitGroup
	clients := make([]*testclient.Client, subs)
	for i := range clients {
		clients[i] = dial(b, tb.addr, testclient.Options{ClientID: fmt.Sprintf("s%d", i), CleanStart: true})
		if _, err := clients[i].Subscribe(packet.Subscription{Filter: "fan/#"}); err != nil {
			b.Fatal(err)
		}
	}
	pub := dial(b, tb.addr, testclient.Options{ClientID: "pub", CleanStart: true})
	payload := make([]byte, 64)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range b.N {
				if _, err := c.ReadPacket(time.Minute); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	for range b.N {
		if err := pub.Send(&packet.Publish{Topic: "fan/x", Payload: payload}); err != nil {
			b.Fatal(err)
		}
	}
	wg.Wait()
	b.ReportMetric(float64(b.N*subs)/time.Since(start).Seconds(), "msgs/s")
}

// BenchmarkPublishInProcess measures Broker.Publish, the path of messages
// made in the process (adapters, downlink rules): one QoS 0 message with a
// 200-byte payload at a time, checked, handed to a store that completes at
// once, and routed to no subscriber.
func BenchmarkPublishInProcess(b *testing.B) {
	st := newMemStore(b)
	st.discard = true
	tb := startBroker(b, Options{}, st, nil)
	m := &Message{Topic: "site/7/device/107/temperature", Payload: make([]byte, 200)}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		if err := tb.Publish(ctx, m); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}
