package packaging

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/md5"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"holdfast/internal/testenv"
)

const (
	testVersion    = "0.0.0~test1"
	upgradeVersion = "0.0.0~test2"
	confPath       = "/etc/holdfast/holdfast.yaml"
	stateDir       = "/var/lib/holdfast"
	logsDir        = "/var/log/holdfast"
	logFile        = logsDir + "/holdfast.log"
	unitPath       = "/usr/lib/systemd/system/holdfast.service"
	wantsLink      = "/etc/systemd/system/multi-user.target.wants/holdfast.service"
)

var arches = []string{"amd64", "arm64"}

// The data members of both packages with their permissions; every one is
// owned by root/root.
var wantFiles = map[string]string{
	"./":                           "drwxr-xr-x",
	"./etc/":                       "drwxr-xr-x",
	"./etc/holdfast/":              "drwxr-xr-x",
	"./etc/holdfast/holdfast.yaml": "-rw-r--r--",
	"./usr/":                       "drwxr-xr-x",
	"./usr/bin/":                   "drwxr-xr-x",
	"./usr/bin/holdfast":           "-rwxr-xr-x",
	"./usr/lib/":                   "drwxr-xr-x",
	"./usr/lib/systemd/":           "drwxr-xr-x",
	"./usr/lib/systemd/system/":    "drwxr-xr-x",
	"./usr/lib/systemd/system/holdfast.service": "-rw-r--r--",
	"./usr/share/":                           "drwxr-xr-x",
	"./usr/share/doc/":                       "drwxr-xr-x",
	"./usr/share/doc/holdfast/":              "drwxr-xr-x",
	"./usr/share/doc/holdfast/changelog.gz":  "-rw-r--r--",
	"./usr/share/doc/holdfast/copyright":     "-rw-r--r--",
	"./usr/share/lintian/":                   "drwxr-xr-x",
	"./usr/share/lintian/overrides/":         "drwxr-xr-x",
	"./usr/share/lintian/overrides/holdfast": "-rw-r--r--",
	"./usr/share/man/":                       "drwxr-xr-x",
	"./usr/share/man/man1/":                  "drwxr-xr-x",
	"./usr/share/man/man1/holdfast.1.gz":     "-rw-r--r--",
}

// TestDebianPackages builds both packages from ./cmd/holdfast and checks
// them; as root it also installs, upgrades, removes and purges the amd64 one.
func TestDebianPackages(t *testing.T) {
	testenv.LookTool(t, "dpkg-deb", "dpkg")
	for _, a := range arches {
		if v := os.Getenv("HOLDFAST_BIN_" + strings.ToUpper(a)); v != "" {
			t.Logf("HOLDFAST_BIN_%s=%s is set: packaging that binary instead of building ./cmd/holdfast", strings.ToUpper(a), v)
		}
	}
	out := t.TempDir()
	start := time.Now()
	runCmd(t, nil, "bash", "build-deb.sh", testVersion, out)
	t.Logf("built both packages in %v", time.Since(start).Round(time.Second))
	debs := map[string]string{}
	for _, a := range arches {
		debs[a] = filepath.Join(out, "holdfast_"+testVersion+"_"+a+".deb")
	}

	for _, a := range arches {
		t.Run("contents/"+a, func(t *testing.T) { checkPackage(t, debs[a], a) })
	}
	t.Run("systemd-analyze", func(t *testing.T) { checkUnitVerifies(t, debs["amd64"]) })
	t.Run("lintian", func(t *testing.T) {
		lintian := testenv.LookTool(t, "lintian", "lintian")
		// Warnings fail too: the only override (a static Go binary) is
		// justified in debian/lintian-overrides.
		o := runCmd(t, nil, lintian, "--fail-on", "error,warning", "--display-info", debs["amd64"], debs["arm64"])
		t.Logf("lintian:\n%s", o)
	})
	t.Run("install", func(t *testing.T) { checkInstallCycle(t, debs["amd64"], out) })
}

// TestBuildScriptRejects checks the mistakes the build script names before
// building anything.
func TestBuildScriptRejects(t *testing.T) {
	testenv.LookTool(t, "dpkg-deb", "dpkg")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"v1.2.3"}, `version "v1.2.3" is not a Debian version`},
		{[]string{"1.2.3-"}, `is not a Debian version`},
		{[]string{"--arch", "armhf", "1.2.3"}, "no armhf: Badger does not work on 32-bit ARM"},
		{[]string{"--frob", "1.2.3"}, "unknown option --frob"},
		{[]string{}, "usage: build-deb.sh"},
		{[]string{"1.2.3", "out", "extra"}, "usage: build-deb.sh"},
	} {
		msg := runFail(t, nil, "bash", append([]string{"build-deb.sh"}, tc.args...)...)
		if !strings.Contains(msg, tc.want) {
			t.Errorf("build-deb.sh %q: error %q does not contain %q", tc.args, msg, tc.want)
		}
	}

	// Without the example config there is nothing to ship as the conffile.
	dir := filepath.Join(t.TempDir(), "packaging")
	if err := os.MkdirAll(filepath.Join(dir, "debian"), 0o755); err != nil {
		t.Fatal(err)
	}
	copyFile(t, "build-deb.sh", filepath.Join(dir, "build-deb.sh"))
	msg := runFail(t, nil, "bash", filepath.Join(dir, "build-deb.sh"), "1.2.3", t.TempDir())
	if want := "holdfast.yaml is missing"; !strings.Contains(msg, want) {
		t.Errorf("without holdfast.yaml: error %q does not contain %q", msg, want)
	}

	// A prebuilt binary of the wrong architecture is refused.
	msg = runFail(t, []string{"HOLDFAST_BIN_ARM64=" + writeFakeELF(t, elf.EM_X86_64)},
		"bash", "build-deb.sh", "--arch", "arm64", "1.2.3", t.TempDir())
	if want := "not a linux/arm64 binary"; !strings.Contains(msg, want) {
		t.Errorf("amd64 binary for arm64: error %q does not contain %q", msg, want)
	}
}

func checkPackage(t *testing.T, deb, arch string) {
	// Control fields.
	fields := parseFields(runCmd(t, nil, "dpkg-deb", "-f", deb))
	for k, want := range map[string]string{
		"Package":      "holdfast",
		"Version":      testVersion,
		"Architecture": arch,
		"Section":      "net",
		"Priority":     "optional",
	} {
		if fields[k] != want {
			t.Errorf("%s: %s = %q, want %q", arch, k, fields[k], want)
		}
	}
	if !regexp.MustCompile(`^[^<>]+ <[^@<>\s]+@[^@<>\s]+>$`).MatchString(fields["Maintainer"]) {
		t.Errorf("%s: Maintainer = %q, want Name <address>", arch, fields["Maintainer"])
	}
	if deps := strings.Split(fields["Depends"], ","); !slices.ContainsFunc(deps, func(d string) bool { return strings.TrimSpace(d) == "adduser" }) {
		t.Errorf("%s: Depends = %q, want adduser (postinst runs adduser)", arch, fields["Depends"])
	}
	if !strings.HasPrefix(fields["Description"], "offline-first MQTT store-and-forward agent for edge gateways\n ") {
		t.Errorf("%s: Description = %q, want a synopsis and a long description", arch, fields["Description"])
	}
	if n, err := strconv.Atoi(fields["Installed-Size"]); err != nil || n < 1000 {
		t.Errorf("%s: Installed-Size = %q, want the size in KiB of a Go binary", arch, fields["Installed-Size"])
	}

	// Data members, permissions and owners.
	got := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(runCmd(t, nil, "dpkg-deb", "-c", deb)))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 6 {
			t.Fatalf("%s: unexpected dpkg-deb -c line %q", arch, sc.Text())
		}
		name := f[len(f)-1]
		got[name] = f[0]
		if f[1] != "root/root" {
			t.Errorf("%s: %s is owned by %s, want root/root", arch, name, f[1])
		}
	}
	for name, mode := range wantFiles {
		if got[name] == "" {
			t.Errorf("%s: %s missing from the package", arch, name)
		} else if got[name] != mode {
			t.Errorf("%s: %s has mode %s, want %s", arch, name, got[name], mode)
		}
	}
	for name := range got {
		if _, ok := wantFiles[name]; !ok {
			t.Errorf("%s: unexpected member %s", arch, name)
		}
	}

	// Control members: conffiles, maintainer scripts, md5sums.
	ctrl := t.TempDir()
	runCmd(t, nil, "dpkg-deb", "-e", deb, ctrl)
	if b := readFile(t, filepath.Join(ctrl, "conffiles")); string(b) != confPath+"\n" {
		t.Errorf("%s: conffiles = %q, want %q", arch, b, confPath+"\n")
	}
	for _, s := range []string{"postinst", "prerm", "postrm"} {
		fi, err := os.Stat(filepath.Join(ctrl, s))
		if err != nil || fi.Mode().Perm() != 0o755 {
			t.Errorf("%s: maintainer script %s: %v, mode %v; want 0755", arch, s, err, fi)
		}
	}
	data := t.TempDir()
	runCmd(t, nil, "dpkg-deb", "-x", deb, data)
	sums := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(readFile(t, filepath.Join(ctrl, "md5sums")))), "\n") {
		sum, name, ok := strings.Cut(line, "  ")
		if !ok {
			t.Fatalf("%s: md5sums line %q", arch, line)
		}
		h := md5.Sum(readFile(t, filepath.Join(data, name)))
		if hex.EncodeToString(h[:]) != sum {
			t.Errorf("%s: md5sums: %s does not match", arch, name)
		}
		sums[name] = true
	}
	for name, mode := range wantFiles {
		p := strings.TrimPrefix(name, "./")
		if mode[0] == '-' && !strings.HasPrefix(p, "etc/") && !sums[p] {
			t.Errorf("%s: md5sums has no line for %s", arch, p)
		}
	}

	// The shipped files are the ones in this directory.
	for src, dst := range map[string]string{
		"holdfast.yaml":            confPath,
		"holdfast.service":         unitPath,
		"debian/copyright":         "/usr/share/doc/holdfast/copyright",
		"debian/lintian-overrides": "/usr/share/lintian/overrides/holdfast",
	} {
		if !bytes.Equal(readFile(t, src), readFile(t, filepath.Join(data, dst))) {
			t.Errorf("%s: %s differs from packaging/%s", arch, dst, src)
		}
	}
	if !bytes.Equal(readFile(t, "holdfast.1"), gunzip(t, filepath.Join(data, "usr/share/man/man1/holdfast.1.gz"))) {
		t.Errorf("%s: the man page differs from packaging/holdfast.1", arch)
	}
	changelog := string(gunzip(t, filepath.Join(data, "usr/share/doc/holdfast/changelog.gz")))
	if want := "holdfast (" + testVersion + ") unstable; urgency=medium\n"; !strings.HasPrefix(changelog, want) {
		t.Errorf("%s: changelog starts %q, want %q", arch, firstLine(changelog), want)
	}

	checkUnit(t, string(readFile(t, filepath.Join(data, unitPath))))
	checkBinary(t, filepath.Join(data, "usr/bin/holdfast"), arch)
}

// checkUnit checks the settings the service contract names.
func checkUnit(t *testing.T, unit string) {
	settings := map[string][]string{}
	section := ""
	for _, line := range strings.Split(unit, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		if line[0] == '[' {
			section = line
			continue
		}
		k, v, _ := strings.Cut(line, "=")
		settings[section+k] = append(settings[section+k], v)
	}
	for k, want := range map[string]string{
		"[Unit]After":                      "network.target",
		"[Service]ExecStart":               "/usr/bin/holdfast run --config " + confPath,
		"[Service]User":                    "holdfast",
		"[Service]Group":                   "holdfast",
		"[Service]SupplementaryGroups":     "dialout",
		"[Service]StateDirectory":          "holdfast",
		"[Service]LogsDirectory":           "holdfast",
		"[Service]ConfigurationDirectory":  "holdfast",
		"[Service]Restart":                 "always",
		"[Service]RestartSec":              "2s",
		"[Service]TimeoutStopSec":          "30s",
		"[Service]LimitNOFILE":             "65536",
		"[Service]NoNewPrivileges":         "yes",
		"[Service]ProtectSystem":           "strict",
		"[Service]ProtectHome":             "yes",
		"[Service]PrivateTmp":              "yes",
		"[Service]ProtectKernelTunables":   "yes",
		"[Service]ProtectKernelModules":    "yes",
		"[Service]ProtectControlGroups":    "yes",
		"[Service]RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
		"[Service]CapabilityBoundingSet":   "",
		"[Install]WantedBy":                "multi-user.target",
	} {
		if got := settings[k]; len(got) != 1 || got[0] != want {
			t.Errorf("unit: %s = %q, want exactly %q", k, got, want)
		}
	}
	for _, k := range []string{"[Unit]Wants", "[Unit]Requires"} {
		for _, v := range settings[k] {
			if strings.Contains(v, "network-online") {
				t.Errorf("unit: %s=%s: an offline-first agent must not wait for the network", k, v)
			}
		}
	}
}

// checkBinary checks that the packaged binary is a static executable for
// arch and, where it can run here, that it reports the package version.
func checkBinary(t *testing.T, path, arch string) {
	f, err := elf.Open(path)
	if err != nil {
		t.Fatalf("%s: %v", arch, err)
	}
	defer f.Close()
	want := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[arch]
	if f.Machine != want {
		t.Errorf("%s: binary is for %v, want %v", arch, f.Machine, want)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("%s: binary has a %v program header: not static", arch, p.Type)
		}
	}
	if runtime.GOOS == "linux" && runtime.GOARCH == arch {
		if got, want := runCmd(t, nil, path, "version"), "holdfast "+testVersion+"\n"; got != want {
			t.Errorf("%s: holdfast version printed %q, want %q", arch, got, want)
		}
	}
}

// checkUnitVerifies runs systemd-analyze verify on the unit inside a root
// made of the package's files and this machine's systemd units, so that
// ExecStart and the targets it names resolve.
func checkUnitVerifies(t *testing.T, deb string) {
	sa := testenv.LookTool(t, "systemd-analyze", "systemd")
	root := t.TempDir()
	units := filepath.Join(root, "usr/lib/systemd/system")
	if err := os.MkdirAll(units, 0o755); err != nil {
		t.Fatal(err)
	}
	runCmd(t, nil, "cp", "-a", "/usr/lib/systemd/system/.", units)
	runCmd(t, nil, "dpkg-deb", "-x", deb, root)
	// verify exits 0 on some findings (an unknown key), so any output fails.
	if o := runCmd(t, nil, sa, "verify", "--man=no", "--root="+root, "holdfast.service"); o != "" {
		t.Errorf("systemd-analyze verify:\n%s", o)
	}
	if o, err := exec.Command(sa, "security", "--offline=true", "--root="+root, "holdfast.service").CombinedOutput(); err == nil {
		t.Logf("systemd-analyze security: %s", lastLine(string(o)))
	}
}

// checkInstallCycle installs the package on this machine, upgrades it,
// removes it and purges it, checking what each step must leave behind.
func checkInstallCycle(t *testing.T, deb, out string) {
	if os.Geteuid() != 0 {
		t.Skip("installing the package needs root: run the tests as root (CI does)")
	}
	dpkg := testenv.LookTool(t, "dpkg", "dpkg")
	if o, err := exec.Command("dpkg-query", "-W", "-f=${Status}", "holdfast").Output(); err == nil && strings.Contains(string(o), "installed") {
		t.Skipf("holdfast is installed on this machine (%s): not touching it", o)
	}
	if _, err := user.Lookup("holdfast"); err == nil {
		t.Skip("a user holdfast exists on this machine: not touching it")
	}
	for _, d := range []string{stateDir, logsDir} {
		if _, err := os.Lstat(d); err == nil {
			t.Skipf("%s exists on this machine: not touching it", d)
		}
	}
	// The service started on install takes the packaged config's ports,
	// holdfast's defaults, until the purge.
	testenv.LockDefaultPorts(t)
	svc := newServiceChecks(t)
	t.Cleanup(func() { exec.Command(dpkg, "--purge", "holdfast").Run() })

	runCmd(t, nil, dpkg, "-i", deb)
	if st := runCmd(t, nil, "dpkg-query", "-W", "-f=${Status}", "holdfast"); st != "install ok installed" {
		t.Fatalf("dpkg status %q", st)
	}

	// The user: a system user with its own group, in dialout, no login.
	u, err := user.Lookup("holdfast")
	if err != nil {
		t.Fatalf("no user holdfast after install: %v", err)
	}
	g, err := user.LookupGroup("holdfast")
	if err != nil {
		t.Fatalf("no group holdfast after install: %v", err)
	}
	if u.Gid != g.Gid {
		t.Errorf("user holdfast's primary group is %s, want holdfast (%s)", u.Gid, g.Gid)
	}
	if uid, _ := strconv.Atoi(u.Uid); uid == 0 || uid >= 1000 {
		t.Errorf("user holdfast has uid %d, want a system uid", uid)
	}
	if u.HomeDir != stateDir {
		t.Errorf("user holdfast's home is %s, want %s", u.HomeDir, stateDir)
	}
	pw := runCmd(t, nil, "getent", "passwd", "holdfast")
	if !strings.HasSuffix(strings.TrimSpace(pw), ":/usr/sbin/nologin") {
		t.Errorf("user holdfast can log in: %s", pw)
	}
	if gids, err := u.GroupIds(); err != nil {
		t.Error(err)
	} else if dialout, err := user.LookupGroup("dialout"); err == nil && !slices.Contains(gids, dialout.Gid) {
		t.Errorf("user holdfast is not in dialout (groups %v)", gids)
	}

	// Directories, files, permissions.
	checkOwner(t, stateDir, "holdfast", "holdfast", os.ModeDir|0o750)
	checkOwner(t, logsDir, "holdfast", "holdfast", os.ModeDir|0o750)
	checkOwner(t, "/etc/holdfast", "root", "root", os.ModeDir|0o755)
	checkOwner(t, confPath, "root", "holdfast", 0o640)
	checkOwner(t, "/usr/bin/holdfast", "root", "root", 0o755)
	checkOwner(t, unitPath, "root", "root", 0o644)
	if !bytes.Equal(readFile(t, confPath), readFile(t, "holdfast.yaml")) {
		t.Errorf("%s differs from packaging/holdfast.yaml", confPath)
	}
	if cf := runCmd(t, nil, "dpkg-query", "-W", "-f=${Conffiles}", "holdfast"); !strings.Contains(cf, confPath+" ") {
		t.Errorf("dpkg does not list %s as a conffile: %q", confPath, cf)
	}
	if got, want := runCmd(t, nil, "holdfast", "version"), "holdfast "+testVersion+"\n"; got != want {
		t.Errorf("installed holdfast version printed %q, want %q", got, want)
	}
	// Enabled, as deb-systemd-helper does with or without systemd running.
	if dst, err := os.Readlink(wantsLink); err != nil || !strings.HasSuffix(dst, "/systemd/system/holdfast.service") {
		t.Errorf("service not enabled: %s -> %q, %v", wantsLink, dst, err)
	}
	if svc.check {
		if st := strings.TrimSpace(runCmd(t, nil, "systemctl", "is-enabled", "holdfast.service")); st != "enabled" {
			t.Errorf("systemctl is-enabled: %q", st)
		}
		// Started on install, and the hardened unit really runs the agent:
		// as the holdfast user, answering on its admin endpoint.
		svc.waitActive(t, "after install")
		checkServiceRuns(t)
		svc.stop(t) // the queue is filled below by an agent of the test's own
	}

	// Real queue data, written by the installed binary as the service user.
	rig := newQueueRig(t)
	const queued = 20
	rig.fill(t, "/usr/bin/holdfast", queued)
	before := rig.export(t, "/usr/bin/holdfast")
	if len(before) != queued {
		t.Fatalf("the queue holds %d messages after %d were published, want %d", len(before), queued, queued)
	}
	checkTreeOwner(t, stateDir)

	// Read by root, as `sudo holdfast queue export` does: nothing in the
	// queue changes owner, and the agent as the service user opens it after.
	if asRoot := rig.exportAsRoot(t, "/usr/bin/holdfast"); !slices.Equal(asRoot, before) {
		t.Errorf("queue export as root:\n%q\nas holdfast:\n%q", asRoot, before)
	}
	checkTreeOwner(t, stateDir)
	rig.fill(t, "/usr/bin/holdfast", 0)

	// A local change to the config: upstream at a port nothing listens on,
	// so a started service keeps the queue as it is; the log in the unit's
	// LogsDirectory, the one place besides the queue it can write.
	conf := string(readFile(t, confPath))
	local := strings.Replace(conf, "url: mqtt://127.0.0.1:1884", fmt.Sprintf("url: mqtt://127.0.0.1:%d # changed here", rig.deadPort), 1)
	local = strings.Replace(local, "  file: \"\"", "  file: "+logFile, 1)
	if local == conf || !strings.Contains(local, logFile) {
		t.Fatalf("%s has no upstream url or log file line to change", confPath)
	}
	runCmd(t, nil, "holdfast", "config", "check", "--config", confPath)
	if err := os.WriteFile(confPath, []byte(local), 0o640); err != nil {
		t.Fatal(err)
	}
	var invocation string
	if svc.check {
		runCmd(t, nil, "systemctl", "start", "holdfast.service")
		svc.waitActive(t, "before the upgrade")
		invocation = svc.show(t, "InvocationID")
	}

	// Upgrade to a package of its own build, with its own version.
	runCmd(t, nil, "bash", "build-deb.sh", "--arch", "amd64", upgradeVersion, out)
	runCmd(t, nil, dpkg, "-i", filepath.Join(out, "holdfast_"+upgradeVersion+"_amd64.deb"))
	if v := runCmd(t, nil, "dpkg-query", "-W", "-f=${Version}", "holdfast"); v != upgradeVersion {
		t.Fatalf("after upgrade the installed version is %q, want %q", v, upgradeVersion)
	}
	if got, want := runCmd(t, nil, "holdfast", "version"), "holdfast "+upgradeVersion+"\n"; got != want {
		t.Errorf("after upgrade holdfast version printed %q, want %q", got, want)
	}
	if svc.check {
		svc.waitActive(t, "after the upgrade")
		if id := svc.show(t, "InvocationID"); id == invocation || id == "" {
			t.Errorf("InvocationID %q after the upgrade, was %q: the service was not restarted", id, invocation)
		}
		if n := svc.show(t, "NRestarts"); n != "0" {
			t.Errorf("NRestarts = %s after the upgrade: the service failed and was restarted by systemd", n)
		}
		checkServiceRuns(t)
		svc.stop(t)
		checkOwner(t, logFile, "holdfast", "holdfast", 0o640)
		if l := string(readFile(t, logFile)); !strings.Contains(l, "holdfast started") {
			t.Errorf("%s does not hold the service's log:\n%s", logFile, l)
		}
	}
	if after := rig.export(t, "/usr/bin/holdfast"); !slices.Equal(after, before) {
		t.Errorf("the upgrade changed the queue:\nbefore %q\nafter  %q", before, after)
	}
	checkTreeOwner(t, stateDir)
	checkOwner(t, stateDir, "holdfast", "holdfast", os.ModeDir|0o750)
	if !bytes.Equal(readFile(t, confPath), []byte(local)) {
		t.Errorf("upgrade replaced the locally changed %s", confPath)
	}
	checkOwner(t, confPath, "root", "holdfast", 0o640)

	// Remove: the binary and unit go (a running service is stopped); user,
	// config and queue stay.
	bin := rig.keepBinary(t, "/usr/bin/holdfast")
	if svc.check {
		runCmd(t, nil, "systemctl", "start", "holdfast.service")
		svc.waitActive(t, "before remove")
	}
	runCmd(t, nil, dpkg, "-r", "holdfast")
	for _, p := range []string{"/usr/bin/holdfast", unitPath} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s is still there after remove", p)
		}
	}
	if svc.check {
		if st, _ := exec.Command("systemctl", "is-active", "holdfast.service").Output(); strings.TrimSpace(string(st)) != "inactive" {
			t.Errorf("holdfast.service is %q after remove, want inactive", st)
		}
	}
	if _, err := user.Lookup("holdfast"); err != nil {
		t.Errorf("remove deleted the user: %v", err)
	}
	if after := rig.export(t, bin); !slices.Equal(after, before) {
		t.Errorf("remove changed the queue:\nbefore %q\nafter  %q", before, after)
	}
	if _, err := os.Stat(confPath); err != nil {
		t.Errorf("remove deleted the config: %v", err)
	}

	// Purge: everything goes.
	runCmd(t, nil, dpkg, "--purge", "holdfast")
	if _, err := user.Lookup("holdfast"); err == nil {
		t.Error("user holdfast still exists after purge")
	}
	if _, err := user.LookupGroup("holdfast"); err == nil {
		t.Error("group holdfast still exists after purge")
	}
	for _, p := range []string{stateDir, logsDir, "/etc/holdfast", wantsLink, "/usr/share/doc/holdfast"} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s is still there after purge", p)
		}
	}
	if o, _ := exec.Command("dpkg-statoverride", "--list", confPath).Output(); len(o) > 0 {
		t.Errorf("statoverride left after purge: %s", o)
	}
	if o, _ := exec.Command("dpkg-query", "-W", "-f=${Status}", "holdfast").Output(); strings.Contains(string(o), "installed") || strings.Contains(string(o), "config-files") {
		t.Errorf("dpkg status after purge: %q", o)
	}
}

func checkOwner(t *testing.T, path, wantUser, wantGroup string, wantMode os.FileMode) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Error(err)
		return
	}
	if fi.Mode() != wantMode {
		t.Errorf("%s has mode %v, want %v", path, fi.Mode(), wantMode)
	}
	st := fi.Sys().(*syscall.Stat_t)
	u, err := user.LookupId(strconv.Itoa(int(st.Uid)))
	if err != nil || u.Username != wantUser {
		t.Errorf("%s is owned by uid %d (%v), want %s", path, st.Uid, u, wantUser)
	}
	g, err := user.LookupGroupId(strconv.Itoa(int(st.Gid)))
	if err != nil || g.Name != wantGroup {
		t.Errorf("%s has gid %d (%v), want group %s", path, st.Gid, g, wantGroup)
	}
}

// runCmd runs a command in this directory with extra environment and
// returns its standard output; a failure fails the test with its output.
func runCmd(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	if name != "dpkg" && stderr.Len() > 0 {
		// dpkg reports progress on stderr; for the others it is a finding.
		return stdout.String() + stderr.String()
	}
	return stdout.String()
}

// runFail runs a command that must fail and returns its standard error.
func runFail(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err == nil {
		t.Fatalf("%s %s succeeded, want an error", name, strings.Join(args, " "))
	}
	return stderr.String()
}

// writeFakeELF writes a minimal ELF header for machine m: enough for the
// build script's architecture check.
func writeFakeELF(t *testing.T, m elf.Machine) string {
	b := make([]byte, 64)
	copy(b, "\x7fELF\x02\x01\x01")
	b[16] = byte(elf.ET_EXEC)
	b[18], b[19] = byte(m), byte(m>>8)
	p := filepath.Join(t.TempDir(), "holdfast")
	if err := os.WriteFile(p, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func parseFields(s string) map[string]string {
	m := map[string]string{}
	last := ""
	for _, line := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		if strings.HasPrefix(line, " ") && last != "" {
			m[last] += "\n" + line
			continue
		}
		k, v, _ := strings.Cut(line, ":")
		last = k
		m[k] = strings.TrimSpace(v)
	}
	return m
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.WriteFile(dst, readFile(t, src), 0o755); err != nil {
		t.Fatal(err)
	}
}

func gunzip(t *testing.T, p string) []byte {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	b, err := io.ReadAll(z)
	if err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	return b
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	return s[strings.LastIndex(s, "\n")+1:]
}
