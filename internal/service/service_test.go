package service

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"holdfast/internal/testenv"
)

func TestNewConfig(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	c, err := NewConfig(Options{ConfigFile: "holdfast.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	exe, _ := os.Executable()
	exe, _ = filepath.EvalSymlinks(exe)
	conf := filepath.Join(dir, "holdfast.yaml")
	if c.Name != Name || c.DisplayName != DisplayName || c.Description != Description {
		t.Errorf("identity %q %q %q", c.Name, c.DisplayName, c.Description)
	}
	if c.Executable != exe {
		t.Errorf("Executable = %q, want this executable %q", c.Executable, exe)
	}
	if got := strings.Join(c.Arguments, "|"); got != "run|--config|"+conf {
		t.Errorf("Arguments = %q, want run --config %s", c.Arguments, conf)
	}
	if c.WorkingDirectory != dir {
		t.Errorf("WorkingDirectory = %q, want the config's directory %q", c.WorkingDirectory, dir)
	}
	if unit, _ := c.Option["SystemdScript"].(string); !strings.Contains(unit, `ExecStart="`+exe+`" "run" "--config" "`+conf+`"`) {
		t.Errorf("systemd unit does not run %s run --config %s:\n%s", exe, conf, unit)
	}

	for _, tc := range []struct {
		o    Options
		want string
	}{
		{Options{}, "no configuration file"},
		{Options{ConfigFile: "a.yaml", Name: "hold fast"}, `name "hold fast"`},
		{Options{ConfigFile: "a.yaml", Name: "-x"}, `name "-x"`},
		{Options{ConfigFile: "a\nb.yaml"}, "line break"},
		{Options{ConfigFile: "a.yaml", Executable: "/opt/{{x}}/holdfast"}, "{{"},
		{Options{ConfigFile: "a.yaml", Executable: `/opt/it's/holdfast`}, "without quotes"},
	} {
		if _, err := NewConfig(tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewConfig(%+v) = %v, want an error containing %q", tc.o, err, tc.want)
		}
	}
}

func TestControlRejects(t *testing.T) {
	var out bytes.Buffer
	if err := Control("reload", Options{ConfigFile: "/x.yaml"}, &out); err == nil || !strings.Contains(err.Error(), `unknown action "reload"`) {
		t.Errorf("Control(reload) = %v", err)
	}
	if err := Control("status", Options{}, &out); err == nil || !strings.Contains(err.Error(), "no configuration file") {
		t.Errorf("Control without config = %v", err)
	}
	if err := Control("install", Options{ConfigFile: filepath.Join(t.TempDir(), "missing.yaml"), Name: "holdfast-test-missing"}, &out); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("install with a missing config = %v, want not exist", err)
	}
	if out.Len() > 0 {
		t.Errorf("output on errors: %q", out.String())
	}
	for _, a := range Actions {
		if !ValidAction(a) {
			t.Errorf("ValidAction(%q) = false", a)
		}
	}
}

// TestSystemdUnitVerifies checks the unit written under systemd with
// systemd-analyze, for paths with spaces, quotes and specifier characters.
func TestSystemdUnitVerifies(t *testing.T) {
	sa := testenv.LookTool(t, "systemd-analyze", "systemd")
	// systemd takes spaces, % and $ in the executable's path (NewConfig
	// refuses quotes and backslashes there) and anything in arguments.
	dir := filepath.Join(t.TempDir(), `odd dir 100% $HOME`)
	confDir := filepath.Join(t.TempDir(), `"quoted" 'dir' \ 100% $HOME`)
	for _, d := range []string{dir, confDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	exe := filepath.Join(dir, "holdfast")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	unit := SystemdUnit(exe, []string{"run", "--config", filepath.Join(confDir, "holdfast.yaml")}, confDir)
	for _, want := range []string{"After=network.target\n", "Restart=always\n", "RestartSec=2s\n", "TimeoutStopSec=30s\n", "LimitNOFILE=65536\n", "NoNewPrivileges=yes\n", "WantedBy=multi-user.target\n"} {
		if !strings.Contains(unit, want) {
			t.Errorf("unit lacks %q", want)
		}
	}
	if strings.Contains(unit, "network-online") {
		t.Error("unit waits for network-online")
	}
	p := filepath.Join(t.TempDir(), "holdfast-test.service")
	if err := os.WriteFile(p, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	o, err := exec.Command(sa, "verify", "--man=no", p).CombinedOutput()
	if err != nil || len(o) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s\nunit:\n%s", err, o, unit)
	}
	// A missing executable is what verify must catch, or the check above
	// proves nothing about ExecStart.
	if err := os.Remove(exe); err != nil {
		t.Fatal(err)
	}
	if o, err := exec.Command(sa, "verify", "--man=no", p).CombinedOutput(); err == nil {
		t.Errorf("systemd-analyze verify accepted a missing executable:\n%s", o)
	}
}

// TestControlAsRoot installs a service under a test name with the machine's
// service manager, starts, restarts, stops and uninstalls it. The program is
// a shell script that records its arguments and sleeps.
func TestControlAsRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("installing a service needs root: run the tests as root (CI does)")
	}
	platform := Platform()
	t.Logf("service manager: %s", platform)
	name := fmt.Sprintf("holdfast-test-%d", os.Getpid())
	dir := t.TempDir()
	conf := filepath.Join(dir, "holdfast.yaml")
	if err := os.WriteFile(conf, []byte("# test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	argsFile := filepath.Join(dir, "args")
	exe := filepath.Join(dir, "holdfast")
	script := fmt.Sprintf("#!/bin/sh\necho \"$@\" > %s\nexec sleep 600\n", argsFile)
	if err := os.WriteFile(exe, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	o := Options{ConfigFile: conf, Executable: exe, Name: name}
	control := func(action string) (string, error) {
		var out bytes.Buffer
		err := Control(action, o, &out)
		t.Logf("service %s: %q %v", action, out.String(), err)
		return out.String(), err
	}
	t.Cleanup(func() {
		control("stop")
		control("uninstall")
		// A System V init script keeps the program's pid here; whatever
		// the stop above left running is ended by that pid.
		if b, err := os.ReadFile("/var/run/" + name + ".pid"); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 {
				if p, err := os.FindProcess(pid); err == nil {
					p.Kill()
				}
			}
			os.Remove("/var/run/" + name + ".pid")
		}
		// and its logs go to /var/log.
		os.Remove("/var/log/" + name + ".log")
		os.Remove("/var/log/" + name + ".err")
	})

	if _, err := control("status"); !errors.Is(err, ErrNotInstalled) {
		t.Errorf("status before install: %v, want ErrNotInstalled", err)
	}
	if _, err := control("install"); err != nil {
		t.Fatal(err)
	}
	if _, err := control("install"); err == nil {
		t.Error("a second install succeeded")
	}
	if out, err := control("status"); err != nil || !strings.Contains(out, "stopped") {
		t.Errorf("status after install: %q %v, want stopped", out, err)
	}
	if _, err := control("start"); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 30*time.Second, "the service program to record its arguments", func() bool {
		b, _ := os.ReadFile(argsFile)
		return string(b) == "run --config "+conf+"\n"
	})
	if out, err := control("status"); err != nil || !strings.Contains(out, "running") {
		t.Errorf("status after start: %q %v, want running", out, err)
	}
	if err := os.Remove(argsFile); err != nil {
		t.Fatal(err)
	}
	if _, err := control("restart"); err != nil {
		t.Error(err)
	}
	testenv.WaitFor(t, 30*time.Second, "the restarted program", func() bool {
		_, err := os.Stat(argsFile)
		return err == nil
	})
	if _, err := control("stop"); err != nil {
		t.Error(err)
	}
	if out, err := control("status"); err != nil || !strings.Contains(out, "stopped") {
		t.Errorf("status after stop: %q %v, want stopped", out, err)
	}
	if _, err := control("uninstall"); err != nil {
		t.Error(err)
	}
	if _, err := control("status"); !errors.Is(err, ErrNotInstalled) {
		t.Errorf("status after uninstall: %v, want ErrNotInstalled", err)
	}
	if platform == "unix-systemv" {
		links, _ := filepath.Glob("/etc/rc?.d/*" + name)
		if len(links) > 0 {
			t.Errorf("runlevel links left after uninstall: %v", links)
		}
	}
}

// TestInstallRefusedWhenPackaged: with the Debian package's unit present,
// install refuses and says to use systemctl, touching nothing.
func TestInstallRefusedWhenPackaged(t *testing.T) {
	dir := t.TempDir()
	unit := filepath.Join(dir, "holdfast.service")
	if err := os.WriteFile(unit, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// A missing configuration: should the refusal ever be skipped, install
	// fails on it rather than registering a service on this machine.
	conf := filepath.Join(dir, "missing.yaml")
	saved := PackagedUnits
	PackagedUnits = []string{filepath.Join(dir, "absent.service"), unit}
	t.Cleanup(func() { PackagedUnits = saved })
	var out strings.Builder
	err := Control("install", Options{ConfigFile: conf}, &out)
	if !errors.Is(err, ErrPackaged) || !strings.Contains(err.Error(), unit) || out.Len() != 0 {
		t.Fatalf("install with %s present: %v, %q; want ErrPackaged naming it", unit, err, out.String())
	}
}
