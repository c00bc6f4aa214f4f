package main

import (
	"io"

	"holdfast/adapters/serial"
)

// runSerial handles `holdfast serial list`.
func runSerial(args []string, stdout io.Writer) error {
	if len(args) != 1 || args[0] != "list" {
		return usagef("usage: holdfast serial list")
	}
	ports, err := serial.List()
	if err != nil {
		return err
	}
	return serial.WriteList(stdout, ports)
}
