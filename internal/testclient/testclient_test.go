package testclient

import (
	"fmt"
	"testing"
	"time"

	"holdfast/internal/packet"
	"holdfast/internal/testenv"
)

// TestAgainstMosquitto runs the client's every operation against a real
// broker in every protocol version (3.1 with its "MQIsdp" CONNECT): what a
// test built on it relies on.
func TestAgainstMosquitto(t *testing.T) {
	m := testenv.StartMosquitto(t, testenv.MosquittoOptions{})
	for _, v := range []packet.Version{packet.V31, packet.V311, packet.V5} {
		t.Run(v.String(), func(t *testing.T) {
			sub, err := Dial(m.Addr(), Options{ClientID: "sub-" + v.String(), Version: v, CleanStart: true})
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Close()
			rcs, err := sub.Subscribe(packet.Subscription{Filter: "tc/" + v.String() + "/#", QoS: 2})
			if err != nil || len(rcs) != 1 || rcs[0] != packet.GrantedQoS2 {
				t.Fatalf("Subscribe = %v, %v", rcs, err)
			}
			pub, err := Dial(m.Addr(), Options{ClientID: "pub-" + v.String(), Version: v, CleanStart: true})
			if err != nil {
				t.Fatal(err)
			}
			defer pub.Disconnect()
			for qos := byte(0); qos <= 2; qos++ {
				p := &packet.Publish{Topic: fmt.Sprintf("tc/%s/%d", v, qos), QoS: qos, Payload: []byte{'m', '0' + qos}}
				if rc, err := pub.Publish(p); err != nil || rc.IsError() {
					t.Fatalf("Publish QoS %d = %v, %v", qos, rc, err)
				}
				got, err := sub.Receive(10 * time.Second)
				if err != nil {
					t.Fatalf("Receive QoS %d: %v", qos, err)
				}
				if got.Topic != p.Topic || string(got.Payload) != string(p.Payload) || got.QoS != qos {
					t.Fatalf("received %q %q QoS %d, want %q %q QoS %d", got.Topic, got.Payload, got.QoS, p.Topic, p.Payload, qos)
				}
			}
		})
	}
}
