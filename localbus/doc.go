// Package localbus is holdfast's MQTT 3.1.1 and 5.0 broker for the devices
// near the gateway: sessions (persistent ones survive a restart through the
// Store), wildcard and shared subscriptions, retained messages, wills, QoS 0,
// 1 and 2 in both directions, and TCP, TLS and WebSocket listeners with
// password and ACL checks.
//
// Every PUBLISH a client sends is handed to the Store (the agent's forward
// rules and the durable queue) and acknowledged only once the Store reports
// it durable. The connection keeps reading while commits are in flight and
// sends the acknowledgements in order as they land, so a device with a window
// of 64 is not held to one message per fsync. A message the Store refuses
// gets reason code 0x97 (MQTT 5) or closes a 3.1.1 connection unacknowledged.
//
// docs/localbus.md describes the behaviour and defaults; docs/conformance.md
// maps the specifications' normative statements to the tests.
package localbus
