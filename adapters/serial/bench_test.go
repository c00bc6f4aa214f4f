package serial

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"holdfast/internal/testenv"
)

// nmeaStream returns n sentences (GGA and RMC alternating) as a GPS prints them.
func nmeaStream(n int) []byte {
	var b bytes.Buffer
	for i := 0; i < n; i++ {
		s := i % 60
		if i%2 == 0 {
			b.WriteString(nmeaWithChecksum(fmt.Sprintf("GPGGA,1235%02d.00,4807.%03d,N,01131.%03d,E,1,08,0.9,545.4,M,46.9,M,,", s, i%1000, (i*7)%1000)))
		} else {
			b.WriteString(nmeaWithChecksum(fmt.Sprintf("GPRMC,1235%02d.00,A,4807.%03d,N,01131.%03d,E,022.4,084.4,230394,003.1,W", s, i%1000, (i*7)%1000)))
		}
		b.WriteString("\r\n")
	}
	return b.Bytes()
}

// BenchmarkLineNMEA: line framing plus NMEA parsing plus JSON encoding, fed
// in 4 KiB reads, as the read loop does (without the bus).
func BenchmarkLineNMEA(b *testing.B) {
	const sentences = 1000
	data := nmeaStream(sentences)
	f := newFramer(Framing{Mode: FramingLine, Delimiter: "\n", MaxLength: DefaultMaxLength})
	k := mustCodec(b, Payload{Parse: ParseNMEA})
	var out []byte
	frames, errs := 0, 0
	emit := func(fr []byte) {
		p, _, err := k.encode(out[:0], fr, time.Time{})
		if err != nil {
			errs++
			return
		}
		out = p
		frames++
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for off := 0; off < len(data); off += 4096 {
			f.feed(data[off:min(off+4096, len(data))], emit)
		}
	}
	b.StopTimer()
	if errs != 0 || frames != sentences*b.N {
		b.Fatalf("%d frames, %d errors", frames, errs)
	}
	b.ReportMetric(float64(frames)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkLineFraming: line framing alone.
func BenchmarkLineFraming(b *testing.B) {
	data := nmeaStream(1000)
	f := newFramer(Framing{Mode: FramingLine, Delimiter: "\n", MaxLength: DefaultMaxLength})
	frames := 0
	emit := func([]byte) { frames++ }
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for off := 0; off < len(data); off += 4096 {
			f.feed(data[off:min(off+4096, len(data))], emit)
		}
	}
	b.ReportMetric(float64(frames)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkPTYNMEA: the whole adapter on a socat pseudo-terminal: sentences
// written on the sensor end until all are published on the in-memory bus.
func BenchmarkPTYNMEA(b *testing.B) {
	testenv.LookTool(b, "socat", "socat")
	pty := startPTY(b, b.TempDir(), "gps")
	bus := newMemBus()
	a := newTestAdapter(b, PortConfig{Name: "gps", Device: pty.Dev, Payload: Payload{Parse: ParseNMEA}, Topic: "gps/{type}"}, bus)
	runAdapter(b, a)
	waitConnected(b, a)
	data := nmeaStream(1000)
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		pty.write(data)
		bus.waitMessages(b, (i+1)*1000)
	}
	b.StopTimer()
	if n := len(bus.messages()); n != b.N*1000 {
		b.Fatalf("%d messages, want %d", n, b.N*1000)
	}
	b.ReportMetric(float64(b.N*1000)/b.Elapsed().Seconds(), "msgs/s")
}
