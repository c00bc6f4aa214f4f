package agent

import (
	"context"
	"fmt"

	"holdfast/adapters/serial"
	"holdfast/localbus"
)

// serialBus is the local broker as the serial adapters see it. A frame goes
// the way a device's PUBLISH goes: through the forward rules into the queue
// (durably, before Publish returns), then to local subscribers.
type serialBus struct {
	a    *Agent
	port string
}

// Publish publishes m as a local client's PUBLISH: stored for upstream when
// a forward rule selects it, in the same commit as the copies for the local
// broker's persistent sessions, which get it then.
func (b *serialBus) Publish(ctx context.Context, m serial.Message) error {
	lm := &localbus.Message{
		Topic: m.Topic, Payload: m.Payload, QoS: m.QoS, Retain: m.Retain,
		ClientID: "serial:" + b.port,
	}
	if err := b.a.broker.Ingest(ctx, lm); err != nil {
		return fmt.Errorf("storing %s: %w", m.Topic, err)
	}
	return nil
}

// Subscribe delivers what local clients publish on filter to fn (write-back
// commands to the port).
func (b *serialBus) Subscribe(filter string, fn func(topic string, payload []byte)) (func(), error) {
	return b.a.broker.Subscribe(filter, func(m *localbus.Message) { fn(m.Topic, m.Payload) })
}
