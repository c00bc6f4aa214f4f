// Command holdfast is the offline-first MQTT store-and-forward agent for edge
// gateways: `holdfast` (or `holdfast run`) runs the agent, and the other
// commands inspect it, its queue and its configuration.
//
// Exit codes: 0 success (and for help), 1 a failure while running, 2 bad
// usage or bad configuration. Every problem is reported on its own line of
// standard error, starting with "holdfast: " and naming the flag, or the
// key and line of the file.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// version is stamped at build time with -ldflags "-X main.version=...".
var version = "dev"

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

const usage = `holdfast: offline-first MQTT store-and-forward agent

Usage:
  holdfast [run] [--config FILE] [--listen ADDR] [--upstream URL] [--data-dir DIR] [--client-id ID]
  holdfast status [--json] [--config FILE | --admin ADDR]
  holdfast queue stats [--config FILE] [--data-dir DIR] [--admin ADDR]
  holdfast queue peek [--config FILE] [--data-dir DIR] [--admin ADDR] [-n N]
  holdfast queue export [--config FILE] [--data-dir DIR] [--dead-letters]
  holdfast config check [--config FILE]
  holdfast passwd [-c] [-D] [-b] FILE USER [PASSWORD]
  holdfast serial list
  holdfast service install [--config FILE]
  holdfast service uninstall|start|stop|restart|status
  holdfast version

With no config file and no flags, holdfast runs on built-in defaults: MQTT on
127.0.0.1:1883, data in ./holdfast-data, admin on 127.0.0.1:9183, every local
topic forwarded at QoS 1 or 2 to mqtt://127.0.0.1:1884.
`

// usageError is a command-line mistake: exit code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run dispatches a command line and returns the exit code.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cmd := "run"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "run":
		err = runAgent(args, stderr)
	case "status":
		err = runStatus(args, stdout)
	case "queue":
		err = runQueue(args, stdout, stderr)
	case "config":
		err = runConfig(args, stdout)
	case "passwd":
		return runPasswd(args, stdin, stdout, stderr)
	case "serial":
		err = runSerial(args, stdout)
	case "service":
		err = runService(args, stdout)
	case "version":
		if err = noArguments(cmd, args); err == nil {
			fmt.Fprintf(stdout, "holdfast %s\n", version)
		}
	case "help":
		if err = noArguments(cmd, args); err == nil {
			err = errHelp
		}
	default:
		err = usagef("unknown command %q (see holdfast help)", cmd)
	}
	if errors.Is(err, errHelp) {
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	return report(err, stderr)
}

// errHelp is what a command returns for -h, --help or help: the usage goes
// to standard output and the exit code is 0.
var errHelp = errors.New("help requested")

// noArguments refuses arguments to a command that takes none.
func noArguments(cmd string, args []string) error {
	if len(args) > 0 {
		return usagef("%s: unexpected argument %q", cmd, args[0])
	}
	return nil
}

// report prints err and maps it to an exit code. Each problem is one line
// starting with "holdfast: "; an error that joins several (errors.Join, as
// the configuration's do) gives one line for each.
func report(err error, stderr io.Writer) int {
	if err == nil {
		return exitOK
	}
	for _, line := range strings.Split(err.Error(), "\n") {
		if line != "" {
			fmt.Fprintf(stderr, "holdfast: %s\n", line)
		}
	}
	var ue *usageError
	var ce *configError
	if errors.As(err, &ue) || errors.As(err, &ce) {
		return exitUsage
	}
	return exitFailure
}
