package transport

import (
	"context"
	"io"
	"net"
	"testing"

	"holdfast/internal/testenv"
)

// BenchmarkStream measures one-way throughput through each transport: the
// client writes 4 KiB chunks (one WebSocket message each), the server
// reads them into a 32 KiB buffer.
func BenchmarkStream(b *testing.B) {
	c := testenv.GenerateCerts(b)
	for _, typ := range types {
		b.Run(typ, func(b *testing.B) {
			client, server := benchPair(b, c, typ)
			chunk := make([]byte, 4096)
			done := make(chan error, 1)
			total := int64(b.N) * int64(len(chunk))
			go func() {
				_, err := io.CopyBuffer(io.Discard, io.LimitReader(server, total), make([]byte, 32<<10))
				done <- err
			}()
			b.SetBytes(int64(len(chunk)))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := client.Write(chunk); err != nil {
					b.Fatal(err)
				}
			}
			if err := <-done; err != nil {
				b.Fatal(err)
			}
		})
	}
}

// BenchmarkDial measures connection set-up on loopback: TCP connect, TLS
// handshake (ECDSA P-256, TLS 1.3) and WebSocket upgrade, up to the first
// byte echoed.
func BenchmarkDial(b *testing.B) {
	c := testenv.GenerateCerts(b)
	for _, typ := range types {
		b.Run(typ, func(b *testing.B) {
			conf, err := ServerTLS(ServerTLSOptions{CertFile: c.ServerCertFile, KeyFile: c.ServerKeyFile})
			if err != nil {
				b.Fatal(err)
			}
			ln, err := Listen(ListenOptions{Type: typ, Address: "127.0.0.1:0", TLS: conf})
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			go func() {
				for {
					sc, err := ln.Accept()
					if err != nil {
						return
					}
					go func() { io.Copy(sc, sc); sc.Close() }()
				}
			}()
			ct, err := ClientTLS(ClientTLSOptions{CAFile: c.CAFile})
			if err != nil {
				b.Fatal(err)
			}
			url := schemeOf[typ] + "://" + ln.Addr().String()
			one := make([]byte, 1)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				conn, err := Dial(context.Background(), url, DialOptions{TLS: ct})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := conn.Write(one); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(conn, one); err != nil {
					b.Fatal(err)
				}
				conn.Close()
			}
		})
	}
}

func benchPair(b *testing.B, c *testenv.Certs, typ string) (client, server net.Conn) {
	b.Helper()
	conf, err := ServerTLS(ServerTLSOptions{CertFile: c.ServerCertFile, KeyFile: c.ServerKeyFile})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := Listen(ListenOptions{Type: typ, Address: "127.0.0.1:0", TLS: conf})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	ct, err := ClientTLS(ClientTLSOptions{CAFile: c.CAFile})
	if err != nil {
		b.Fatal(err)
	}
	accepted := make(chan net.Conn, 1)
	go func() {
		if sc, err := ln.Accept(); err == nil && Handshake(context.Background(), sc) == nil {
			accepted <- sc
		}
	}()
	client, err = Dial(context.Background(), schemeOf[typ]+"://"+ln.Addr().String(), DialOptions{TLS: ct})
	if err != nil {
		b.Fatal(err)
	}
	server = <-accepted
	b.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}
