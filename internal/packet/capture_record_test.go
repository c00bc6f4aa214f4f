package packet_test

// This file records testdata/captures: what Debian's mosquitto_pub and
// mosquitto_sub send to a real mosquitto broker and what the broker sends
// back, packet by packet, through a recording proxy. It runs only when
// HOLDFAST_RECORD_CAPTURES=1; capture_test.go checks the files it wrote.

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"holdfast/internal/testenv"
)

// recording is the packets of one client connection in the order the proxy
// forwarded them: "> " lines from client to broker, "< " from broker to
// client, each a whole packet in hex.
type recording struct {
	mu    sync.Mutex
	lines []string
}

func (r *recording) add(dir string, pkt []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, dir+" "+strings.ToUpper(hex.EncodeToString(pkt)))
}

// has reports whether a packet whose first byte has type t went in dir.
func (r *recording) has(dir string, t byte) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, l := range r.lines {
		if strings.HasPrefix(l, dir+" ") {
			b, _ := hex.DecodeString(l[2:4])
			if b[0]>>4 == t {
				return true
			}
		}
	}
	return false
}

// readRaw reads one packet's bytes by its fixed header, without decoding it.
func readRaw(r *bufio.Reader) ([]byte, error) {
	first, err := r.ReadByte()
	if err != nil {
		return nil, err
	}
	pkt := []byte{first}
	n, shift := 0, 0
	for {
		c, err := r.ReadByte()
		if err != nil {
			return nil, err
		}
		pkt = append(pkt, c)
		n |= int(c&0x7F) << shift
		shift += 7
		if c&0x80 == 0 {
			break
		}
		if shift > 21 {
			return nil, fmt.Errorf("remaining length too long")
		}
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, err
	}
	return append(pkt, body...), nil
}

// recordProxy accepts one connection on a free port, connects it to broker
// and records the packets both ways until either side closes.
func recordProxy(t *testing.T, broker string) (port int, rec *recording, done chan struct{}) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rec, done = &recording{}, make(chan struct{})
	go func() {
		defer close(done)
		defer ln.Close()
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		b, err := net.Dial("tcp", broker)
		if err != nil {
			t.Error(err)
			return
		}
		defer b.Close()
		var wg sync.WaitGroup
		pump := func(dir string, from, to net.Conn) {
			defer wg.Done()
			r := bufio.NewReader(from)
			for {
				pkt, err := readRaw(r)
				if err != nil {
					// Closing both ends lets the other pump finish.
					c.Close()
					b.Close()
					return
				}
				rec.add(dir, pkt)
				if _, err := to.Write(pkt); err != nil {
					c.Close()
					b.Close()
					return
				}
			}
		}
		wg.Add(2)
		go pump(">", c, b)
		go pump("<", b, c)
		wg.Wait()
	}()
	return ln.Addr().(*net.TCPAddr).Port, rec, done
}

// captureStep is one client run: its arguments after the tool's name, with
// the port added.
type captureStep struct {
	file string   // file name in testdata/captures, "" for a client that is not recorded
	tool string   // mosquitto_pub, mosquitto_sub or paho (testdata/captures/paho_subscribe.py)
	args []string // without -h and -p
	// background starts the client and goes on once the broker has sent
	// the packet type waitFor to it; the client is waited for at the end.
	background bool
	waitFor    byte
	// raw, when set, is sent by the recorder itself instead of a client,
	// which then reads until the broker closes the connection.
	raw [][]byte
}

// rawConnect is a minimal MQTT 5 CONNECT: clean start, keep alive 60.
func rawConnect(id string) []byte {
	body := append([]byte{0, 4, 'M', 'Q', 'T', 'T', 5, 0x02, 0, 60, 0}, byte(len(id)>>8), byte(len(id)))
	body = append(body, id...)
	return append([]byte{0x10, byte(len(body))}, body...)
}

// rawPublish is an MQTT 5 PUBLISH with the given first byte, packet id (0 for
// none), properties and n bytes of payload.
func rawPublish(first byte, topic string, id uint16, props []byte, n int) []byte {
	body := append([]byte{byte(len(topic) >> 8), byte(len(topic))}, topic...)
	if id != 0 {
		body = append(body, byte(id>>8), byte(id))
	}
	body = append(body, byte(len(props)))
	body = append(body, props...)
	body = append(body, make([]byte, n)...)
	out := []byte{first}
	for l := len(body); ; {
		c := byte(l & 0x7F)
		if l >>= 7; l > 0 {
			c |= 0x80
		}
		out = append(out, c)
		if l == 0 {
			break
		}
	}
	return append(out, body...)
}

type captureScenario struct {
	name   string
	broker string // mosquitto.conf lines for this scenario's broker
	steps  []captureStep
}

func captureScenarios() []captureScenario {
	pub := func(file string, args ...string) captureStep {
		return captureStep{file: file, tool: "mosquitto_pub", args: args}
	}
	subOnce := func(file string, args ...string) captureStep {
		return captureStep{file: file, tool: "mosquitto_sub", args: args}
	}
	sub := func(file string, waitFor byte, args ...string) captureStep {
		return captureStep{file: file, tool: "mosquitto_sub", args: args, background: true, waitFor: waitFor}
	}
	raw := func(file string, pkts ...[]byte) captureStep {
		return captureStep{file: file, raw: pkts}
	}
	const suback, connack, puback = 9, 2, 4
	return []captureScenario{
		{name: "v31", steps: []captureStep{
			pub("v31-pub-qos1", "-V", "mqttv31", "-i", "hf-v31", "-q", "1", "-t", "old/device", "-m", "hello 3.1"),
		}},
		{name: "v311-pub", steps: []captureStep{
			pub("v311-pub-qos0", "-V", "mqttv311", "-i", "hf-pub0", "-t", "test/qos0", "-m", "hello"),
			pub("v311-pub-qos1-retain", "-V", "mqttv311", "-i", "hf-pub1", "-q", "1", "-r", "-t", "test/qos1", "-m", "retained one"),
			pub("v311-pub-qos2", "-V", "mqttv311", "-i", "hf-pub2", "-q", "2", "-t", "test/qos2", "-m", "exactly once"),
			pub("v311-pub-will-auth", "-V", "mqttv311", "-i", "hf-will", "-c", "-k", "30", "-u", "user", "-P", "secret",
				"--will-topic", "dev/hf-will/status", "--will-payload", "offline", "--will-qos", "1", "--will-retain",
				"-q", "1", "-t", "test/auth", "-m", "with credentials"),
			pub("v311-pub-empty", "-V", "mqttv311", "-i", "hf-empty", "-r", "-t", "test/qos1", "-n"),
		}},
		{name: "v311-sub", steps: []captureStep{
			sub("v311-sub-qos2", suback, "-V", "mqttv311", "-i", "hf-sub", "-q", "2", "-t", "sensors/#", "-t", "alarms/+/high", "-C", "2"),
			pub("", "-V", "mqttv311", "-i", "hf-feed1", "-q", "1", "-t", "sensors/t1", "-m", "21.5"),
			pub("", "-V", "mqttv311", "-i", "hf-feed2", "-q", "2", "-t", "alarms/p7/high", "-m", "overpressure"),
		}},
		{name: "v311-unsub", steps: []captureStep{
			// Subscribes, unsubscribes with -U, and exits after a second (-W 1).
			subOnce("v311-sub-unsubscribe", "-V", "mqttv311", "-i", "hf-unsub", "-t", "keep/#", "-U", "keep/#", "-U", "never/subscribed", "-W", "1"),
		}},
		{name: "v5-pub", steps: []captureStep{
			pub("v5-pub-qos0-props", "-V", "mqttv5", "-i", "hf5-pub0", "-t", "test/v5", "-m", `{"t":21.5}`,
				"-D", "publish", "user-property", "site", "line-3",
				"-D", "publish", "user-property", "site", "line-4",
				"-D", "publish", "message-expiry-interval", "120",
				"-D", "publish", "content-type", "application/json",
				"-D", "publish", "payload-format-indicator", "1",
				"-D", "publish", "response-topic", "reply/hf5",
				"-D", "publish", "correlation-data", "req-42"),
			pub("v5-pub-qos1-session", "-V", "mqttv5", "-i", "hf5-pub1", "-q", "1", "-c", "-x", "3600", "-t", "test/v5/qos1", "-m", "session",
				"-D", "connect", "user-property", "fw", "1.2.3",
				"-D", "connect", "receive-maximum", "20",
				"-D", "connect", "maximum-packet-size", "65536",
				"-D", "connect", "topic-alias-maximum", "10",
				"-D", "connect", "request-problem-information", "1"),
			pub("v5-pub-qos2-retain-will-auth", "-V", "mqttv5", "-i", "hf5-pub2", "-q", "2", "-r", "-u", "user", "-P", "secret",
				"--will-topic", "dev/hf5/status", "--will-payload", "gone", "--will-qos", "2",
				"-D", "will", "will-delay-interval", "10",
				"-D", "will", "message-expiry-interval", "300",
				"-D", "will", "user-property", "reason", "power",
				"-t", "test/v5/qos2", "-m", "retained exactly once"),
			pub("v5-pub-topic-alias", "-V", "mqttv5", "-i", "hf5-alias", "-t", "test/v5/alias", "-m", "aliased",
				"-D", "publish", "topic-alias", "1"),
			pub("v5-pub-assigned-id", "-V", "mqttv5", "-t", "test/v5/anon", "-m", "no client id"),
		}},
		{name: "v5-sub", steps: []captureStep{
			sub("v5-sub-qos2", suback, "-V", "mqttv5", "-i", "hf5-sub", "-q", "2", "-t", "sensors/#", "-t", "alarms/+/high", "-C", "2",
				"-D", "subscribe", "user-property", "app", "dashboard",
				"-D", "connect", "session-expiry-interval", "60"),
			pub("", "-V", "mqttv5", "-i", "hf5-feed1", "-q", "1", "-t", "sensors/t1", "-m", "21.5",
				"-D", "publish", "user-property", "unit", "C", "-D", "publish", "message-expiry-interval", "600"),
			pub("", "-V", "mqttv5", "-i", "hf5-feed2", "-q", "2", "-t", "alarms/p7/high", "-m", "overpressure",
				"-D", "publish", "content-type", "text/plain"),
		}},
		// Subscription options and a Subscription Identifier. A retained
		// message is there before the subscriber comes, a retained one
		// arrives while it is subscribed. mosquitto_sub 2.0.11 has flags
		// for Retain As Published and the identifier only; paho sets No
		// Local and Retain Handling as well.
		{name: "v5-sub-options", steps: []captureStep{
			pub("", "-V", "mqttv5", "-i", "hf5-keep", "-q", "1", "-r", "-t", "opts/kept", "-m", "kept"),
			sub("v5-sub-rap-subid", suback, "-V", "mqttv5", "-i", "hf5-opts", "-q", "1", "-t", "opts/#", "-C", "2",
				"--retain-as-published", "-D", "subscribe", "subscription-identifier", "7"),
			pub("", "-V", "mqttv5", "-i", "hf5-feed", "-q", "1", "-r", "-t", "opts/feed", "-m", "feed"),
		}},
		{name: "v5-sub-paho", steps: []captureStep{
			pub("", "-V", "mqttv5", "-i", "hf5-keep", "-q", "1", "-r", "-t", "opts/kept", "-m", "kept"),
			// Goes on once the broker acknowledged the client's own
			// message, so that the other client's comes after it.
			{file: "v5-sub-paho-options", tool: "paho", background: true, waitFor: puback},
			pub("", "-V", "mqttv5", "-i", "hf5-feed", "-q", "1", "-r", "-t", "opts/feed", "-m", "feed"),
		}},
		// Enhanced authentication as far as these clients and this broker
		// go: the CONNECT carries a method and data, mosquitto without an
		// authentication plugin refuses it; no AUTH is ever sent.
		{name: "v5-auth-method", steps: []captureStep{
			pub("v5-connack-bad-auth-method", "-V", "mqttv5", "-i", "hf5-auth", "-t", "x", "-m", "x",
				"-D", "connect", "authentication-method", "SCRAM-SHA-1", "-D", "connect", "authentication-data", "client-first"),
		}},
		{name: "v5-unsub", steps: []captureStep{
			subOnce("v5-sub-unsubscribe", "-V", "mqttv5", "-i", "hf5-unsub", "-t", "keep/#", "-U", "keep/#", "-U", "never/subscribed", "-W", "1",
				"-D", "unsubscribe", "user-property", "why", "done"),
		}},
		{name: "v5-limits",
			broker: "max_keepalive 30\nmax_qos 1\nretain_available false\nmax_topic_alias 5\nmax_packet_size 2000\n",
			steps: []captureStep{
				pub("v5-connack-limits", "-V", "mqttv5", "-i", "hf5-limits", "-k", "60", "-q", "1", "-t", "test/limits", "-m", "x"),
				// Each of these breaks a limit the CONNACK announced, and
				// the broker answers with a DISCONNECT.
				// libmosquitto leaves out the retain flag the broker does
				// not support; it sends a topic alias over the maximum.
				pub("v5-pub-retain-unavailable", "-V", "mqttv5", "-i", "hf5-retain", "-r", "-t", "test/limits", "-m", "x"),
				pub("v5-pub-alias-over-maximum", "-V", "mqttv5", "-i", "hf5-alias9", "-t", "test/limits", "-m", "x",
					"-D", "publish", "topic-alias", "9"),
				// The clients keep to the limits, so these are hand-made
				// to draw the broker's DISCONNECT.
				raw("v5-disconnect-packet-too-large", rawConnect("hf5-big"), rawPublish(0x30, "test/limits", 0, nil, 3000)),
				raw("v5-disconnect-qos-not-supported", rawConnect("hf5-qos2"), rawPublish(0x34, "test/limits", 1, nil, 10)),
				raw("v5-disconnect-topic-alias-invalid", rawConnect("hf5-alias0"), rawPublish(0x30, "test/limits", 0, []byte{0x23, 0, 9}, 10)),
			}},
		{name: "refused",
			broker: "allow_anonymous false\npassword_file {{EMPTY}}\n",
			steps: []captureStep{
				pub("v5-connack-refused", "-V", "mqttv5", "-i", "hf5-refused", "-u", "nobody", "-P", "wrong", "-t", "x", "-m", "x"),
				pub("v311-connack-refused", "-V", "mqttv311", "-i", "hf-refused", "-u", "nobody", "-P", "wrong", "-t", "x", "-m", "x"),
			}},
	}
}

const connackType = 2

// stepVersion is the protocol level a step's client speaks: its -V option;
// the hand-made packets and the paho client are MQTT 5.
func stepVersion(st captureStep) string {
	if st.tool == "paho" {
		return "5"
	}
	for i, a := range st.args {
		if a == "-V" && i+1 < len(st.args) {
			switch st.args[i+1] {
			case "mqttv31":
				return "3"
			case "mqttv311":
				return "4"
			case "mqttv5":
				return "5"
			}
		}
	}
	if st.raw != nil {
		return "5"
	}
	panic("no -V in " + strings.Join(st.args, " "))
}

func toolVersion(t *testing.T, tool string) string {
	out, _ := exec.Command(tool, "--help").CombinedOutput()
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, " version ") {
			return strings.TrimSpace(l)
		}
	}
	t.Fatalf("no version line from %s --help", tool)
	return ""
}

func TestRecordCaptures(t *testing.T) {
	if os.Getenv("HOLDFAST_RECORD_CAPTURES") != "1" {
		t.Skip("records testdata/captures; run with HOLDFAST_RECORD_CAPTURES=1 to re-record")
	}
	pubTool := testenv.LookTool(t, "mosquitto_pub", "mosquitto-clients")
	subTool := testenv.LookTool(t, "mosquitto_sub", "mosquitto-clients")
	brokerTool := testenv.LookTool(t, "mosquitto", "mosquitto")
	brokerOut, _ := exec.Command(brokerTool, "-h").CombinedOutput()
	brokerVersion := strings.TrimSpace(strings.SplitN(string(brokerOut), "\n", 2)[0])
	// Debian's python3, where python3-paho-mqtt installs.
	const python = "/usr/bin/python3"
	pahoOut, err := exec.Command(python, "-c", "import paho.mqtt; print(paho.mqtt.__version__)").CombinedOutput()
	if err != nil {
		t.Fatalf("python3-paho-mqtt: %v: %s", err, pahoOut)
	}
	pahoScript, err := filepath.Abs(filepath.Join("testdata", "captures", "paho_subscribe.py"))
	if err != nil {
		t.Fatal(err)
	}
	versions := map[string]string{"mosquitto_pub": toolVersion(t, pubTool), "mosquitto_sub": toolVersion(t, subTool),
		"paho": "python3-paho-mqtt " + strings.TrimSpace(string(pahoOut)) + " (Debian package, v1 API)"}
	paths := map[string]string{"mosquitto_pub": pubTool, "mosquitto_sub": subTool, "paho": python}
	dir := filepath.Join("testdata", "captures")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}

	for _, sc := range captureScenarios() {
		t.Run(sc.name, func(t *testing.T) {
			// mosquitto started as root reads the password file after
			// dropping privileges: a world-readable directory under /tmp.
			pwdir := testenv.SharedTempDir(t, "holdfast-capture-")
			empty := filepath.Join(pwdir, "passwd")
			if err := os.WriteFile(empty, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			m := testenv.StartMosquitto(t, testenv.MosquittoOptions{Extra: strings.ReplaceAll(sc.broker, "{{EMPTY}}", empty)})
			type running struct {
				cmd  *exec.Cmd
				rec  *recording
				done chan struct{}
				step captureStep
				line string
			}
			var all []running
			for _, st := range sc.steps {
				port, rec, done := recordProxy(t, m.Addr())
				args := append([]string{"-h", "127.0.0.1", "-p", fmt.Sprint(port)}, st.args...)
				if st.raw != nil {
					line := "recorder: hand-made packets (see captureScenarios in capture_record_test.go)"
					c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
					if err != nil {
						t.Fatal(err)
					}
					for _, p := range st.raw {
						if _, err := c.Write(p); err != nil {
							t.Logf("%s: %v", st.file, err)
						}
						if p[0]>>4 == 1 {
							testenv.WaitFor(t, 30*time.Second, "CONNACK", func() bool { return rec.has("<", connackType) })
						}
					}
					c.SetReadDeadline(time.Now().Add(10 * time.Second))
					io.Copy(io.Discard, c)
					c.Close()
					<-done
					all = append(all, running{nil, rec, done, st, line})
					continue
				}
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				t.Cleanup(cancel)
				shown := append([]string{"-h", "127.0.0.1", "-p", "$PORT"}, st.args...)
				line := st.tool + " " + shellJoin(shown)
				if st.tool == "paho" {
					args = append([]string{pahoScript}, args...)
					line = "python3 testdata/captures/paho_subscribe.py " + shellJoin(shown)
				}
				cmd := exec.CommandContext(ctx, paths[st.tool], args...)
				cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				r := running{cmd, rec, done, st, line}
				all = append(all, r)
				if st.background {
					testenv.WaitFor(t, 30*time.Second, "broker answer to "+line, func() bool { return rec.has("<", st.waitFor) })
					continue
				}
				if err := cmd.Wait(); err != nil {
					t.Logf("%s: %v", line, err)
				}
				<-done
			}
			for _, r := range all {
				if r.step.background && r.cmd != nil {
					if err := r.cmd.Wait(); err != nil {
						t.Logf("%s: %v", r.line, err)
					}
					<-r.done
				}
				if r.step.file == "" {
					continue
				}
				var b strings.Builder
				fmt.Fprintf(&b, "# command: %s\n", strings.ReplaceAll(r.line, "\n", " "))
				if r.step.raw == nil {
					fmt.Fprintf(&b, "# client: %s\n", versions[r.step.tool])
				}
				fmt.Fprintf(&b, "# broker: %s (Debian package, Extra config: %q)\n", brokerVersion,
					strings.ReplaceAll(sc.broker, "{{EMPTY}}", "<empty password file>"))
				fmt.Fprintf(&b, "# version: %s\n", stepVersion(r.step))
				fmt.Fprintf(&b, "# one packet per line: \"> \" client to broker, \"< \" broker to client\n")
				for _, l := range r.rec.lines {
					b.WriteString(l + "\n")
				}
				path := filepath.Join(dir, r.step.file+".txt")
				if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
					t.Fatal(err)
				}
				t.Logf("wrote %s (%d packets)", path, len(r.rec.lines))
			}
		})
	}
}

func shellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \"'{}#+$*") {
			q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		} else {
			q[i] = a
		}
	}
	return strings.Join(q, " ")
}
