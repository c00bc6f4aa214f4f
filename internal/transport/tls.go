package transport

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
)

// ClientTLSOptions are the inputs of a client TLS configuration, as they
// appear in the upstream section of the config file.
type ClientTLSOptions struct {
	// CAFile is a PEM file of the CA certificates that may sign the server's
	// certificate. Empty means the system roots.
	CAFile string
	// CertFile and KeyFile are the PEM client certificate and its key, for
	// brokers that require mutual TLS (AWS IoT Core does). Both or neither.
	CertFile, KeyFile string
	// ServerName is the name sent in SNI and checked against the server's
	// certificate. Empty means the host of the URL dialled.
	ServerName string
	// ALPN lists the application protocols offered (AWS IoT Core on port 443
	// wants "x-amzn-mqtt-ca"). Empty offers none.
	ALPN []string
	// InsecureSkipVerify accepts any server certificate. For tests only: it
	// makes the connection open to interception.
	InsecureSkipVerify bool
}

// ClientTLS builds the client configuration described by o, with TLS 1.2 as
// the minimum version. Errors name the file at fault.
func ClientTLS(o ClientTLSOptions) (*tls.Config, error) {
	c := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         o.ServerName,
		NextProtos:         append([]string(nil), o.ALPN...),
		InsecureSkipVerify: o.InsecureSkipVerify,
	}
	if o.CAFile != "" {
		pool, err := loadCertPool(o.CAFile)
		if err != nil {
			return nil, err
		}
		c.RootCAs = pool
	}
	if o.CertFile != "" || o.KeyFile != "" {
		cert, err := loadKeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, err
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// ServerTLSOptions are the inputs of a listener's TLS configuration.
type ServerTLSOptions struct {
	// CertFile and KeyFile are the PEM server certificate (with any
	// intermediates after it) and its key. Required.
	CertFile, KeyFile string
	// ClientCAFile is a PEM file of the CAs that may sign client
	// certificates. When set, a client certificate that is presented must
	// verify against it.
	ClientCAFile string
	// RequireClientCert refuses clients without a valid certificate (mutual
	// TLS). It needs ClientCAFile.
	RequireClientCert bool
}

// ServerTLS builds the listener configuration described by o, with TLS 1.2
// as the minimum version. Errors name the file at fault.
func ServerTLS(o ServerTLSOptions) (*tls.Config, error) {
	if o.CertFile == "" || o.KeyFile == "" {
		return nil, errors.New("transport: server tls: certificate and key files are required")
	}
	cert, err := loadKeyPair(o.CertFile, o.KeyFile)
	if err != nil {
		return nil, err
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	switch {
	case o.ClientCAFile != "":
		pool, err := loadCertPool(o.ClientCAFile)
		if err != nil {
			return nil, err
		}
		c.ClientCAs = pool
		c.ClientAuth = tls.VerifyClientCertIfGiven
		if o.RequireClientCert {
			c.ClientAuth = tls.RequireAndVerifyClientCert
		}
	case o.RequireClientCert:
		return nil, errors.New("transport: server tls: requiring client certificates needs a client ca file")
	}
	return c, nil
}

// loadCertPool reads a PEM file of CA certificates.
func loadCertPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("transport: ca file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("transport: ca file %s: no PEM certificate found", file)
	}
	return pool, nil
}

// loadKeyPair reads a PEM certificate and its key.
func loadKeyPair(certFile, keyFile string) (tls.Certificate, error) {
	switch {
	case certFile == "":
		return tls.Certificate{}, fmt.Errorf("transport: key file %s given without a certificate file", keyFile)
	case keyFile == "":
		return tls.Certificate{}, fmt.Errorf("transport: certificate file %s given without a key file", certFile)
	}
	for _, f := range []string{certFile, keyFile} {
		if _, err := os.Stat(f); err != nil {
			return tls.Certificate{}, fmt.Errorf("transport: %w", err)
		}
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("transport: certificate %s with key %s: %w", certFile, keyFile, err)
	}
	return cert, nil
}

// Handshake runs the TLS handshake of a conn accepted from a tls listener,
// bounded by ctx, and does nothing for other conns (WebSocket conns are
// accepted already handshaken). A broker calls it right after Accept, with
// its CONNECT timeout, to refuse a bad client certificate before reading
// anything and to make TLSState complete; without it the handshake runs on
// the first Read or Write.
func Handshake(ctx context.Context, c net.Conn) error {
	tc, ok := c.(*tls.Conn)
	if !ok {
		return nil
	}
	if err := tc.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("transport: tls handshake with %s: %w", c.RemoteAddr(), err)
	}
	return nil
}

// TLSState returns the TLS connection state of a conn from Dial or from a
// tls or wss listener, and false for a conn without TLS. On a conn accepted
// from a tls listener the state is complete only after Handshake or the
// first Read; before that HandshakeComplete is false and there are no peer
// certificates.
func TLSState(c net.Conn) (*tls.ConnectionState, bool) {
	switch c := c.(type) {
	case *tls.Conn:
		s := c.ConnectionState()
		return &s, true
	case *wsConn:
		if c.tls == nil {
			return nil, false
		}
		s := *c.tls
		return &s, true
	}
	return nil, false
}
