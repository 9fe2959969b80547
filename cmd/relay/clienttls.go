package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"flag"
	"fmt"
	"net/http"
	"os"

	"github.com/relaydev/relay/config"
)

// tlsFlags are a client command's --ca-file, --cert-file and --key-file.
type tlsFlags struct {
	caFile, certFile, keyFile *string
}

func addTLSFlags(flags *flag.FlagSet) tlsFlags {
	return tlsFlags{
		caFile:   flags.String("ca-file", "", "PEM CA certificates to trust for an https:// server (default: the system's, plus the certificate the config serves)"),
		certFile: flags.String("cert-file", "", "PEM client certificate, for a server that asks for one (mutual TLS)"),
		keyFile:  flags.String("key-file", "", "the client certificate's PEM key"),
	}
}

// httpClient returns the client for an https:// server: it trusts the
// system's CAs and --ca-file's, or, without --ca-file, the certificate
// (chain) the config's API serves, so a self-signed one works on the same
// machine; and it presents --cert-file when given.
func (f tlsFlags) httpClient(served config.TLS) (*http.Client, error) {
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	trust, what := *f.caFile, "--ca-file"
	if trust == "" {
		trust, what = served.CertFile, "the config's cert_file"
	}
	if trust != "" {
		if err := addCerts(roots, trust); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots}
	switch {
	case *f.certFile != "" && *f.keyFile != "":
		cert, err := tls.LoadX509KeyPair(*f.certFile, *f.keyFile)
		if err != nil {
			return nil, fmt.Errorf("--cert-file: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	case *f.certFile != "" || *f.keyFile != "":
		return nil, fmt.Errorf("--cert-file and --key-file go together")
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: true}}, nil
}

// addCerts adds every certificate of a PEM file to the pool, a leaf
// included: trusting a self-signed server certificate directly.
func addCerts(pool *x509.CertPool, file string) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	n := 0
	for block, rest := pem.Decode(data); block != nil; block, rest = pem.Decode(rest) {
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
		pool.AddCert(cert)
		n++
	}
	if n == 0 {
		return fmt.Errorf("%s holds no PEM certificate", file)
	}
	return nil
}
