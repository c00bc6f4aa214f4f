package main

import (
	"fmt"
	"testing"
	"time"

	"holdfast/internal/packet"
	"holdfast/internal/testclient"
	"holdfast/internal/testenv"
)

// BenchmarkBacklogDrain measures how fast the binary drains a backlog to a
// real mosquitto once the upstream comes back: b.N QoS 1 messages of 200
// bytes are queued while the upstream is down, then the clock runs from the
// moment mosquitto starts until the queue is empty. Run it with a fixed
// count, e.g. -benchtime 20000x.
func BenchmarkBacklogDrain(b *testing.B) {
	up := testenv.StartMosquitto(b, testenv.MosquittoOptions{})
	up.Stop()
	g := newGateway(b, up.Addr(), "")
	setConfig(b, g, "  level: debug\n", "  level: warn\n")
	g.start()
	c, err := testclient.Dial(g.listen, testclient.Options{ClientID: "bench", CleanStart: true})
	if err != nil {
		b.Fatal(err)
	}
	payload := make([]byte, 200)
	for i := 0; i < b.N; i++ {
		if _, err := c.Publish(&packet.Publish{Topic: fmt.Sprintf("bench/%d", i%16), QoS: 0, Payload: payload}); err != nil {
			b.Fatal(err)
		}
	}
	c.Disconnect()
	testenv.WaitFor(b, time.Minute, "backlog queued", func() bool {
		st, err := g.status()
		return err == nil && st.Backlog.Messages == uint64(b.N)
	})
	b.ResetTimer()
	start := time.Now()
	up.Start()
	g.waitDrained(10 * time.Minute)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

// BenchmarkIngestQoS1 measures durable QoS 1 ingest through the binary:
// publishers each keep a window of 64 PUBLISHes (200 bytes) unacknowledged,
// as devices with that Receive Maximum do; every PUBACK means the message is
// fsynced in the queue. The upstream is unreachable, so nothing drains.
func BenchmarkIngestQoS1(b *testing.B) {
	for _, publishers := range []int{1, 8} {
		b.Run(fmt.Sprintf("publishers=%d/window=64", publishers), func(b *testing.B) {
			g := newGateway(b, fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(b)), "")
			setConfig(b, g, "  level: debug\n", "  level: warn\n")
			g.start()
			defer g.term()
			per := b.N / publishers
			if per == 0 {
				per = 1
			}
			clients := make([]*testclient.Client, publishers)
			for i := range clients {
				c, err := testclient.Dial(g.listen, testclient.Options{ClientID: fmt.Sprintf("ingest-%d", i), CleanStart: true})
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				clients[i] = c
			}
			payload := make([]byte, 200)
			b.ResetTimer()
			start := time.Now()
			errs := make(chan error, 2*publishers)
			for i, c := range clients {
				window := make(chan struct{}, 64)
				go func() { // acknowledgements
					for k := 0; k < per; k++ {
						p, err := c.ReadPacket(time.Minute)
						if err != nil {
							errs <- err
							return
						}
						if a, ok := p.(*packet.Puback); !ok || a.ReasonCode.IsError() {
							errs <- fmt.Errorf("publisher %d: got %v", i, p)
							return
						}
						<-window
					}
					errs <- nil
				}()
				go func() { // publishes, ids reused in order as PUBACKs come in order
					for k := 0; k < per; k++ {
						window <- struct{}{}
						p := &packet.Publish{Topic: fmt.Sprintf("ingest/%d", i), QoS: 1, PacketID: uint16(k%64) + 1, Payload: payload}
						if err := c.Send(p); err != nil {
							errs <- err
							return
						}
					}
				}()
			}
			for range clients {
				if err := <-errs; err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(per*publishers)/time.Since(start).Seconds(), "msgs/s")
		})
	}
}
