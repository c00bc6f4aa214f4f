package main

import (
	"io"

	"holdfast/adapters/serial"
)

// listSerialPorts is serial.List; tests replace it.
var listSerialPorts = serial.List

// runSerial handles `holdfast serial list`.
func runSerial(args []string, stdout io.Writer) error {
	if len(args) != 1 || args[0] != "list" {
		return usagef("usage: holdfast serial list")
	}
	ports, err := listSerialPorts()
	if err != nil {
		return err
	}
	return serial.WriteList(stdout, ports)
}
