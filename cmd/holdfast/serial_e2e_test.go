package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"holdfast/internal/packet"
	"holdfast/internal/testclient"
	"holdfast/internal/testenv"
)

// TestSerialToUpstream: lines a sensor prints on a serial port (a socat
// pseudo-terminal pair) arrive at a real upstream mosquitto through holdfast,
// parsed into JSON by the port's regex, and a command published locally on
// the write-back topic reaches the sensor.
func TestSerialToUpstream(t *testing.T) {
	socat := testenv.LookTool(t, "socat", "socat")
	up := testenv.StartMosquitto(t, testenv.MosquittoOptions{})

	dir := t.TempDir()
	dev, sensorPath := filepath.Join(dir, "ttyTEST"), filepath.Join(dir, "sensor")
	cmd := exec.Command(socat, "pty,raw,echo=0,link="+dev, "pty,raw,echo=0,link="+sensorPath)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	testenv.WaitFor(t, 10*time.Second, "socat's pty links", func() bool {
		_, e1 := os.Stat(dev)
		_, e2 := os.Stat(sensorPath)
		return e1 == nil && e2 == nil
	})
	sensor, err := os.OpenFile(sensorPath, os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer sensor.Close()

	g := newGateway(t, up.Addr(), fmt.Sprintf(`serial:
  - name: weather
    device: %s
    baud: 9600
    payload:
      parse: regex
      regex: '^T=(?P<temp>-?[0-9.]+) H=(?P<hum>[0-9]+)$'
      numbers: [temp, hum]
    topic: "e2e/serial/{name}"
    write:
      topic: "cmd/weather"
      append: "\r\n"
`, dev))
	sub, err := testclient.Dial(up.Addr(), testclient.Options{ClientID: "serial-sub", CleanStart: true})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if _, err := sub.Subscribe(packet.Subscription{Filter: "e2e/serial/#", QoS: 1}); err != nil {
		t.Fatal(err)
	}
	g.start()

	const n = 50
	for i := 0; i < n; i++ {
		// Garbage between good lines is counted and skipped.
		line := fmt.Sprintf("T=%d.5 H=%d\r\n", i, 40+i%10)
		if i%10 == 3 {
			line = "\x00\xff#garbage\r\n" + line
		}
		if _, err := sensor.WriteString(line); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < n; i++ {
		p, err := sub.Receive(20 * time.Second)
		if err != nil {
			t.Fatalf("upstream message %d: %v", i, err)
		}
		want := fmt.Sprintf(`{"temp":%d.5,"hum":%d}`, i, 40+i%10)
		if p.Topic != "e2e/serial/weather" || string(p.Payload) != want {
			t.Fatalf("upstream message %d: %s %s, want e2e/serial/weather %s", i, p.Topic, p.Payload, want)
		}
	}
	st, err := g.status()
	if err != nil || len(st.Serial) != 1 || !st.Serial[0].Connected || st.Serial[0].ParseErrors != 5 ||
		st.Serial[0].Frames != n || st.Serial[0].Bytes == 0 {
		t.Fatalf("status serial = %+v, %v; want one connected port with %d frames, bytes and 5 parse errors", st.Serial, err, n)
	}
	// The same counters for an operator and for a scraper.
	if human := hf(t, "status", "--config", g.config); !strings.Contains(human, fmt.Sprintf("serial:    weather %s open, %d frames, 5 parse errors", st.Serial[0].Device, n)) {
		t.Errorf("holdfast status does not show the port:\n%s", human)
	}
	resp, err := http.Get("http://" + g.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`holdfast_serial_connected{port="weather"} 1`,
		fmt.Sprintf(`holdfast_serial_frames_total{port="weather"} %d`, n),
		`holdfast_serial_parse_errors_total{port="weather"} 5`,
		`holdfast_serial_open_failures_total{port="weather"} 0`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	// Write-back: a local client's command is written to the port.
	dev2, err := testclient.Dial(g.listen, testclient.Options{ClientID: "commander", CleanStart: true})
	if err != nil {
		t.Fatal(err)
	}
	defer dev2.Disconnect()
	if _, err := dev2.Publish(&packet.Publish{Topic: "cmd/weather", QoS: 1, Payload: []byte("RESET")}); err != nil {
		t.Fatal(err)
	}
	sensor.SetReadDeadline(time.Now().Add(20 * time.Second))
	buf := make([]byte, 0, 16)
	for !strings.Contains(string(buf), "RESET\r\n") {
		b := make([]byte, 16)
		k, err := sensor.Read(b)
		if err != nil {
			t.Fatalf("sensor read after %q: %v", buf, err)
		}
		buf = append(buf, b[:k]...)
	}
}
