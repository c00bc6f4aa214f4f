package main

import (
	"flag"
	"io"
	"strings"

	"holdfast/internal/service"
)

// runService runs `holdfast service install [--config FILE]` and `holdfast
// service uninstall|start|stop|restart|status`: registers holdfast with the
// machine's service manager or controls it, for machines without the
// Debian package. install checks the configuration first, so a service
// that cannot start is never registered; the other actions act on the
// registered service, which keeps the configuration it was installed with,
// and refuse --config.
func runService(args []string, stdout io.Writer) error {
	if len(args) == 0 || !service.ValidAction(args[0]) {
		if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
			return usagef("service: unknown action %q: want %s", args[0], strings.Join(service.Actions, ", "))
		}
		return usagef("service: want %s", strings.Join(service.Actions, ", "))
	}
	action := args[0]
	fs := flag.NewFlagSet("service "+action, flag.ContinueOnError)
	var cf commonFlags
	cf.register(fs, false)
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if action != "install" && cf.config != "" {
		return usagef("service %s: --config applies to service install only (the service runs with the configuration it was installed with)", action)
	}
	if cf.config == "" {
		cf.config = service.DefaultConfigFile()
	}
	if action == "install" {
		if _, err := cf.load(); err != nil {
			return err
		}
	}
	return service.Control(action, service.Options{ConfigFile: cf.config}, stdout)
}

// runUnderServiceManager runs the agent through the service manager's own
// protocol when this process was started by one that needs it (the Windows
// service control manager: start handshake, stop request) and returns
// handled true with run's error; a failure of run, a bad configuration
// included, then goes to the event log. Elsewhere it returns handled false
// without calling run: under systemd, launchd, OpenRC or an init script the
// caller runs the agent itself and stops it on SIGTERM. runAgent calls it
// before it reads its flags or configuration. It is service.RunManaged;
// tests replace it.
var runUnderServiceManager = service.RunManaged
