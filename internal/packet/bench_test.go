package packet

import (
	"bufio"
	"bytes"
	"io"
	"testing"
)

// benchPublish is a typical telemetry message: QoS 1, a few levels of topic,
// a 200-byte payload.
func benchPublish(v Version) *Publish {
	p := &Publish{QoS: 1, Topic: "site/line-3/press-7/telemetry", PacketID: 42, Payload: bytes.Repeat([]byte("x"), 200)}
	if v == V5 {
		p.Properties = Properties{PayloadFormat: 1, HasPayloadFormat: true, MessageExpiry: 3600, HasMessageExpiry: true}
	}
	return p
}

func BenchmarkEncodePublish(b *testing.B) {
	for _, v := range []Version{V311, V5} {
		b.Run(v.String(), func(b *testing.B) {
			p := benchPublish(v)
			buf := make([]byte, 0, 512)
			b.ReportAllocs()
			for b.Loop() {
				var err error
				buf, err = Append(buf[:0], p, v)
				if err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(int64(len(buf)))
		})
	}
}

// repeatReader serves the same bytes forever.
type repeatReader struct {
	b   []byte
	off int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], r.b[r.off:])
		n += c
		r.off = (r.off + c) % len(r.b)
	}
	return n, nil
}

func BenchmarkDecodePublish(b *testing.B) {
	for _, v := range []Version{V311, V5} {
		b.Run(v.String(), func(b *testing.B) {
			enc, err := Append(nil, benchPublish(v), v)
			if err != nil {
				b.Fatal(err)
			}
			r := NewReader(bufio.NewReaderSize(&repeatReader{b: enc}, 64<<10), 0)
			r.SetVersion(v)
			b.SetBytes(int64(len(enc)))
			b.ReportAllocs()
			for b.Loop() {
				p, err := r.ReadPacket()
				if err != nil {
					b.Fatal(err)
				}
				if p.(*Publish).PacketID != 42 {
					b.Fatal("wrong packet")
				}
			}
		})
	}
}

var _ io.Reader = (*repeatReader)(nil)
