package serial

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// PortInfo describes a serial port present on the machine.
type PortInfo struct {
	// Name is the device path, e.g. /dev/ttyUSB0.
	Name string
	// IsUSB reports a USB serial adapter; the fields below are set only then.
	IsUSB bool
	// VID and PID are the USB vendor and product ids, four hex digits.
	VID, PID string
	// SerialNumber is the adapter's USB serial number, if it has one.
	SerialNumber string
	// Product is the USB product name, if the system reports it.
	Product string
}

// WriteList prints ports as the table of `holdfast serial list`:
//
//	PORT          USB  VID   PID   SERIAL    PRODUCT
//	/dev/ttyS0    no   -     -     -         -
//	/dev/ttyUSB0  yes  0403  6001  A50285BI  FT232R USB UART
//
// or a line saying that there are none.
func WriteList(w io.Writer, ports []PortInfo) error {
	if len(ports) == 0 {
		_, err := fmt.Fprintln(w, "no serial ports found")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PORT\tUSB\tVID\tPID\tSERIAL\tPRODUCT")
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	for _, p := range ports {
		usb := "no"
		if p.IsUSB {
			usb = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", p.Name, usb, dash(p.VID), dash(p.PID), dash(p.SerialNumber), dash(p.Product))
	}
	return tw.Flush()
}
