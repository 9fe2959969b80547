package relay_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/relaydev/relay/config"
	"github.com/relaydev/relay/internal/testpki"
	"github.com/relaydev/relay/relay/store"
)

// secureNATS starts a real nats-server with JetStream on a random
// loopback port, with the security the options set.
func secureNATS(t *testing.T, set func(*server.Options)) string {
	t.Helper()
	opts := &server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true}
	set(opts)
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return fmt.Sprintf("nats://127.0.0.1:%d", ns.Addr().(*net.TCPAddr).Port)
}

func TestNATSSecurity(t *testing.T) {
	const password, token = "pw-7d1c0ffee", "tk-5e3cafe"
	ca := testpki.NewCA(t, "nats-ca")
	serverPair := ca.Server(t, "nats")
	clientPair := ca.Client(t, "relay")
	otherCA := testpki.NewCA(t, "other-ca")
	user, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := user.PublicKey()
	seed, _ := user.Seed()
	seedFile := filepath.Join(t.TempDir(), "relay.nk")
	if err := os.WriteFile(seedFile, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	stranger, _ := nkeys.CreateUser()
	strangerSeed, _ := stranger.Seed()
	strangerFile := filepath.Join(t.TempDir(), "stranger.nk")
	if err := os.WriteFile(strangerFile, strangerSeed, 0o600); err != nil {
		t.Fatal(err)
	}

	userPass := secureNATS(t, func(o *server.Options) { o.Username, o.Password = "relay", password })
	withToken := secureNATS(t, func(o *server.Options) { o.Authorization = token })
	withNkey := secureNATS(t, func(o *server.Options) { o.Nkeys = []*server.NkeyUser{{Nkey: pub}} })
	withTLS := secureNATS(t, func(o *server.Options) {
		o.TLS, o.TLSTimeout = true, 5
		o.TLSConfig = &tls.Config{Certificates: []tls.Certificate{serverPair.TLSCert(t)}, MinVersion: tls.VersionTLS12}
	})
	withMTLS := secureNATS(t, func(o *server.Options) {
		o.TLS, o.TLSVerify, o.TLSTimeout = true, true, 5
		o.TLSConfig = &tls.Config{Certificates: []tls.Certificate{serverPair.TLSCert(t)}, MinVersion: tls.VersionTLS12,
			ClientCAs: ca.Pool(), ClientAuth: tls.RequireAndVerifyClientCert}
	})

	tests := []struct {
		name, nats string // the nats: mapping
		wantErr    string // "" means it connects and sets up the streams
	}{
		{"user and password", fmt.Sprintf("{url: %q, user: relay, password: %q}", userPass, password), ""},
		{"wrong password", fmt.Sprintf("{url: %q, user: relay, password: %q}", userPass, "wrong-"+password), "Authorization Violation (check nats.user and nats.password"},
		{"no credentials", fmt.Sprintf("{url: %q}", userPass), "Authorization Violation"},
		{"token", fmt.Sprintf("{url: %q, token: %q}", withToken, token), ""},
		{"wrong token", fmt.Sprintf("{url: %q, token: %q}", withToken, "bad-"+token), "Authorization Violation"},
		{"nkey seed file", fmt.Sprintf("{url: %q, nkey_seed_file: %q}", withNkey, seedFile), ""},
		{"another nkey", fmt.Sprintf("{url: %q, nkey_seed_file: %q}", withNkey, strangerFile), "Authorization Violation"},
		{"TLS with the CA", fmt.Sprintf("{url: %q, tls: {ca_file: %q}}", withTLS, ca.File), ""},
		{"TLS trusting another CA", fmt.Sprintf("{url: %q, tls: {ca_file: %q}}", withTLS, otherCA.File), "certificate signed by unknown authority (check nats.tls"},
		{"no TLS to a TLS server", fmt.Sprintf("{url: %q}", withTLS), "certificate signed by unknown authority (check nats.tls"},
		{"mutual TLS", fmt.Sprintf("{url: %q, tls: {ca_file: %q, cert_file: %q, key_file: %q}}", withMTLS, ca.File, clientPair.CertFile, clientPair.KeyFile), ""},
		{"mutual TLS without a client certificate", fmt.Sprintf("{url: %q, tls: {ca_file: %q}}", withMTLS, ca.File), "(check nats.tls"},
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			yaml := fmt.Sprintf("nats: %s\ningest: {tokens: [t]}\nadmin: {token: a}\n", tc.nats)
			cfg, err := config.Parse("test.yaml", []byte(yaml), func(string) (string, bool) { return "", false })
			if err != nil {
				t.Fatalf("config: %v", err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			bus, err := store.OpenBus(ctx, cfg.NATS, store.MaxMessage(cfg), quiet)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("OpenBus: %v", err)
				}
				bus.Close()
				return
			}
			if err == nil {
				bus.Close()
				t.Fatalf("connected; want %q", tc.wantErr)
			}
			t.Logf("refused: %v", err)
			if !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "(check nats.") {
				t.Errorf("error = %v\nwant %q", err, tc.wantErr)
			}
			for _, secret := range []string{password, token, string(seed), string(strangerSeed)} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error shows a secret: %v", err)
				}
			}
		})
	}
}

// TestRelayOnSecuredNATS runs a whole Relay on a server requiring a user
// and password over TLS, and delivers through it.
func TestRelayOnSecuredNATS(t *testing.T) {
	ca := testpki.NewCA(t, "nats-ca")
	pair := ca.Server(t, "nats")
	url := secureNATS(t, func(o *server.Options) {
		o.Username, o.Password = "relay", "pw-9a8b7c"
		o.TLS, o.TLSTimeout = true, 5
		o.TLSConfig = &tls.Config{Certificates: []tls.Certificate{pair.TLSCert(t)}, MinVersion: tls.VersionTLS12}
	})
	rcv := newReceiver(t, secretA)
	n := startRelay(t, fmt.Sprintf(`nats: {url: %q, user: relay, password: pw-9a8b7c, tls: {ca_file: %q}}
ingest: {listen: "127.0.0.1:0", tokens: [%q]}
admin: {listen: "127.0.0.1:0", token: %q}
destinations:
%s`, url, ca.File, ingestToken, adminToken, destYAML("hook", rcv.srv.URL, secretA, "")))
	ids := n.send(map[string]any{"type": "email", "action": "open", "contact": map[string]any{"email": "a@example.com"}})
	waitFor(t, 20*time.Second, "delivery through the secured server", func() bool { return rcv.delivered()[ids[0]] == 1 })
}
