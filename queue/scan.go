package queue

import (
	"encoding/binary"
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
	var cur *Scanned
	flush := func() error {
		if cur == nil {
			return nil
		}
		s := cur
		cur = nil
		return fn(*s)
	}
	err := q.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixRecord}, PrefetchValues: true, PrefetchSize: 64})
		defer it.Close()
		for it.Seek(recordKey(head)); it.Valid(); it.Next() {
			item := it.Item()
			k := item.Key()
			seq := binary.BigEndian.Uint64(k[1:])
			if seq >= tail {
				break
			}
			v, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			if len(k) != recordKeyLen {
				if k[recordKeyLen] == markSuffix && cur != nil && cur.Seq == seq {
					cur.Mark = v
				}
				continue
			}
			if err := flush(); err != nil {
				return err
			}
			cur = &Scanned{Record: Record{Seq: seq}}
			if err := DecodeRecord(v, &cur.Message); err != nil {
				cur.Message, cur.Corrupt = Message{}, err
			} else {
				cur.Expired = q.expired(&cur.Message, now)
			}
		}
		return flush()
	})
	if err != nil {
		return fmt.Errorf("queue: scan: %w", err)
	}
	return nil
}
