package auth

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// BenchmarkCheck measures one CONNECT's password check for a known user (right
// password) and an unknown one (compared against the dummy hash), at bcrypt's lowest
// cost and at DefaultHashCost.
func BenchmarkCheck(b *testing.B) {
	for _, cost := range []int{4, DefaultHashCost} {
		h, err := HashPassword("secret", cost)
		if err != nil {
			b.Fatal(err)
		}
		p, err := newPasswords([]passwdEntry{{user: "alice", hash: h}})
		if err != nil {
			b.Fatal(err)
		}
		for _, user := range []string{"alice", "unknown"} {
			b.Run(fmt.Sprintf("cost=%d/user=%s", cost, user), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if p.Check(user, "secret") != (user == "alice") {
						b.Fatal("wrong answer")
					}
				}
			})
		}
	}
}

// benchACL is an ACL of 1,000 users with 5 topic rules each and 5 patterns.
func benchACL(b *testing.B) *ACL {
	var sb strings.Builder
	sb.WriteString("topic read public/#\n")
	for i := range 1000 {
		u := "user" + strconv.Itoa(i)
		fmt.Fprintf(&sb, "user %s\ntopic readwrite %s/#\ntopic deny %s/secret/#\ntopic read sensors/+/temp\ntopic read $SYS/broker/#\ntopic write shared/%s\n", u, u, u, u)
	}
	sb.WriteString("pattern write devices/%c/up\npattern read devices/%c/down/#\npattern readwrite home/%u/%c/#\npattern deny home/%u/locked/#\npattern read fleet/%u\n")
	a, err := parseACL("bench", []byte(sb.String()))
	if err != nil {
		b.Fatal(err)
	}
	return a
}

// BenchmarkACL measures the three questions the broker asks, on benchACL.
func BenchmarkACL(b *testing.B) {
	a := benchACL(b)
	b.Run("CanPublish", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if !a.CanPublish("user500", "gw-17", "devices/gw-17/up") {
				b.Fatal("refused")
			}
		}
	})
	b.Run("CanReceive", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if !a.CanReceive("user500", "gw-17", "home/user500/gw-17/lamp/state") {
				b.Fatal("refused")
			}
		}
	})
	b.Run("CanSubscribe", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if !a.CanSubscribe("user500", "gw-17", "sensors/+/temp") {
				b.Fatal("refused")
			}
		}
	})
}
