package localbus

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"holdfast/internal/auth"
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
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, tool, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", tool, args, err, out)
	}
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

// TestMosquittoClients runs Debian's mosquitto_pub and mosquitto_sub against
// the broker in both protocol versions: QoS 0/1/2 both ways, wildcards,
// retained messages, a persistent session that collects messages while the
// subscriber is away, and a will.
func TestMosquittoClients(t *testing.T) {
	subTool := testenv.LookTool(t, "mosquitto_sub", "mosquitto-clients")
	pubTool := testenv.LookTool(t, "mosquitto_pub", "mosquitto-clients")
	for _, v := range []string{"mqttv311", "mqttv5"} {
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
			waitExit(t, done, out)
			want := "cli/0/x 0 0 m0\ncli/1/x 1 0 m1\ncli/2/x 2 0 m2\n"
			if got := out.String(); got != want {
				t.Fatalf("mosquitto_sub printed\n%s\nwant\n%s", got, want)
			}

			// Retained: published first, received with the retain flag.
			mosqPub(t, pubTool, append(base, "-t", "cli/ret", "-q", "1", "-r", "-m", "kept")...)
			_, out, done = mosqSub(t, subTool, append(base, "-t", "cli/ret", "-q", "1", "-C", "1", "-F", "%t %r %p")...)
			waitExit(t, done, out)
			if got := out.String(); got != "cli/ret 1 kept\n" {
				t.Fatalf("retained: %q", got)
			}
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
			waitExit(t, done, out)
			if got := out.String(); got != "away0\naway1\naway2\n" {
				t.Fatalf("persistent session delivered %q", got)
			}

			// Will: a subscriber with a will is killed; the will arrives.
			_, wout, wdone := mosqSub(t, subTool, append(base, "-t", "cli/will", "-q", "1", "-C", "1")...)
			testenv.WaitFor(t, wait, "will watcher subscribed", func() bool { return subs() >= 2 })
			victim, _, vdone := mosqSub(t, subTool, append(base, "-i", "victim", "-t", "nothing", "--will-topic", "cli/will", "--will-payload", "died", "--will-qos", "1")...)
			testenv.WaitFor(t, wait, "victim connected", func() bool { return subs() >= 3 })
			victim.Process.Kill()
			<-vdone
			vdone <- nil
			waitExit(t, wdone, wout)
			if got := wout.String(); got != "died\n" {
				t.Fatalf("will: %q", got)
			}
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
	dir := t.TempDir()
	hash, err := auth.HashPassword("pw", 4)
	if err != nil {
		t.Fatal(err)
	}
	if err := auth.CreatePasswordFile(filepath.Join(dir, "passwd"), "dev", hash); err != nil {
		t.Fatal(err)
	}
	pw, err := auth.LoadPasswords(filepath.Join(dir, "passwd"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "acl"), "user dev\ntopic readwrite dev/#\n")
	acl, err := auth.LoadACL(filepath.Join(dir, "acl"))
	if err != nil {
		t.Fatal(err)
	}
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
		waitExit(t, sdone, sout)
		if got := sout.String(); got != "dev/x allowed\n" {
			t.Fatalf("%s: got %q", v, got)
		}
		testenv.WaitFor(t, wait, "disconnected", func() bool { return tb.Stats().Subscriptions == 0 || tb.Stats().Connections == 0 })
	}
}

// TestPaho runs python3 paho (the Debian package) in both versions: QoS 2
// round trip, retained, a 5.0 request/response with user properties and a
// shared subscription.
func TestPaho(t *testing.T) {
	py := "/usr/bin/python3" // Debian's, where python3-paho-mqtt installs
	if out, err := exec.Command(py, "-c", "import paho.mqtt.client").CombinedOutput(); err != nil {
		t.Skipf("python3-paho-mqtt not installed: %s", out)
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
