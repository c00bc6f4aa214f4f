package main

import (
	"flag"
	"fmt"
	"io"

	"holdfast/internal/auth"
)

func runConfig(args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "check" {
		return usagef("config: want check")
	}
	fs := flag.NewFlagSet("config check", flag.ContinueOnError)
	var cf commonFlags
	cf.register(fs, true)
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	cfg, err := cf.loadChecked()
	if err != nil {
		return err
	}
	src := cf.config
	if src == "" {
		src = "built-in defaults"
	}
	fmt.Fprintf(stdout, "%s: ok\n", src)
	fmt.Fprintf(stdout, "gateway_id: %s\nupstream: %s (MQTT %s, client id %s)\nqueue: %s (max %s, %s)\n",
		cfg.GatewayID, redacted(cfg.Upstream.URL), cfg.Upstream.Protocol, cfg.Upstream.ClientID,
		cfg.Queue.Dir, cfg.Queue.MaxBytes, cfg.Queue.Policy)
	for i, l := range cfg.Listeners {
		fmt.Fprintf(stdout, "listeners[%d]: %s %s (anonymous %v)\n", i, l.Type, l.Address, l.AnonymousAllowed())
	}
	fmt.Fprintf(stdout, "forward rules: %d, downlink rules: %d, admin: %q\n", len(cfg.Forward), len(cfg.Downlink), cfg.Admin.Address)
	return nil
}

func runPasswd(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return auth.RunPasswd(args, stdin, stdout, stderr)
}
