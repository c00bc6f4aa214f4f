package uplink

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"holdfast/internal/packet"
	"holdfast/internal/testclient"
	"holdfast/internal/testenv"
)

// TestUsernamePassword forwards to a mosquitto that allows no anonymous
// clients and checks user names against a password file made with
// mosquitto_passwd: the right password forwards, a wrong one is refused
// (both versions), and nothing is forwarded then.
func TestUsernamePassword(t *testing.T) {
	m := testenv.StartMosquitto(t, testenv.MosquittoOptions{Users: map[string]string{"gateway": "s3cret:with spaces", "reader": "r"}})
	for _, v := range []packet.Version{packet.V5, packet.V311} {
		t.Run(v.String(), func(t *testing.T) {
			sub, err := testclient.Dial(m.Addr(), testclient.Options{ClientID: "reader" + v.String(), Version: v,
				CleanStart: true, Username: "reader", Password: "r"})
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Close()
			topic := fmt.Sprintf("auth%d/#", v)
			if codes, err := sub.Subscribe(packet.Subscription{Filter: topic, QoS: 1}); err != nil || codes[0].IsError() {
				t.Fatalf("subscribe: %v %v", codes, err)
			}
			src := newMemSource()
			src.fill(20, 2, fmt.Sprintf("auth%d", v), 1)
			c := newClient(t, Options{URL: m.URL(), Protocol: v, ClientID: "gw" + v.String(),
				Username: "gateway", Password: "s3cret:with spaces"}, src, nil)
			run(t, c)
			checkDelivery(t, payloads(t, receive(t, sub, 20)), 20, true)
			testenv.WaitFor(t, 30*time.Second, "acked", func() bool { _, a, _, _ := src.counts(); return a == 20 })

			src2 := newMemSource()
			src2.fill(1, 1, fmt.Sprintf("auth%d", v), 1)
			bad := newClient(t, Options{URL: m.URL(), Protocol: v, ClientID: "intruder" + v.String(),
				Username: "gateway", Password: "wrong"}, src2, nil)
			run(t, bad)
			testenv.WaitFor(t, 30*time.Second, "refusal reported", func() bool { return bad.Status().LastError != "" })
			want := map[packet.Version]string{packet.V5: "not authorized (0x87)", packet.V311: "not authorized (5)"}[v]
			if st := bad.Status(); st.Connects != 0 || st.Forwarded != 0 || !strings.Contains(st.LastError, want) {
				t.Errorf("wrong password: connects %d, forwarded %d, last error %q (want %q)", st.Connects, st.Forwarded,
					st.LastError, want)
			}
		})
	}
}
