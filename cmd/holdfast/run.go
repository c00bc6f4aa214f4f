package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"holdfast/agent"
	"holdfast/config"
)

// configError is a configuration that cannot be used: exit code 2.
type configError struct{ err error }

func (e *configError) Error() string { return e.err.Error() }
func (e *configError) Unwrap() error { return e.err }

// commonFlags are the flags that select the configuration.
type commonFlags struct {
	config    string
	overrides config.Overrides
}

func (c *commonFlags) register(fs *flag.FlagSet, withOverrides bool) {
	fs.StringVar(&c.config, "config", "", "configuration file (default: built-in defaults)")
	if withOverrides {
		fs.StringVar(&c.overrides.Listen, "listen", "", "address of the first local listener (host:port)")
		fs.StringVar(&c.overrides.Upstream, "upstream", "", "upstream broker URL (mqtt://, mqtts://, ws://, wss://)")
		fs.StringVar(&c.overrides.DataDir, "data-dir", "", "queue directory")
		fs.StringVar(&c.overrides.ClientID, "client-id", "", "upstream client id")
	}
}

// load reads the configuration, applies the flags over it and validates
// the result.
func (c *commonFlags) load() (*config.Config, error) {
	cfg, err := config.LoadWith(c.config, c.overrides)
	if err != nil {
		return nil, &configError{err}
	}
	return cfg, nil
}

// loadChecked is load, then the check that the files the configuration
// names (certificates, password and ACL files) can be read.
func (c *commonFlags) loadChecked() (*config.Config, error) {
	cfg, err := c.load()
	if err != nil {
		return nil, err
	}
	if err := cfg.CheckFiles(); err != nil {
		return nil, &configError{err}
	}
	return cfg, nil
}

// parseFlags parses args, turning flag errors into usage errors, -h and
// --help into errHelp, and refusing stray arguments and string flags given
// an empty value (--data-dir "" is a mistake, not "use the default").
func parseFlags(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return errHelp
		}
		return usagef("%s: %v", fs.Name(), err)
	}
	if fs.NArg() > 0 {
		return usagef("%s: unexpected argument %q", fs.Name(), fs.Arg(0))
	}
	var empty []string
	fs.Visit(func(f *flag.Flag) {
		if g, ok := f.Value.(flag.Getter); ok {
			if s, ok := g.Get().(string); ok && s == "" {
				empty = append(empty, "--"+f.Name)
			}
		}
	})
	if len(empty) > 0 {
		return usagef("%s: %s: empty value (leave the flag out for the configuration's value)", fs.Name(), empty[0])
	}
	return nil
}

// runAgent runs `holdfast run`. Under a service manager that needs its own
// protocol (the Windows service control manager) everything, the flags and
// the configuration included, happens inside it, so that a bad
// configuration reaches the event log instead of a standard error nobody
// reads; elsewhere the agent runs here until SIGTERM or SIGINT.
func runAgent(args []string, stderr io.Writer) error {
	start := func(ctx context.Context) error { return startAgent(ctx, args, stderr) }
	if handled, err := runUnderServiceManager(start); handled {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return start(ctx)
}

// startAgent parses the flags of `holdfast run`, loads and checks the
// configuration, opens the log and runs the agent until ctx is cancelled.
func startAgent(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	var cf commonFlags
	cf.register(fs, true)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := cf.loadChecked()
	if err != nil {
		return err
	}
	logOut := stderr
	if cfg.Log.File != "" {
		f, err := os.OpenFile(cfg.Log.File, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
		if err != nil {
			return &configError{fmt.Errorf("config: log.file: %w", err)}
		}
		defer f.Close()
		logOut = f
	}
	logger := newLogger(cfg.Log, logOut)
	slog.SetDefault(logger)
	agent.Version = version
	return agent.New(cfg, logger).Run(ctx)
}

func newLogger(l config.Log, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: l.SlogLevel()}
	if strings.EqualFold(l.Format, "json") {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// adminAddress is where the running agent's admin endpoint is: the flag, else
// the configuration's admin.address.
func adminAddress(flagValue string, cf *commonFlags) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	cfg, err := cf.load()
	if err != nil {
		return "", err
	}
	if cfg.Admin.Address == "" {
		return "", &configError{fmt.Errorf("admin.address is empty: the admin endpoint is disabled")}
	}
	return cfg.Admin.Address, nil
}
