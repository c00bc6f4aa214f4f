package main

import (
	"bytes"
	"errors"
	"os/exec"
	"strings"
	"testing"

	"holdfast/adapters/serial"
)

// TestSerialListCommand: `holdfast serial list` prints this machine's ports
// exactly as serial.List finds them (or says there are none) and exits 0;
// anything else after `serial` is a usage error with exit code 2.
func TestSerialListCommand(t *testing.T) {
	out := hf(t, "serial", "list")
	ports, err := serial.List()
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	if err := serial.WriteList(&want, ports); err != nil {
		t.Fatal(err)
	}
	if out != want.String() {
		t.Fatalf("serial list printed\n%s\nwant, from serial.List here,\n%s", out, want.String())
	}
	t.Logf("%d ports here:\n%s", len(ports), out)
	for _, args := range [][]string{{"serial"}, {"serial", "lst"}, {"serial", "list", "extra"}} {
		cmd := exec.Command(binPath, args...)
		stderr, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(stderr), "holdfast serial list") {
			t.Errorf("holdfast %s: %v, %q; want exit 2 with the usage", strings.Join(args, " "), err, stderr)
		}
	}
}

// TestSerialListContent: with USB adapters present (a fake list: the test
// machine has none), the command prints each with its ids, serial number and
// product, sorted as listed; with none it says so; a listing error is the
// command's error, exit code 1.
func TestSerialListContent(t *testing.T) {
	saved := listSerialPorts
	t.Cleanup(func() { listSerialPorts = saved })
	var ports []serial.PortInfo
	var listErr error
	listSerialPorts = func() ([]serial.PortInfo, error) { return ports, listErr }

	ports = []serial.PortInfo{
		{Name: "/dev/ttyS0"},
		{Name: "/dev/ttyUSB0", IsUSB: true, VID: "0403", PID: "6001", SerialNumber: "A50285BI", Product: "FT232R USB UART"},
		{Name: "/dev/ttyUSB1", IsUSB: true, VID: "067b", PID: "2303", Product: "USB-Serial Controller"},
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"serial", "list"}, nil, &out, &errOut); code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	want := "PORT          USB  VID   PID   SERIAL    PRODUCT\n" +
		"/dev/ttyS0    no   -     -     -         -\n" +
		"/dev/ttyUSB0  yes  0403  6001  A50285BI  FT232R USB UART\n" +
		"/dev/ttyUSB1  yes  067b  2303  -         USB-Serial Controller\n"
	if out.String() != want {
		t.Errorf("serial list printed\n%s\nwant\n%s", out.String(), want)
	}

	ports = nil
	out.Reset()
	if code := run([]string{"serial", "list"}, nil, &out, &errOut); code != exitOK || out.String() != "no serial ports found\n" {
		t.Errorf("no ports: exit %d, %q", code, out.String())
	}

	listErr = errors.New("serial: list ports: permission denied")
	out.Reset()
	errOut.Reset()
	if code := run([]string{"serial", "list"}, nil, &out, &errOut); code != exitFailure || out.Len() != 0 ||
		errOut.String() != "holdfast: serial: list ports: permission denied\n" {
		t.Errorf("listing error: exit %d, stdout %q, stderr %q", code, out.String(), errOut.String())
	}
}
