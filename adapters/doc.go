// Package adapters is the home of holdfast's field adapters: sources of data
// that are not MQTT clients (serial sensors today, Modbus RTU polling or
// similar later), each in its own subpackage.
//
// Every adapter is independent of the local broker: it declares, in its own
// package, the small Bus interface it publishes to and takes write-back
// commands from, and the agent implements that interface on localbus. An
// adapter has a config struct with yaml tags, SetDefaults and Validate methods,
// a constructor New and a Run(ctx) method that blocks until ctx is done and
// survives the loss of its device.
package adapters
