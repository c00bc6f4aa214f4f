package main

import (
	"errors"
	"os/exec"
	"strings"
	"testing"
)

// TestSerialListCommand: `holdfast serial list` prints the ports table (or
// says there are none) and exits 0; anything else after `serial` is a usage
// error with exit code 2.
func TestSerialListCommand(t *testing.T) {
	out := hf(t, "serial", "list")
	if out != "no serial ports found\n" && !strings.HasPrefix(out, "PORT ") {
		t.Fatalf("serial list printed %q", out)
	}
	if strings.HasPrefix(out, "PORT ") && !strings.Contains(strings.SplitN(out, "\n", 2)[0], "VID") {
		t.Fatalf("serial list header %q", out)
	}
	for _, args := range [][]string{{"serial"}, {"serial", "lst"}, {"serial", "list", "extra"}} {
		cmd := exec.Command(binPath, args...)
		stderr, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(stderr), "holdfast serial list") {
			t.Errorf("holdfast %s: %v, %q; want exit 2 with the usage", strings.Join(args, " "), err, stderr)
		}
	}
}
