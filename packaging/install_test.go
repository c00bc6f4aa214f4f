package packaging

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"holdfast/internal/testenv"
)

// Helpers of checkInstallCycle: the installed service under systemd, and a
// queue filled by the installed binary as the service user.

// serviceChecks says whether the service itself can be checked here: only
// where systemd is the running init, and where the packaged config's
// addresses are free so that the service can stay up. The caller holds
// testenv.LockDefaultPorts, so no other test takes them meanwhile; another
// program that has one fails the test with HOLDFAST_REQUIRE_TOOLS=1 (CI),
// where the service must be checked.
type serviceChecks struct{ check bool }

func newServiceChecks(t *testing.T) serviceChecks {
	if !isDir("/run/systemd/system") {
		t.Log("systemd is not the running init here: the service's start on install, restart on upgrade, " +
			"stop on remove and the hardened unit running the agent are not checked")
		return serviceChecks{}
	}
	for _, a := range []string{"127.0.0.1:1883", "127.0.0.1:9183"} {
		l, err := net.Listen("tcp", a)
		if err != nil {
			msg := fmt.Sprintf("%s is taken on this machine (%v): the packaged config cannot run here, so the service's "+
				"start, restart and stop are not checked (Debian's mosquitto service: systemctl disable --now mosquitto)", a, err)
			if os.Getenv(testenv.RequireToolsEnv) == "1" {
				t.Fatalf("%s (%s=1: required)", msg, testenv.RequireToolsEnv)
			}
			t.Log(msg)
			return serviceChecks{}
		}
		l.Close()
	}
	t.Log("systemd is running: the service is checked through install, upgrade and remove")
	return serviceChecks{check: true}
}

func (serviceChecks) show(t *testing.T, prop string) string {
	t.Helper()
	return strings.TrimSpace(runCmd(t, nil, "systemctl", "show", "-P", prop, "holdfast.service"))
}

func (serviceChecks) waitActive(t *testing.T, when string) {
	t.Helper()
	testenv.WaitFor(t, 30*time.Second, "holdfast.service active "+when, func() bool {
		o, _ := exec.Command("systemctl", "is-active", "holdfast.service").Output()
		return strings.TrimSpace(string(o)) == "active"
	})
}

func (s serviceChecks) stop(t *testing.T) {
	t.Helper()
	runCmd(t, nil, "systemctl", "stop", "holdfast.service")
	if st, _ := exec.Command("systemctl", "is-active", "holdfast.service").Output(); strings.TrimSpace(string(st)) != "inactive" {
		t.Fatalf("holdfast.service is %q after systemctl stop", st)
	}
}

// checkServiceRuns checks that the running unit's main process is the agent,
// as the holdfast user, and that it answers holdfast status.
func checkServiceRuns(t *testing.T) {
	t.Helper()
	var status string
	testenv.WaitFor(t, 30*time.Second, "holdfast status from the service", func() bool {
		o, err := exec.Command("holdfast", "status", "--config", confPath).CombinedOutput()
		status = string(o)
		return err == nil
	})
	pid := strings.TrimSpace(runCmd(t, nil, "systemctl", "show", "-P", "MainPID", "holdfast.service"))
	exe, err := os.Readlink("/proc/" + pid + "/exe")
	if err != nil || exe != "/usr/bin/holdfast" {
		t.Errorf("the service's main process %s runs %q (%v), want /usr/bin/holdfast", pid, exe, err)
	}
	st := string(readFile(t, "/proc/"+pid+"/status"))
	u, err := user.Lookup("holdfast")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(st, "\nUid:\t"+u.Uid+"\t") {
		t.Errorf("the service's main process %s does not run as holdfast (uid %s):\n%s", pid, u.Uid, st)
	}
	t.Logf("holdfast status from the service:\n%s", status)
}

// queueRig runs the installed binary as the holdfast user on the package's
// queue directory, with a configuration of its own on free ports.
type queueRig struct {
	dir      string // readable by the holdfast user
	config   string
	listen   string
	deadPort int // the upstream: nothing listens there
	cred     *syscall.Credential
}

func newQueueRig(t *testing.T) *queueRig {
	dir := testenv.SharedTempDir(t, "holdfast-upgrade-")
	u, err := user.Lookup("holdfast")
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	r := &queueRig{
		dir:      dir,
		config:   filepath.Join(dir, "holdfast.yaml"),
		listen:   fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)),
		deadPort: testenv.FreePort(t),
		cred:     &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)},
	}
	conf := fmt.Sprintf("listeners:\n  - address: %s\nupstream:\n  url: mqtt://127.0.0.1:%d\nqueue:\n  dir: %s\nadmin:\n  address: 127.0.0.1:%d\n",
		r.listen, r.deadPort, stateDir, testenv.FreePort(t))
	if err := os.WriteFile(r.config, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return r
}

// command runs bin with args as the holdfast user.
func (r *queueRig) command(bin string, args ...string) *exec.Cmd {
	cmd := exec.Command(bin, args...)
	cmd.Dir = r.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: r.cred}
	return cmd
}

// fill runs the agent as the service user, publishes n messages at QoS 1
// with mosquitto_pub (each acknowledged only once it is on disk), and stops
// the agent with SIGTERM.
func (r *queueRig) fill(t *testing.T, bin string, n int) {
	t.Helper()
	pub := testenv.LookTool(t, "mosquitto_pub", "mosquitto-clients")
	var logs testenv.LockedBuffer
	cmd := r.command(bin, "run", "--config", r.config)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() })
	testenv.WaitFor(t, 30*time.Second, "the agent's listener", func() bool {
		c, err := net.Dial("tcp", r.listen)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	host, port, _ := net.SplitHostPort(r.listen)
	for i := 0; i < n; i++ {
		runCmd(t, nil, pub, "-h", host, "-p", port, "-q", "1", "-i", "upgrade-test",
			"-t", fmt.Sprintf("upgrade/%d", i), "-m", fmt.Sprintf("queued before the upgrade %d", i))
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the agent exited with %v after SIGTERM:\n%s", err, logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("the agent did not stop on SIGTERM:\n%s", logs.String())
	}
}

// export returns the queue's messages, read with bin as the holdfast user,
// as "seq topic payload" lines.
func (r *queueRig) export(t *testing.T, bin string) []string {
	t.Helper()
	return r.exportWith(t, r.command(bin, "queue", "export", "--config", r.config))
}

// exportAsRoot is export run as root, as `sudo holdfast queue export`.
func (r *queueRig) exportAsRoot(t *testing.T, bin string) []string {
	t.Helper()
	cmd := exec.Command(bin, "queue", "export", "--config", r.config)
	cmd.Dir = r.dir
	return r.exportWith(t, cmd)
}

// exportWith runs cmd, a holdfast queue export, and returns its messages.
func (r *queueRig) exportWith(t *testing.T, cmd *exec.Cmd) []string {
	t.Helper()
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("holdfast queue export: %v\n%s", err, stderr)
	}
	var msgs []string
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		var m struct {
			Seq     uint64 `json:"seq"`
			Topic   string `json:"topic"`
			Payload []byte `json:"payload"`
		}
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("queue export line %q: %v", sc.Text(), err)
		}
		msgs = append(msgs, fmt.Sprintf("%d %s %s", m.Seq, m.Topic, m.Payload))
	}
	for i, m := range msgs {
		if _, rest, _ := strings.Cut(m, " "); rest != fmt.Sprintf("upgrade/%d queued before the upgrade %d", i, i) {
			t.Errorf("queued message %d is %q", i, m)
		}
	}
	return msgs
}

// keepBinary copies bin where the holdfast user can run it after the package
// that installed it is removed.
func (r *queueRig) keepBinary(t *testing.T, bin string) string {
	t.Helper()
	p := filepath.Join(r.dir, "holdfast")
	if err := os.WriteFile(p, readFile(t, bin), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// checkTreeOwner checks that everything under dir belongs to holdfast.
func checkTreeOwner(t *testing.T, dir string) {
	t.Helper()
	u, err := user.Lookup("holdfast")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		if strconv.Itoa(int(st.Uid)) != u.Uid || strconv.Itoa(int(st.Gid)) != u.Gid {
			t.Errorf("%s is owned by %d:%d, want holdfast (%s:%s)", p, st.Uid, st.Gid, u.Uid, u.Gid)
		}
		n++
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	if n < 3 {
		t.Errorf("%s holds %d entries: no queue files", dir, n)
	}
}
