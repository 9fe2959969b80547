package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/relaydev/relay/internal/testpki"
)

func TestTLSAndNATSSecurity(t *testing.T) {
	ca := testpki.NewCA(t, "relay-test")
	server := ca.Server(t, "server")
	other := ca.Server(t, "other")
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	head := "ingest: {tokens: [t]}\nadmin: {token: a}\n"
	tests := []struct {
		name, yaml string
		want       []string // each must appear; none means valid
	}{
		{"ingest tls", fmt.Sprintf("admin: {token: a}\ningest:\n  tokens: [t]\n  tls: {cert_file: %s, key_file: %s}\n", server.CertFile, server.KeyFile), nil},
		{"admin mtls", fmt.Sprintf("ingest: {tokens: [t]}\nadmin:\n  token: a\n  tls: {cert_file: %s, key_file: %s, client_ca_file: %s}\n", server.CertFile, server.KeyFile, ca.File), nil},
		{"no key_file", fmt.Sprintf("admin: {token: a}\ningest:\n  tokens: [t]\n  tls: {cert_file: %s}\n", server.CertFile), []string{"x.yaml:4:8: ingest.tls.key_file: a key_file is required with cert_file"}},
		{"unreadable cert", fmt.Sprintf("admin: {token: a}\ningest:\n  tokens: [t]\n  tls:\n    cert_file: %s\n    key_file: %s\n", missing, server.KeyFile), []string{"x.yaml:5:16: ingest.tls.cert_file: cannot read " + missing + ": no such file or directory"}},
		{"key of another certificate", fmt.Sprintf("ingest: {tokens: [t]}\nadmin:\n  token: a\n  tls:\n    cert_file: %s\n    key_file: %s\n", server.CertFile, other.KeyFile), []string{"x.yaml:5:16: admin.tls.cert_file: cannot load the certificate with key_file", "private key does not match public key"}},
		{"client ca not pem", fmt.Sprintf("ingest: {tokens: [t]}\nadmin:\n  token: a\n  tls:\n    cert_file: %s\n    key_file: %s\n    client_ca_file: %s\n", server.CertFile, server.KeyFile, notPEM), []string{"x.yaml:7:21: admin.tls.client_ca_file: " + notPEM + " holds no PEM certificate"}},
		{"nats user and password", head + "nats: {url: 'nats://127.0.0.1:4222', user: relay, password: pw}\n", nil},
		{"nats password alone", head + "nats: {url: 'nats://127.0.0.1:4222', password: pw}\n", []string{"nats.user: a user is required with password"}},
		{"nats two ways", head + "nats: {url: 'nats://127.0.0.1:4222', token: tk, user: u, password: pw}\n", []string{"x.yaml:3:7: nats: give one way to authenticate, not 2: [user/password token]"}},
		{"nats creds unreadable", head + fmt.Sprintf("nats: {url: 'nats://127.0.0.1:4222', credentials: %s}\n", missing), []string{"nats.credentials: cannot read"}},
		{"nats tls", head + fmt.Sprintf("nats:\n  url: nats://127.0.0.1:4222\n  tls: {ca_file: %s, cert_file: %s, key_file: %s}\n", ca.File, server.CertFile, server.KeyFile), nil},
		{"nats tls bad ca", head + fmt.Sprintf("nats:\n  url: nats://127.0.0.1:4222\n  tls: {ca_file: %s}\n", notPEM), []string{"x.yaml:5:18: nats.tls.ca_file: " + notPEM + " holds no PEM certificate"}},
		{"nats security on embedded", head + "nats: {token: tk}\n", []string{"nats: credentials and tls are for an external server"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("x.yaml", []byte(tc.yaml), env(nil))
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("want errors %q, got none", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error = %v\nwant it to contain %q", err, w)
				}
			}
			for _, secret := range []string{"pw", "tk"} {
				if strings.Contains(err.Error(), ": "+secret) || strings.Contains(err.Error(), `"`+secret+`"`) {
					t.Errorf("error shows a secret: %v", err)
				}
			}
		})
	}
}

func TestBreakerConfig(t *testing.T) {
	head := "ingest: {tokens: [t]}\nadmin: {token: a}\ndestinations:\n  - name: d\n    type: webhook\n    url: https://x.example\n    secrets: ['whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw']\n"
	tests := []struct {
		name, yaml string
		want       Breaker
		err        string
	}{
		{"default", "", Breaker{Failures: 20, Window: Duration(5 * time.Minute), ProbeEvery: Duration(30 * time.Second)}, ""},
		{"off", "    breaker: off\n", Breaker{Off: true}, ""},
		{"some keys", "    breaker: {failures: 3, probe_every: 1s}\n", Breaker{Failures: 3, Window: Duration(5 * time.Minute), ProbeEvery: Duration(time.Second)}, ""},
		{"another word", "    breaker: on\n", Breaker{}, `x.yaml:8:14: destinations[0].breaker: expected off or a mapping {failures, window, probe_every}, got "on"`},
		{"unknown key", "    breaker: {failures: 3, probes: 2}\n", Breaker{}, `x.yaml:8:28: destinations[0].breaker.probes: unknown key "probes"`},
		{"bad duration", "    breaker: {window: soon}\n", Breaker{}, `x.yaml:8:23: destinations[0].breaker.window: expected a duration`},
		{"zero failures", "    breaker: {failures: -1}\n", Breaker{}, `destinations[0].breaker.failures: must be at least 1`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse("x.yaml", []byte(head+tc.yaml), env(nil))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Destinations[0].Breaker; got != tc.want {
				t.Errorf("breaker = %+v, want %+v", got, tc.want)
			}
		})
	}
}
