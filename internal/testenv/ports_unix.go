//go:build unix

package testenv

import (
	"errors"
	"syscall"
)

// lockFile takes an exclusive flock on path, waiting for it, and reports
// whether it had to wait. The lock goes with the process, so a test binary
// that dies does not leave it held.
func lockFile(path string) (unlock func(), waited bool, err error) {
	f, err := openLockFile(path)
	if err != nil {
		return nil, false, err
	}
	fd := int(f.Fd())
	if err = syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB); errors.Is(err, syscall.EWOULDBLOCK) {
		waited = true
		err = syscall.Flock(fd, syscall.LOCK_EX)
	}
	if err != nil {
		f.Close()
		return nil, false, err
	}
	return func() {
		syscall.Flock(fd, syscall.LOCK_UN)
		f.Close()
	}, waited, nil
}
