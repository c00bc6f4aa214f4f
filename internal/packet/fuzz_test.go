package packet

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// fuzzMaxPacket is the Reader limit in the stream fuzz targets: far above
// what the fuzzer sends, so that a Reader that allocated what a fixed header
// claims, rather than what arrived, would break allocBound.
const fuzzMaxPacket = 16 << 20

// allocBound is the most that decoding n bytes of input may allocate: a
// constant for the packet structs and an error message, and a multiple of n
// for what grows with the input (subscriptions, user properties, reason
// codes, and in a stream one packet struct of about 350 bytes per two-byte
// packet). ahead is what a Reader may allocate ahead of the bytes that
// arrived (bodyChunk); 0 for Decode, which allocates no body.
func allocBound(n, perByte, ahead int) uint64 {
	return uint64(4096 + perByte*n + ahead)
}

// allocated returns the bytes f allocated on the heap.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

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

// checkEncodable is the other direction: p, generated from fuzz input with
// any field values, either is refused by Append with an *Error (and by Size
// with the same), or encodes to bytes that Decode accepts and that encode
// again to the same bytes.
func checkEncodable(t *testing.T, p Packet, v Version) {
	t.Helper()
	enc, err := Append(nil, p, v)
	n, serr := Size(p, v)
	if err != nil {
		var e *Error
		if !errors.As(err, &e) || !e.Code.IsError() {
			t.Fatalf("Append(%#v, %s) = %T %v, want *Error with a failure code", p, v, err, err)
		}
		if serr == nil || serr.Error() != err.Error() {
			t.Fatalf("Append(%#v, %s): %v; Size: %v", p, v, err, serr)
		}
		return
	}
	if serr != nil || n != len(enc) {
		t.Fatalf("Size = %d, %v; Append wrote %d bytes", n, serr, len(enc))
	}
	dv := v
	if _, ok := p.(*Connect); ok {
		dv = 0
	}
	p2, err := Decode(enc, dv)
	if err != nil {
		t.Fatalf("Append(%#v, %s) wrote % X, which Decode refuses: %v", p, v, enc, err)
	}
	checkStable(t, p2, v, enc)
	if enc2, _ := Append(nil, p2, v); !bytes.Equal(enc, enc2) {
		t.Fatalf("Append(%#v, %s) wrote % X; the packet it decodes to encodes as % X", p, v, enc, enc2)
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
		var p Packet
		var err error
		n := allocated(func() { p, err = Decode(in, v) })
		if n > allocBound(len(in), 16, 0) {
			// The count is the process's: another goroutine (the testing
			// package, the runtime under -race) may have allocated
			// meanwhile. Decode allocates the same every time, so a
			// second measure tells which.
			n = min(n, allocated(func() { Decode(in, v) }))
		}
		if n > allocBound(len(in), 16, 0) {
			t.Fatalf("Decode of %d bytes allocated %d bytes (% X)", len(in), n, in)
		}
		if err != nil {
			checkDecodeError(t, err, in)
		} else {
			checkStable(t, p, v, in)
		}
		// The same bytes as the description of a packet to encode.
		gp, gv := genPacket(&gen{b: in}, v)
		checkEncodable(t, gp, gv)
	})
}

// FuzzDecodeV311 decodes single packets as MQTT 3.1.1 (CONNECT carries its own
// version), and encodes packets generated from the same input.
func FuzzDecodeV311(f *testing.F) { fuzzDecode(f, V311) }

// FuzzDecodeV5 decodes single packets as MQTT 5.0, and encodes packets
// generated from the same input.
func FuzzDecodeV5(f *testing.F) { fuzzDecode(f, V5) }

// readStream reads in with r until an error, measuring what the reads
// allocate; it returns the packets, the version each was read with, the
// error that ended the stream and the bytes allocated.
func readStream(r *Reader, in []byte) (ps []Packet, vs []Version, err error, n uint64) {
	ps = make([]Packet, 0, len(in)/2+1)
	vs = make([]Version, 0, len(in)/2+1)
	n = allocated(func() {
		for {
			var p Packet
			if p, err = r.ReadPacket(); err != nil {
				return
			}
			ps, vs = append(ps, p), append(vs, r.Version())
		}
	})
	return ps, vs, err, n
}

// checkStream checks what readStream returned for in.
func checkStream(t *testing.T, in []byte, ps []Packet, vs []Version, err error, n uint64) {
	t.Helper()
	if n > allocBound(len(in), 256, bodyChunk) {
		t.Fatalf("reading %d bytes allocated %d bytes (% X)", len(in), n, in)
	}
	if err != io.EOF && err != io.ErrUnexpectedEOF {
		checkDecodeError(t, err, in)
	}
	for i, p := range ps {
		checkStable(t, p, vs[i], in)
	}
}

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
	// A CONNECT that claims 14.7 MB and sends 6 bytes: within the limit, so
	// only the Reader's growing the body as bytes arrive keeps allocBound.
	f.Add(by(0x10, 0x80, 0x80, 0x80, 0x07, 0x00, 0x04, 'M', 'Q', 'T', 'T'))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := NewReader(bytes.NewReader(in), fuzzMaxPacket)
		ps, vs, err, n := readStream(r, in)
		if len(ps) > 0 {
			c, ok := ps[0].(*Connect)
			if !ok {
				t.Fatalf("first packet decoded as %s", ps[0].Type())
			}
			if vs[0] != c.Version {
				t.Fatalf("Reader version %s after a %s CONNECT", vs[0], c.Version)
			}
		}
		checkStream(t, in, ps, vs, err, n)
	})
}

// FuzzReadPacketClient reads a stream as a client does: a Reader set to 5.0
// (v5) or 3.1.1 before the broker's CONNACK and what follows it. A CONNECT
// is refused anywhere in it.
func FuzzReadPacketClient(f *testing.F) {
	for _, v := range []Version{V311, V5} {
		var stream []byte
		for _, p := range samples(v) {
			if p.Type() == CONNECT {
				continue
			}
			var err error
			if stream, err = Append(stream, p, v); err != nil {
				f.Fatal(err)
			}
		}
		f.Add(v == V5, stream)
	}
	// The same for a PUBLISH after a CONNACK.
	f.Add(false, by(0x20, 0x02, 0x00, 0x00, 0x30, 0x80, 0x80, 0x80, 0x07, 0x00, 0x01, 'a'))
	f.Fuzz(func(t *testing.T, v5 bool, in []byte) {
		v := V311
		if v5 {
			v = V5
		}
		r := NewReader(bytes.NewReader(in), fuzzMaxPacket)
		r.SetVersion(v)
		ps, vs, err, n := readStream(r, in)
		for _, p := range ps {
			if p.Type() == CONNECT {
				t.Fatalf("a client Reader returned a CONNECT from % X", in)
			}
		}
		if r.Version() != v {
			t.Fatalf("Reader version changed from %s to %s", v, r.Version())
		}
		checkStream(t, in, ps, vs, err, n)
	})
}

// gen turns fuzz input into packet fields with any values, valid or not:
// each call takes the next bytes of the input, and zero values once it is
// used up.
type gen struct{ b []byte }

func (g *gen) byte() byte {
	if len(g.b) == 0 {
		return 0
	}
	c := g.b[0]
	g.b = g.b[1:]
	return c
}

func (g *gen) bool() bool     { return g.byte()&1 == 1 }
func (g *gen) uint16() uint16 { return uint16(g.byte())<<8 | uint16(g.byte()) }
func (g *gen) uint32() uint32 { return uint32(g.uint16())<<16 | uint32(g.uint16()) }

// genStrings are the strings the rules care about; gen.string picks one of
// them half of the time.
var genStrings = []string{"", "a", "a/b", "+", "#", "a/+", "a/#", "/", "$share/g/a", "$share//a", "$SYS/x",
	"a\x00b", "\xff", "\xed\xa0\x80", "\u00e9/\U0002A6D4", "sport/tennis/player1", "MQTT", "MQIsdp"}

// string returns one of genStrings or up to 31 bytes of the input as they are.
func (g *gen) string() string {
	c := g.byte()
	if c < 0x80 {
		return genStrings[int(c)%len(genStrings)]
	}
	n := min(int(c&0x1F), len(g.b))
	s := string(g.b[:n])
	g.b = g.b[n:]
	return s
}

func (g *gen) bytes() []byte {
	if s := g.string(); s != "" {
		return []byte(s)
	}
	return nil
}

// reason returns a reason code packets of type t have, or any byte.
func (g *gen) reason(t Type) ReasonCode {
	if c := g.byte(); c >= 0x80 {
		return ReasonCode(g.byte())
	} else if codes := reasonSet[t]; len(codes) > 0 {
		return codes[int(c)%len(codes)]
	}
	return 0
}

// props returns up to three properties of any kind, with any values.
func (g *gen) props() Properties {
	var p Properties
	for k := g.byte() % 4; k > 0; k-- {
		switch g.byte() % 27 {
		case 0:
			p.PayloadFormat, p.HasPayloadFormat = g.byte()%3, true
		case 1:
			p.MessageExpiry, p.HasMessageExpiry = g.uint32(), true
		case 2:
			p.ContentType, p.HasContentType = g.string(), true
		case 3:
			p.ResponseTopic, p.HasResponseTopic = g.string(), true
		case 4:
			p.CorrelationData, p.HasCorrelationData = g.bytes(), true
		case 5:
			id := uint32(g.uint16())
			if g.byte() == 0xFF {
				id = MaxVarint + uint32(g.byte()%2)
			}
			p.SubscriptionIdentifiers = append(p.SubscriptionIdentifiers, id)
		case 6:
			p.SessionExpiry, p.HasSessionExpiry = g.uint32(), true
		case 7:
			p.AssignedClientID, p.HasAssignedClientID = g.string(), true
		case 8:
			p.ServerKeepAlive, p.HasServerKeepAlive = g.uint16(), true
		case 9:
			p.AuthMethod, p.HasAuthMethod = g.string(), true
		case 10:
			p.AuthData, p.HasAuthData = g.bytes(), true
		case 11:
			p.RequestProblemInfo, p.HasRequestProblemInfo = g.byte()%3, true
		case 12:
			p.WillDelay, p.HasWillDelay = g.uint32(), true
		case 13:
			p.RequestResponseInfo, p.HasRequestResponseInfo = g.byte()%3, true
		case 14:
			p.ResponseInfo, p.HasResponseInfo = g.string(), true
		case 15:
			p.ServerReference, p.HasServerReference = g.string(), true
		case 16:
			p.ReasonString, p.HasReasonString = g.string(), true
		case 17:
			p.ReceiveMaximum, p.HasReceiveMaximum = g.uint16(), true
		case 18:
			p.TopicAliasMaximum, p.HasTopicAliasMaximum = g.uint16(), true
		case 19:
			p.TopicAlias, p.HasTopicAlias = g.uint16(), true
		case 20:
			p.MaximumQoS, p.HasMaximumQoS = g.byte()%3, true
		case 21:
			p.RetainAvailable, p.HasRetainAvailable = g.byte()%3, true
		case 22:
			p.UserProperties = append(p.UserProperties, UserProperty{g.string(), g.string()})
		case 23:
			p.MaximumPacketSize, p.HasMaximumPacketSize = g.uint32(), true
		case 24:
			p.WildcardSubAvailable, p.HasWildcardSubAvailable = g.byte()%3, true
		case 25:
			p.SubIDAvailable, p.HasSubIDAvailable = g.byte()%3, true
		case 26:
			p.SharedSubAvailable, p.HasSharedSubAvailable = g.byte()%3, true
		}
	}
	return p
}

// genPacket returns a packet of any type with any field values, and the
// version to encode it with: v, or for CONNECT a level of its own.
func genPacket(g *gen, v Version) (Packet, Version) {
	switch g.byte() % 15 {
	case 0:
		cv := []Version{V31, V311, V5, Version(g.byte())}[g.byte()%4]
		c := &Connect{ProtocolName: []string{"", "MQTT", "MQIsdp", g.string()}[g.byte()%4], Version: cv,
			CleanStart: g.bool(), KeepAlive: g.uint16(), Properties: g.props(), ClientID: g.string()}
		flags := g.byte()
		c.WillFlag, c.WillQoS, c.WillRetain = flags&0x04 != 0, flags>>3&0x03, flags&0x20 != 0
		c.PasswordFlag, c.UsernameFlag = flags&0x40 != 0, flags&0x80 != 0
		if c.WillFlag {
			c.WillProperties, c.WillTopic, c.WillPayload = g.props(), g.string(), g.bytes()
		}
		if c.UsernameFlag {
			c.Username = g.string()
		}
		if c.PasswordFlag {
			c.Password = g.bytes()
		}
		return c, cv
	case 1:
		return &Connack{SessionPresent: g.bool(), ReasonCode: g.reason(CONNACK), Properties: g.props()}, v
	case 2:
		flags := g.byte()
		return &Publish{Dup: flags&0x08 != 0, QoS: flags >> 1 & 0x03, Retain: flags&0x01 != 0, Topic: g.string(),
			PacketID: g.uint16(), Properties: g.props(), Payload: g.bytes()}, v
	case 3:
		return &Puback{PacketID: g.uint16(), ReasonCode: g.reason(PUBACK), Properties: g.props()}, v
	case 4:
		return &Pubrec{PacketID: g.uint16(), ReasonCode: g.reason(PUBREC), Properties: g.props()}, v
	case 5:
		return &Pubrel{PacketID: g.uint16(), ReasonCode: g.reason(PUBREL), Properties: g.props()}, v
	case 6:
		return &Pubcomp{PacketID: g.uint16(), ReasonCode: g.reason(PUBCOMP), Properties: g.props()}, v
	case 7:
		s := &Subscribe{PacketID: g.uint16(), Properties: g.props()}
		for k := g.byte() % 4; k > 0; k-- {
			opts := g.byte()
			s.Subscriptions = append(s.Subscriptions, Subscription{Filter: g.string(), QoS: opts & 0x03,
				NoLocal: opts&0x04 != 0, RetainAsPublished: opts&0x08 != 0, RetainHandling: opts >> 4 & 0x03})
		}
		return s, v
	case 8:
		s := &Suback{PacketID: g.uint16(), Properties: g.props()}
		for k := g.byte() % 4; k > 0; k-- {
			s.ReasonCodes = append(s.ReasonCodes, g.reason(SUBACK))
		}
		return s, v
	case 9:
		u := &Unsubscribe{PacketID: g.uint16(), Properties: g.props()}
		for k := g.byte() % 4; k > 0; k-- {
			u.Filters = append(u.Filters, g.string())
		}
		return u, v
	case 10:
		u := &Unsuback{PacketID: g.uint16(), Properties: g.props()}
		for k := g.byte() % 4; k > 0; k-- {
			u.ReasonCodes = append(u.ReasonCodes, g.reason(UNSUBACK))
		}
		return u, v
	case 11:
		return &Pingreq{}, v
	case 12:
		return &Pingresp{}, v
	case 13:
		return &Disconnect{ReasonCode: g.reason(DISCONNECT), Properties: g.props()}, v
	}
	return &Auth{ReasonCode: g.reason(AUTH), Properties: g.props()}, v
}

// TestWriteFuzzCorpus writes the seed corpora in testdata/fuzz from the
// captures, the specification examples and the negative cases. It runs only
// when HOLDFAST_WRITE_CORPUS=1; `go test` reads the files it wrote as seeds
// of the fuzz targets on every run.
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("HOLDFAST_WRITE_CORPUS") != "1" {
		t.Skip("writes testdata/fuzz; run with HOLDFAST_WRITE_CORPUS=1 to regenerate")
	}
	// Each seed is the body of a corpus file: one value per line.
	seeds := map[string]map[string]string{"FuzzDecodeV311": {}, "FuzzDecodeV5": {}, "FuzzReadPacket": {}, "FuzzReadPacketClient": {}}
	one := func(b []byte) string { return fmt.Sprintf("[]byte(%q)\n", b) }
	single := func(v Version) map[string]string {
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
		var toBroker, toClient []byte
		for _, c := range pkts {
			single(v)[fmt.Sprintf("capture-%s-line%d", name, c.line)] = one(c.raw)
			if c.toBroker {
				toBroker = append(toBroker, c.raw...)
			} else {
				toClient = append(toClient, c.raw...)
			}
		}
		seeds["FuzzReadPacket"]["capture-"+name] = one(toBroker)
		if len(toClient) > 0 {
			seeds["FuzzReadPacketClient"]["capture-"+name] = fmt.Sprintf("bool(%v)\n", v == V5) + one(toClient)
		}
	}
	for i, c := range specCases() {
		single(c.v)[fmt.Sprintf("spec-%02d", i)] = one(c.in)
	}
	for i, c := range badPackets() {
		single(c.v)[fmt.Sprintf("bad-%03d", i)] = one(c.in)
		if c.in[0]>>4 == byte(CONNECT) {
			seeds["FuzzReadPacket"][fmt.Sprintf("bad-%03d", i)] = one(c.in)
		} else {
			// After a valid CONNACK, as a client would read it.
			connack := by(0x20, 0x02, 0x00, 0x00)
			if c.v == V5 {
				connack = by(0x20, 0x03, 0x00, 0x00, 0x00)
			}
			seeds["FuzzReadPacketClient"][fmt.Sprintf("bad-%03d", i)] = fmt.Sprintf("bool(%v)\n", c.v == V5) + one(append(connack, c.in...))
		}
	}
	for target, m := range seeds {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, body := range m {
			if err := os.WriteFile(filepath.Join(dir, name), []byte("go test fuzz v1\n"+body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		t.Logf("%s: %d seeds", target, len(m))
	}
}
