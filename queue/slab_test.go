package queue

import (
	"bytes"
	"testing"
)

// TestSlabCopies checks that values cut from a slab are copies, that an
// append to one cannot overwrite the next, and that a large value gets its
// own allocation instead of a place in a chunk.
func TestSlabCopies(t *testing.T) {
	var s slab
	src := []byte("first")
	a := s.copy(src)
	b := s.copy([]byte("second"))
	src[0] = 'X'
	if string(a) != "first" || string(b) != "second" {
		t.Fatalf("copies changed: %q %q", a, b)
	}
	if cap(a) != len(a) {
		t.Fatalf("cap %d beyond the value's %d bytes: an append would overwrite the next value", cap(a), len(a))
	}
	if s.copy(nil) != nil || s.copy([]byte{}) != nil {
		t.Fatal("an empty value is not nil")
	}
	used := len(s.buf)
	big := bytes.Repeat([]byte{7}, slabMax+1)
	c := s.copy(big)
	if !bytes.Equal(c, big) || len(s.buf) != used {
		t.Fatalf("a value of %d bytes was cut from the chunk (chunk use %d -> %d)", len(big), used, len(s.buf))
	}
	// A value that does not fit the rest of the chunk starts a new one.
	for len(s.buf)+slabMax <= slabChunk {
		s.copy(big[:slabMax])
	}
	before := &s.buf[:1][0]
	d := s.copy(big[:slabMax])
	if &s.buf[:1][0] == before || !bytes.Equal(d, big[:slabMax]) {
		t.Fatal("a value that does not fit the chunk's rest was not put in a new chunk")
	}
}
