package localbus

import (
	"io"
	"net"
	"testing"
	"time"

	"holdfast/internal/packet"
)

// FuzzConnection feeds arbitrary bytes after a valid CONNECT (3.1.1 or 5.0)
// to one connection of a broker: whatever arrives, the broker must not
// panic or hang, and must close that connection or keep serving it.
func FuzzConnection(f *testing.F) {
	enc := func(v packet.Version, ps ...packet.Packet) []byte {
		var b []byte
		for _, p := range ps {
			var err error
			if b, err = packet.Append(b, p, v); err != nil {
				f.Fatal(err)
			}
		}
		return b
	}
	alias := &packet.Publish{Topic: "t/1", QoS: 1, PacketID: 1}
	alias.Properties.TopicAlias, alias.Properties.HasTopicAlias = 3, true
	for _, v := range []packet.Version{packet.V311, packet.V5} {
		f.Add(byte(v), enc(v,
			&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: "t/#", QoS: 2}, {Filter: "$share/g/t/+", QoS: 1}}},
			&packet.Publish{Topic: "t/1", QoS: 2, PacketID: 2, Retain: true, Payload: []byte("x")},
			&packet.Pubrel{PacketID: 2}, &packet.Puback{PacketID: 1}, &packet.Pubrec{PacketID: 1},
			&packet.Unsubscribe{PacketID: 3, Filters: []string{"t/#"}}, &packet.Pingreq{}, &packet.Disconnect{}))
	}
	f.Add(byte(packet.V5), enc(packet.V5, alias, &packet.Publish{QoS: 0, Properties: alias.Properties}))
	f.Add(byte(packet.V5), []byte{0x36, 0x03, 0x00, 0x01, 't'})
	f.Fuzz(func(t *testing.T, version byte, data []byte) {
		v := packet.V311
		if version%2 == 1 {
			v = packet.V5
		}
		st := newMemStore(t)
		b, err := New(Options{RetainAvailable: true, Logger: testLogger()}, st)
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		server, client := net.Pipe()
		c := newConn(b, server, &ListenerOptions{AllowAnonymous: true})
		b.connWG.Add(1)
		served := make(chan struct{})
		go func() {
			defer b.connWG.Done()
			defer close(served)
			c.serve()
		}()
		go io.Copy(io.Discard, client) // net.Pipe is unbuffered: drain answers
		connect := enc(v, &packet.Connect{ProtocolName: "MQTT", Version: v, CleanStart: true, ClientID: "fz", KeepAlive: 0})
		client.SetWriteDeadline(time.Now().Add(5 * time.Second))
		client.Write(append(connect, data...))
		client.Close()
		select {
		case <-served:
		case <-time.After(10 * time.Second):
			t.Fatal("connection not finished after the client closed")
		}
	})
}
