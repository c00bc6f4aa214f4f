package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"holdfast/internal/packet"
	"holdfast/internal/testclient"
	"holdfast/internal/testenv"
)

// TestUpstreamPasswordFile: holdfast authenticates to an upstream mosquitto
// that refuses anonymous clients with upstream.username and the password
// read from upstream.password_file (its one line; the newline is not part
// of it), and a device's message arrives.
func TestUpstreamPasswordFile(t *testing.T) {
	passwd := testenv.LookTool(t, "mosquitto_passwd", "mosquitto")
	dir := t.TempDir()
	users := filepath.Join(dir, "passwd")
	if out, err := exec.Command(passwd, "-c", "-b", users, "gateway", "s3cret pass").CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_passwd: %v: %s", err, out)
	}
	if out, err := exec.Command(passwd, "-b", users, "reader", "r").CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_passwd: %v: %s", err, out)
	}
	extra := fmt.Sprintf("allow_anonymous false\npassword_file %s\n", users)
	if os.Geteuid() == 0 {
		extra += "user root\n" // mosquitto reads the file as its own user otherwise
	}
	up := testenv.StartMosquitto(t, testenv.MosquittoOptions{Extra: extra})
	sub, err := testclient.Dial(up.Addr(), testclient.Options{ClientID: "reader", CleanStart: true, Username: "reader", Password: "r"})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if codes, err := sub.Subscribe(packet.Subscription{Filter: "auth/#", QoS: 1}); err != nil || codes[0].IsError() {
		t.Fatalf("subscribe: %v %v", codes, err)
	}

	pwFile := filepath.Join(dir, "upstream-password")
	if err := os.WriteFile(pwFile, []byte("s3cret pass\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	g := newGateway(t, up.Addr(), "")
	appendUpstream(t, g, "  username: gateway\n  password_file: "+pwFile+"\n")
	g.start()
	dev, err := testclient.Dial(g.listen, testclient.Options{ClientID: "authdev", CleanStart: true})
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	if rc, err := dev.Publish(&packet.Publish{Topic: "auth/x", Payload: []byte("hello"), QoS: 1}); err != nil || rc != packet.Success {
		t.Fatalf("device publish: %v %v", rc, err)
	}
	expectUpstream(t, sub, "auth/x", "hello")
}
