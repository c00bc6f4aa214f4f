package service

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"syscall"

	kservice "github.com/kardianos/service"
)

// RunManaged runs the agent under the service manager that started this
// process, when that manager needs more than a process it can signal: the
// Windows service control manager, which waits for a start handshake and
// sends its stop request over the same channel. There, run is called with a
// context that is cancelled when the service manager asks the service to
// stop (or the machine shuts down); RunManaged returns handled true and
// run's error once run has returned. If run returns on its own (the agent
// failed), the process exits with status 1 so that the service manager
// applies its restart-on-failure action; the error goes to the Windows
// event log, since a service has no console.
//
// Everywhere else, and on Windows when started from a console, it returns
// handled false at once without calling run: systemd, launchd, OpenRC and
// System V init scripts stop the agent with SIGTERM, which the caller
// handles itself.
func RunManaged(run func(ctx context.Context) error) (handled bool, err error) {
	if runtime.GOOS != "windows" || kservice.Interactive() {
		return false, nil
	}
	return true, runManaged(run, Name, os.Exit)
}

// runManaged runs run through kardianos' Service.Run: on Windows the
// service control manager's protocol; on the other systems (where tests use
// it) until SIGTERM or SIGINT, or until run returns on its own. exit is what
// ends the process when run returns on its own under the Windows service
// manager, whose stop request would never come.
func runManaged(run func(ctx context.Context) error, name string, exit func(code int)) error {
	p := &agentProgram{run: run}
	// Listening before the agent starts: a SIGTERM that comes early stops
	// it through its context too, instead of killing the process.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	defer signal.Stop(sig)
	c := &kservice.Config{
		Name:        name,
		DisplayName: DisplayName,
		Description: Description,
		Option: kservice.KeyValue{
			// Used by the Run of the Unix service managers (not on
			// Windows): wait for a stop signal, or for the agent to end.
			"RunWait": func() {
				select {
				case <-sig:
				case <-p.finished():
				}
			},
		},
	}
	s, err := kservice.New(p, c)
	if err != nil {
		return fmt.Errorf("service: %w", err)
	}
	if runtime.GOOS == "windows" {
		p.onEarlyEnd = func(err error) {
			if l, lerr := s.Logger(nil); lerr == nil {
				l.Errorf("holdfast stopped: %v", err)
			}
			exit(1)
		}
	}
	return s.Run()
}

// agentProgram maps the service manager's Start and Stop onto run and its
// context. Start returns at once (the handshake must not wait for the
// agent); Stop cancels the context and waits for run to return.
type agentProgram struct {
	run        func(ctx context.Context) error
	onEarlyEnd func(err error) // run returned before Stop was called; nil: nothing

	mu       sync.Mutex
	cancel   context.CancelFunc
	stopping bool
	done     chan struct{} // closed when run has returned
	err      error         // run's result, set before done is closed
}

// Start starts run in a goroutine and returns nil.
func (p *agentProgram) Start(kservice.Service) error {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	p.mu.Lock()
	p.cancel, p.done = cancel, done
	p.mu.Unlock()
	go func() {
		err := p.run(ctx)
		p.mu.Lock()
		p.err = err
		early := !p.stopping
		p.mu.Unlock()
		close(done)
		if early && p.onEarlyEnd != nil {
			p.onEarlyEnd(err)
		}
	}()
	return nil
}

// finished is closed when run has returned (nil before Start).
func (p *agentProgram) finished() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done
}

// Stop cancels run's context and returns run's error once it has returned.
func (p *agentProgram) Stop(kservice.Service) error {
	p.mu.Lock()
	p.stopping = true
	cancel, done := p.cancel, p.done
	p.mu.Unlock()
	if cancel == nil {
		return nil // never started
	}
	cancel()
	<-done
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}
