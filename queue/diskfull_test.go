package queue

import (
	"context"
	"crypto/rand"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// mountTmpfs mounts a tmpfs of the given size on a fresh directory and
// unmounts it at cleanup; it skips the test when that is not possible.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("disk-full test needs root to mount a small tmpfs")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("disk-full test: mount tmpfs failed (%v): %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

func TestDiskFull(t *testing.T) {
	mnt := mountTmpfs(t, "64m")
	filler := filepath.Join(mnt, "filler")
	if err := os.WriteFile(filler, make([]byte, 16<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	o := Options{
		Dir:               filepath.Join(mnt, "q"),
		MemTableSize:      1 << 20,
		BaseTableSize:     256 << 10,
		ValueLogFileSize:  1 << 20,
		DiskReserve:       16 << 20, // well above what Badger allocates at once with these sizes
		DiskCheckInterval: 20 * time.Millisecond,
		Logger:            quiet,
	}
	q, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { q.Close() }()

	payload := make([]byte, 1000)
	var acked int
	var fullErr error
	for i := 0; i < 200000; i++ {
		rand.Read(payload) // incompressible, so the disk really fills
		err := q.Append(context.Background(), Message{Topic: "fill", Payload: payload, QoS: 1})
		if err != nil {
			fullErr = err
			break
		}
		acked++
	}
	if !errors.Is(fullErr, ErrDiskFull) {
		t.Fatalf("after %d appends: %v, want ErrDiskFull", acked, fullErr)
	}
	st := q.Stats()
	if !st.DiskFull || st.RefusedDisk == 0 || st.Messages != uint64(acked) {
		t.Fatalf("stats when full: %+v (acked %d)", st, acked)
	}
	// Acks and state still work when the disk is full.
	if err := q.PutState(context.Background(), StateOp{Key: "k", Value: []byte("v")}); err != nil {
		t.Fatalf("state op on full disk: %v", err)
	}
	if err := q.Close(); err != nil {
		t.Fatalf("close on full disk: %v", err)
	}

	// Nothing acknowledged is lost.
	q, err = Open(o)
	if err != nil {
		t.Fatalf("reopen on full disk: %v", err)
	}
	if got := q.Stats().Messages; got != uint64(acked) {
		t.Fatalf("after reopen %d messages, %d were acknowledged", got, acked)
	}
	recs := leaseN(t, q, acked)
	for i := 1; i < len(recs); i++ {
		if recs[i].Seq != recs[i-1].Seq+1 {
			t.Fatalf("gap after reopen at %d", recs[i].Seq)
		}
	}
	q.Release(seqs(recs)...)

	// Free space: appends work again (after the next free-space check).
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := q.Append(context.Background(), Message{Topic: "after", Payload: payload})
		if err == nil {
			break
		}
		if !errors.Is(err, ErrDiskFull) || time.Now().After(deadline) {
			t.Fatalf("append after freeing space: %v", err)
		}
		time.Sleep(o.DiskCheckInterval)
	}
	t.Logf("%d x 1000-byte messages acknowledged before ErrDiskFull on a 64 MiB tmpfs (16 MiB filler, 16 MiB reserve)", acked)
}
