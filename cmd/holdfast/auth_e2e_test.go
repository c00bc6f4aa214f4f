package main

import (
	"os"
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
	dir := t.TempDir()
	up := testenv.StartMosquitto(t, testenv.MosquittoOptions{Users: map[string]string{"gateway": "s3cret pass", "reader": "r"}})
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
