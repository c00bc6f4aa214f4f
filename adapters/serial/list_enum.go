//go:build !darwin || cgo

package serial

import (
	"fmt"
	"sort"

	"go.bug.st/serial"
	"go.bug.st/serial/enumerator"
)

// usbDetails reports whether List can see USB ids, so that a match can be
// resolved. On macOS that takes cgo (IOKit); see list_nocgo.go.
const usbDetails = true

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
