package serial

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"

	goserial "go.bug.st/serial"
	"golang.org/x/sys/unix"
)

// termiosOf reads the terminal settings of the tty at path through a second
// descriptor: they belong to the tty, not to the descriptor that set them.
func termiosOf(t *testing.T, path string) *unix.Termios {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK, 0)
	if err != nil {
		t.Fatalf("open %s for its termios: %v", path, err)
	}
	defer f.Close()
	tio, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS2)
	if err != nil {
		t.Fatalf("TCGETS2 on %s: %v", path, err)
	}
	return tio
}

// TestPTYLineSettings opens socat pseudo-terminals through the adapter with
// each parity, both supported stop bit counts, data bits from 5 to 8 and
// standard and non-standard bit rates, and reads back what the kernel holds
// for the tty.
//
// The pseudo-terminal driver forces CS8 and clears PARENB whatever is asked
// (drivers/tty/pty.c, pty_set_termios), so data bits and "parity on" cannot
// be seen on a pty: for those the test checks the mode the adapter handed to
// the serial library. Everything else is read back from the tty: the speed,
// CSTOPB, PARODD, CMSPAR and INPCK (input parity checking, on for every
// parity but none), which together tell the five parities apart.
func TestPTYLineSettings(t *testing.T) {
	type flags struct{ cstopb, parodd, cmspar, inpck bool }
	for _, tc := range []struct {
		baud     int
		dataBits int
		parity   string
		stopBits string
		mode     goserial.Mode
		want     flags
	}{
		{19200, 7, ParityOdd, "2", goserial.Mode{BaudRate: 19200, DataBits: 7, Parity: goserial.OddParity, StopBits: goserial.TwoStopBits}, flags{cstopb: true, parodd: true, inpck: true}},
		{4800, 8, ParityEven, "1", goserial.Mode{BaudRate: 4800, DataBits: 8, Parity: goserial.EvenParity, StopBits: goserial.OneStopBit}, flags{inpck: true}},
		{9600, 5, ParityMark, "1", goserial.Mode{BaudRate: 9600, DataBits: 5, Parity: goserial.MarkParity, StopBits: goserial.OneStopBit}, flags{parodd: true, cmspar: true, inpck: true}},
		{115200, 6, ParitySpace, "2", goserial.Mode{BaudRate: 115200, DataBits: 6, Parity: goserial.SpaceParity, StopBits: goserial.TwoStopBits}, flags{cstopb: true, cmspar: true, inpck: true}},
		// 250000 is not one of the Bnnn constants: set through BOTHER.
		{250000, 8, ParityNone, "1", goserial.Mode{BaudRate: 250000, DataBits: 8, Parity: goserial.NoParity, StopBits: goserial.OneStopBit}, flags{}},
	} {
		name := fmt.Sprintf("%d-%d%s%s", tc.baud, tc.dataBits, strings.ToUpper(tc.parity[:1]), tc.stopBits)
		t.Run(name, func(t *testing.T) {
			pty := startPTY(t, t.TempDir(), "dev")
			a := newTestAdapter(t, PortConfig{Device: pty.Dev, Baud: tc.baud, DataBits: tc.dataBits, Parity: tc.parity, StopBits: tc.stopBits}, newMemBus())
			var mu sync.Mutex
			var modes []goserial.Mode
			a.openPort = func(path string, m *goserial.Mode) (goserial.Port, error) {
				mu.Lock()
				modes = append(modes, *m)
				mu.Unlock()
				return goserial.Open(path, m)
			}
			stop := runAdapter(t, a)
			waitConnected(t, a)
			tio := termiosOf(t, pty.Dev)
			stop()

			mu.Lock()
			defer mu.Unlock()
			if len(modes) != 1 || modes[0] != tc.mode {
				t.Errorf("modes opened %+v, want one %+v", modes, tc.mode)
			}
			if tio.Ispeed != uint32(tc.baud) || tio.Ospeed != uint32(tc.baud) {
				t.Errorf("tty speed in %d out %d, want %d", tio.Ispeed, tio.Ospeed, tc.baud)
			}
			got := flags{
				cstopb: tio.Cflag&unix.CSTOPB != 0,
				parodd: tio.Cflag&unix.PARODD != 0,
				cmspar: tio.Cflag&unix.CMSPAR != 0,
				inpck:  tio.Iflag&unix.INPCK != 0,
			}
			if got != tc.want {
				t.Errorf("tty flags %+v, want %+v (cflag %#o iflag %#o)", got, tc.want, tio.Cflag, tio.Iflag)
			}
			if tio.Cflag&unix.CRTSCTS != 0 || tio.Lflag&(unix.ICANON|unix.ECHO) != 0 {
				t.Errorf("tty not raw without flow control: cflag %#o lflag %#o", tio.Cflag, tio.Lflag)
			}
		})
	}
}

// TestOnePointFiveStopBitsRefused: the serial library cannot set 1.5 stop
// bits here (it fails every open), so the config check refuses them with
// the key rather than leave a port that never opens.
func TestOnePointFiveStopBitsRefused(t *testing.T) {
	pty := startPTY(t, t.TempDir(), "dev")
	p, err := goserial.Open(pty.Dev, &goserial.Mode{BaudRate: 9600, DataBits: 8, StopBits: goserial.OnePointFiveStopBits})
	if err == nil {
		p.Close()
		t.Fatalf("the serial library opened %s with 1.5 stop bits on %s: lineSettingError is out of date", pty.Dev, runtime.GOOS)
	}
	if !strings.Contains(err.Error(), "stop bits invalid") {
		t.Fatalf("open with 1.5 stop bits: %v, want the library's invalid stop bits", err)
	}
	c := PortConfig{Name: "a", Device: pty.Dev, StopBits: "1.5"}
	c.SetDefaults()
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), `stop_bits: "1.5": supported on Windows only, not on linux`) {
		t.Fatalf("Validate with stop_bits 1.5 = %v", err)
	}
}
