//go:build linux

package queue

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// madvPageout is MADV_PAGEOUT (Linux 5.4 and later): reclaim the pages of
// a range now instead of when memory runs short. Older kernels refuse it
// with EINVAL, which leaves things as they were.
const madvPageout = 21

// pageOutValueLog asks the kernel to reclaim the resident pages of the
// value-log files of dir that Badger has memory-mapped, except the newest
// one (being written, and what a consumer keeping up reads). Badger writes the
// value log through shared file mappings and keeps them mapped for
// reads, so every page written would otherwise stay in the process's
// RSS until memory runs short. The pages are backed by the files (the
// kernel writes back any that are dirty before dropping them; nothing is
// lost) and a later read faults them in again. MADV_PAGEOUT never
// discards data, so a range Badger unmapped and the runtime reused in
// the meantime is not harmed either. It returns the bytes advised, and
// the error that stopped it (EINVAL from kernels without MADV_PAGEOUT).
func pageOutValueLog(dir string) (int64, error) {
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return 0, err
	}
	type mapping struct {
		lo, hi uint64
		fid    int
	}
	var ms []mapping
	newest := -1
	sc := bufio.NewScanner(bytes.NewReader(maps))
	for sc.Scan() {
		// start-end perms offset dev inode path
		f := strings.Fields(sc.Text())
		if len(f) != 6 || !strings.HasSuffix(f[5], ".vlog") || filepath.Dir(f[5]) != dir || !strings.Contains(f[1], "s") {
			continue
		}
		start, end, ok := strings.Cut(f[0], "-")
		if !ok {
			continue
		}
		lo, err1 := strconv.ParseUint(start, 16, 64)
		hi, err2 := strconv.ParseUint(end, 16, 64)
		fid, err3 := strconv.Atoi(strings.TrimSuffix(filepath.Base(f[5]), ".vlog"))
		if err1 != nil || err2 != nil || err3 != nil || hi <= lo {
			continue
		}
		ms = append(ms, mapping{lo, hi, fid})
		newest = max(newest, fid)
	}
	var n int64
	for _, m := range ms {
		if m.fid == newest {
			continue // being written, and read by a consumer keeping up
		}
		_, _, errno := syscall.Syscall(syscall.SYS_MADVISE, uintptr(m.lo), uintptr(m.hi-m.lo), madvPageout)
		if errno != 0 {
			return n, errno
		}
		n += int64(m.hi - m.lo)
	}
	return n, nil
}
