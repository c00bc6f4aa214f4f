package queue

import (
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Scanned is one record as Scan sees it.
type Scanned struct {
	Record
	// Expired reports that the record is past its MQTT expiry or the TTL:
	// the next Lease drops it instead of handing it out.
	Expired bool
	// Corrupt is the decoding error of an undecodable record (Message is
	// then zero); the next Lease drops it.
	Corrupt error
}

// Scan calls fn for every stored record from the head in sequence order,
// leased or not, with its mark, and stops at the first error fn returns,
// which Scan returns. Unlike Lease it changes nothing: no record is
// leased, expired or dropped, so a tool can show a queue exactly as the
// agent left it. It reads one consistent snapshot; writes committed
// meanwhile are not seen.
func (q *Queue) Scan(fn func(Scanned) error) error {
	select {
	case <-q.closed:
		return ErrClosed
	default:
	}
	q.mu.Lock()
	head, tail := q.ctr.head, q.tail
	q.mu.Unlock()
	now := time.Now()
	err := q.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixRecord}, PrefetchValues: true, PrefetchSize: 64})
		defer it.Close()
		it.Seek(recordKey(head))
		var sl slab
		_, err := walkRecords(it, tail, &sl, func(seq uint64, v, mark []byte) (bool, error) {
			s := Scanned{Record: Record{Seq: seq, Mark: mark}}
			if err := DecodeRecord(v, &s.Message); err != nil {
				s.Message, s.Corrupt = Message{}, err
			} else {
				s.Expired = q.expired(&s.Message, now)
			}
			return true, fn(s)
		})
		return err
	})
	if err != nil {
		return fmt.Errorf("queue: scan: %w", err)
	}
	return nil
}
