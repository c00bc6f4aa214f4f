package testenv

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// ClientCommonName is the subject common name of the client certificate
// GenerateCerts issues.
const ClientCommonName = "holdfast-test-client"

// Certs are PEM files of a throwaway PKI in a test's temporary directory: a
// CA, a server certificate for 127.0.0.1, ::1 and localhost, and a client
// certificate (common name ClientCommonName), all signed by the CA. Keys are
// unencrypted ECDSA P-256, which mosquitto and Go both accept. The directory
// and files are readable by every user, because mosquitto started as root
// reads them after dropping to its own user; these keys protect nothing.
type Certs struct {
	Dir            string
	CAFile         string
	ServerCertFile string
	ServerKeyFile  string
	ClientCertFile string
	ClientKeyFile  string

	caCert *x509.Certificate
	caKey  crypto.Signer
}

// GenerateCerts creates a fresh CA with a server and a client certificate
// in a new temporary directory. Two calls give two unrelated CAs, which is
// how a test makes a certificate that must not verify.
func GenerateCerts(t testing.TB) *Certs {
	t.Helper()
	dir, err := os.MkdirTemp("", "holdfast-certs-")
	if err != nil {
		t.Fatalf("testenv: certificate directory: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("testenv: certificate directory: %v", err)
	}
	c := &Certs{Dir: dir}
	caKey := newKey(t)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: "holdfast test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatalf("testenv: create ca certificate: %v", err)
	}
	if c.caCert, err = x509.ParseCertificate(der); err != nil {
		t.Fatalf("testenv: parse ca certificate: %v", err)
	}
	c.caKey = caKey
	c.CAFile = filepath.Join(c.Dir, "ca.pem")
	writePEM(t, c.CAFile, "CERTIFICATE", der)

	c.ServerCertFile, c.ServerKeyFile = c.issue(t, "server", &x509.Certificate{
		Subject:     pkix.Name{CommonName: "localhost"},
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	c.ClientCertFile, c.ClientKeyFile = c.IssueClient(t, ClientCommonName)
	return c
}

// IssueClient issues another client certificate signed by the CA, with the
// given common name, and returns its certificate and key files.
func (c *Certs) IssueClient(t testing.TB, commonName string) (certFile, keyFile string) {
	t.Helper()
	return c.issue(t, "client-"+commonName, &x509.Certificate{
		Subject:     pkix.Name{CommonName: commonName},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
}

func (c *Certs) issue(t testing.TB, name string, tmpl *x509.Certificate) (certFile, keyFile string) {
	t.Helper()
	key := newKey(t)
	now := time.Now()
	tmpl.SerialNumber = serial(t)
	tmpl.NotBefore = now.Add(-time.Hour)
	tmpl.NotAfter = now.Add(24 * time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.caCert, key.Public(), c.caKey)
	if err != nil {
		t.Fatalf("testenv: create %s certificate: %v", name, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatalf("testenv: marshal %s key: %v", name, err)
	}
	certFile = filepath.Join(c.Dir, name+".pem")
	keyFile = filepath.Join(c.Dir, name+"-key.pem")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "PRIVATE KEY", keyDER)
	return certFile, keyFile
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("testenv: generate key: %v", err)
	}
	return k
}

func serial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		t.Fatalf("testenv: serial number: %v", err)
	}
	return n
}

func writePEM(t testing.TB, file, typ string, der []byte) {
	t.Helper()
	data := pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatalf("testenv: write %s: %v", file, err)
	}
}
