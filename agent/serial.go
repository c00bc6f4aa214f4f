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

// Publish stores m for upstream when a forward rule selects it, then hands it
// to the local broker's subscribers.
func (b *serialBus) Publish(ctx context.Context, m serial.Message) error {
	lm := &localbus.Message{
		Topic: m.Topic, Payload: m.Payload, QoS: m.QoS, Retain: m.Retain,
		ClientID: "serial:" + b.port,
	}
	done := make(chan error, 1)
	(&store{a: b.a}).Ingest(lm, nil, func(err error) { done <- err })
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("storing %s: %w", m.Topic, err)
		}
	case <-ctx.Done():
		return ctx.Err()
	}
	return b.a.broker.Publish(ctx, lm)
}

// Subscribe delivers what local clients publish on filter to fn (write-back
// commands to the port).
func (b *serialBus) Subscribe(filter string, fn func(topic string, payload []byte)) (func(), error) {
	return b.a.broker.Subscribe(filter, func(m *localbus.Message) { fn(m.Topic, m.Payload) })
}
