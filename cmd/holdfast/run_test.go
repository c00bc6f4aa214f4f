package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRunUnderServiceManagerFirst: holdfast run enters the service
// manager's protocol before it reads its flags and configuration, so that
// under the Windows service manager (which keeps no standard error) a bad
// configuration or flag reaches the manager, which writes it to the event
// log, instead of vanishing before the start handshake. The service
// manager is replaced by one that runs the agent at once.
func TestRunUnderServiceManagerFirst(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("upstream:\n  url: tcp://example:1883\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	saved := runUnderServiceManager
	t.Cleanup(func() { runUnderServiceManager = saved })
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--config", bad}, "line 2: upstream.url"},
		{[]string{"--listen", "nohostport"}, "--listen"},
		{[]string{"--frob"}, "-frob"},
	} {
		args := tc.args
		var managed error
		entered := false
		runUnderServiceManager = func(run func(ctx context.Context) error) (bool, error) {
			entered = true
			managed = run(context.Background())
			return true, managed
		}
		var stderr bytes.Buffer
		err := runAgent(args, &stderr)
		if !entered || managed == nil || err != managed {
			t.Errorf("run %q: the service manager entered %v and got %v; runAgent returned %v: want the error to go through the manager", args, entered, managed, err)
		}
		if stderr.Len() != 0 {
			t.Errorf("run %q: written to standard error before the service manager: %q", args, stderr.String())
		}
		if code := report(err, &bytes.Buffer{}); code != exitUsage || err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("run %q: %v, exit %d; want exit %d naming %s", args, err, code, exitUsage, tc.want)
		}
	}
}
