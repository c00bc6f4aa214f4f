package main

import (
	"fmt"
	"os"
	"strings"
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

// setConfig replaces old with new in the gateway's configuration file.
func setConfig(t testing.TB, g *gateway, old, new string) {
	t.Helper()
	b, err := os.ReadFile(g.config)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		t.Fatalf("no %q in the gateway's configuration", old)
	}
	if err := os.WriteFile(g.config, []byte(strings.Replace(string(b), old, new, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
}
