package config

import (
	"crypto/tls"
	"crypto/x509"
	"os"
)

// validateTLS checks an API's tls: both files given, readable, and a
// certificate with its key; the client CA file, if any, holding PEM
// certificates. A reload runs the same checks, so a bad file there changes
// nothing.
func (p *parser) validateTLS(path string, t TLS) {
	if !t.Enabled() {
		return
	}
	p.checkPair(path, t.CertFile, t.KeyFile, true)
	if t.ClientCAFile != "" {
		p.checkCAFile(path+".client_ca_file", t.ClientCAFile)
	}
}

// checkPair checks a certificate file and its key file; required says
// whether the pair must be there at all.
func (p *parser) checkPair(path, certFile, keyFile string, required bool) {
	switch {
	case certFile == "" && keyFile == "" && !required:
		return
	case certFile == "":
		p.errPath(path+".cert_file", "a cert_file is required with key_file")
		return
	case keyFile == "":
		p.errPath(path+".key_file", "a key_file is required with cert_file")
		return
	}
	certOK := p.checkReadable(path+".cert_file", certFile)
	keyOK := p.checkReadable(path+".key_file", keyFile)
	if !certOK || !keyOK {
		return
	}
	if _, err := tls.LoadX509KeyPair(certFile, keyFile); err != nil {
		// The error names what is wrong (no PEM data, a key of another
		// certificate); it never quotes the key.
		p.errPath(path+".cert_file", "cannot load the certificate with key_file %s: %v", keyFile, err)
	}
}

// checkCAFile wants a readable file of PEM certificates.
func (p *parser) checkCAFile(path, file string) {
	data, ok := p.readFile(path, file)
	if !ok {
		return
	}
	if !x509.NewCertPool().AppendCertsFromPEM(data) {
		p.errPath(path, "%s holds no PEM certificate", file)
	}
}

func (p *parser) checkReadable(path, file string) bool {
	_, ok := p.readFile(path, file)
	return ok
}

func (p *parser) readFile(path, file string) ([]byte, bool) {
	data, err := os.ReadFile(file)
	if err != nil {
		p.errPath(path, "cannot read %s: %v", file, unwrapPath(err))
		return nil, false
	}
	return data, true
}

// unwrapPath drops the file name an *os.PathError repeats.
func unwrapPath(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

// validateNATSSecurity checks the credentials and TLS of an external
// server: at most one way to authenticate, and files that can be read.
func (p *parser) validateNATSSecurity() {
	n := p.cfg.NATS
	var given []string
	if n.Credentials != "" {
		given = append(given, "credentials")
		p.checkReadable("nats.credentials", n.Credentials)
	}
	if n.NKeySeedFile != "" {
		given = append(given, "nkey_seed_file")
		p.checkReadable("nats.nkey_seed_file", n.NKeySeedFile)
	}
	if n.User != "" || n.Password != "" {
		given = append(given, "user/password")
		switch {
		case n.User == "":
			p.errPath("nats.user", "a user is required with password")
		case n.Password == "":
			p.errPath("nats.password", "a password is required with user")
		}
	}
	if n.Token != "" {
		given = append(given, "token")
	}
	if len(given) > 1 {
		p.errPath("nats", "give one way to authenticate, not %d: %v", len(given), given)
	}
	if n.TLS.CAFile != "" {
		p.checkCAFile("nats.tls.ca_file", n.TLS.CAFile)
	}
	p.checkPair("nats.tls", n.TLS.CertFile, n.TLS.KeyFile, false)
	if n.Embedded() && (len(given) > 0 || n.TLS.Enabled()) {
		p.errPath("nats", "credentials and tls are for an external server: set nats.url to it")
	}
}
