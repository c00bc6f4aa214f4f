//go:build darwin && !cgo

package serial

import "errors"

// usbDetails reports whether List can see USB ids, so that a match can be
// resolved: not in a macOS build without cgo, where the USB enumerator
// (IOKit) is not compiled in.
const usbDetails = false

// ErrNoUSBEnumerator is List's error in a macOS build without cgo.
var ErrNoUSBEnumerator = errors.New("serial: listing ports needs a holdfast built with cgo on macOS (CGO_ENABLED=1); name the port by its device path (/dev/cu.usbserial-...) instead")

// List would return the serial ports present with their USB ids; on macOS
// the enumerator needs cgo, so this build returns ErrNoUSBEnumerator.
func List() ([]PortInfo, error) { return nil, ErrNoUSBEnumerator }
