package relay

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"sync/atomic"

	"github.com/relaydev/relay/config"
)

// serverTLS serves an API over TLS with settings that a reload swaps: each
// handshake takes the certificate and client CAs current at that moment,
// and connections already open keep theirs.
type serverTLS struct {
	cur atomic.Pointer[tls.Config]
}

// newServerTLS loads an API's certificate (and client CAs); nil when the
// API is plain HTTP.
func newServerTLS(c config.TLS) (*serverTLS, error) {
	if !c.Enabled() {
		return nil, nil
	}
	s := &serverTLS{}
	return s, s.load(c)
}

// load reads the files and, if all is well, makes them the ones served.
func (s *serverTLS) load(c config.TLS) error {
	tc, err := loadTLS(c)
	if err != nil {
		return err
	}
	s.cur.Store(tc)
	return nil
}

// swap serves tc from the next handshake on; nil changes nothing.
func (s *serverTLS) swap(tc *tls.Config) {
	if s != nil && tc != nil {
		s.cur.Store(tc)
	}
}

// loadTLS reads an API's certificate, key and client CAs.
func loadTLS(c config.TLS) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("load certificate %s: %w", c.CertFile, err)
	}
	tc := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{"h2", "http/1.1"},
	}
	if c.ClientCAFile != "" {
		pool, err := certPool(c.ClientCAFile)
		if err != nil {
			return nil, err
		}
		tc.ClientCAs, tc.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return tc, nil
}

// listener wraps ln in TLS, or returns it as is for plain HTTP.
func (s *serverTLS) listener(ln net.Listener) net.Listener {
	if s == nil {
		return ln
	}
	return tls.NewListener(ln, &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2", "http/1.1"},
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return s.cur.Load(), nil
		},
	})
}

// certPool reads a file of PEM certificates.
func certPool(file string) (*x509.CertPool, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("CA file %s holds no PEM certificate", file)
	}
	return pool, nil
}
