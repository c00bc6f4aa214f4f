//go:build linux

package queue

import (
	"bytes"
	"context"
	"errors"
	"syscall"
	"testing"
)

// TestPageOutValueLog fills several value-log files, has the kernel
// reclaim their mapped pages, and checks every record still reads back
// intact, in order.
func TestPageOutValueLog(t *testing.T) {
	q := open(t, Options{ValueLogFileSize: 1 << 20, GCInterval: -1})
	const n = 12000 // ~3 MiB of records: three value-log files
	msgs := make([]Message, 0, 1000)
	for i := 0; i < n; i += 1000 {
		msgs = msgs[:0]
		for j := i; j < i+1000; j++ {
			p := bytes.Repeat([]byte{byte(j), byte(j >> 8)}, 100)
			msgs = append(msgs, Message{Topic: "t/page", Payload: p, QoS: 1})
		}
		if err := q.Append(context.Background(), msgs...); err != nil {
			t.Fatal(err)
		}
	}
	advised, err := pageOutValueLog(q.mapDir)
	if errors.Is(err, syscall.EINVAL) && advised == 0 {
		t.Skip("kernel without MADV_PAGEOUT (Linux < 5.4): nothing to test")
	}
	if err != nil {
		t.Fatalf("page out: %v", err)
	}
	if advised == 0 {
		t.Fatalf("no finished value-log mapping found under %s", q.mapDir)
	}
	for got := 0; got < n; {
		recs, err := q.Lease(context.Background(), 500)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			want := bytes.Repeat([]byte{byte(got), byte(got >> 8)}, 100)
			if !bytes.Equal(r.Payload, want) {
				t.Fatalf("record %d (seq %d): payload differs after page-out", got, r.Seq)
			}
			got++
		}
		if err := q.Ack(seqs(recs)...); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("advised %d KiB of finished value-log mappings", advised>>10)
}
