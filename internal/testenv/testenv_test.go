package testenv

import (
	"net"
	"testing"
	"time"
)

func TestMosquittoStartRestartStop(t *testing.T) {
	m := StartMosquitto(t, MosquittoOptions{Persistent: true})
	dial := func() error {
		c, err := net.DialTimeout("tcp", m.Addr(), time.Second)
		if err == nil {
			c.Close()
		}
		return err
	}
	if err := dial(); err != nil {
		t.Fatalf("dial running broker: %v", err)
	}
	m.Restart()
	if err := dial(); err != nil {
		t.Fatalf("dial restarted broker: %v", err)
	}
	m.Kill()
	if err := dial(); err == nil {
		t.Fatal("dial succeeded after Kill")
	}
}
