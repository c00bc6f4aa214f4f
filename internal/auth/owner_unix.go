//go:build unix

package auth

import (
	"io/fs"
	"os"
	"syscall"
)

// copyOwner gives f the owner and group of the file described by st, if the process
// may; failure is ignored.
func copyOwner(f *os.File, st fs.FileInfo) {
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		_ = f.Chown(int(sys.Uid), int(sys.Gid))
	}
}
