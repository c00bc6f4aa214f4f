package serial

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"holdfast/internal/testenv"
)

func TestPTYLineRegexOverlongGarbage(t *testing.T) {
	pty := startPTY(t, t.TempDir(), "dev")
	bus := newMemBus()
	a := newTestAdapter(t, PortConfig{
		Device:  pty.Dev,
		Framing: Framing{MaxLength: 64},
		Payload: Payload{
			Parse:     ParseRegex,
			Regex:     `^(?P<id>\w+) T=(?P<temp>-?[0-9.]+)$`,
			Numbers:   []string{"temp"},
			Timestamp: TimestampUnixMS,
		},
		Topic:   "sensors/{name}/{id}",
		OnError: OnError{Action: OnErrorPublish, Topic: "sensors/{name}/errors"},
	}, bus)
	runAdapter(t, a)
	waitConnected(t, a)

	pty.write([]byte("s1 T=21.5\r\n"))
	pty.write([]byte(strings.Repeat("x", 200) + "\n")) // overlong: skipped
	pty.write([]byte("s2 T=-4\n"))
	pty.write([]byte("\x00\x01\xfe\xff garbage\n")) // binary: parse error, published raw
	pty.write([]byte("s1 T=22"))                    // split across writes
	pty.write([]byte(".0\n"))

	msgs := bus.untilSentinel(t, pty, []byte("end T=0\n"), func(m Message) bool { return m.Topic == "sensors/sensor/end" })
	if len(msgs) != 4 {
		t.Fatalf("got %d messages before the sentinel: %+v", len(msgs), msgs)
	}
	want := []struct {
		topic, id string
		temp      float64
	}{{"sensors/sensor/s1", "s1", 21.5}, {"sensors/sensor/s2", "s2", -4}, {"", "", 0}, {"sensors/sensor/s1", "s1", 22}}
	for i, w := range want {
		m := msgs[i]
		if m.QoS != 1 || m.Retain {
			t.Errorf("msg %d: qos %d retain %v", i, m.QoS, m.Retain)
		}
		if w.topic == "" {
			if m.Topic != "sensors/sensor/errors" || string(m.Payload) != "\x00\x01\xfe\xff garbage" {
				t.Errorf("error message = %q %q", m.Topic, m.Payload)
			}
			continue
		}
		var got struct {
			ID   string  `json:"id"`
			Temp float64 `json:"temp"`
			TS   int64   `json:"ts"`
		}
		if err := json.Unmarshal(m.Payload, &got); err != nil {
			t.Fatalf("msg %d %s: %v", i, m.Payload, err)
		}
		if m.Topic != w.topic || got.ID != w.id || got.Temp != w.temp || time.Since(time.UnixMilli(got.TS)).Abs() > time.Hour {
			t.Errorf("msg %d = %s %s", i, m.Topic, m.Payload)
		}
	}
	s := a.Stats()
	if s.Frames != 5 || s.Overlong != 1 || s.ParseErrors != 1 || s.Disconnects != 0 {
		t.Errorf("stats = %+v", s)
	}
	if s.Bytes < 200 {
		t.Errorf("bytes = %d", s.Bytes)
	}
}

func TestPTYNMEA(t *testing.T) {
	pty := startPTY(t, t.TempDir(), "gps")
	bus := newMemBus()
	a := newTestAdapter(t, PortConfig{
		Name:    "gps",
		Device:  pty.Dev,
		Baud:    4800,
		Payload: Payload{Parse: ParseNMEA},
		Topic:   "{name}/{talker}/{type}",
		QoS:     new(byte),
	}, bus)
	runAdapter(t, a)
	waitConnected(t, a)
	pty.write([]byte("$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47\r\n" +
		"$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*48\r\n" + // bad checksum: dropped
		"$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A\r\n" +
		"$GPGSV,3,1,11,03,03,111,00,04,15,270,00,06,01,010,00,13,06,292,00*74\r\n"))
	msgs := bus.untilSentinel(t, pty, []byte(nmeaWithChecksum("GPZDA,201530.00,04,07,2002,00,00")+"\r\n"),
		func(m Message) bool { return m.Topic == "gps/GP/ZDA" })
	if len(msgs) != 3 {
		t.Fatalf("%d messages before the sentinel, want 3: %+v", len(msgs), msgs)
	}
	if n := a.Stats().ParseErrors; n != 1 {
		t.Errorf("parse errors = %d, want 1 (the bad checksum)", n)
	}
	topics := []string{"gps/GP/GGA", "gps/GP/RMC", "gps/GP/GSV"}
	for i, m := range msgs {
		if m.Topic != topics[i] || m.QoS != 0 {
			t.Errorf("msg %d on %s qos %d", i, m.Topic, m.QoS)
		}
	}
	var gga struct{ Lat, Lon, Altitude float64 }
	if err := json.Unmarshal(msgs[0].Payload, &gga); err != nil || gga.Lat != 48.1173 || gga.Lon != 11.5166667 || gga.Altitude != 545.4 {
		t.Errorf("GGA %s: %+v %v", msgs[0].Payload, gga, err)
	}
}

func TestPTYCSV(t *testing.T) {
	pty := startPTY(t, t.TempDir(), "dev")
	bus := newMemBus()
	a := newTestAdapter(t, PortConfig{
		Device:  pty.Dev,
		Framing: Framing{Delimiter: `\r`},
		Payload: Payload{Parse: ParseCSV, Columns: []string{"station", "temp", "_", "ok"}, Separator: ";", Numbers: []string{"temp"}},
		Topic:   "csv/{station}",
		Retain:  true,
	}, bus)
	runAdapter(t, a)
	waitConnected(t, a)
	pty.write([]byte("north;-1.25;x;yes\rsouth;3;y;no\rbad;line\r"))
	msgs := bus.untilSentinel(t, pty, []byte("end;0;x;y\r"), func(m Message) bool { return m.Topic == "csv/end" })
	if n := a.Stats().ParseErrors; n != 1 {
		t.Errorf("parse errors = %d, want 1", n)
	}
	if len(msgs) != 2 || msgs[0].Topic != "csv/north" || string(msgs[0].Payload) != `{"station":"north","temp":-1.25,"ok":"yes"}` ||
		msgs[1].Topic != "csv/south" || string(msgs[1].Payload) != `{"station":"south","temp":3,"ok":"no"}` || !msgs[0].Retain {
		t.Errorf("messages: %+v", msgs)
	}
}

func TestPTYFixedHex(t *testing.T) {
	pty := startPTY(t, t.TempDir(), "dev")
	bus := newMemBus()
	a := newTestAdapter(t, PortConfig{
		Device:  pty.Dev,
		Framing: Framing{Mode: FramingFixed, Length: 4},
		Payload: Payload{Format: FormatHex},
	}, bus)
	runAdapter(t, a)
	waitConnected(t, a)
	pty.write([]byte{0xde, 0xad})
	pty.write([]byte{0xbe, 0xef, 0x00, 0x01, 0x02})
	pty.write([]byte{0x03, 0xff})
	// The 0xff left over starts the next frame: the sentinel completes it.
	msgs := bus.untilSentinel(t, pty, []byte{0xaa, 0xbb, 0xcc}, payloadIs("ffaabbcc"))
	if len(msgs) != 2 || string(msgs[0].Payload) != "deadbeef" || string(msgs[1].Payload) != "00010203" || msgs[0].Topic != "serial/sensor" {
		t.Errorf("messages: %+v", msgs)
	}
}

func TestPTYDelimitedGarbage(t *testing.T) {
	pty := startPTY(t, t.TempDir(), "dev")
	bus := newMemBus()
	a := newTestAdapter(t, PortConfig{
		Device:  pty.Dev,
		Framing: Framing{Mode: FramingDelimited, Start: `\x02`, End: `\x03`, MaxLength: 16},
		Payload: Payload{Format: FormatBase64},
	}, bus)
	runAdapter(t, a)
	waitConnected(t, a)
	// 5 bytes of noise, a frame, 3 bytes of noise, an overlong frame, a frame.
	pty.write([]byte("\xff\x00\x7f\x80\x01\x02\x10\x20\x30\x03zz\x00\x02" + strings.Repeat("L", 40) + "\x03\x02ok\x03"))
	msgs := bus.untilSentinel(t, pty, []byte("\x02end\x03"), payloadIs(base64.StdEncoding.EncodeToString([]byte("end"))))
	if n := a.Stats().Overlong; n != 1 {
		t.Errorf("overlong = %d, want 1", n)
	}
	if len(msgs) != 2 || string(msgs[0].Payload) != base64.StdEncoding.EncodeToString([]byte{0x10, 0x20, 0x30}) || string(msgs[1].Payload) != "b2s=" {
		t.Errorf("messages: %+v", msgs)
	}
	if s := a.Stats(); s.Garbage != 8 {
		t.Errorf("garbage = %d, want 8", s.Garbage)
	}
}

func TestPTYSilencePoll(t *testing.T) {
	pty := startPTY(t, t.TempDir(), "dev")
	bus := newMemBus()
	request := []byte{0x01, 0x03, 0x00, 0x00, 0x00, 0x02, 0xc4, 0x0b}
	response := []byte{0x01, 0x03, 0x04, 0x00, 0xe6, 0x01, 0x9a, 0x7b, 0x5c}
	a := newTestAdapter(t, PortConfig{
		Device:  pty.Dev,
		Baud:    19200,
		Framing: Framing{Mode: FramingSilence, Silence: 100 * time.Millisecond},
		Payload: Payload{Format: FormatHex},
		Poll:    Poll{Interval: 200 * time.Millisecond, Request: "hex:01 03 00 00 00 02 c4 0b"},
	}, bus)
	runAdapter(t, a)
	for i := 0; i < 3; i++ {
		if got := pty.readN(len(request)); !bytes.Equal(got, request) {
			t.Fatalf("poll %d: request %x, want %x", i, got, request)
		}
		// Answer in two writes, well within the silence interval.
		pty.write(response[:3])
		pty.write(response[3:])
		bus.waitMessages(t, i+1)
	}
	// The fourth answer is the sentinel: the three before it were one
	// frame each, nothing split by a pause or merged.
	if got := pty.readN(len(request)); !bytes.Equal(got, request) {
		t.Fatalf("poll 4: request %x, want %x", got, request)
	}
	msgs := bus.untilSentinel(t, pty, []byte{0x01, 0x83, 0x02}, payloadIs("018302"))
	if len(msgs) != 3 {
		t.Fatalf("%d frames before the sentinel, want 3: %+v", len(msgs), msgs)
	}
	for i, m := range msgs {
		if string(m.Payload) != fmt.Sprintf("%x", response) {
			t.Errorf("response %d = %s", i, m.Payload)
		}
	}
	if s := a.Stats(); s.Polls < 3 {
		t.Errorf("polls = %d", s.Polls)
	}
}

func TestPTYWriteBack(t *testing.T) {
	pty := startPTY(t, t.TempDir(), "dev")
	bus := newMemBus()
	a := newTestAdapter(t, PortConfig{
		Device: pty.Dev,
		Write:  Write{Topic: "cmd/sensor/+", Append: `\r\n`},
	}, bus)
	runAdapter(t, a)
	waitConnected(t, a)
	testenv.WaitFor(t, waitLong, "write-back subscription", func() bool { return bus.subscribers() == 1 })
	if n := bus.inject("cmd/sensor/set", []byte("RATE 10")); n != 1 {
		t.Fatalf("%d subscribers got the command", n)
	}
	if got := pty.readN(9); string(got) != "RATE 10\r\n" {
		t.Fatalf("sensor read %q", got)
	}
	bus.inject("cmd/sensor/x", []byte("STOP"))
	if got := pty.readN(6); string(got) != "STOP\r\n" {
		t.Fatalf("sensor read %q", got)
	}
	testenv.WaitFor(t, waitLong, "write-backs counted", func() bool { return a.Stats().WriteBacks == 2 })
	bus.inject("other/topic", []byte("ignored"))

	// The sensor answers; reading goes on while writing.
	pty.write([]byte("ok\n"))
	if m := bus.waitMessages(t, 1); string(m[0].Payload) != "ok" {
		t.Errorf("answer %q", m[0].Payload)
	}
}

// TestPTYWriteBackNameInTopic: {name} in write.topic is the port's name,
// as in the documented examples.
func TestPTYWriteBackNameInTopic(t *testing.T) {
	pty := startPTY(t, t.TempDir(), "dev")
	bus := newMemBus()
	a := newTestAdapter(t, PortConfig{Name: "weather", Device: pty.Dev, Write: Write{Topic: "sensors/{name}/cmd"}}, bus)
	runAdapter(t, a)
	waitConnected(t, a)
	testenv.WaitFor(t, waitLong, "write-back subscription", func() bool { return bus.subscribers() == 1 })
	if n := bus.inject("sensors/weather/cmd", []byte("RATE 10")); n != 1 {
		t.Fatalf("%d subscribers got the command", n)
	}
	if got := pty.readN(7); string(got) != "RATE 10" {
		t.Fatalf("sensor read %q", got)
	}
}

func TestPTYWriteBackHex(t *testing.T) {
	pty := startPTY(t, t.TempDir(), "dev")
	bus := newMemBus()
	a := newTestAdapter(t, PortConfig{Device: pty.Dev, Write: Write{Topic: "cmd", Format: WriteHex}}, bus)
	runAdapter(t, a)
	waitConnected(t, a)
	testenv.WaitFor(t, waitLong, "write-back subscription", func() bool { return bus.subscribers() == 1 })
	bus.inject("cmd", []byte("not hex"))
	bus.inject("cmd", []byte("00ff10"))
	if got := pty.readN(3); !bytes.Equal(got, []byte{0, 0xff, 0x10}) {
		t.Fatalf("sensor read %x", got)
	}
	if s := a.Stats(); s.WriteErrors != 1 {
		t.Errorf("write errors = %d, want 1 (bad hex)", s.WriteErrors)
	}
}

// TestPTYUnplugReplug kills socat (the port disappears as an unplugged USB
// adapter does) and starts it again under the same name: the adapter notices,
// reopens with backoff, and loses nothing written after the reconnect.
func TestPTYUnplugReplug(t *testing.T) {
	pty := startPTY(t, t.TempDir(), "dev")
	bus := newMemBus()
	initial := 50 * time.Millisecond
	a := newTestAdapter(t, PortConfig{Device: pty.Dev, Reopen: Reopen{Initial: initial, Max: 400 * time.Millisecond}}, bus)
	runAdapter(t, a)
	waitConnected(t, a)
	pty.write([]byte("before\n"))
	bus.waitMessages(t, 1)
	bus.untilSentinel(t, pty, []byte("before end\n"), payloadIs("before end"))

	for cycle := 1; cycle <= 2; cycle++ {
		pty.unplug()
		lost := time.Now()
		testenv.WaitFor(t, waitLong, "disconnect noticed", func() bool { return a.Stats().Disconnects == uint64(cycle) })
		if a.Stats().Connected {
			t.Fatal("still connected after unplug")
		}
		// Let it fail to reopen a few times.
		failuresBefore := a.Stats().OpenFailures
		testenv.WaitFor(t, waitLong, "reopen attempts", func() bool { return a.Stats().OpenFailures >= failuresBefore+3 })
		pty.replug()
		waitConnected(t, a)
		down := time.Since(lost)
		s := a.Stats()
		if s.Reconnects != uint64(cycle) {
			t.Fatalf("reconnects = %d, want %d", s.Reconnects, cycle)
		}
		// Each wait is at least initial*0.8 (jitter), and grows: far fewer
		// attempts than that bound means no spinning.
		if limit := uint64(down/(initial*8/10)) + 2; s.OpenFailures > limit {
			t.Fatalf("%d open attempts failed in %v: spinning (bound %d)", s.OpenFailures, down, limit)
		}
		base := len(bus.messages())
		const n = 200
		var all bytes.Buffer
		for i := 0; i < n; i++ {
			fmt.Fprintf(&all, "cycle %d line %d\n", cycle, i)
		}
		pty.write(all.Bytes())
		msgs := bus.untilSentinel(t, pty, fmt.Appendf(nil, "cycle %d end\n", cycle), payloadIs(fmt.Sprintf("cycle %d end", cycle)))
		if len(msgs) != base+n {
			t.Fatalf("%d messages after reconnect, want %d", len(msgs)-base, n)
		}
		for i, m := range msgs[base:] {
			if want := fmt.Sprintf("cycle %d line %d", cycle, i); string(m.Payload) != want {
				t.Fatalf("message %d = %q, want %q", i, m.Payload, want)
			}
		}
	}
	t.Logf("stats: %+v", a.Stats())
}

// TestPTYUSBMatchResolvedAgain: a port found by USB ids comes back under
// another name after a replug, and the adapter finds it there.
func TestPTYUSBMatchResolvedAgain(t *testing.T) {
	dir := t.TempDir()
	first := startPTY(t, dir, "ttyUSB0")
	bus := newMemBus()
	a := newTestAdapter(t, PortConfig{Match: Match{VID: "0403", PID: "6001", Serial: "A50285BI"}, Topic: "usb/{port}"}, bus)
	current := first.Dev
	var mu = make(chan struct{}, 1)
	mu <- struct{}{}
	a.listPorts = func() ([]PortInfo, error) {
		<-mu
		defer func() { mu <- struct{}{} }()
		ports := []PortInfo{
			{Name: "/dev/ttyS0"},
			{Name: filepath.Join(dir, "other"), IsUSB: true, VID: "0403", PID: "6001", SerialNumber: "OTHER"},
		}
		if _, err := os.Stat(current); err == nil {
			ports = append(ports, PortInfo{Name: current, IsUSB: true, VID: "0403", PID: "6001", SerialNumber: "A50285BI"})
		}
		return ports, nil
	}
	runAdapter(t, a)
	waitConnected(t, a)
	firstPort := ptsName(t, first.Dev)
	first.write([]byte("one\n"))
	bus.waitMessages(t, 1)

	first.unplug()
	testenv.WaitFor(t, waitLong, "disconnect", func() bool { return a.Stats().Disconnects == 1 })
	second := startPTY(t, dir, "ttyUSB1")
	<-mu
	current = second.Dev
	mu <- struct{}{}
	testenv.WaitFor(t, waitLong, "reopen on the new name", func() bool { s := a.Stats(); return s.Connected && s.Device == second.Dev })
	secondPort := ptsName(t, second.Dev)
	second.write([]byte("two\n"))
	msgs := bus.untilSentinel(t, second, []byte("end\n"), payloadIs("end"))
	if len(msgs) != 2 || msgs[0].Topic != "usb/"+firstPort || msgs[1].Topic != "usb/"+secondPort || string(msgs[1].Payload) != "two" {
		t.Errorf("messages: %+v, want on usb/%s then usb/%s", msgs, firstPort, secondPort)
	}
}

// ptsName is the kernel's name of the pty a socat link points to: "3" for
// /dev/pts/3.
func ptsName(t *testing.T, link string) string {
	t.Helper()
	p, err := filepath.EvalSymlinks(link)
	if err != nil || filepath.Dir(p) != "/dev/pts" {
		t.Fatalf("socat link %s leads to %q, %v; want /dev/pts/N", link, p, err)
	}
	return filepath.Base(p)
}

// TestPTYPortIsKernelName: with the device given as a by-id style link,
// {port} (in the topic and in on_error.topic) is the name of the device node
// it leads to, not the link's; Stats.Device stays the configured path.
func TestPTYPortIsKernelName(t *testing.T) {
	dir := t.TempDir()
	pty := startPTY(t, dir, "ttyUSB0")
	byID := filepath.Join(dir, "serial", "by-id")
	if err := os.MkdirAll(byID, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(byID, "usb-FTDI_FT232R_USB_UART_A50285BI-if00-port0")
	if err := os.Symlink("../../ttyUSB0", link); err != nil {
		t.Fatal(err)
	}
	bus := newMemBus()
	a := newTestAdapter(t, PortConfig{
		Device:  link,
		Payload: Payload{Parse: ParseRegex, Regex: `^T=(?P<t>[0-9]+)$`},
		Topic:   "t/{port}/{name}",
		OnError: OnError{Action: OnErrorPublish, Topic: "e/{port}"},
	}, bus)
	runAdapter(t, a)
	waitConnected(t, a)
	port := ptsName(t, pty.Dev)
	pty.write([]byte("T=1\nbad\n"))
	msgs := bus.untilSentinel(t, pty, []byte("T=2\n"), payloadIs(`{"t":"2"}`))
	if len(msgs) != 2 || msgs[0].Topic != "t/"+port+"/sensor" || msgs[1].Topic != "e/"+port {
		t.Errorf("messages %+v, want on t/%s/sensor and e/%s", msgs, port, port)
	}
	if d := a.Stats().Device; d != link {
		t.Errorf("Stats.Device = %q, want the configured %q", d, link)
	}
}

func TestRunMissingPortNoSpin(t *testing.T) {
	bus := newMemBus()
	initial := 20 * time.Millisecond
	a := newTestAdapter(t, PortConfig{Device: filepath.Join(t.TempDir(), "absent"), Reopen: Reopen{Initial: initial, Max: 80 * time.Millisecond}}, bus)
	start := time.Now()
	stop := runAdapter(t, a)
	testenv.WaitFor(t, waitLong, "open attempts", func() bool { return a.Stats().OpenFailures >= 5 })
	stop()
	elapsed := time.Since(start)
	if s := a.Stats(); s.OpenFailures > uint64(elapsed/(initial*8/10))+2 || s.Connected || s.Disconnects != 0 {
		t.Errorf("after %v: %+v", elapsed, s)
	}
}

func TestPublishRefused(t *testing.T) {
	pty := startPTY(t, t.TempDir(), "dev")
	bus := newMemBus()
	bus.refuse = errRefused
	a := newTestAdapter(t, PortConfig{Device: pty.Dev}, bus)
	runAdapter(t, a)
	waitConnected(t, a)
	pty.write([]byte("a\nb\n"))
	testenv.WaitFor(t, waitLong, "refusals counted", func() bool { return a.Stats().PublishErrors == 2 })
	bus.mu.Lock()
	bus.refuse = nil
	bus.mu.Unlock()
	pty.write([]byte("c\n"))
	if m := bus.untilSentinel(t, pty, []byte("end\n"), payloadIs("end")); len(m) != 1 || string(m[0].Payload) != "c" {
		t.Errorf("got %+v, want c alone", m)
	}
	if s := a.Stats(); s.Frames != 2 || s.PublishErrors != 2 || s.Disconnects != 0 {
		t.Errorf("stats %+v", s)
	}
}

// TestPTYHasNoModemLines documents why the adapter leaves the modem lines
// alone: on a pseudo-terminal, asking to set DTR/RTS at open fails.
func TestPTYHasNoModemLines(t *testing.T) {
	pty := startPTY(t, t.TempDir(), "dev")
	p, err := serialOpenWithModemBits(pty.Dev)
	if err == nil {
		p.Close()
		t.Skip("this kernel's pseudo-terminals accept modem-line ioctls")
	}
	t.Logf("opening with DTR/RTS set: %v", err)
	bus := newMemBus()
	a := newTestAdapter(t, PortConfig{Device: pty.Dev}, bus)
	runAdapter(t, a)
	waitConnected(t, a) // the adapter's own open does not touch them, and succeeds
}

// TestPTYText: payload text publishes a UTF-8 line as it is; a line that
// is not UTF-8 is a parse error, dropped. With a timestamp the line is
// wrapped as {"data": ..., "ts": ...}.
func TestPTYText(t *testing.T) {
	pty, bus, a := ptyAdapter(t, PortConfig{Payload: Payload{Format: FormatText}})
	pty.write([]byte("température 21,5 °C\r\n\xff\xfe not text\nplain\n"))
	msgs := bus.untilSentinel(t, pty, []byte("end\n"), payloadIs("end"))
	if len(msgs) != 2 || string(msgs[0].Payload) != "température 21,5 °C" || string(msgs[1].Payload) != "plain" {
		t.Errorf("messages: %+v", msgs)
	}
	if s := a.Stats(); s.ParseErrors != 1 || s.Frames != 3 {
		t.Errorf("stats %+v, want 1 parse error (not UTF-8) and 3 frames", s)
	}

	pty2, bus2, _ := ptyAdapter(t, PortConfig{Payload: Payload{Format: FormatText, Timestamp: TimestampRFC3339}})
	before := time.Now()
	pty2.write([]byte("hello \"sensor\"\n"))
	m := bus2.waitMessages(t, 1)[0]
	var got struct {
		Data string    `json:"data"`
		TS   time.Time `json:"ts"`
	}
	if err := json.Unmarshal(m.Payload, &got); err != nil || got.Data != `hello "sensor"` || got.TS.Before(before.Add(-time.Second)) || got.TS.Location() != time.UTC {
		t.Errorf("payload %s: %+v %v", m.Payload, got, err)
	}
	if !bytes.HasPrefix(m.Payload, []byte(`{"data":"hello \"sensor\"","ts":"`)) {
		t.Errorf("payload %s, want data first, then ts", m.Payload)
	}
}

// TestPTYJSONPassThrough: payload json without a parser publishes a sensor's
// own JSON objects, the receive time added as the first field and a field
// used in the topic; anything else is a parse error.
func TestPTYJSONPassThrough(t *testing.T) {
	pty, bus, a := ptyAdapter(t, PortConfig{Payload: Payload{Format: FormatJSON, Timestamp: TimestampUnixMS}, Topic: "json/{id}"})
	pty.write([]byte(`{"id":"a1","t":21.5,"ok":true}` + "\r\n" +
		"not json\n" +
		`[1,2]` + "\n" + // not an object
		`{"t":1}` + "\n" + // no id for the topic
		`{"id":"a/b","t":{"x":1}}` + "\n")) // / in a topic field becomes _
	msgs := bus.untilSentinel(t, pty, []byte(`{"id":"end"}`+"\n"), func(m Message) bool { return m.Topic == "json/end" })
	if len(msgs) != 2 {
		t.Fatalf("%d messages before the sentinel, want 2: %+v", len(msgs), msgs)
	}
	for i, w := range []struct{ topic, rest string }{
		{"json/a1", `,"id":"a1","t":21.5,"ok":true}`},
		{"json/a_b", `,"id":"a/b","t":{"x":1}}`},
	} {
		m := msgs[i]
		ts, rest, ok := bytes.Cut(bytes.TrimPrefix(m.Payload, []byte(`{"ts":`)), []byte(","))
		ms, err := strconv.ParseInt(string(ts), 10, 64)
		if m.Topic != w.topic || !ok || err != nil || ","+string(rest) != w.rest || time.Since(time.UnixMilli(ms)).Abs() > time.Hour {
			t.Errorf("message %d: %s %s, want %s {\"ts\":<ms>%s", i, m.Topic, m.Payload, w.topic, w.rest)
		}
	}
	if s := a.Stats(); s.ParseErrors != 3 {
		t.Errorf("parse errors = %d, want 3 (not JSON, not an object, no id)", s.ParseErrors)
	}
}
