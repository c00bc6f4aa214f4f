// Package agent wires holdfast together: it owns the configuration, opens the
// queue, starts the local broker's listeners, the uplink and the admin
// endpoint, applies the forward rules (which local messages go upstream, under
// which topic and QoS) and the downlink rules (which upstream messages come
// back down, under which local topic), and stops everything in order.
//
// The data path is one direction: local publishes are stored in the queue by
// the forward rules (and acknowledged to the device only once durable); the
// uplink drains the queue upstream; downlink messages are handed to the local
// broker.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"holdfast/adapters/serial"
	"holdfast/config"
	"holdfast/internal/admin"
	"holdfast/internal/auth"
	"holdfast/internal/transport"
	"holdfast/localbus"
	"holdfast/queue"
	"holdfast/uplink"
)

// Version is the agent's version, stamped at build time by the command.
var Version = "dev"

// Agent is one running holdfast: queue, local broker, uplink, admin endpoint.
type Agent struct {
	cfg *config.Config
	log *slog.Logger

	q        *queue.Queue
	broker   *localbus.Broker
	up       *uplink.Client
	adapters []*serial.Adapter

	started time.Time
	ready   atomic.Bool

	ingested     atomic.Uint64 // local messages stored for upstream
	forwarded    atomic.Uint64 // messages acknowledged upstream
	localOnly    atomic.Uint64 // local messages no forward rule selected
	invalidTopic atomic.Uint64 // local messages whose upstream topic is invalid
	invalidLog   rateLog
	rates        rateMeter

	// Set by Run, for tests that make a part fail while running.
	listeners []boundListener
	adminSrv  *admin.Server
	// health is what Run watches for a failure of the queue; nil: the
	// queue itself. Tests set a fake, having no way to fail a real one.
	health queueHealth
}

// queueHealth tells Run that the queue failed (a commit or a sync failed,
// and what the disk holds is no longer what the queue counts): *queue.Queue
// implements it.
type queueHealth interface {
	// Failed is closed when the queue fails.
	Failed() <-chan struct{}
	// Err says why (wrapping queue.ErrFailed) once Failed is closed.
	Err() error
}

// New returns an agent for cfg, which must have passed config validation.
func New(cfg *config.Config, logger *slog.Logger) *Agent {
	if logger == nil {
		logger = slog.Default()
	}
	return &Agent{cfg: cfg, log: logger}
}

// Run starts the parts in order (queue, local listeners, admin endpoint,
// uplink) and blocks until ctx is cancelled or a part fails. A failure to
// start (queue cannot open, an address in use, a bad TLS file) is returned
// before anything accepts traffic.
//
// On cancellation it stops intake first (listeners closed, local
// connections closed, commits already in flight allowed to land and their
// acks sent), stops the uplink (which releases what it had in flight), and
// closes the queue last. When Run returns, everything acknowledged to a
// device is on disk.
//
// A part that fails while running (a local listener or the admin endpoint
// whose accept fails for good, a serial adapter that cannot subscribe to
// its write-back topic, the uplink, the queue when a commit or a sync
// fails) stops the agent the same way; Run logs and returns that error,
// naming the part. A failed queue refuses every write until it is
// reopened: the service manager's restart reopens it from what the disk
// holds. Passing problems (a lost upstream, an unplugged serial port, a
// refused connection) are retried and never end Run.
func (a *Agent) Run(ctx context.Context) (err error) {
	cfg := a.cfg
	a.started = time.Now()

	q, err := queue.Open(queueOptions(cfg, a.log))
	if err != nil {
		return prefixed("queue", err)
	}
	a.q = q
	defer func() {
		if cerr := q.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("queue: close: %w", cerr)
		}
	}()

	broker, err := localbus.New(brokerOptions(cfg, a.log), &store{a: a})
	if err != nil {
		return prefixed("localbus", err)
	}
	a.broker = broker

	listeners, err := a.listen()
	if err != nil {
		broker.Close()
		return err
	}
	a.listeners = listeners

	var adminSrv *admin.Server
	if cfg.Admin.Address != "" {
		adminSrv, err = admin.Listen(cfg.Admin.Address, a)
		if err != nil {
			closeAll(listeners)
			broker.Close()
			return err
		}
		a.adminSrv = adminSrv
	}

	upOpts, err := uplinkOptions(cfg, a.log)
	if err != nil {
		closeAll(listeners)
		broker.Close()
		return err
	}
	up, err := uplink.New(upOpts, &source{a: a}, &downlink{a: a})
	if err != nil {
		closeAll(listeners)
		broker.Close()
		return prefixed("uplink", err)
	}
	a.up = up

	// Intake (listeners, admin) and the uplink run under separate contexts so
	// that intake stops before the uplink does.
	intakeCtx, stopIntake := context.WithCancel(ctx)
	defer stopIntake()
	upCtx, stopUplink := context.WithCancel(context.Background())
	defer stopUplink()

	for _, p := range cfg.Serial {
		ad, err := serial.New(p, &serialBus{a: a, port: p.Name}, a.log.With("component", "serial", "port", p.Name))
		if err != nil {
			closeAll(listeners)
			broker.Close()
			return prefixed("serial "+p.Name, err)
		}
		a.adapters = append(a.adapters, ad)
	}

	var auth localbus.ListenerOptions
	if err := a.loadAuth(&auth); err != nil {
		closeAll(listeners)
		broker.Close()
		return err
	}
	intake, ictx := errgroup.WithContext(intakeCtx)
	for i, l := range listeners {
		lo := listenerOptions(cfg, i)
		lo.Auth, lo.ACL = auth.Auth, auth.ACL
		intake.Go(func() error {
			if err := broker.Serve(ictx, l.ln, lo); err != nil && ictx.Err() == nil {
				return fmt.Errorf("listener %s (%s): %w", l.name, l.ln.Addr(), err)
			}
			return nil
		})
	}
	for _, ad := range a.adapters {
		intake.Go(func() error {
			if err := ad.Run(ictx); err != nil && ictx.Err() == nil {
				return prefixed("serial "+ad.Name(), err)
			}
			return nil
		})
	}
	if adminSrv != nil {
		intake.Go(func() error {
			if err := adminSrv.Serve(ictx); err != nil && ictx.Err() == nil {
				return prefixed("admin", err)
			}
			return nil
		})
	}
	intake.Go(func() error { return a.sampleRates(ictx) })
	upDone := make(chan error, 1)
	go func() { upDone <- up.Run(upCtx) }()

	a.ready.Store(true)
	a.log.Info("holdfast started", "version", Version, "upstream", redactURL(cfg.Upstream.URL),
		"data_dir", cfg.Queue.Dir, "queued", q.Stats().Messages)

	health := a.health
	if health == nil {
		health = q
	}
	var runErr error
	select {
	case <-ictx.Done():
	case err := <-upDone:
		// The uplink only returns on its own for an unrecoverable error.
		runErr = prefixed("uplink", err)
		upDone <- nil
	case <-health.Failed():
		runErr = health.Err()
		if runErr == nil {
			runErr = queue.ErrFailed
		}
		runErr = prefixed("queue", runErr)
	}
	a.ready.Store(false)
	stopIntake()
	closeAll(listeners)
	if err := intake.Wait(); err != nil && runErr == nil {
		runErr = err
	}
	if err := broker.Close(); err != nil && runErr == nil {
		runErr = fmt.Errorf("localbus: close: %w", err)
	}
	stopUplink()
	if err := <-upDone; err != nil && !errors.Is(err, context.Canceled) && runErr == nil {
		runErr = prefixed("uplink", err)
	}
	if runErr != nil {
		a.log.Error("holdfast stopped", "queued", q.Stats().Messages, "err", runErr)
	} else {
		a.log.Info("holdfast stopped", "queued", q.Stats().Messages)
	}
	return runErr
}

// prefixed names the part an error comes from, unless the error already
// starts with that name (most parts' errors do).
func prefixed(part string, err error) error {
	if strings.HasPrefix(err.Error(), part+": ") {
		return err
	}
	return fmt.Errorf("%s: %w", part, err)
}

type boundListener struct {
	name string
	ln   net.Listener
}

// listen binds every configured listener, so that an address in use fails the
// start before any device is accepted.
func (a *Agent) listen() ([]boundListener, error) {
	var out []boundListener
	for i, l := range a.cfg.Listeners {
		lo := transport.ListenOptions{Type: string(l.Type), Address: l.Address, Path: l.Path, Logger: a.log}
		if l.Type == config.ListenerTLS || l.Type == config.ListenerWSS {
			tc, err := transport.ServerTLS(transport.ServerTLSOptions{
				CertFile: l.TLS.CertFile, KeyFile: l.TLS.KeyFile,
				ClientCAFile: l.TLS.ClientCAFile, RequireClientCert: l.TLS.RequireClientCert,
			})
			if err != nil {
				closeAll(out)
				return nil, fmt.Errorf("listeners[%d]: %w", i, err)
			}
			lo.TLS = tc
		}
		ln, err := transport.Listen(lo)
		if err != nil {
			closeAll(out)
			return nil, fmt.Errorf("listeners[%d]: %w", i, err)
		}
		name := l.Name
		if name == "" {
			name = fmt.Sprintf("%s://%s", l.Type, l.Address)
		}
		a.log.Info("listening", "listener", name, "address", ln.Addr().String(), "type", string(l.Type))
		out = append(out, boundListener{name: name, ln: ln})
	}
	return out, nil
}

func closeAll(ls []boundListener) {
	for _, l := range ls {
		l.ln.Close()
	}
}

// loadAuth loads the password and ACL files named in the config, if any.
func (a *Agent) loadAuth(lo *localbus.ListenerOptions) error {
	if f := a.cfg.Auth.PasswordFile; f != "" {
		p, err := auth.LoadPasswords(f)
		if err != nil {
			return fmt.Errorf("auth.password_file: %w", err)
		}
		lo.Auth = p
	}
	if f := a.cfg.Auth.ACLFile; f != "" {
		acl, err := auth.LoadACL(f)
		if err != nil {
			return fmt.Errorf("auth.acl_file: %w", err)
		}
		lo.ACL = acl
	}
	return nil
}

// forwardRule returns the first forward rule whose filter matches topic.
func (a *Agent) forwardRule(topic string) *config.ForwardRule {
	for i := range a.cfg.Forward {
		if matchFilter(a.cfg.Forward[i].Filter, topic) {
			return &a.cfg.Forward[i]
		}
	}
	return nil
}
