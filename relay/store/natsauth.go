package store

import (
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/relaydev/relay/config"
)

// natsSecurity turns nats.credentials, nkey_seed_file, user/password,
// token and tls into connect options. Secrets go only to the server.
func natsSecurity(c config.NATS) ([]nats.Option, error) {
	var opts []nats.Option
	switch {
	case c.Credentials != "":
		opts = append(opts, nats.UserCredentials(c.Credentials))
	case c.NKeySeedFile != "":
		opt, err := nats.NkeyOptionFromSeed(c.NKeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("nats.nkey_seed_file %s: %w", c.NKeySeedFile, err)
		}
		opts = append(opts, opt)
	case c.User != "":
		opts = append(opts, nats.UserInfo(c.User, c.Password.Value()))
	case c.Token != "":
		opts = append(opts, nats.Token(c.Token.Value()))
	}
	if c.TLS.CAFile != "" {
		opts = append(opts, nats.RootCAs(c.TLS.CAFile))
	}
	if c.TLS.CertFile != "" {
		opts = append(opts, nats.ClientCert(c.TLS.CertFile, c.TLS.KeyFile))
	}
	if c.TLS.Enabled() {
		opts = append(opts, nats.Secure())
	}
	return opts, nil
}

// connectHint says which settings to check when connecting failed.
func connectHint(err error) string {
	msg := err.Error()
	switch {
	case errors.Is(err, nats.ErrAuthorization), errors.Is(err, nats.ErrAuthExpired), errors.Is(err, nats.ErrAuthRevoked),
		strings.Contains(strings.ToLower(msg), "authorization violation"):
		return " (check nats.user and nats.password, nats.token, nats.credentials or nats.nkey_seed_file)"
	case strings.Contains(msg, "x509:") || strings.Contains(msg, "tls error") || strings.Contains(msg, "tls: "):
		return " (check nats.tls: ca_file must hold the CA of the server's certificate; cert_file and key_file are the client certificate it may ask for)"
	}
	return ""
}
