package queue

import (
	"encoding/binary"
	"fmt"
	"time"
	"unicode/utf8"
)

// Key layout (one Badger keyspace, one-byte prefixes):
//
//	'c'                      counters block (see counters)
//	'm' seq(8, big endian)   record (EncodeRecord)
//	'm' seq(8) 'k'           mark of that record; sorts right after it
//	'd' seq(8)               dead letter (encodeDeadLetter)
//	's' key                  caller state
const (
	prefixCounters   = 'c'
	prefixRecord     = 'm'
	prefixDeadLetter = 'd'
	prefixState      = 's'
	markSuffix       = 'k'
	recordKeyLen     = 9
	markKeyLen       = 10
)

var countersKey = []byte{prefixCounters}

func recordKey(seq uint64) []byte {
	k := make([]byte, recordKeyLen, markKeyLen)
	k[0] = prefixRecord
	binary.BigEndian.PutUint64(k[1:], seq)
	return k
}

func markKey(seq uint64) []byte {
	return append(recordKey(seq), markSuffix)
}

// isMarkOf reports whether k is the mark key of record seq.
func isMarkOf(k []byte, seq uint64) bool {
	return len(k) == markKeyLen && k[recordKeyLen] == markSuffix && binary.BigEndian.Uint64(k[1:]) == seq
}

func deadLetterKey(seq uint64) []byte {
	k := recordKey(seq)
	k[0] = prefixDeadLetter
	return k
}

func stateKey(key string) []byte {
	k := make([]byte, 0, 1+len(key))
	k = append(k, prefixState)
	return append(k, key...)
}

// counters is the persistent bookkeeping, rewritten in every commit so
// that it always matches the records beside it.
type counters struct {
	nextSeq  uint64 // sequence number of the next appended record
	head     uint64 // no live record has a smaller seq
	messages uint64 // stored records
	bytes    uint64 // sum of their encoded sizes

	appended     uint64
	acked        uint64
	evicted      uint64 // drop_oldest
	expired      uint64
	deadLettered uint64
	refusedFull  uint64
	refusedDisk  uint64
	deadLetters  uint64 // dead letters currently stored
	corrupt      uint64 // undecodable records dropped at the head
}

// countersVersion starts the encoded counters block.
const countersVersion = 1

func (c *counters) fields() []*uint64 {
	return []*uint64{&c.nextSeq, &c.head, &c.messages, &c.bytes, &c.appended, &c.acked,
		&c.evicted, &c.expired, &c.deadLettered, &c.refusedFull, &c.refusedDisk, &c.deadLetters, &c.corrupt}
}

func (c *counters) encode() []byte {
	f := c.fields()
	b := make([]byte, 0, 2+len(f)*binary.MaxVarintLen64)
	b = append(b, countersVersion)
	b = binary.AppendUvarint(b, uint64(len(f)))
	for _, p := range f {
		b = binary.AppendUvarint(b, *p)
	}
	return b
}

// decodeCounters decodes a counters block. A block with more fields than
// this version knows is accepted (the extra ones are ignored) so that an
// older binary can read a newer block; fewer fields leave the rest zero.
func decodeCounters(b []byte) (counters, error) {
	var c counters
	if len(b) < 2 || b[0] != countersVersion {
		return c, fmt.Errorf("%w: counters block: bad version or length", ErrCorrupt)
	}
	d := decoder{b: b[1:]}
	n := d.uvarint("counters count")
	if d.err == nil && n > uint64(len(d.b)) {
		d.fail("counters count: beyond end")
	}
	f := c.fields()
	for i := uint64(0); i < n && d.err == nil; i++ {
		v := d.uvarint("counter")
		if i < uint64(len(f)) {
			*f[i] = v
		}
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("counters: trailing bytes")
	}
	if d.err == nil && (c.head > c.nextSeq || c.messages > c.nextSeq) {
		d.fail("counters: head or count beyond next sequence")
	}
	if d.err != nil {
		return counters{}, d.err
	}
	return c, nil
}

// DeadLetter is a record moved out of the queue by Queue.DeadLetter.
type DeadLetter struct {
	// Seq is the record's former position in the queue.
	Seq uint64
	// Reason is what the caller gave, e.g. the upstream reason code.
	Reason string
	// At is when it was dead-lettered.
	At time.Time
	// Mark is the record's mark at that time, or nil.
	Mark []byte
	Message
}

// encodeDeadLetter: version byte, varint time (Unix ns), reason, mark
// (length-prefixed), then the encoded record to the end.
func encodeDeadLetter(reason string, at time.Time, mark, record []byte) []byte {
	b := make([]byte, 0, 1+3*binary.MaxVarintLen64+len(reason)+len(mark)+len(record))
	b = append(b, countersVersion)
	b = binary.AppendVarint(b, at.UnixNano())
	b = appendString(b, reason)
	b = appendBytes(b, mark)
	return append(b, record...)
}

// decodeDeadLetter decodes a dead-letter value; errors wrap ErrCorrupt.
func decodeDeadLetter(b []byte, dl *DeadLetter) error {
	if len(b) < 1 || b[0] != countersVersion {
		return fmt.Errorf("%w: dead letter: bad version", ErrCorrupt)
	}
	d := decoder{b: b[1:]}
	at := d.varint("dead letter time")
	reason := d.bytes("dead letter reason")
	mark := d.bytes("dead letter mark")
	if d.err != nil {
		return d.err
	}
	if !utf8.Valid(reason) {
		return fmt.Errorf("%w: dead letter reason: invalid utf-8", ErrCorrupt)
	}
	if err := DecodeRecord(d.b, &dl.Message); err != nil {
		return fmt.Errorf("dead letter: %w", err)
	}
	dl.Reason = string(reason)
	dl.At = time.Unix(0, at)
	dl.Mark = nil
	if len(mark) > 0 {
		dl.Mark = mark
	}
	return nil
}
