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

// benchDecodeStream decodes p, encoded for v, over and over through a Reader
// on a repeating stream, as a connection reads it.
func benchDecodeStream(b *testing.B, p Packet, v Version) {
	enc, err := Append(nil, p, v)
	if err != nil {
		b.Fatal(err)
	}
	r := NewReader(bufio.NewReaderSize(&repeatReader{b: enc}, 64<<10), 0)
	r.SetVersion(v)
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	for b.Loop() {
		got, err := r.ReadPacket()
		if err != nil {
			b.Fatal(err)
		}
		if got.Type() != p.Type() {
			b.Fatal("wrong packet")
		}
	}
}

// BenchmarkDecodeSubscribe decodes a SUBSCRIBE of three filters (5.0 with a
// subscription identifier).
func BenchmarkDecodeSubscribe(b *testing.B) {
	for _, v := range []Version{V311, V5} {
		b.Run(v.String(), func(b *testing.B) {
			s := &Subscribe{PacketID: 7, Subscriptions: []Subscription{
				{Filter: "site/+/press-7/telemetry", QoS: 1},
				{Filter: "site/line-3/#", QoS: 2},
				{Filter: "$SYS/broker/uptime"},
			}}
			if v == V5 {
				s.Properties.SubscriptionIdentifiers = []uint32{12}
			}
			benchDecodeStream(b, s, v)
		})
	}
}

// BenchmarkDecodeConnect decodes a CONNECT with a will, user name and
// password (5.0 with session expiry, receive maximum and a user property).
// Each CONNECT needs a fresh server-side Reader, so this goes through Decode.
func BenchmarkDecodeConnect(b *testing.B) {
	for _, v := range []Version{V311, V5} {
		b.Run(v.String(), func(b *testing.B) {
			c := &Connect{ProtocolName: "MQTT", Version: v, CleanStart: true, KeepAlive: 60, ClientID: "gateway-0042",
				WillFlag: true, WillQoS: 1, WillTopic: "site/gateway-0042/status", WillPayload: []byte("offline"),
				UsernameFlag: true, Username: "gateway", PasswordFlag: true, Password: []byte("s3cret")}
			if v == V5 {
				c.Properties = Properties{SessionExpiry: 3600, HasSessionExpiry: true, ReceiveMaximum: 32, HasReceiveMaximum: true,
					UserProperties: []UserProperty{{"fw", "1.4.2"}}}
			}
			enc, err := Append(nil, c, v)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(enc)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Decode(enc, v); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecodePublishInMemory decodes the PUBLISH of BenchmarkDecodePublish
// from a buffer with Decode: no body allocation, only the *Publish.
func BenchmarkDecodePublishInMemory(b *testing.B) {
	for _, v := range []Version{V311, V5} {
		b.Run(v.String(), func(b *testing.B) {
			enc, err := Append(nil, benchPublish(v), v)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(enc)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Decode(enc, v); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
