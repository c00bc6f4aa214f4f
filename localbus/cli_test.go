package localbus

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"holdfast/internal/packet"
	"holdfast/internal/testenv"
)

// syncBuffer collects a subprocess's output safely.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// mosqSub starts mosquitto_sub; it is stopped at the end of the test.
func mosqSub(t *testing.T, tool string, args ...string) (*exec.Cmd, *syncBuffer, chan error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	cmd := exec.CommandContext(ctx, tool, args...)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait(); cancel() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
	})
	return cmd, out, done
}

func mosqPub(t *testing.T, tool string, args ...string) {
	t.Helper()
	if out, err := runTool(tool, "", args...); err != nil {
		t.Fatalf("%s %v: %v\n%s", tool, args, err, out)
	}
}

// runTool runs a command-line client with stdin as its input and returns
// what it printed.
func runTool(tool, stdin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, tool, args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func hostPort(addr string) []string {
	i := strings.LastIndexByte(addr, ':')
	return []string{"-h", addr[:i], "-p", addr[i+1:]}
}

func waitExit(t *testing.T, done chan error, out *syncBuffer) {
	t.Helper()
	select {
	case err := <-done:
		done <- err
		if err != nil {
			t.Fatalf("mosquitto_sub: %v\n%s", err, out)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("mosquitto_sub did not finish; output so far:\n%s", out)
	}
}

// expectPrinted waits for mosquitto_sub to exit and checks what it printed.
func expectPrinted(t *testing.T, done chan error, out *syncBuffer, want string) {
	t.Helper()
	waitExit(t, done, out)
	if got := out.String(); got != want {
		t.Fatalf("mosquitto_sub printed %q, want %q", got, want)
	}
}

// TestMosquittoClients runs Debian's mosquitto_pub and mosquitto_sub against
// the broker in both protocol versions, and as the MQTT 3.1 ("MQIsdp")
// clients old devices still are: QoS 0/1/2 both ways, wildcards, retained
// messages, a persistent session that collects messages while the
// subscriber is away, and a will.
func TestMosquittoClients(t *testing.T) {
	subTool := testenv.LookTool(t, "mosquitto_sub", "mosquitto-clients")
	pubTool := testenv.LookTool(t, "mosquitto_pub", "mosquitto-clients")
	for _, v := range []string{"mqttv31", "mqttv311", "mqttv5"} {
		t.Run(v, func(t *testing.T) {
			tb := startBroker(t, Options{}, nil, nil)
			hp := hostPort(tb.addr)
			base := append([]string{"-V", v}, hp...)
			subs := func() int { return tb.Stats().Subscriptions }

			// Live QoS 0/1/2 through a wildcard subscription at QoS 2.
			_, out, done := mosqSub(t, subTool, append(base, "-i", "live", "-t", "cli/+/x", "-q", "2", "-C", "3", "-F", "%t %q %r %p")...)
			testenv.WaitFor(t, wait, "mosquitto_sub subscribed", func() bool { return subs() == 1 })
			for q := 0; q <= 2; q++ {
				mosqPub(t, pubTool, append(base, "-t", fmt.Sprintf("cli/%d/x", q), "-q", strconv.Itoa(q), "-m", fmt.Sprintf("m%d", q))...)
			}
			expectPrinted(t, done, out, "cli/0/x 0 0 m0\ncli/1/x 1 0 m1\ncli/2/x 2 0 m2\n")

			// Retained: published first, received with the retain flag.
			mosqPub(t, pubTool, append(base, "-t", "cli/ret", "-q", "1", "-r", "-m", "kept")...)
			_, out, done = mosqSub(t, subTool, append(base, "-t", "cli/ret", "-q", "1", "-C", "1", "-F", "%t %r %p")...)
			expectPrinted(t, done, out, "cli/ret 1 kept\n")
			// Clear it with an empty retained message.
			mosqPub(t, pubTool, append(base, "-t", "cli/ret", "-r", "-n")...)
			testenv.WaitFor(t, wait, "retained cleared", func() bool { return tb.Stats().Retained == 0 })

			// Persistent session: subscribe, leave, messages arrive while
			// away, come back and receive them.
			persist := append(base, "-i", "keeper", "-c", "-t", "cli/q", "-q", "1", "-E")
			if v == "mqttv5" {
				persist = append(persist, "-x", "600")
			}
			_, out, done = mosqSub(t, subTool, persist...)
			waitExit(t, done, out)
			testenv.WaitFor(t, wait, "keeper offline", func() bool { return tb.Stats().Connections == 0 })
			for i := range 3 {
				mosqPub(t, pubTool, append(base, "-t", "cli/q", "-q", "1", "-m", fmt.Sprintf("away%d", i))...)
			}
			back := append(base, "-i", "keeper", "-c", "-t", "cli/q", "-q", "1", "-C", "3")
			if v == "mqttv5" {
				back = append(back, "-x", "600")
			}
			_, out, done = mosqSub(t, subTool, back...)
			expectPrinted(t, done, out, "away0\naway1\naway2\n")

			// Will: a subscriber with a will is killed; the will arrives.
			_, wout, wdone := mosqSub(t, subTool, append(base, "-t", "cli/will", "-q", "1", "-C", "1")...)
			testenv.WaitFor(t, wait, "will watcher subscribed", func() bool { return subs() >= 2 })
			victim, _, vdone := mosqSub(t, subTool, append(base, "-i", "victim", "-t", "nothing", "--will-topic", "cli/will", "--will-payload", "died", "--will-qos", "1")...)
			testenv.WaitFor(t, wait, "victim connected", func() bool { return subs() >= 3 })
			victim.Process.Kill()
			<-vdone
			vdone <- nil
			expectPrinted(t, wdone, wout, "died\n")
			if n := len(tb.store.messages()); n < 8 {
				t.Fatalf("only %d messages went to the store", n)
			}
		})
	}
}

// TestMosquittoAuth: mosquitto_pub with a good and a bad password against a
// listener with a password file and an ACL.
func TestMosquittoAuth(t *testing.T) {
	subTool := testenv.LookTool(t, "mosquitto_sub", "mosquitto-clients")
	pubTool := testenv.LookTool(t, "mosquitto_pub", "mosquitto-clients")
	pw, acl := authFiles(t, "dev", "pw", "user dev\ntopic readwrite dev/#\n")
	tb := startBroker(t, Options{}, nil, &ListenerOptions{Auth: pw, ACL: acl})
	for _, v := range []string{"mqttv311", "mqttv5"} {
		base := append([]string{"-V", v}, hostPort(tb.addr)...)
		out, err := exec.Command(pubTool, append(base, "-u", "dev", "-P", "nope", "-t", "dev/x", "-m", "x")...).CombinedOutput()
		if err == nil {
			t.Fatalf("%s: bad password accepted: %s", v, out)
		}
		if !strings.Contains(strings.ToLower(string(out)), "password") && !strings.Contains(strings.ToLower(string(out)), "not authori") {
			t.Fatalf("%s: unexpected refusal text %q", v, out)
		}
		out, err = exec.Command(pubTool, append(base, "-t", "dev/x", "-m", "x")...).CombinedOutput()
		if err == nil {
			t.Fatalf("%s: anonymous accepted: %s", v, out)
		}
		_, sout, sdone := mosqSub(t, subTool, append(base, "-u", "dev", "-P", "pw", "-t", "dev/#", "-t", "other/#", "-C", "1", "-F", "%t %p")...)
		testenv.WaitFor(t, wait, "subscribed", func() bool { return tb.Stats().Subscriptions >= 1 })
		mosqPub(t, pubTool, append(base, "-u", "dev", "-P", "pw", "-q", "1", "-t", "other/x", "-m", "denied")...)
		mosqPub(t, pubTool, append(base, "-u", "dev", "-P", "pw", "-q", "1", "-t", "dev/x", "-m", "allowed")...)
		expectPrinted(t, sdone, sout, "dev/x allowed\n")
		testenv.WaitFor(t, wait, "disconnected", func() bool { return tb.Stats().Subscriptions == 0 || tb.Stats().Connections == 0 })
	}
}

// TestPaho runs python3 paho (the Debian package) in both versions: QoS 2
// round trip, retained, a 5.0 request/response with user properties and a
// shared subscription.
func TestPaho(t *testing.T) {
	py := "/usr/bin/python3" // Debian's, where python3-paho-mqtt installs
	if out, err := exec.Command(py, "-c", "import paho.mqtt.client").CombinedOutput(); err != nil {
		testenv.Missing(t, "python3-paho-mqtt not installed: %s", out)
	}
	tb := startBroker(t, Options{}, nil, nil)
	i := strings.LastIndexByte(tb.addr, ':')
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, "testdata/paho_check.py", tb.addr[:i], tb.addr[i+1:])
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("paho check failed: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "ALL OK") {
		t.Fatalf("paho check output:\n%s", out)
	}
	// The properties reached the store too.
	var found bool
	for _, m := range tb.store.messages() {
		if m.Topic == "svc/req" && m.ResponseTopic == "svc/resp/1" && string(m.CorrelationData) == "corr-1" &&
			len(m.UserProperties) == 1 && m.UserProperties[0] == (packet.UserProperty{Key: "who", Value: "paho"}) {
			found = true
		}
	}
	if !found {
		t.Fatalf("request with properties not ingested: %+v", tb.store.messages())
	}
}

// TestMosquittoV5Properties: the MQTT 5 properties mosquitto_pub and
// mosquitto_sub set with -D and -x, and the broker's CONNACK limits they
// obey: Message Expiry Interval and Session Expiry Interval 1 s (both on the
// broker's test clock), the subscriber's Receive Maximum (never more
// unacknowledged than it) and Maximum Packet Size, and the broker's own
// Receive Maximum and Maximum Packet Size, which mosquitto_pub keeps to.
func TestMosquittoV5Properties(t *testing.T) {
	subTool := testenv.LookTool(t, "mosquitto_sub", "mosquitto-clients")
	pubTool := testenv.LookTool(t, "mosquitto_pub", "mosquitto-clients")
	clock := newTestClock()
	// A commit takes 20 ms, so that a publisher's window fills.
	st := newMemStore(t).withLatency(20 * time.Millisecond)
	tb := startBroker(t, Options{now: clock.now, afterFunc: clock.afterFunc, ReceiveMaximum: 2, MaxPacketSize: 1000}, st, nil)
	base := append([]string{"-V", "mqttv5"}, hostPort(tb.addr)...)
	t.Run("message-expiry-interval", func(t *testing.T) {
		keeper := append(base, "-i", "exp", "-c", "-x", "600", "-t", "cli/exp", "-q", "1")
		_, out, done := mosqSub(t, subTool, append(keeper, "-E")...)
		waitExit(t, done, out)
		tb.waitOffline(t, "exp")
		mosqPub(t, pubTool, append(base, "-t", "cli/exp", "-q", "1", "-D", "publish", "message-expiry-interval", "1", "-m", "short")...)
		mosqPub(t, pubTool, append(base, "-t", "cli/exp", "-q", "1", "-D", "publish", "message-expiry-interval", "600", "-m", "long")...)
		if m := st.messages(); len(m) < 2 || m[len(m)-2].Expiry != time.Second || m[len(m)-1].Expiry != 600*time.Second {
			t.Fatalf("stored expiry intervals not 1 s and 600 s: %+v", m)
		}
		dropped := tb.Stats().DroppedExpired
		clock.advance(time.Second)
		_, out, done = mosqSub(t, subTool, append(keeper, "-C", "1", "-F", "%E %p")...)
		expectPrinted(t, done, out, "599 long\n")
		if n := tb.Stats().DroppedExpired - dropped; n != 1 {
			t.Fatalf("%d dropped as expired, want 1", n)
		}
	})

	t.Run("session-expiry-interval", func(t *testing.T) {
		_, out, done := mosqSub(t, subTool, append(base, "-i", "brief", "-c", "-x", "1", "-t", "cli/se", "-q", "1", "-E")...)
		waitExit(t, done, out)
		stored := func(s *session) bool {
			return s != nil && s.conn == nil && s.expiry == 1 && len(st.keys(sessionKey("brief"))) == 1
		}
		tb.waitSession(t, "brief", "offline, stored, with expiry 1 s", stored)
		// The session lasts its second on the test clock, to the
		// nanosecond, however long the machine takes.
		clock.advance(time.Second - time.Nanosecond)
		tb.settle()
		tb.mu.Lock()
		kept := stored(tb.sessions["brief"])
		tb.mu.Unlock()
		if !kept {
			t.Fatal("session ended 1 ns before its expiry interval")
		}
		clock.advance(time.Nanosecond)
		tb.waitSession(t, "brief", "expired and its record deleted", func(s *session) bool {
			return s == nil && len(st.keys(sessionKey("brief"))) == 0
		})
		mosqPub(t, pubTool, append(base, "-t", "cli/se", "-q", "1", "-m", "too late")...)
		if n := tb.Stats().Queued; n != 0 {
			t.Fatalf("%d messages queued for an expired session", n)
		}
	})

	t.Run("receive-maximum", func(t *testing.T) {
		// The subscriber's: the broker keeps to one unacknowledged message
		// (MQTT-3.3.4-9). Six messages wait for the offline session
		// (-c -x 600), so all six are ready when mosquitto_sub comes back
		// with Receive Maximum 1 and a broker that ignored the window would
		// send them at once; the session outlives it, so the most messages
		// it had in flight at once can be read afterwards.
		keeper := append(base, "-i", "rm", "-c", "-x", "600", "-t", "cli/rm", "-q", "1")
		_, out, done := mosqSub(t, subTool, append(keeper, "-E")...)
		waitExit(t, done, out)
		tb.waitOffline(t, "rm")
		// The broker's, 2: mosquitto_pub keeps six lines to two in flight
		// while each commit takes 20 ms; a third would be DISCONNECT 0x93.
		malformed := tb.Stats().Malformed
		if out, err := runTool(pubTool, "1\n2\n3\n4\n5\n6\n", append(base, "-t", "cli/rm", "-q", "1", "-l")...); err != nil {
			t.Fatalf("mosquitto_pub -l: %v\n%s", err, out)
		}
		if n := tb.Stats().Malformed - malformed; n != 0 {
			t.Fatalf("%d connections closed as malformed", n)
		}
		tb.waitSession(t, "rm", "holding the six messages", func(s *session) bool { return s != nil && len(s.queue) == 6 })
		_, out, done = mosqSub(t, subTool, append(keeper, "-C", "6", "-D", "connect", "receive-maximum", "1")...)
		expectPrinted(t, done, out, "1\n2\n3\n4\n5\n6\n")
		tb.waitOffline(t, "rm")
		tb.mu.Lock()
		peak := tb.sessions["rm"].peakInflight
		tb.mu.Unlock()
		if peak != 1 {
			t.Fatalf("at most %d messages were unacknowledged at once, want 1 (the Receive Maximum)", peak)
		}
	})

	t.Run("maximum-packet-size", func(t *testing.T) {
		_, out, done := mosqSub(t, subTool, append(base, "-i", "mps", "-t", "cli/mps", "-q", "1", "-C", "1", "-D", "connect", "maximum-packet-size", "100")...)
		tb.waitSession(t, "mps", "subscribed", func(s *session) bool { return s != nil && s.conn != nil && len(s.subs) == 1 })
		large := tb.Stats().DroppedTooLarge
		mosqPub(t, pubTool, append(base, "-t", "cli/mps", "-q", "1", "-m", strings.Repeat("x", 200))...)
		mosqPub(t, pubTool, append(base, "-t", "cli/mps", "-q", "1", "-m", "fits")...)
		expectPrinted(t, done, out, "fits\n")
		if n := tb.Stats().DroppedTooLarge - large; n != 1 {
			t.Fatalf("%d dropped as too large, want 1", n)
		}
		// The broker's 1000 bytes: mosquitto_pub does not send a larger
		// PUBLISH at all (it says nothing and exits 0, as it does against
		// mosquitto; -d shows what it sent).
		stored, malformed := len(st.messages()), tb.Stats().Malformed
		out2, err := runTool(pubTool, "", append(base, "-d", "-t", "cli/mps", "-q", "1", "-m", strings.Repeat("x", 1000))...)
		if err != nil || !strings.Contains(out2, "received CONNACK (0)") || strings.Contains(out2, "sending PUBLISH") {
			t.Fatalf("mosquitto_pub over the broker's Maximum Packet Size: %v\n%s", err, out2)
		}
		if len(st.messages()) != stored || tb.Stats().Malformed != malformed {
			t.Fatal("the oversize PUBLISH reached the broker")
		}
	})
}
