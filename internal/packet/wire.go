package packet

import (
	"encoding/binary"
	"unicode/utf8"
	"unsafe"
)

// MaxVarint is the largest value a Variable Byte Integer can carry
// (268,435,455): the largest remaining length and property value.
const MaxVarint = 268_435_455

// MaxPacketSize is the largest MQTT packet: a fixed header of five bytes and
// the largest remaining length.
const MaxPacketSize = 1 + 4 + MaxVarint

// appendVarint appends v as a Variable Byte Integer; v must be <= MaxVarint.
func appendVarint(dst []byte, v int) []byte {
	for {
		b := byte(v & 0x7F)
		v >>= 7
		if v > 0 {
			b |= 0x80
		}
		dst = append(dst, b)
		if v == 0 {
			return dst
		}
	}
}

// varintLen is the encoded length of v.
func varintLen(v int) int {
	switch {
	case v < 1<<7:
		return 1
	case v < 1<<14:
		return 2
	case v < 1<<21:
		return 3
	}
	return 4
}

// decoder reads the body of one packet. The first error sticks: later reads
// return zero values, so decoding functions check d.err once at the end of a
// section rather than after every field.
type decoder struct {
	b   []byte
	off int
	err *Error
	pkt string // names the packet (or part) in errors when set
}

func (d *decoder) fail(code ReasonCode, format string, args ...any) {
	if d.err == nil {
		d.err = Errorf(code, format, args...)
		if d.pkt != "" {
			d.err.Msg = d.pkt + ": " + d.err.Msg
		}
	}
}

// check records e, an error of one of the shared rules (check.go), as the
// decoder's error unless one came first, naming the packet. It reports
// whether e is an error.
func (d *decoder) check(e *Error) bool {
	if e == nil {
		return false
	}
	if d.err == nil {
		d.err = e.in(d.pkt)
	}
	return true
}

func (d *decoder) remaining() int { return len(d.b) - d.off }

// packetID reads a packet identifier, which must not be 0.
func (d *decoder) packetID() uint16 {
	id := d.uint16("packet identifier")
	if d.err == nil {
		d.check(checkPacketID(id))
	}
	return id
}

func (d *decoder) byte(what string) byte {
	if d.err != nil {
		return 0
	}
	if d.off >= len(d.b) {
		d.fail(MalformedPacket, "%s: packet too short", what)
		return 0
	}
	c := d.b[d.off]
	d.off++
	return c
}

func (d *decoder) uint16(what string) uint16 {
	if d.err != nil {
		return 0
	}
	if d.remaining() < 2 {
		d.fail(MalformedPacket, "%s: packet too short", what)
		return 0
	}
	v := binary.BigEndian.Uint16(d.b[d.off:])
	d.off += 2
	return v
}

func (d *decoder) uint32(what string) uint32 {
	if d.err != nil {
		return 0
	}
	if d.remaining() < 4 {
		d.fail(MalformedPacket, "%s: packet too short", what)
		return 0
	}
	v := binary.BigEndian.Uint32(d.b[d.off:])
	d.off += 4
	return v
}

// varint reads a Variable Byte Integer in its shortest form (MQTT-1.5.5-1).
func (d *decoder) varint(what string) int {
	if d.err != nil {
		return 0
	}
	v, n, err := parseVarint(d.b[d.off:])
	if err != nil {
		d.fail(MalformedPacket, "%s: %s", what, err.Msg)
		return 0
	}
	d.off += n
	return v
}

// parseVarint decodes a Variable Byte Integer at the start of b.
func parseVarint(b []byte) (v, n int, err *Error) {
	shift := 0
	for i := 0; i < 4; i++ {
		if i >= len(b) {
			return 0, 0, Errorf(MalformedPacket, "variable byte integer: packet too short")
		}
		c := b[i]
		v |= int(c&0x7F) << shift
		shift += 7
		if c&0x80 == 0 {
			if i > 0 && c == 0 {
				return 0, 0, Errorf(MalformedPacket, "variable byte integer not in its shortest form")
			}
			return v, i + 1, nil
		}
	}
	return 0, 0, Errorf(MalformedPacket, "variable byte integer longer than 4 bytes")
}

// binary reads two-byte-length-prefixed binary data as a slice of the body.
func (d *decoder) binary(what string) []byte {
	n := int(d.uint16(what))
	if d.err != nil {
		return nil
	}
	if d.remaining() < n {
		d.fail(MalformedPacket, "%s: length %d exceeds the packet", what, n)
		return nil
	}
	v := d.b[d.off : d.off+n : d.off+n]
	d.off += n
	return v
}

// string reads a UTF-8 Encoded String: valid UTF-8 without U+0000
// (MQTT-1.5.4-1, MQTT-1.5.4-2). The string shares the packet's body, which the
// decoded packet owns and nothing writes to again.
func (d *decoder) string(what string) string {
	b := d.binary(what)
	if d.err != nil || len(b) == 0 {
		return ""
	}
	s := unsafe.String(&b[0], len(b))
	if err := checkUTF8(s); err != "" {
		d.fail(MalformedPacket, "%s: %s", what, err)
		return ""
	}
	return s
}

// checkUTF8 returns "" when s is a well-formed MQTT UTF-8 string, else what
// is wrong with it.
func checkUTF8(s string) string {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c == 0 {
				return "contains U+0000"
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size <= 1 {
			return "invalid UTF-8"
		}
		i += size
	}
	return ""
}

// stringError returns "" when s can be written as a UTF-8 Encoded String:
// at most 65535 bytes of well-formed UTF-8 without U+0000.
func stringError(s string) string {
	if len(s) > 65535 {
		return "longer than 65535 bytes"
	}
	return checkUTF8(s)
}

// rest returns the unread part of the body.
func (d *decoder) rest() []byte {
	v := d.b[d.off:len(d.b):len(d.b)]
	d.off = len(d.b)
	return v
}

// end fails unless the whole body was read.
func (d *decoder) end() {
	if d.err == nil && d.off != len(d.b) {
		d.fail(MalformedPacket, "%d unexpected bytes at the end", len(d.b)-d.off)
	}
}

func appendUint16(dst []byte, v uint16) []byte { return append(dst, byte(v>>8), byte(v)) }

func appendUint32(dst []byte, v uint32) []byte {
	return append(dst, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

func appendString(dst []byte, s string) []byte {
	dst = appendUint16(dst, uint16(len(s)))
	return append(dst, s...)
}

func appendBinary(dst []byte, b []byte) []byte {
	dst = appendUint16(dst, uint16(len(b)))
	return append(dst, b...)
}
