package config

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"holdfast/internal/auth"
	"holdfast/internal/transport"
)

// CheckFiles reads and parses every file the configuration names, as the
// agent will when it starts: password and ACL files (every line), PEM
// certificates, keys (and that each key matches its certificate), CA
// bundles (at least one certificate) and the upstream password file (not
// empty, one line). It returns every problem, each naming its key, so that
// `holdfast config check` and `holdfast run` refuse a configuration before
// anything starts rather than fail once the queue is open. Validate does
// not touch the file system.
func (c *Config) CheckFiles() error {
	v := &validator{c: c}
	fc := fileChecker{v: v}
	for i, l := range c.Listeners {
		if l.Type != ListenerTLS && l.Type != ListenerWSS {
			continue
		}
		p := "listeners[" + strconv.Itoa(i) + "].tls."
		fc.keyPair(p+"cert_file", l.TLS.CertFile, p+"key_file", l.TLS.KeyFile)
		fc.caBundle(p+"client_ca_file", l.TLS.ClientCAFile)
	}
	if f := c.Auth.PasswordFile; fc.readable("auth.password_file", f) {
		if _, err := auth.LoadPasswords(f); err != nil {
			v.bad("auth.password_file", "%v", err)
		}
	}
	if f := c.Auth.ACLFile; fc.readable("auth.acl_file", f) {
		if _, err := auth.LoadACL(f); err != nil {
			v.bad("auth.acl_file", "%v", err)
		}
	}
	if f := c.Upstream.PasswordFile; fc.readable("upstream.password_file", f) {
		if _, err := ReadPasswordFile(f); err != nil {
			v.bad("upstream.password_file", "%v", err)
		}
	}
	if f := c.Log.File; f != "" {
		checkLogFile(v, f)
	}
	if c.Upstream.UsesTLS() {
		t := c.Upstream.TLS
		fc.caBundle("upstream.tls.ca_file", t.CAFile)
		fc.keyPair("upstream.tls.cert_file", t.CertFile, "upstream.tls.key_file", t.KeyFile)
	}
	return joinErrors(v.errs)
}

// checkLogFile reports what would stop holdfast from appending to file,
// without creating it: its directory must exist, and the file, if it is
// there, be a regular file open for appending.
func checkLogFile(v *validator, file string) {
	if fi, err := os.Stat(filepath.Dir(file)); err != nil || !fi.IsDir() {
		v.bad("log.file", "directory of %s does not exist", file)
		return
	}
	fi, err := os.Stat(file)
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	if err == nil && !fi.Mode().IsRegular() {
		v.bad("log.file", "%s is not a regular file", file)
		return
	}
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		v.bad("log.file", "%v", err)
		return
	}
	f.Close()
}

// ReadPasswordFile returns the password held in file: its one line, a
// trailing newline removed. An empty file, or one with more than one line,
// is an error.
func ReadPasswordFile(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	pw := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	switch {
	case pw == "":
		return "", errors.New(file + ": empty: the file holds no password")
	case strings.ContainsAny(pw, "\r\n"):
		return "", errors.New(file + ": more than one line: the password is the file's one line")
	}
	return pw, nil
}

// UsesTLS reports whether the upstream URL's scheme is mqtts or wss: the
// ones that connect with upstream.tls.
func (u *Upstream) UsesTLS() bool {
	return strings.HasPrefix(u.URL, "mqtts://") || strings.HasPrefix(u.URL, "wss://")
}

type fileChecker struct{ v *validator }

// readable reports whether name is set and can be opened, reporting the
// problem at path when it cannot.
func (fc fileChecker) readable(path, name string) bool {
	if name == "" {
		return false
	}
	f, err := os.Open(name)
	if err != nil {
		fc.v.bad(path, "%v", err)
		return false
	}
	f.Close()
	return true
}

// caBundle checks a PEM bundle of CA certificates.
func (fc fileChecker) caBundle(path, name string) {
	if !fc.readable(path, name) {
		return
	}
	if _, err := transport.ClientTLS(transport.ClientTLSOptions{CAFile: name}); err != nil {
		fc.v.bad(path, "%s", strings.TrimPrefix(err.Error(), "transport: "))
	}
}

// keyPair checks a PEM certificate and its key: the certificate file holds
// a certificate, and the key file a key that matches it.
func (fc fileChecker) keyPair(certPath, cert, keyPath, key string) {
	okCert, okKey := fc.readable(certPath, cert), fc.readable(keyPath, key)
	if !okCert || !okKey {
		return
	}
	if err := hasCertificate(cert); err != nil {
		fc.v.bad(certPath, "%v", err)
		return
	}
	if _, err := transport.ClientTLS(transport.ClientTLSOptions{CertFile: cert, KeyFile: key}); err != nil {
		fc.v.bad(keyPath, "%s", strings.TrimPrefix(err.Error(), "transport: "))
	}
}

// hasCertificate checks that file holds at least one PEM certificate and
// that every certificate in it parses.
func hasCertificate(file string) error {
	rest, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	n := 0
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			return errors.New(file + ": certificate " + strconv.Itoa(n+1) + ": " + err.Error())
		}
		n++
	}
	if n == 0 {
		return errors.New(file + ": no PEM certificate found")
	}
	return nil
}
