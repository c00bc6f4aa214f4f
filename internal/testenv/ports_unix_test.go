//go:build unix

package testenv

import (
	"errors"
	"os"
	"syscall"
	"testing"
)

// lockFree reports whether DefaultPortsLock can be locked at once through
// a descriptor of its own, as another test binary would.
func lockFree(t *testing.T) bool {
	t.Helper()
	f, err := os.Open(DefaultPortsLock)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	return true
}

// TestLockDefaultPorts: the lock is held for the test that takes it and
// released when that test ends.
func TestLockDefaultPorts(t *testing.T) {
	t.Run("held", func(t *testing.T) {
		LockDefaultPorts(t)
		if lockFree(t) {
			t.Errorf("%s can be locked by another while a test holds it", DefaultPortsLock)
		}
	})
	if !lockFree(t) {
		t.Errorf("%s is still locked after the test that took it ended", DefaultPortsLock)
	}
	fi, err := os.Stat(DefaultPortsLock)
	if err != nil || fi.Mode().Perm()&0o044 != 0o044 {
		t.Errorf("%s: %v, %v; want it readable by every user, who lock it too", DefaultPortsLock, fi.Mode(), err)
	}
}
