package relay_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relaydev/relay/config"
	"github.com/relaydev/relay/connectors/salesforce"
	"github.com/relaydev/relay/connectors/webhook"
	"github.com/relaydev/relay/relay"
	"github.com/relaydev/relay/relay/api"
	"github.com/relaydev/relay/relay/sink"
)

const (
	ingestToken = "test-ingest-token"
	adminToken  = "test-admin-token"
	secretA     = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	secretB     = "whsec_ZGVtby1zZWNyZXQtZm9yLXRoZS1leGFtcGxlLXJlY2VpdmVy"
)

// node is a running Relay for a test.
type node struct {
	t      *testing.T
	relay  *relay.Relay
	ingest string
	admin  string
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

// startRelay parses yaml (with ingest/admin on random loopback ports and the
// data dir given) and runs Relay until the test ends.
func startRelay(t *testing.T, yaml string) *node {
	t.Helper()
	return startLogged(t, yaml, nil)
}

// startLogged is startRelay with the engine logging to the test log, and
// with the engine and every connector logging to log instead when it is
// not nil.
func startLogged(t *testing.T, yaml string, log *slog.Logger) *node {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(yaml), func(k string) (string, bool) { return os.LookupEnv(k) })
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	engineLog := log
	if engineLog == nil {
		engineLog = testLogger(t)
	}
	sinks := map[string]sink.Connector{}
	for _, d := range cfg.Destinations {
		switch d.Type {
		case "salesforce":
			s, err := salesforce.New(d, salesforce.Options{Logger: log})
			if err != nil {
				t.Fatalf("salesforce %s: %v", d.Name, err)
			}
			t.Cleanup(s.Close)
			sinks[d.Name] = sink.Batched(s)
		default:
			s, err := webhook.New(d, webhook.Options{})
			if err != nil {
				t.Fatalf("webhook %s: %v", d.Name, err)
			}
			t.Cleanup(s.Close)
			sinks[d.Name] = sink.One(s)
		}
	}
	r, err := relay.New(cfg, relay.Options{Sinks: sinks, Logger: engineLog})
	if err != nil {
		t.Fatalf("relay.New: %v", err)
	}
	return runNode(t, r)
}

// stop ends the relay and waits for it; calling it again does nothing.
func (n *node) stop() {
	n.once.Do(func() {
		n.cancel()
		select {
		case <-n.done:
		case <-time.After(30 * time.Second):
			n.t.Error("relay did not stop in 30s")
		}
	})
}

// baseYAML is the top of a test config; destinations are appended.
func baseYAML(dataDir string) string {
	return fmt.Sprintf(`nats: {url: embedded, data_dir: %q}
ingest: {listen: "127.0.0.1:0", tokens: [%q]}
admin: {listen: "127.0.0.1:0", token: %q}
`, dataDir, ingestToken, adminToken)
}

// post sends a body to ingest and returns status and decoded response.
func (n *node) post(body string, token string) (int, map[string]any) {
	n.t.Helper()
	return doJSON(n.t, "POST", n.ingest+"/v1/activities", token, body)
}

func (n *node) adminDo(method, path, body string) (int, map[string]any) {
	n.t.Helper()
	return doJSON(n.t, method, n.admin+path, adminToken, body)
}

func doJSON(t *testing.T, method, url, token, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if len(bytes.TrimSpace(data)) > 0 && data[0] == '{' {
		if err := json.Unmarshal(data, &out); err != nil {
			t.Fatalf("%s %s: bad JSON %q: %v", method, url, data, err)
		}
	}
	return resp.StatusCode, out
}

// send posts activities and fails the test unless all are accepted.
func (n *node) send(items ...map[string]any) []string {
	n.t.Helper()
	body, _ := json.Marshal(items)
	status, out := n.post(string(body), ingestToken)
	if status != http.StatusAccepted {
		n.t.Fatalf("ingest answered %d: %v", status, out)
	}
	var ids []string
	for _, id := range out["ids"].([]any) {
		ids = append(ids, id.(string))
	}
	return ids
}

// destinations returns GET /v1/destinations by name.
func (n *node) destinations() map[string]api.DestinationStatus {
	n.t.Helper()
	req, _ := http.NewRequest("GET", n.admin+"/v1/destinations", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		n.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Destinations []api.DestinationStatus `json:"destinations"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		n.t.Fatal(err)
	}
	m := map[string]api.DestinationStatus{}
	for _, d := range out.Destinations {
		m[d.Name] = d
	}
	return m
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// receiver is a webhook endpoint that verifies every signature and records
// what it gets.
type receiver struct {
	t      *testing.T
	secret string
	srv    *httptest.Server

	mu       sync.Mutex
	got      map[string]int         // webhook-id -> deliveries
	names    map[string]string      // webhook-id -> activity name
	attempts map[string][]time.Time // webhook-id -> arrival of every attempt
	bodies   map[string][]byte      // webhook-id -> body of the last delivery
	bad      []string
	// respond decides the status for an attempt (n counts from 1 per id).
	respond func(id string, n int) int
}

func newReceiver(t *testing.T, secret string) *receiver {
	r := &receiver{t: t, secret: secret, got: map[string]int{}, names: map[string]string{}, attempts: map[string][]time.Time{}, bodies: map[string][]byte{}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.handle))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) handle(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	id := req.Header.Get("webhook-id")
	err := webhook.VerifyRequest(r.secret, req.Header, body, time.Now())
	var msg struct {
		Type string `json:"type"`
		Data struct {
			ID   string `json:"id"`
			Name string `json:"name"`
		} `json:"data"`
	}
	_ = json.Unmarshal(body, &msg)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.bad = append(r.bad, fmt.Sprintf("%s: %v", id, err))
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if msg.Data.ID != id || msg.Type != msg.Data.Name {
		r.bad = append(r.bad, fmt.Sprintf("%s: body says id %q type %q name %q", id, msg.Data.ID, msg.Type, msg.Data.Name))
	}
	r.attempts[id] = append(r.attempts[id], time.Now())
	status := http.StatusNoContent
	if r.respond != nil {
		status = r.respond(id, len(r.attempts[id]))
	}
	if status < 300 {
		r.got[id]++
		r.names[id] = msg.Data.Name
		r.bodies[id] = body
	}
	w.WriteHeader(status)
}

func (r *receiver) setRespond(f func(id string, n int) int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.respond = f
}

func (r *receiver) delivered() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.got)
}

// body is the body of the last delivery of id.
func (r *receiver) body(id string) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.bodies[id]
}

func (r *receiver) attemptTimes(id string) []time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Time(nil), r.attempts[id]...)
}

func (r *receiver) badSignatures() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.bad...)
}

// destYAML is one webhook destination entry.
func destYAML(name, url, secret, rules string) string {
	return fmt.Sprintf(`  - name: %s
    type: webhook
    url: %s
    allow_private_network: true
    secrets: [%q]
    timeout: 2s
%s
`, name, url, secret, rules)
}

// adminDoT is adminDo reporting to t, for subtests sharing one node.
func (n *node) adminDoT(t *testing.T, method, path, body string) (int, map[string]any) {
	t.Helper()
	return doJSON(t, method, n.admin+path, adminToken, body)
}

// runNode listens, runs r and waits until it started; the node stops
// when the test ends.
func runNode(t *testing.T, r *relay.Relay) *node {
	t.Helper()
	if err := r.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &node{t: t, relay: r, ingest: "http://" + r.IngestAddr(), admin: "http://" + r.AdminAddr(), cancel: cancel, done: make(chan error, 1)}
	go func() { n.done <- r.Run(ctx) }()
	select {
	case <-r.Started():
	case err := <-n.done:
		t.Fatalf("relay stopped at start: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("relay did not start in 30s")
	}
	t.Cleanup(n.stop)
	return n
}
