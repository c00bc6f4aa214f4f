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

// walTail is how much of the newest memtable WAL stays resident: the
// page being appended to, so the next write does not read it back in.
const walTail = 64 << 10

// pageOutMapped asks the kernel to reclaim the resident pages of the
// files of dir that Badger has memory-mapped: every value-log file but
// the newest, the newest one except its last keep bytes written, the
// memtable WALs (of the newest, all but its last walTail bytes: WALs are
// read only when Badger opens) and the tables. Badger writes the value
// log and the WALs through shared file mappings and reads tables through
// mappings too, and keeps all of them mapped, so every page written or
// read would otherwise stay in the process's RSS until memory runs short:
// during a fill of a million messages, the newest value-log file and the
// tables that compaction read made up half of it. The pages are backed by the files (the kernel writes back any
// that are dirty before dropping them; nothing is lost) and a later read
// faults them in again. MADV_PAGEOUT never discards data, so a range
// Badger unmapped and the runtime reused in the meantime is not harmed
// either. It returns the bytes advised, and the error that stopped it
// (EINVAL from kernels without MADV_PAGEOUT).
func pageOutMapped(dir string, keep uint64) (int64, error) {
	ms, err := mappedFiles(dir)
	if err != nil {
		return 0, err
	}
	newest := map[string]int{}
	for _, m := range ms {
		newest[m.ext] = max(newest[m.ext], m.fid)
	}
	tail := map[string]uint64{".vlog": keep, ".mem": walTail}
	var n int64
	for _, m := range ms {
		lo, hi := m.lo, m.hi
		if t, ok := tail[m.ext]; ok && m.fid == newest[m.ext] {
			end, ok := writtenEnd(m.path)
			if !ok || end < t {
				continue
			}
			hi = min(hi, lo+end-t)
		}
		if err := madvise(lo, hi, madvPageout); err != nil {
			return n, err
		}
		n += int64(hi - lo)
	}
	return n, nil
}

// mapping is one memory mapping of a value-log file, memtable WAL or
// table of the queue's directory.
type mapping struct {
	lo, hi uint64
	ext    string // ".vlog", ".mem" or ".sst"
	fid    int    // file id of a value-log file or WAL; -1 for a table
	path   string
}

// mappedFiles lists the shared mappings of dir's value-log files and
// memtable WALs and the mappings of its tables, from /proc/self/maps.
func mappedFiles(dir string) ([]mapping, error) {
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return nil, err
	}
	var ms []mapping
	sc := bufio.NewScanner(bytes.NewReader(maps))
	for sc.Scan() {
		// start-end perms offset dev inode path
		f := strings.Fields(sc.Text())
		if len(f) != 6 || filepath.Dir(f[5]) != dir {
			continue
		}
		fid := -1
		ext := filepath.Ext(f[5])
		switch {
		case (ext == ".vlog" || ext == ".mem") && strings.Contains(f[1], "s"):
			n, err := strconv.Atoi(strings.TrimSuffix(filepath.Base(f[5]), ext))
			if err != nil {
				continue
			}
			fid = n
		case ext == ".sst":
		default:
			continue
		}
		if f[2] != "00000000" {
			continue // Badger maps whole files
		}
		start, end, ok := strings.Cut(f[0], "-")
		if !ok {
			continue
		}
		lo, err1 := strconv.ParseUint(start, 16, 64)
		hi, err2 := strconv.ParseUint(end, 16, 64)
		if err1 != nil || err2 != nil || hi <= lo {
			continue
		}
		ms = append(ms, mapping{lo, hi, ext, fid, f[5]})
	}
	return ms, nil
}

// writtenEnd returns how far the value-log file or WAL at path holds
// data: the first hole (SEEK_HOLE). Badger preallocates the file sparsely
// (ftruncate to twice ValueLogFileSize or MemTableSize) and writes it from
// its start, and
// every commit syncs what it wrote, so that is where writing got to,
// rounded up to a filesystem block. On a filesystem without holes it is
// the file's size, and ok is false when the file cannot be read.
func writtenEnd(path string) (end uint64, ok bool) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	off, err := f.Seek(0, seekHole)
	if err != nil {
		return 0, false
	}
	return uint64(off), true
}

// seekHole is SEEK_HOLE (Linux 3.1 and later).
const seekHole = 4

func madvise(lo, hi uint64, advice int) error {
	if hi <= lo {
		return nil
	}
	_, _, errno := syscall.Syscall(syscall.SYS_MADVISE, uintptr(lo), uintptr(hi-lo), uintptr(advice))
	if errno != 0 {
		return errno
	}
	return nil
}
