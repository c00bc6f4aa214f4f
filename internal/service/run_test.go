package service

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRunManagedLeavesSignalsToCaller: outside the Windows service manager
// RunManaged does not take over: run is not called and the caller keeps
// the SIGTERM path that systemd, launchd and init scripts use.
func TestRunManagedLeavesSignalsToCaller(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("on Windows, RunManaged takes over when not started from a console")
	}
	called := false
	handled, err := RunManaged(func(context.Context) error { called = true; return nil })
	if handled || err != nil || called {
		t.Fatalf("RunManaged = %v, %v (run called: %v); want false, nil, not called", handled, err, called)
	}
}

// TestAgentProgram: Start returns while the agent runs; Stop cancels its
// context and returns its error; an agent that ends by itself is reported
// through onEarlyEnd, and a later Stop returns its error at once.
func TestAgentProgram(t *testing.T) {
	errStopped := errors.New("stopped with an error")
	running := make(chan struct{})
	p := &agentProgram{
		run: func(ctx context.Context) error {
			close(running)
			<-ctx.Done()
			return errStopped
		},
		onEarlyEnd: func(err error) { t.Errorf("onEarlyEnd(%v) after a Stop", err) },
	}
	if err := p.Stop(nil); err != nil {
		t.Errorf("Stop before Start = %v", err)
	}
	if err := p.Start(nil); err != nil {
		t.Fatal(err)
	}
	<-running
	select {
	case <-p.finished():
		t.Fatal("the agent ended before Stop")
	default:
	}
	if err := p.Stop(nil); !errors.Is(err, errStopped) {
		t.Errorf("Stop = %v, want the agent's %v", err, errStopped)
	}

	errFailed := errors.New("listener: address already in use")
	ended := make(chan error, 1)
	p = &agentProgram{
		run:        func(context.Context) error { return errFailed },
		onEarlyEnd: func(err error) { ended <- err },
	}
	if err := p.Start(nil); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-ended:
		if !errors.Is(err, errFailed) {
			t.Errorf("onEarlyEnd(%v), want %v", err, errFailed)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("onEarlyEnd not called for an agent that ended by itself")
	}
	if err := p.Stop(nil); !errors.Is(err, errFailed) {
		t.Errorf("Stop after the agent ended = %v, want %v", err, errFailed)
	}
}

// helperEnv selects what TestServiceRunHelper does in a child process.
const helperEnv = "HOLDFAST_SERVICE_RUN_HELPER"

// TestServiceRunHelper is not a test: run as a child process by
// TestRunManagedThroughServiceRun, it runs a stand-in agent through
// runManaged and prints what happens.
func TestServiceRunHelper(t *testing.T) {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		t.Skip("a child process of TestRunManagedThroughServiceRun")
	}
	err := runManaged(func(ctx context.Context) error {
		fmt.Println("started")
		if mode == "fail" {
			return errors.New("listener: address already in use")
		}
		<-ctx.Done()
		fmt.Println("stopping")
		return nil
	}, "holdfast-test", func(int) { fmt.Println("exit called") })
	fmt.Printf("returned: %v\n", err)
	if err != nil {
		os.Exit(1)
	}
	os.Exit(0)
}

// TestRunManagedThroughServiceRun runs runManaged in a child process,
// through kardianos' real Service.Run for this machine: SIGTERM (what
// systemd and init scripts send) stops the agent through its context and
// the process exits 0; an agent that fails by itself ends Run with its
// error.
func TestRunManagedThroughServiceRun(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("the Windows service manager cannot be driven from a test")
	}
	t.Logf("service manager: %s", Platform())
	for _, tc := range []struct {
		mode, want string
		code       int
	}{
		{"stop", "started\nstopping\nreturned: <nil>\n", 0},
		{"fail", "started\nreturned: listener: address already in use\n", 1},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestServiceRunHelper$", "-test.count=1")
			cmd.Env = append(os.Environ(), helperEnv+"="+tc.mode)
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cmd.Process.Kill() })
			lines := make(chan string, 16)
			go func() {
				sc := bufio.NewScanner(stdout)
				for sc.Scan() {
					lines <- sc.Text()
				}
				close(lines)
			}()
			var out strings.Builder
			next := func() (string, bool) {
				select {
				case l, ok := <-lines:
					return l, ok
				case <-time.After(20 * time.Second):
					t.Fatalf("no output from the child after %q", out.String())
				}
				return "", false
			}
			if l, _ := next(); l != "started" {
				t.Fatalf("child printed %q first, want started", l)
			}
			out.WriteString("started\n")
			if tc.mode == "stop" {
				if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
					t.Fatal(err)
				}
			}
			for l, ok := next(); ok; l, ok = next() {
				if strings.HasPrefix(l, "PASS") || strings.HasPrefix(l, "ok ") {
					continue
				}
				out.WriteString(l + "\n")
			}
			err = cmd.Wait()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if out.String() != tc.want || code != tc.code {
				t.Errorf("child printed %q and exited %d; want %q and %d", out.String(), code, tc.want, tc.code)
			}
		})
	}
}
