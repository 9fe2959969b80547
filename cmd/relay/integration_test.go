package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relaydev/relay/config"
	"github.com/relaydev/relay/connectors/webhook"
	"github.com/relaydev/relay/relay"
)

const (
	itIngestToken = "it-ingest-token"
	itAdminToken  = "it-admin-token"
	itSecret      = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
)

// liveRelay is a real Relay (embedded NATS, real connectors) the CLI
// talks to.
type liveRelay struct {
	ingest, admin string // http://127.0.0.1:port
}

// startLiveRelay runs Relay with destYAML's destinations until the test
// ends.
func startLiveRelay(t *testing.T, destYAML string) *liveRelay {
	t.Helper()
	yaml := fmt.Sprintf("nats: {url: embedded, data_dir: %q}\ningest: {listen: \"127.0.0.1:0\", tokens: [%q]}\nadmin: {listen: \"127.0.0.1:0\", token: %q}\ndestinations:\n%s",
		t.TempDir(), itIngestToken, itAdminToken, destYAML)
	cfg, err := config.Parse("it.yaml", []byte(yaml), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	sinks, closeAll, err := buildSinks(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(closeAll)
	r, err := relay.New(cfg, relay.Options{Sinks: sinks, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("relay did not stop in 30s")
		}
	})
	select {
	case <-r.Started():
	case err := <-done:
		t.Fatalf("relay stopped at start: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("relay did not start in 30s")
	}
	return &liveRelay{ingest: "http://" + r.IngestAddr(), admin: "http://" + r.AdminAddr()}
}

// cli runs a client command against the admin API and returns its exit
// status and output.
func (l *liveRelay) cli(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	return runCLI(t, append(args, "--server", l.admin, "--token", itAdminToken)...)
}

// receiver counts the deliveries it verifies, by webhook-id.
type receiver struct {
	mu  sync.Mutex
	got map[string]int
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	if err := webhook.VerifyRequest(itSecret, req.Header, body, time.Now()); err != nil {
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	r.mu.Lock()
	r.got[req.Header.Get("webhook-id")]++
	r.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (r *receiver) count(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.got[id]
}

// waitUntil calls cond until it holds, failing the test after within.
func waitUntil(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %s", what, within)
		}
		time.Sleep(20 * time.Millisecond) // polling a condition with a deadline, not waiting a fixed time
	}
}

// TestCLIAgainstRelay runs the CLI against a real Relay with three
// destinations: one delivering, one excluding the activity by a pattern,
// one failing into a dead letter.
func TestCLIAgainstRelay(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Relay with embedded NATS")
	}
	noConfig(t)
	ok := &receiver{got: map[string]int{}}
	okSrv := httptest.NewServer(ok)
	defer okSrv.Close()
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "receiver down", http.StatusServiceUnavailable)
	}))
	defer down.Close()
	dest := func(name, url, rules string) string {
		return fmt.Sprintf("  - {name: %s, type: webhook, url: %q, allow_private_network: true, secrets: [%q], timeout: 2s, %s}\n", name, url, itSecret, rules)
	}
	l := startLiveRelay(t, dest("ok", okSrv.URL, `include: ["email.*"]`)+
		dest("pages", okSrv.URL, `include: ["*"], exclude: ["email.open"]`)+
		dest("down", down.URL, `include: ["email.*"], retry: {schedule: [20ms]}`))

	code, out, errOut := runCLI(t, "send", "--activity", "email.open", "--email", "ann@example.com", "--attr", "campaign=bf", "--server", l.ingest, "--token", itIngestToken)
	id, found := strings.CutPrefix(strings.TrimSpace(out), "accepted ")
	if code != 0 || !found || id == "" {
		t.Fatalf("send: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	waitUntil(t, 20*time.Second, "delivery to ok", func() bool { return ok.count(id) == 1 })
	var dead struct {
		DeadLetters []deadLetter `json:"deadletters"`
	}
	waitUntil(t, 20*time.Second, "dead letter at down", func() bool {
		code, out, _ := l.cli(t, "deadletters", "--destination", "down", "--json")
		return code == 0 && json.Unmarshal([]byte(out), &dead) == nil && len(dead.DeadLetters) == 1
	})
	if dl := dead.DeadLetters[0]; dl.ID != id || len(dl.Attempts) != 2 || dl.Attempts[1].Status != 503 {
		t.Errorf("dead letter %+v", dl)
	}

	t.Run("status", func(t *testing.T) {
		code, out, errOut := l.cli(t, "status")
		if code != 0 || errOut != "" {
			t.Fatalf("exit %d, stderr %q", code, errOut)
		}
		for _, row := range []string{"\nok webhook active ", "\npages webhook active ", "\ndown webhook active "} {
			if !strings.Contains(squash(out), row) {
				t.Errorf("status lacks %q:\n%s", row, out)
			}
		}
		code, out, _ = l.cli(t, "status", "--json")
		var doc struct {
			Destinations []map[string]any `json:"destinations"`
		}
		if code != 0 || decodeOne(out, &doc) != nil || len(doc.Destinations) != 3 {
			t.Fatalf("status --json: exit %d, %s", code, out)
		}
		for _, d := range doc.Destinations {
			if d["name"] == "down" && d["dead_lettered"] != 1.0 || d["name"] == "ok" && d["delivered"] != 1.0 {
				t.Errorf("status --json: %v", d)
			}
		}
	})
	t.Run("pause and resume", func(t *testing.T) {
		if code, out, errOut := l.cli(t, "pause", "ok"); code != 0 || out != "ok: paused\n" {
			t.Fatalf("pause: exit %d, %q %q", code, out, errOut)
		}
		if _, out, _ := l.cli(t, "status"); !strings.Contains(squash(out), "\nok webhook paused ") {
			t.Errorf("status after pause:\n%s", out)
		}
		if code, out, errOut := l.cli(t, "resume", "ok"); code != 0 || out != "ok: active\n" {
			t.Fatalf("resume: exit %d, %q %q", code, out, errOut)
		}
	})
	t.Run("replay", func(t *testing.T) {
		if code, out, errOut := l.cli(t, "replay", "--destination", "down", "--id", id); code != 0 || out != "replayed 1\n" {
			t.Errorf("replay: exit %d, %q %q", code, out, errOut)
		}
		if code, _, errOut := l.cli(t, "replay", "--destination", "nope"); code != 1 || !strings.Contains(errOut, "relay: server said 4") || !strings.Contains(errOut, "nope") {
			t.Errorf("replay to an unknown destination: exit %d, %q", code, errOut)
		}
	})
}
