// Package service registers holdfast with the machine's service manager and
// controls it, for machines where holdfast was not installed from the Debian
// package (other Linux distributions and init systems, Windows, macOS). It is
// what `holdfast service install|uninstall|start|stop|restart|status` runs.
//
// The service runs `holdfast run --config FILE` with the executable that
// installed it. The service manager is chosen by
// github.com/kardianos/service: systemd where it is the running init, then
// upstart, OpenRC, rc.d, procd, and System V init scripts as the fallback on
// Linux; launchd on macOS; the service control manager on Windows. Under
// systemd the unit is this package's own (SystemdUnit): restarted always
// after 2s, ordered after network.target only, with moderate hardening.
//
// Where the Debian package is installed, its unit is the one to use
// (systemctl), and Install refuses to add a second one.
//
// The service process is `holdfast run`, which calls RunManaged first: under
// the Windows service control manager that answers the start handshake and
// turns a stop request into the agent's context being cancelled; under every
// other service manager it does nothing and SIGTERM stops the agent.
package service

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	kservice "github.com/kardianos/service"
)

// The service's identity.
const (
	// Name is the service name: the systemd unit holdfast.service, the init
	// script /etc/init.d/holdfast, the Windows service holdfast.
	Name = "holdfast"
	// DisplayName is the name service managers show (Windows, launchd).
	DisplayName = "holdfast MQTT store-and-forward agent"
	// Description is the service's one-line description.
	Description = "Offline-first MQTT store-and-forward agent: buffers local MQTT and serial messages on disk and forwards them upstream"
)

// Unit settings for the systemd unit.
const (
	// RestartSec is how long systemd waits before restarting the agent.
	RestartSec = "2s"
	// TimeoutStopSec bounds an orderly stop (intake stops, commits land,
	// the queue closes) before systemd kills the agent.
	TimeoutStopSec = "30s"
	// LimitNOFILE is the file descriptor limit: one per local client and
	// listener, plus the queue's files.
	LimitNOFILE = 65536
)

// PackagedUnits are where the Debian package installs its unit. Install
// refuses to run when one of them exists.
var PackagedUnits = []string{"/usr/lib/systemd/system/holdfast.service", "/lib/systemd/system/holdfast.service"}

// DefaultConfigFile is the configuration the service runs with when none is
// given: /etc/holdfast/holdfast.yaml, on Windows
// %ProgramData%\holdfast\holdfast.yaml, on macOS
// /usr/local/etc/holdfast/holdfast.yaml.
func DefaultConfigFile() string {
	switch runtime.GOOS {
	case "windows":
		base := os.Getenv("ProgramData")
		if base == "" {
			base = `C:\ProgramData`
		}
		return filepath.Join(base, "holdfast", "holdfast.yaml")
	case "darwin":
		return "/usr/local/etc/holdfast/holdfast.yaml"
	default:
		return "/etc/holdfast/holdfast.yaml"
	}
}

// Actions are the service commands, in the order usage lists them.
var Actions = []string{"install", "uninstall", "start", "stop", "restart", "status"}

// ErrPackaged is returned by Install when the Debian package's unit is
// installed.
var ErrPackaged = errors.New("holdfast is installed from the Debian package: manage it with systemctl (enable, start, stop, status) holdfast")

// ErrNotInstalled is returned by Status and Uninstall when the service is
// not registered.
var ErrNotInstalled = kservice.ErrNotInstalled

// Options select what the service runs.
type Options struct {
	// ConfigFile is the configuration the service runs with (required). A
	// relative path is made absolute against the current directory.
	ConfigFile string
	// Executable is the program the service runs; empty means the running
	// executable (os.Executable, symlinks resolved).
	Executable string
	// Name overrides the service name (default Name); tests use it so they
	// never touch a real installation.
	Name string
}

// NewConfig returns the service manager configuration for o: the executable
// runs `run --config FILE`, in the directory of FILE so that relative paths
// in the configuration resolve next to it.
func NewConfig(o Options) (*kservice.Config, error) {
	if o.ConfigFile == "" {
		return nil, errors.New("service: no configuration file: the service runs with --config FILE")
	}
	conf, err := filepath.Abs(o.ConfigFile)
	if err != nil {
		return nil, fmt.Errorf("service: config %s: %w", o.ConfigFile, err)
	}
	exe := o.Executable
	if exe == "" {
		if exe, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("service: finding this executable: %w", err)
		}
	}
	if resolved, err := filepath.EvalSymlinks(exe); err == nil {
		exe = resolved
	}
	if exe, err = filepath.Abs(exe); err != nil {
		return nil, fmt.Errorf("service: executable: %w", err)
	}
	name := o.Name
	if name == "" {
		name = Name
	}
	if !validName(name) {
		return nil, fmt.Errorf("service: name %q: want letters, digits, '-', '_' or '.'", name)
	}
	args := []string{"run", "--config", conf}
	for _, s := range append([]string{exe}, args...) {
		if strings.ContainsAny(s, "\n\r\x00") || strings.Contains(s, "{{") {
			return nil, fmt.Errorf("service: %q: a path with a line break, NUL or {{ cannot go into a service definition", s)
		}
	}
	if runtime.GOOS != "windows" && strings.ContainsAny(exe, `"'\\`) {
		// systemd refuses such an executable name, and the init scripts
		// quote it in ways that break on them.
		return nil, fmt.Errorf("service: executable %q: move it to a path without quotes or backslashes", exe)
	}
	workDir := filepath.Dir(conf)
	c := &kservice.Config{
		Name:             name,
		DisplayName:      DisplayName,
		Description:      Description,
		Executable:       exe,
		Arguments:        args,
		WorkingDirectory: workDir,
		Option: kservice.KeyValue{
			// launchd: start at boot and restart when it exits.
			"RunAtLoad": true,
			"KeepAlive": true,
			// Windows: restart after a failure.
			"OnFailure":              "restart",
			"OnFailureDelayDuration": RestartSec,
			// systemd (used only if SystemdScript were empty).
			"Restart":     "always",
			"LimitNOFILE": LimitNOFILE,
		},
	}
	if runtime.GOOS == "linux" {
		c.Option["SystemdScript"] = SystemdUnit(exe, args, workDir)
	}
	return c, nil
}

// SystemdUnit renders the systemd unit the service manager installs as
// /etc/systemd/system/holdfast.service. It runs as root (there is no
// dedicated user without the package) with the hardening that does not
// depend on knowing where the queue lives: the configuration decides that.
func SystemdUnit(exe string, args []string, workDir string) string {
	var b strings.Builder
	b.WriteString("# Installed by `holdfast service install`; removed by `holdfast service uninstall`.\n")
	b.WriteString("[Unit]\n")
	fmt.Fprintf(&b, "Description=%s\n", DisplayName)
	b.WriteString("Documentation=man:holdfast(1)\n")
	b.WriteString("# Offline-first: never wait for the network, only order after its setup.\n")
	b.WriteString("After=network.target\n")
	b.WriteString("StartLimitIntervalSec=0\n\n")
	b.WriteString("[Service]\nType=simple\n")
	b.WriteString("ExecStart=" + execQuote(exe, false))
	for _, a := range args {
		b.WriteString(" " + execQuote(a, true))
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "WorkingDirectory=%s\n", specifierEscape(workDir))
	fmt.Fprintf(&b, "Restart=always\nRestartSec=%s\nTimeoutStopSec=%s\nKillMode=mixed\nLimitNOFILE=%d\n", RestartSec, TimeoutStopSec, LimitNOFILE)
	b.WriteString("NoNewPrivileges=yes\n")
	b.WriteString("ProtectSystem=full\n")
	b.WriteString("ProtectKernelTunables=yes\nProtectKernelModules=yes\nProtectControlGroups=yes\n")
	b.WriteString("RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6\n")
	b.WriteString("RestrictSUIDSGID=yes\nLockPersonality=yes\n\n")
	b.WriteString("[Install]\nWantedBy=multi-user.target\n")
	return b.String()
}

// execQuote quotes s as one ExecStart= word: double quotes with C escapes,
// and the specifier character doubled; in arguments (not in the executable's
// path, which systemd does not expand) the variable character too.
func execQuote(s string, arg bool) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "%", "%%")
	if arg {
		r = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "%", "%%", "$", "$$")
	}
	return `"` + r.Replace(s) + `"`
}

// specifierEscape escapes systemd's % specifiers in a path setting.
func specifierEscape(s string) string { return strings.ReplaceAll(s, "%", "%%") }

func validName(s string) bool {
	if s == "" || s[0] == '-' || s[0] == '.' {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

// ValidAction reports whether action is one of Actions.
func ValidAction(action string) bool { return slices.Contains(Actions, action) }

// Platform names the service manager this machine uses, as chosen by
// kardianos/service (for example "linux-systemd", "unix-systemv",
// "windows-service", "darwin-launchd"), or "" if none was detected.
func Platform() string { return kservice.Platform() }

// program satisfies kservice.Interface for controlling the service from
// another process (install, start, status ...); the service process itself
// runs the agent through RunManaged and agentProgram.
type program struct{}

func (program) Start(kservice.Service) error { return nil }
func (program) Stop(kservice.Service) error  { return nil }

// Control performs action (one of Actions) on the service described by o and
// writes one line saying what happened, or the status, to w.
//
// install registers the service and enables it at boot without starting it;
// uninstall stops it if running and removes the registration; status prints
// running, stopped or not installed (the last also returned as
// ErrNotInstalled).
func Control(action string, o Options, w io.Writer) error {
	if !ValidAction(action) {
		return fmt.Errorf("service: unknown action %q (want %s)", action, strings.Join(Actions, ", "))
	}
	c, err := NewConfig(o)
	if err != nil {
		return err
	}
	s, err := kservice.New(program{}, c)
	if err != nil {
		return fmt.Errorf("service: %w", err)
	}
	platform := kservice.Platform()
	switch action {
	case "install":
		if c.Name == Name {
			for _, p := range PackagedUnits {
				if _, err := os.Stat(p); err == nil {
					return fmt.Errorf("service: %s exists: %w", p, ErrPackaged)
				}
			}
		}
		if _, err := os.Stat(c.Executable); err != nil {
			return fmt.Errorf("service: executable: %w", err)
		}
		if _, err := os.Stat(c.Arguments[2]); err != nil {
			return fmt.Errorf("service: config: %w", err)
		}
		if err := s.Install(); err != nil {
			return fmt.Errorf("service install (%s): %w", platform, err)
		}
		fmt.Fprintf(w, "installed %s (%s): %s %s; start it with holdfast service start\n",
			c.Name, platform, c.Executable, strings.Join(c.Arguments, " "))
	case "uninstall":
		if st, err := status(s, c.Name, platform); err == nil && st == kservice.StatusRunning {
			if err := s.Stop(); err != nil {
				return fmt.Errorf("service stop (%s): %w", platform, err)
			}
		}
		if err := s.Uninstall(); err != nil {
			return fmt.Errorf("service uninstall (%s): %w", platform, err)
		}
		if platform == "unix-systemv" {
			removeRCLinks(c.Name)
		}
		fmt.Fprintf(w, "uninstalled %s (%s)\n", c.Name, platform)
	case "status":
		st, err := status(s, c.Name, platform)
		switch {
		case errors.Is(err, kservice.ErrNotInstalled):
			fmt.Fprintf(w, "%s: not installed (%s)\n", c.Name, platform)
			return fmt.Errorf("service %s: %w", c.Name, ErrNotInstalled)
		case err != nil:
			return fmt.Errorf("service status (%s): %w", platform, err)
		case st == kservice.StatusRunning:
			fmt.Fprintf(w, "%s: running (%s)\n", c.Name, platform)
		case st == kservice.StatusStopped:
			fmt.Fprintf(w, "%s: stopped (%s)\n", c.Name, platform)
		default:
			fmt.Fprintf(w, "%s: unknown (%s)\n", c.Name, platform)
		}
	default: // start, stop, restart
		if err := kservice.Control(s, action); err != nil {
			return fmt.Errorf("service %s (%s): %w", action, platform, err)
		}
		fmt.Fprintf(w, "%s: %s done (%s)\n", c.Name, action, platform)
	}
	return nil
}

// status is s.Status, made exact for System V init scripts: kardianos reads
// the script's exit status 1 for "Stopped" and a missing script alike as an
// error.
func status(s kservice.Service, name, platform string) (kservice.Status, error) {
	st, err := s.Status()
	if err == nil || platform != "unix-systemv" {
		return st, err
	}
	script := filepath.Join("/etc/init.d", name)
	if _, serr := os.Stat(script); errors.Is(serr, os.ErrNotExist) {
		return kservice.StatusUnknown, kservice.ErrNotInstalled
	}
	out, _ := exec.Command(script, "status").Output()
	switch {
	case strings.HasPrefix(string(out), "Stopped"):
		return kservice.StatusStopped, nil
	case strings.HasPrefix(string(out), "Running"):
		return kservice.StatusRunning, nil
	}
	return st, err
}

// removeRCLinks removes the runlevel links that kardianos's System V install
// creates and its uninstall leaves dangling.
func removeRCLinks(name string) {
	script := filepath.Join("/etc/init.d", name)
	for _, l := range []string{"0", "1", "2", "3", "4", "5", "6"} {
		for _, prefix := range []string{"S50", "K02"} {
			link := filepath.Join("/etc/rc"+l+".d", prefix+name)
			if dst, err := os.Readlink(link); err == nil && dst == script {
				os.Remove(link)
			}
		}
	}
}
