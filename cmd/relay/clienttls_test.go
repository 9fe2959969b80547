package main

import (
	"crypto/tls"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/relaydev/relay/internal/testpki"
)

// newTLSFakeAPI is newFakeAPI over TLS with the pair, asking for a client
// certificate of clientCA when it is not nil.
func newTLSFakeAPI(t *testing.T, pair testpki.Pair, clientCA *testpki.CA, token string, exchanges ...exchange) *httptest.Server {
	api := &fakeAPI{t: t, token: token, exchanges: exchanges}
	srv := httptest.NewUnstartedServer(api)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair.TLSCert(t)}}
	if clientCA != nil {
		srv.TLS.ClientCAs, srv.TLS.ClientAuth = clientCA.Pool(), tls.RequireAndVerifyClientCert
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func TestClientOverTLS(t *testing.T) {
	ca := testpki.NewCA(t, "relay-test")
	server := ca.Server(t, "relay")
	client := ca.Client(t, "operator")
	pause := exchange{"POST", "/v1/destinations/crm/pause", "", 200, `{"state":"paused"}`}
	tests := []struct {
		name     string
		mtls     bool
		config   bool // a config naming the server's address and its tls
		args     []string
		wantCode int
		want     string // in stdout when 0, else in stderr
	}{
		{"https from the config, trusting its cert_file", false, true, nil, 0, "crm: paused"},
		{"--server https with --ca-file", false, false, []string{"--ca-file", ca.File}, 0, "crm: paused"},
		{"--server https trusting nothing", false, false, nil, 1, "certificate signed by unknown authority"},
		{"mutual TLS with --cert-file", true, false, []string{"--ca-file", ca.File, "--cert-file", client.CertFile, "--key-file", client.KeyFile}, 0, "crm: paused"},
		{"mutual TLS without a certificate", true, false, []string{"--ca-file", ca.File}, 1, "certificate required"},
		{"--cert-file without --key-file", false, false, []string{"--ca-file", ca.File, "--cert-file", client.CertFile}, 1, "--cert-file and --key-file go together"},
		{"unreadable --ca-file", false, false, []string{"--ca-file", filepath.Join(t.TempDir(), "none.pem")}, 1, "--ca-file: open"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var clientCA *testpki.CA
			if tc.mtls {
				clientCA = ca
			}
			var srv *httptest.Server
			if tc.wantCode == 0 {
				srv = newTLSFakeAPI(t, server, clientCA, "tok", pause)
			} else {
				srv = newTLSFakeAPI(t, server, clientCA, "tok")
			}
			args := append([]string{"pause", "crm", "--token", "tok"}, tc.args...)
			if tc.config {
				cfg := filepath.Join(t.TempDir(), "relay.yaml")
				yaml := fmt.Sprintf("ingest: {tokens: [t]}\nadmin:\n  listen: %s\n  token: tok\n  tls: {cert_file: %s, key_file: %s}\n",
					strings.TrimPrefix(srv.URL, "https://"), server.CertFile, server.KeyFile)
				if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
					t.Fatal(err)
				}
				args = append(args, "-c", cfg)
			} else {
				noConfig(t)
				args = append(args, "--server", srv.URL)
			}
			code, out, errOut := runCLI(t, args...)
			got := out
			if tc.wantCode != 0 {
				got = errOut
			}
			if code != tc.wantCode || !strings.Contains(got, tc.want) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit %d and %q", code, out, errOut, tc.wantCode, tc.want)
			}
		})
	}
}
