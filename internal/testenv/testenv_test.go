package testenv

import (
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestMosquittoStartRestartStop(t *testing.T) {
	m := StartMosquitto(t, MosquittoOptions{Persistent: true})
	dial := func() error {
		c, err := net.DialTimeout("tcp", m.Addr(), time.Second)
		if err == nil {
			c.Close()
		}
		return err
	}
	if err := dial(); err != nil {
		t.Fatalf("dial running broker: %v", err)
	}
	m.Restart()
	if err := dial(); err != nil {
		t.Fatalf("dial restarted broker: %v", err)
	}
	m.Kill()
	if err := dial(); err == nil {
		t.Fatal("dial succeeded after Kill")
	}
}

// TestLookToolRequired: a missing tool skips the test, or fails it when
// HOLDFAST_REQUIRE_TOOLS=1, so that CI cannot pass by skipping. The check
// runs in a child test process, whose outcome is read from its output.
func TestLookToolRequired(t *testing.T) {
	if os.Getenv("TESTENV_CHILD") == "1" {
		LookTool(t, "holdfast-no-such-tool", "no-such-package")
		t.Log("found a tool that does not exist")
		return
	}
	for _, tc := range []struct {
		require string
		want    string
	}{
		{"", "--- SKIP: TestLookToolRequired"},
		{"0", "--- SKIP: TestLookToolRequired"},
		{"1", "--- FAIL: TestLookToolRequired"},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestLookToolRequired$", "-test.v")
		cmd.Env = append(os.Environ(), "TESTENV_CHILD=1", RequireToolsEnv+"="+tc.require)
		out, _ := cmd.CombinedOutput()
		if !strings.Contains(string(out), tc.want) || !strings.Contains(string(out), "install the Debian package no-such-package") {
			t.Errorf("%s=%q: want %q in:\n%s", RequireToolsEnv, tc.require, tc.want, out)
		}
	}
}
