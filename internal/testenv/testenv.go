// Package testenv starts the real parts that holdfast's tests run against: a
// mosquitto broker from the system's packages on a free loopback port, and the
// lookups tests need to skip cleanly when a tool is not installed.
//
// Everything started here is stopped by t.Cleanup. Nothing here is used by the
// holdfast binary itself.
package testenv

import (
	"bytes"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// RequireToolsEnv is the environment variable that makes a missing tool fail
// the test instead of skipping it: set to 1 (as .ci/run does), a test can
// never pass by not running.
const RequireToolsEnv = "HOLDFAST_REQUIRE_TOOLS"

// SharedTempDir returns a new directory under the system's temporary
// directory that every user may enter and read (0755), removed when the
// test ends: t.TempDir's is private (0700), which a process dropped to
// another user (mosquitto, holdfast as its service user) cannot pass.
func SharedTempDir(t testing.TB, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// LookTool returns the path of an executable from PATH or the sbin directories
// (where Debian installs mosquitto), or skips the test with a message that names
// the package to install. With HOLDFAST_REQUIRE_TOOLS=1 in the environment a
// missing tool fails the test instead.
func LookTool(t testing.TB, name, debianPackage string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	Missing(t, "%s not found: install the Debian package %s (bash .ci/run does)", name, debianPackage)
	return ""
}

// Missing skips the test because something it needs from the machine (a
// tool, a Python module) is not there, with a message that says what to
// install; with HOLDFAST_REQUIRE_TOOLS=1 in the environment it fails the
// test instead.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv(RequireToolsEnv) == "1" {
		t.Fatalf(format+" (%s=1: required)", append(args, RequireToolsEnv)...)
	}
	t.Skipf(format, args...)
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// WaitFor polls cond every few milliseconds until it returns true or the
// deadline passes, in which case the test fails with msg.
func WaitFor(t testing.TB, timeout time.Duration, msg string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, msg)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// MosquittoOptions configures a test broker.
type MosquittoOptions struct {
	// Persistent keeps sessions and queued messages across Restart (mosquitto's
	// persistence file in the broker's own temporary directory).
	Persistent bool
	// TLS, when set, adds a TLS listener (on TLSPort) with these PEM files.
	TLS *MosquittoTLS
	// Users, when set, makes the broker refuse anonymous clients and accept
	// these user names with their passwords (a password file written with
	// mosquitto_passwd; the test skips when it is not installed).
	Users map[string]string
	// Extra is appended to the generated mosquitto.conf verbatim.
	Extra string
}

// MosquittoTLS names the PEM files of a TLS listener.
type MosquittoTLS struct {
	CAFile, CertFile, KeyFile string
	// RequireClientCert makes the listener demand a certificate signed by CAFile.
	RequireClientCert bool
}

// Mosquitto is a running mosquitto broker owned by one test.
type Mosquitto struct {
	t       testing.TB
	bin     string
	dir     string
	conf    string
	Port    int // plain MQTT listener on 127.0.0.1
	TLSPort int // TLS listener on 127.0.0.1, 0 without TLS

	mu   sync.Mutex // guards cmd and done
	cmd  *exec.Cmd
	done chan struct{}
	log  LockedBuffer
}

// passwordFile writes users into a mosquitto password file in the broker's
// directory and returns its path.
func (m *Mosquitto) passwordFile(users map[string]string) string {
	m.t.Helper()
	passwd := LookTool(m.t, "mosquitto_passwd", "mosquitto")
	file := filepath.Join(m.dir, "passwd")
	for i, name := range slices.Sorted(maps.Keys(users)) {
		args := []string{"-b", file, name, users[name]}
		if i == 0 {
			args = append([]string{"-c"}, args...)
		}
		if out, err := exec.Command(passwd, args...).CombinedOutput(); err != nil {
			m.t.Fatalf("mosquitto_passwd: %v: %s", err, out)
		}
	}
	return file
}

// StartMosquitto starts a broker on a free loopback port and stops it when the
// test ends. It skips the test when mosquitto is not installed.
func StartMosquitto(t testing.TB, opts MosquittoOptions) *Mosquitto {
	t.Helper()
	m := &Mosquitto{t: t, bin: LookTool(t, "mosquitto", "mosquitto"), dir: t.TempDir(), Port: FreePort(t)}
	var conf strings.Builder
	fmt.Fprintf(&conf, "per_listener_settings false\nallow_anonymous true\nmax_queued_messages 0\nmax_inflight_messages 0\n")
	fmt.Fprintf(&conf, "listener %d 127.0.0.1\n", m.Port)
	if opts.TLS != nil {
		m.TLSPort = FreePort(t)
		fmt.Fprintf(&conf, "listener %d 127.0.0.1\ncafile %s\ncertfile %s\nkeyfile %s\n",
			m.TLSPort, opts.TLS.CAFile, opts.TLS.CertFile, opts.TLS.KeyFile)
		if opts.TLS.RequireClientCert {
			conf.WriteString("require_certificate true\n")
		}
	}
	if opts.Persistent {
		fmt.Fprintf(&conf, "persistence true\npersistence_location %s/\nautosave_interval 1\n", m.dir)
	}
	if len(opts.Users) > 0 {
		fmt.Fprintf(&conf, "allow_anonymous false\npassword_file %s\n", m.passwordFile(opts.Users))
	}
	if (opts.Persistent || len(opts.Users) > 0) && os.Geteuid() == 0 {
		// Started as root, mosquitto drops to its own user, which can
		// neither write the persistence file nor read the password file in
		// the test's private directory.
		conf.WriteString("user root\n")
	}
	conf.WriteString(opts.Extra)
	m.conf = filepath.Join(m.dir, "mosquitto.conf")
	if err := os.WriteFile(m.conf, []byte(conf.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	m.Start()
	t.Cleanup(func() {
		m.Stop()
		if t.Failed() {
			t.Logf("mosquitto log:\n%s", m.Log())
		}
	})
	return m
}

// Addr is the plain listener's host:port.
func (m *Mosquitto) Addr() string { return fmt.Sprintf("127.0.0.1:%d", m.Port) }

// URL is the plain listener as an mqtt:// URL.
func (m *Mosquitto) URL() string { return "mqtt://" + m.Addr() }

// Start starts the broker (again) and waits until it accepts connections.
func (m *Mosquitto) Start() {
	m.t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd != nil {
		m.t.Fatalf("mosquitto already running")
	}
	cmd := exec.Command(m.bin, "-c", m.conf)
	cmd.Stdout, cmd.Stderr = &m.log, &m.log
	if err := cmd.Start(); err != nil {
		m.t.Fatalf("start mosquitto: %v", err)
	}
	m.cmd, m.done = cmd, make(chan struct{})
	go func(done chan struct{}) { cmd.Wait(); close(done) }(m.done)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", m.Addr(), 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-m.done:
			m.t.Fatalf("mosquitto exited at start:\n%s", m.log.String())
		default:
		}
		if time.Now().After(deadline) {
			m.t.Fatalf("mosquitto did not listen on %s: %v", m.Addr(), err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Stop stops the broker with SIGTERM (mosquitto saves its persistence file)
// and waits for it to exit. Stopping a stopped broker does nothing.
func (m *Mosquitto) Stop() { m.stop(syscall.SIGTERM) }

// Kill stops the broker with SIGKILL, as a crash would.
func (m *Mosquitto) Kill() { m.stop(syscall.SIGKILL) }

// Restart stops the broker with SIGTERM and starts it on the same port.
func (m *Mosquitto) Restart() {
	m.t.Helper()
	m.Stop()
	m.Start()
}

func (m *Mosquitto) stop(sig syscall.Signal) {
	m.mu.Lock()
	cmd, done := m.cmd, m.done
	m.cmd = nil
	m.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

// Log returns what the broker has printed so far.
func (m *Mosquitto) Log() string {
	return m.log.String()
}

// LockedBuffer is a bytes.Buffer safe for the concurrent writes of a child
// process's stdout and stderr copiers.
type LockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *LockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *LockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// SeedEnv names the environment variable that replays a test's random
// moments: a test that draws them from Rand logs the seed it used, and
// HOLDFAST_TEST_SEED=<seed> makes the next run draw the same ones.
const SeedEnv = "HOLDFAST_TEST_SEED"

// Rand returns a random source for a test's moments (kills, cuts,
// lifetimes), seeded from the clock or from HOLDFAST_TEST_SEED, and logs
// the seed with what it is for.
func Rand(t testing.TB, what string) *rand.Rand {
	t.Helper()
	seed := time.Now().UnixNano()
	if s := os.Getenv(SeedEnv); s != "" {
		var err error
		if seed, err = strconv.ParseInt(s, 10, 64); err != nil {
			t.Fatalf("%s=%q: %v", SeedEnv, s, err)
		}
	}
	t.Logf("%s from %s=%d", what, SeedEnv, seed)
	return rand.New(rand.NewPCG(uint64(seed), 0x686f6c64))
}
