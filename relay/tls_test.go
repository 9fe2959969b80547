package relay_test

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/relaydev/relay/internal/testpki"
)

// tlsClient trusts the CA and presents the certificate, if any.
func tlsClient(ca *testpki.CA, cert *testpki.Pair, t *testing.T) *http.Client {
	tc := &tls.Config{RootCAs: ca.Pool()}
	if cert != nil {
		tc.Certificates = []tls.Certificate{cert.TLSCert(t)}
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
}

func TestIngestAndAdminOverTLS(t *testing.T) {
	ca := testpki.NewCA(t, "relay-test")
	server := ca.Server(t, "relay")
	client := ca.Client(t, "operator")
	stranger := testpki.NewCA(t, "stranger").Client(t, "intruder")
	rcv := newReceiver(t, secretA)
	n := startRelay(t, fmt.Sprintf(`nats: {url: embedded, data_dir: %q}
ingest:
  listen: "127.0.0.1:0"
  tokens: [%q]
  tls: {cert_file: %s, key_file: %s}
admin:
  listen: "127.0.0.1:0"
  token: %q
  tls: {cert_file: %s, key_file: %s, client_ca_file: %s}
destinations:
%s`, t.TempDir(), ingestToken, server.CertFile, server.KeyFile, adminToken, server.CertFile, server.KeyFile, ca.File,
		destYAML("hook", rcv.srv.URL, secretA, "")))
	ingestURL := "https://" + n.relay.IngestAddr() + "/v1/activities"
	adminURL := "https://" + n.relay.AdminAddr() + "/v1/destinations"

	tests := []struct {
		name, method, url, token string
		client                   *http.Client
		wantStatus               int
		wantErr                  string // the request fails with this, instead of an answer
	}{
		{"ingest over TLS", "POST", ingestURL, ingestToken, tlsClient(ca, nil, t), http.StatusAccepted, ""},
		{"ingest: a client not trusting the CA", "POST", ingestURL, ingestToken, &http.Client{Timeout: 10 * time.Second}, 0, "certificate signed by unknown authority"},
		{"ingest: plain HTTP", "POST", "http://" + n.relay.IngestAddr() + "/v1/activities", ingestToken, http.DefaultClient, http.StatusBadRequest, ""},
		{"admin with a client certificate", "GET", adminURL, adminToken, tlsClient(ca, &client, t), http.StatusOK, ""},
		{"admin: still wants the token", "GET", adminURL, "wrong", tlsClient(ca, &client, t), http.StatusUnauthorized, ""},
		{"admin: no client certificate", "GET", adminURL, adminToken, tlsClient(ca, nil, t), 0, "certificate required"},
		{"admin: a certificate of another CA", "GET", adminURL, adminToken, tlsClient(ca, &stranger, t), 0, "certificate required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, tc.url, strings.NewReader(`{"type":"email","action":"open","contact":{"email":"a@example.com"}}`))
			req.Header.Set("Authorization", "Bearer "+tc.token)
			resp, err := tc.client.Do(req)
			if tc.wantErr != "" {
				if err == nil {
					resp.Body.Close()
					t.Fatalf("answered %d, want the connection refused with %q", resp.StatusCode, tc.wantErr)
				}
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status = %d, want %d", resp.StatusCode, tc.wantStatus)
			}
		})
	}
	waitFor(t, 20*time.Second, "the activity sent over TLS delivered", func() bool { return len(rcv.delivered()) == 1 })
}

// TestReloadSwapsCertificate: a reload serves the new certificate from the
// next connection on; a file that does not load changes nothing.
func TestReloadSwapsCertificate(t *testing.T) {
	oldCA, newCA := testpki.NewCA(t, "old-ca"), testpki.NewCA(t, "new-ca")
	oldPair, newPair := oldCA.Server(t, "relay"), newCA.Server(t, "relay")
	dir := t.TempDir()
	yaml := func(p testpki.Pair) string {
		return fmt.Sprintf(`nats: {url: embedded, data_dir: %q}
ingest:
  listen: "127.0.0.1:0"
  tokens: [%q]
  tls: {cert_file: %s, key_file: %s}
admin: {listen: "127.0.0.1:0", token: %q}
`, dir, ingestToken, p.CertFile, p.KeyFile, adminToken)
	}
	f := newConfigFile(t, yaml(oldPair))
	n := startFromFile(t, f)
	url := "https://" + n.relay.IngestAddr() + "/healthz"
	get := func(ca *testpki.CA) error {
		resp, err := tlsClient(ca, nil, t).Get(url)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	if err := get(oldCA); err != nil {
		t.Fatalf("before the reload: %v", err)
	}
	f.write(t, yaml(newPair))
	if status, out := n.reload(t, adminToken); status != http.StatusOK {
		t.Fatalf("reload: %d %v", status, out)
	}
	if err := get(newCA); err != nil {
		t.Errorf("the new certificate after the reload: %v", err)
	}
	if err := get(oldCA); err == nil || !strings.Contains(err.Error(), "unknown authority") {
		t.Errorf("the old certificate is still served: %v", err)
	}
	f.write(t, yaml(testpki.Pair{CertFile: newPair.CertFile, KeyFile: oldPair.KeyFile}))
	if status, out := n.reload(t, adminToken); status != http.StatusUnprocessableEntity || !strings.Contains(fmt.Sprint(out), "private key does not match public key") {
		t.Fatalf("reload with a key of another certificate: %d %v", status, out)
	}
	if err := get(newCA); err != nil {
		t.Errorf("after a refused reload: %v", err)
	}
}
