package faultproxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// echoServer answers every line with the same line.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String()
}

func start(t *testing.T) *Proxy {
	t.Helper()
	p, err := Start(echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// dial connects to p; the connection is closed when the test ends.
func dial(t *testing.T, p *Proxy) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, bufio.NewReader(c)
}

func roundTrip(c net.Conn, r *bufio.Reader, msg string, timeout time.Duration) (string, error) {
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(c, msg+"\n"); err != nil {
		return "", err
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	return line[:len(line)-1], nil
}

func TestForwardAndDelay(t *testing.T) {
	p := start(t)
	c, r := dial(t, p)
	if got, err := roundTrip(c, r, "hello", 5*time.Second); err != nil || got != "hello" {
		t.Fatalf("round trip = %q, %v", got, err)
	}
	p.SetDelay(50 * time.Millisecond)
	start := time.Now()
	if got, err := roundTrip(c, r, "slow", 5*time.Second); err != nil || got != "slow" {
		t.Fatalf("delayed round trip = %q, %v", got, err)
	}
	// Two directions, each delayed: the round trip cannot be faster than both delays.
	if el := time.Since(start); el < 100*time.Millisecond {
		t.Fatalf("round trip took %v with 50ms delay each way", el)
	}
}

func TestBlackholeKeepsSocketOpenButDropsData(t *testing.T) {
	p := start(t)
	c, r := dial(t, p)
	if _, err := roundTrip(c, r, "before", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	p.Blackhole(true)
	_, err := roundTrip(c, r, "lost", 300*time.Millisecond)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("blackholed round trip: want deadline exceeded, got %v", err)
	}
	if p.Open() != 1 {
		t.Fatalf("open connections = %d, want 1", p.Open())
	}
	p.Blackhole(false)
	if got, err := roundTrip(c, r, "after", 5*time.Second); err != nil || got != "after" {
		t.Fatalf("after blackhole = %q, %v", got, err)
	}
}

func TestCutAndReset(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault func(*Proxy)
		check func(error) bool
	}{
		{"cut", (*Proxy).Cut, func(err error) bool { return errors.Is(err, io.EOF) }},
		{"reset", (*Proxy).Reset, func(err error) bool { return errors.Is(err, syscall.ECONNRESET) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := start(t)
			c, r := dial(t, p)
			if _, err := roundTrip(c, r, "x", 5*time.Second); err != nil {
				t.Fatal(err)
			}
			tc.fault(p)
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err := r.ReadByte()
			if !tc.check(err) {
				t.Fatalf("read after %s: %v", tc.name, err)
			}
		})
	}
}

func TestRefuse(t *testing.T) {
	p := start(t)
	p.Refuse(true)
	c, _ := dial(t, p)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("read from refused connection succeeded")
	}
	p.Refuse(false)
	c2, r2 := dial(t, p)
	if got, err := roundTrip(c2, r2, "ok", 5*time.Second); err != nil || got != "ok" {
		t.Fatalf("after refuse = %q, %v", got, err)
	}
	if p.Accepted() != 2 {
		t.Fatalf("accepted = %d, want 2", p.Accepted())
	}
}

// TestLifetime: each connection accepted while a lifetime is set ends by
// itself, with a close or a reset as the lifetime function says; one
// accepted after it is removed lives on.
func TestLifetime(t *testing.T) {
	p := start(t)
	const life = 300 * time.Millisecond
	n := 0
	p.SetLifetime(func() (time.Duration, bool) {
		n++
		return life, n%2 == 0
	})
	for i, check := range []func(error) bool{
		func(err error) bool { return errors.Is(err, io.EOF) },
		func(err error) bool { return errors.Is(err, syscall.ECONNRESET) },
	} {
		dialed := time.Now()
		c, r := dial(t, p)
		if got, err := roundTrip(c, r, "alive", 5*time.Second); err != nil || got != "alive" {
			t.Fatalf("connection %d: round trip = %q, %v", i+1, got, err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := r.ReadByte(); !check(err) {
			t.Fatalf("connection %d: read at the end of its lifetime: %v", i+1, err)
		}
		if el := time.Since(dialed); el < life {
			t.Fatalf("connection %d ended after %v, before its lifetime of %v", i+1, el, life)
		}
	}
	p.SetLifetime(nil)
	c, r := dial(t, p)
	if _, err := roundTrip(c, r, "x", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(2 * life))
	if _, err := r.ReadByte(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connection accepted without a lifetime: read %v, want it still open", err)
	}
	if got, err := roundTrip(c, r, "still", 5*time.Second); err != nil || got != "still" {
		t.Fatalf("round trip = %q, %v", got, err)
	}
}
