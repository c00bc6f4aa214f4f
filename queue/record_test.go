package queue

import (
	"bytes"
	"errors"
	"reflect"
	"slices"
	"syscall"
	"testing"
	"time"
)

type syscallStat = syscall.Stat_t

func recordEqual(a, b *Message) bool {
	return a.Topic == b.Topic && bytes.Equal(a.Payload, b.Payload) && a.QoS == b.QoS && a.Retain == b.Retain &&
		a.PayloadFormat == b.PayloadFormat && a.ContentType == b.ContentType && a.ResponseTopic == b.ResponseTopic &&
		bytes.Equal(a.CorrelationData, b.CorrelationData) && slices.Equal(a.UserProperties, b.UserProperties) &&
		a.Expiry == b.Expiry && a.ReceivedAt.Equal(b.ReceivedAt) && a.Source == b.Source
}

var recordCases = []Message{
	{},
	{Topic: "a", QoS: 1},
	{Topic: "sensors/1/temp", Payload: []byte(`{"t":21.5}`), QoS: 2, Retain: true, Source: "dev-1", ReceivedAt: time.Unix(1700000000, 123)},
	{Topic: "x", PayloadFormat: 1, ContentType: "text/plain", ResponseTopic: "reply/1", CorrelationData: []byte{0, 255},
		UserProperties: []UserProperty{{"a", "1"}, {"a", "2"}, {"", ""}}, Expiry: 90 * time.Second, ReceivedAt: time.Unix(-5, 0)},
	{Topic: "big", Payload: bytes.Repeat([]byte{7}, 70000)},
}

func TestRecordRoundTrip(t *testing.T) {
	for i, m := range recordCases {
		b, err := EncodeRecord(nil, &m)
		if err != nil {
			t.Fatalf("case %d: encode: %v", i, err)
		}
		if b[0] != RecordVersion {
			t.Fatalf("case %d: version byte %d", i, b[0])
		}
		var got Message
		if err := DecodeRecord(b, &got); err != nil {
			t.Fatalf("case %d: decode: %v", i, err)
		}
		if !recordEqual(&got, &m) {
			t.Fatalf("case %d: got %+v, want %+v", i, got, m)
		}
		// Every strict prefix is corrupt.
		for n := 0; n < len(b) && n < 64; n++ {
			if err := DecodeRecord(b[:n], &got); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("case %d: prefix %d decoded: %v", i, n, err)
			}
		}
	}
	// 200-byte payload, the benchmark's message: the overhead stays small.
	m := Message{Topic: "sensors/gw1/dev42/temp", Payload: make([]byte, 200), QoS: 1, Source: "dev42", ReceivedAt: time.Now()}
	b, _ := EncodeRecord(nil, &m)
	if over := len(b) - 200 - len(m.Topic) - len(m.Source); over > 16 {
		t.Fatalf("encoding overhead %d bytes", over)
	}
}

func TestEncodeRecordRejects(t *testing.T) {
	for _, m := range []Message{{QoS: 3}, {PayloadFormat: 2}, {Expiry: -1}} {
		if _, err := EncodeRecord(nil, &m); err == nil {
			t.Fatalf("%+v encoded", m)
		}
	}
}

func TestDecodeRecordRejects(t *testing.T) {
	valid, _ := EncodeRecord(nil, &recordCases[3])
	cases := map[string][]byte{
		"empty":             nil,
		"version 2":         {2, 0, 0, 0, 0, 0, 0},
		"qos 3":             {1, 3, 0, 0, 0, 0, 0},
		"trailing":          append(slices.Clone(valid), 0),
		"topic too long":    {1, 0, 0, 0, 5, 'a'},
		"bad utf8 topic":    {1, 0, 0, 0, 1, 0xff, 0, 0},
		"empty content":     {1, flagContentType, 0, 0, 0, 0, 0, 0},
		"zero props":        {1, flagUserProps, 0, 0, 0, 0, 0, 0},
		"huge props":        {1, flagUserProps, 0, 0, 0, 0, 0x80, 0x80, 0x80, 0x80, 0x01, 0},
		"varint overflow":   {1, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		"expiry over int64": {1, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0, 0, 0},
	}
	for name, b := range cases {
		var m Message
		if err := DecodeRecord(b, &m); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: got %v, want ErrCorrupt", name, err)
		}
	}
}

// FuzzDecodeRecord: decoding never panics, and whatever decodes
// re-encodes to the same bytes (the encoding is canonical).
func FuzzDecodeRecord(f *testing.F) {
	for _, m := range recordCases[:4] {
		b, _ := EncodeRecord(nil, &m)
		f.Add(b)
	}
	f.Add([]byte{1, 0xff, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var m Message
		if err := DecodeRecord(b, &m); err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error not ErrCorrupt: %v", err)
			}
			return
		}
		again, err := EncodeRecord(nil, &m)
		if err != nil {
			t.Fatalf("decoded record does not encode: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs:\n in  %x\n out %x", b, again)
		}
		// Decoded after a message with its strings (or another's), it
		// decodes the same.
		for _, prev := range []*Message{&m, &recordCases[0]} {
			var m2 Message
			if err := decodeRecord(b, &m2, prev); err != nil || !reflect.DeepEqual(m2, m) {
				t.Fatalf("decoded after %q/%q: %+v, %v; want %+v", prev.Topic, prev.Source, m2, err, m)
			}
		}
	})
}

// FuzzDecodeCounters: never panics; what decodes re-encodes and decodes
// to the same counters.
func FuzzDecodeCounters(f *testing.F) {
	c := counters{nextSeq: 10, head: 3, messages: 7, bytes: 700, appended: 10, acked: 3}
	f.Add(c.encode())
	f.Add([]byte{1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := decodeCounters(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error not ErrCorrupt: %v", err)
			}
			return
		}
		c2, err := decodeCounters(c.encode())
		if err != nil || c2 != c {
			t.Fatalf("round trip: %+v %v, want %+v", c2, err, c)
		}
	})
}

// FuzzDecodeDeadLetter: never panics; errors wrap ErrCorrupt.
func FuzzDecodeDeadLetter(f *testing.F) {
	rec, _ := EncodeRecord(nil, &recordCases[2])
	f.Add(encodeDeadLetter("reason", time.Unix(5, 0), []byte("mark"), rec))
	f.Add(encodeDeadLetter("", time.Unix(0, 0), nil, rec))
	f.Fuzz(func(t *testing.T, b []byte) {
		var d DeadLetter
		if err := decodeDeadLetter(b, &d); err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("error not ErrCorrupt: %v", err)
		}
	})
}

// BenchmarkDecodeRecord decodes a typical record: a topic, a source and 64
// bytes of payload, after a record with the same topic and source (as in
// a lease).
func BenchmarkDecodeRecord(b *testing.B) {
	m := Message{Topic: "site/line1/temp", Source: "local", Payload: make([]byte, 64), QoS: 1}
	enc, err := EncodeRecord(nil, &m)
	if err != nil {
		b.Fatal(err)
	}
	var prev, out Message
	if err := DecodeRecord(enc, &prev); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := decodeRecord(enc, &out, &prev); err != nil {
			b.Fatal(err)
		}
	}
}
