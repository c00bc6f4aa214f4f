package testenv

import (
	"net"
	"os"
	"testing"
)

// DefaultPortsLock is the file LockDefaultPorts locks: one for the whole
// machine, whatever TMPDIR each test binary has.
const DefaultPortsLock = "/tmp/holdfast-default-ports.lock"

// LockDefaultPorts holds an exclusive lock on DefaultPortsLock until the
// test ends, waiting for it if another test has it. Every test that uses
// holdfast's fixed default ports (MQTT 127.0.0.1:1883, admin
// 127.0.0.1:9183, upstream 127.0.0.1:1884) takes it first: go test runs
// the packages' test binaries in parallel, and the default-configuration
// test of cmd/holdfast and the installed package's service would otherwise
// take the same ports at the same time.
func LockDefaultPorts(t testing.TB) {
	t.Helper()
	unlock, waited, err := lockFile(DefaultPortsLock)
	if err != nil {
		t.Fatalf("default ports lock %s: %v", DefaultPortsLock, err)
	}
	if waited {
		t.Logf("waited for %s: another test was using holdfast's default ports", DefaultPortsLock)
	}
	t.Cleanup(unlock)
}

// RequireBindable fails or skips the test (as Missing does) unless every
// address in addrs can be bound now. A test of the default ports calls it
// after LockDefaultPorts, which keeps other tests off them: what it finds
// is another program (Debian's mosquitto service takes 127.0.0.1:1883).
func RequireBindable(t testing.TB, addrs ...string) {
	t.Helper()
	for _, a := range addrs {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			Missing(t, "%s is taken on this machine (%v): another program holds a port of holdfast's defaults "+
				"(Debian's mosquitto service: systemctl disable --now mosquitto)", a, err)
			return
		}
		ln.Close()
	}
}

// openLockFile opens (creating) a lock file that any user can lock: read
// only, so that a file root created is usable by the others too.
func openLockFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	f.Chmod(0o644) // whatever the umask; fails, harmlessly, on another user's file
	return f, nil
}
