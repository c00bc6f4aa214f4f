//go:build darwin && !cgo

package serial

import (
	"errors"
	"strings"
	"testing"
)

// TestNoUSBEnumeratorWithoutCgo: a macOS build without cgo says why it
// cannot list ports, and refuses a USB match when the config is checked
// rather than fail every open; a device path still works.
func TestNoUSBEnumeratorWithoutCgo(t *testing.T) {
	if _, err := List(); !errors.Is(err, ErrNoUSBEnumerator) || !strings.Contains(err.Error(), "cgo") {
		t.Errorf("List() = %v, want ErrNoUSBEnumerator", err)
	}
	c := PortConfig{Name: "a", Match: Match{VID: "0403"}}
	c.SetDefaults()
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "match: needs a holdfast built with cgo") {
		t.Errorf("Validate with a match = %v", err)
	}
	c = PortConfig{Name: "a", Device: "/dev/cu.usbserial-A50285BI"}
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		t.Errorf("Validate with a device = %v", err)
	}
}
