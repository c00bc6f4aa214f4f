//go:build unix

package queue

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// checkUnlocked returns ErrLocked when another Queue (in this process or
// another) holds dir: Badger takes an exclusive flock on the directory
// and reports a conflict only as text. The lock taken here is released at
// once; Badger takes its own right after.
func checkUnlocked(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return nil // Badger reports it with context
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		if errors.Is(err, unix.EWOULDBLOCK) {
			return ErrLocked
		}
		return nil
	}
	return unix.Flock(int(f.Fd()), unix.LOCK_UN)
}
