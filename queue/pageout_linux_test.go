//go:build linux

package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// resident returns how many bytes of m count in the process's RSS (the
// Rss line of its entry in /proc/self/smaps).
func resident(t *testing.T, m mapping) uint64 {
	t.Helper()
	smaps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	head := fmt.Sprintf("%x-%x ", m.lo, m.hi)
	in := false
	for _, l := range strings.Split(string(smaps), "\n") {
		if strings.Contains(l, " ") && strings.Contains(strings.Fields(l)[0], "-") {
			in = strings.HasPrefix(l, head)
			continue
		}
		if f := strings.Fields(l); in && len(f) == 3 && f[0] == "Rss:" {
			kb, err := strconv.ParseUint(f[1], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatalf("mapping %s not in /proc/self/smaps", head)
	return 0
}

// TestPageOutMapped fills several value-log files and enough tables, has
// the kernel reclaim their mapped pages and the WALs' but the last bytes
// written of the newest value-log file and WAL, checks what stays
// resident, and checks every record still reads back intact, in order.
func TestPageOutMapped(t *testing.T) {
	q := open(t, Options{ValueLogFileSize: 1 << 20, MemTableSize: 1 << 20, GCInterval: -1})
	const n = 24000 // ~6 MiB of records: six value-log files, keys for a few tables
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
	ms, err := mappedFiles(q.mapDir)
	if err != nil {
		t.Fatal(err)
	}
	newest := map[string]int{}
	count := map[string]int{}
	for _, m := range ms {
		newest[m.ext] = max(newest[m.ext], m.fid)
		count[m.ext]++
	}
	if count[".vlog"] < 2 || count[".sst"] == 0 || count[".mem"] == 0 {
		t.Fatalf("mappings under %s: %v; want several value-log files, tables and a WAL", q.mapDir, count)
	}
	const keep = 64 << 10
	advised, err := pageOutMapped(q.mapDir, keep)
	if errors.Is(err, syscall.EINVAL) && advised == 0 {
		t.Skip("kernel without MADV_PAGEOUT (Linux < 5.4): nothing to test")
	}
	if err != nil {
		t.Fatalf("page out: %v", err)
	}
	var left, leftNewest, leftWAL uint64
	for _, m := range ms {
		r := resident(t, m)
		switch {
		case m.ext == ".vlog" && m.fid == newest[".vlog"]:
			leftNewest = r
		case m.ext == ".mem" && m.fid == newest[".mem"]:
			leftWAL = r
		default:
			left += r
		}
	}
	if leftWAL > walTail+4*uint64(os.Getpagesize()) {
		t.Errorf("newest WAL: %d KiB resident, want at most about the last %d KiB written", leftWAL>>10, walTail>>10)
	}
	// Compaction may read a table back in meanwhile: allow a few pages.
	if left > 16*uint64(os.Getpagesize()) {
		t.Errorf("%d KiB of older value-log files, WALs and tables still resident after page-out", left>>10)
	}
	// What stays is the last keep bytes up to the end of the last block
	// written, and the header page Badger reads.
	if leftNewest > keep+4*uint64(os.Getpagesize()) || leftNewest == 0 {
		t.Errorf("newest value-log file: %d KiB resident, want about the last %d KiB written", leftNewest>>10, keep>>10)
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
	t.Logf("advised %d KiB of mappings %v; newest value log %d KiB and WAL %d KiB resident after",
		advised>>10, count, leftNewest>>10, leftWAL>>10)
}
