package packet

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fuzzMaxPacket is the Reader limit in FuzzReadPacket. The Reader allocates a
// packet's body only after checking its remaining length against the limit,
// so no input can make it allocate more than this per packet.
const fuzzMaxPacket = 1 << 16

// checkStable encodes p (decoded from in with version v) and decodes the
// result again: the second decoding must succeed and equal p.
func checkStable(t *testing.T, p Packet, v Version, in []byte) {
	t.Helper()
	if c, ok := p.(*Connect); ok {
		v = c.Version
	}
	enc, err := Append(nil, p, v)
	if err != nil {
		t.Fatalf("decoded % X as %#v, which does not encode: %v", in, p, err)
	}
	if n, err := Size(p, v); err != nil || n != len(enc) {
		t.Fatalf("Size = %d, %v; Append wrote %d bytes", n, err, len(enc))
	}
	p2, err := Decode(enc, v)
	if err != nil {
		t.Fatalf("decoded % X as %#v, encoded as % X, which does not decode: %v", in, p, enc, err)
	}
	if !equalPackets(p, p2) {
		t.Fatalf("decode -> encode -> decode changed the packet:\nin  % X\n1st %#v\nenc % X\n2nd %#v", in, p, enc, p2)
	}
	// The canonical encoding is a fixed point.
	enc2, err := Append(nil, p2, v)
	if err != nil || !bytes.Equal(enc, enc2) {
		t.Fatalf("re-encoding is not stable: % X then % X (%v)", enc, enc2, err)
	}
}

// checkDecodeError fails unless err is an *Error with a failure reason code.
func checkDecodeError(t *testing.T, err error, in []byte) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("Decode(% X) = %T %v, want *Error", in, err, err)
	}
	if !e.Code.IsError() {
		t.Fatalf("Decode(% X): error with reason code 0x%02X, which is not a failure", in, byte(e.Code))
	}
}

func fuzzDecode(f *testing.F, v Version) {
	for _, p := range samples(v) {
		b, err := Append(nil, p, v)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		p, err := Decode(in, v)
		if err != nil {
			checkDecodeError(t, err, in)
			return
		}
		if pub, ok := p.(*Publish); ok && len(pub.Payload) > len(in) {
			t.Fatalf("payload of %d bytes from %d bytes of input", len(pub.Payload), len(in))
		}
		checkStable(t, p, v, in)
	})
}

// FuzzDecodeV311 decodes single packets as MQTT 3.1.1 (CONNECT carries its own
// version).
func FuzzDecodeV311(f *testing.F) { fuzzDecode(f, V311) }

// FuzzDecodeV5 decodes single packets as MQTT 5.0.
func FuzzDecodeV5(f *testing.F) { fuzzDecode(f, V5) }

// FuzzReadPacket reads a stream as a server does: a Reader without a version,
// so the first packet must be CONNECT, whose version decodes the rest.
func FuzzReadPacket(f *testing.F) {
	for _, v := range []Version{V31, V311, V5} {
		var stream []byte
		for _, p := range samples(v) {
			var err error
			if stream, err = Append(stream, p, v); err != nil {
				f.Fatal(err)
			}
		}
		f.Add(stream)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r := NewReader(bytes.NewReader(in), fuzzMaxPacket)
		for i := 0; ; i++ {
			p, err := r.ReadPacket()
			if err != nil {
				if err == io.EOF || err == io.ErrUnexpectedEOF {
					return
				}
				checkDecodeError(t, err, in)
				return
			}
			if i == 0 {
				c, ok := p.(*Connect)
				if !ok {
					t.Fatalf("first packet decoded as %s", p.Type())
				}
				if r.Version() != c.Version {
					t.Fatalf("Reader version %s after a %s CONNECT", r.Version(), c.Version)
				}
			}
			checkStable(t, p, r.Version(), in)
		}
	})
}

// TestWriteFuzzCorpus writes the seed corpora in testdata/fuzz from the
// captures, the specification examples and the negative cases. It runs only
// when HOLDFAST_WRITE_CORPUS=1; `go test` reads the files it wrote as seeds
// of the fuzz targets on every run.
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("HOLDFAST_WRITE_CORPUS") != "1" {
		t.Skip("writes testdata/fuzz; run with HOLDFAST_WRITE_CORPUS=1 to regenerate")
	}
	seeds := map[string]map[string][]byte{"FuzzDecodeV311": {}, "FuzzDecodeV5": {}, "FuzzReadPacket": {}}
	single := func(v Version) map[string][]byte {
		if v == V5 {
			return seeds["FuzzDecodeV5"]
		}
		return seeds["FuzzDecodeV311"]
	}
	files, err := filepath.Glob(filepath.Join("testdata", "captures", "*.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range files {
		name := strings.TrimSuffix(filepath.Base(path), ".txt")
		v, pkts := readCapture(t, path)
		var stream []byte
		for _, c := range pkts {
			single(v)[fmt.Sprintf("capture-%s-line%d", name, c.line)] = c.raw
			if c.toBroker {
				stream = append(stream, c.raw...)
			}
		}
		seeds["FuzzReadPacket"]["capture-"+name] = stream
	}
	for i, c := range specCases() {
		single(c.v)[fmt.Sprintf("spec-%02d", i)] = c.in
	}
	for i, c := range badPackets() {
		single(c.v)[fmt.Sprintf("bad-%03d", i)] = c.in
		if c.in[0]>>4 == byte(CONNECT) {
			seeds["FuzzReadPacket"][fmt.Sprintf("bad-%03d", i)] = c.in
		}
	}
	for target, m := range seeds {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, b := range m {
			body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
			if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		t.Logf("%s: %d seeds", target, len(m))
	}
}
