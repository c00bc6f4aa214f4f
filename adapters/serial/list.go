package serial

import (
	"fmt"
	"io"
	"sort"
	"text/tabwriter"

	"go.bug.st/serial"
	"go.bug.st/serial/enumerator"
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

// List returns the serial ports present, sorted by name, with USB ids for
// USB adapters: what a user needs to write a match. On Linux these are the
// /dev entries named like serial ports (ttyS, ttyHS, ttyUSB, ttyACM, ttyAMA,
// rfcomm, ttyO, ttymxc; ttyS and ttyHS only if they open); pseudo-terminals
// are not listed.
func List() ([]PortInfo, error) {
	names, err := serial.GetPortsList()
	if err != nil {
		return nil, fmt.Errorf("serial: list ports: %w", err)
	}
	details, err := enumerator.GetDetailedPortsList()
	if err != nil {
		return nil, fmt.Errorf("serial: list ports: %w", err)
	}
	// The enumerator returns an empty entry for a port without sysfs
	// details; the plain list still has its name.
	byName := map[string]*enumerator.PortDetails{}
	for _, d := range details {
		if d != nil && d.Name != "" {
			byName[d.Name] = d
		}
	}
	for _, n := range names {
		if byName[n] == nil {
			byName[n] = &enumerator.PortDetails{Name: n}
		}
	}
	out := make([]PortInfo, 0, len(byName))
	for _, d := range byName {
		out = append(out, PortInfo{Name: d.Name, IsUSB: d.IsUSB, VID: d.VID, PID: d.PID, SerialNumber: d.SerialNumber, Product: d.Product})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
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
