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
	"github.com/relaydev/relay/relay/api"
	"github.com/relaydev/relay/relay/sink"
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
	r, err := relay.New(cfg, relay.Options{Logger: log, NewSink: func(d config.Destination) (sink.Connector, error) {
		return newSink(d, log, webhook.NewTransports(cfg.Engine.MaxInFlight, nil))
	}})
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
		DeadLetters []api.DeadLetter `json:"deadletters"`
	}
	waitUntil(t, 20*time.Second, "dead letter at down", func() bool {
		code, out, _ := l.cli(t, "deadletters", "--destination", "down", "--json")
		return code == 0 && json.Unmarshal([]byte(out), &dead) == nil && len(dead.DeadLetters) == 1
	})
	if dl := dead.DeadLetters[0]; dl.ID != id || len(dl.Attempts) != 2 || dl.Attempts[1].Status != 503 {
		t.Errorf("dead letter %+v", dl)
	}
	waitUntil(t, 20*time.Second, "the three attempts in the delivery log", func() bool { // written without waiting
		var doc struct {
			Deliveries []api.LogEntry `json:"deliveries"`
		}
		code, out, _ := l.cli(t, "log", "--json")
		return code == 0 && json.Unmarshal([]byte(out), &doc) == nil && len(doc.Deliveries) == 3
	})

	t.Run("trace", func(t *testing.T) {
		code, out, errOut := l.cli(t, "trace", id)
		if code != 0 || errOut != "" {
			t.Fatalf("exit %d, stderr %q", code, errOut)
		}
		for _, want := range []string{
			"activity " + id + "\nname email.open\nreceived ",
			`"campaign": "bf"`,
			"\nok: delivered\nselected: included by \"email.*\"\n# AT STATUS LATENCY OUTCOME ERROR\n1 ",
			" 204 ",
			"\npages: not_selected\nnot selected: excluded by \"email.open\"\nno attempt\n",
			"\ndown: dead_letter\nselected: included by \"email.*\"\n# AT STATUS LATENCY OUTCOME ERROR\n1 ",
			" 503 ", " failed status 503: response: receiver down\n2 ", " dead_letter status 503: response: receiver down\n",
		} {
			if !strings.Contains(squash(out), want) {
				t.Errorf("trace lacks %q:\n%s", want, out)
			}
		}
		code, out, _ = l.cli(t, "trace", "--json", id)
		var tr api.Trace
		if code != 0 || decodeOne(out, &tr) != nil || tr.ID != id || tr.Name != "email.open" || len(tr.Destinations) != 3 {
			t.Fatalf("trace --json: exit %d, %s", code, out)
		}
		want := map[string]struct {
			selected bool
			status   string
			outcomes string
		}{"ok": {true, "delivered", "delivered"}, "pages": {false, "not_selected", ""}, "down": {true, "dead_letter", "failed dead_letter"}}
		for _, d := range tr.Destinations {
			var outcomes []string
			for _, a := range d.Attempts {
				outcomes = append(outcomes, a.Outcome)
			}
			w := want[d.Name]
			if d.Selected != w.selected || d.Status != w.status || strings.Join(outcomes, " ") != w.outcomes || d.Reason == "" {
				t.Errorf("trace of %s: %+v", d.Name, d)
			}
		}
		code, _, errOut = l.cli(t, "trace", "01NEVERSENT")
		if code != 1 || errOut != "relay: activity 01NEVERSENT is not retained (or never was)\n" {
			t.Errorf("trace of an unknown id: exit %d, stderr %q", code, errOut)
		}
	})
	t.Run("log", func(t *testing.T) {
		code, out, errOut := l.cli(t, "log", "--destination", "down", "--outcome", "dead_letter", "--since", "1h", "--json")
		var doc struct {
			Deliveries []api.LogEntry `json:"deliveries"`
		}
		if code != 0 || decodeOne(out, &doc) != nil || len(doc.Deliveries) != 1 {
			t.Fatalf("log: exit %d, stdout %s, stderr %q", code, out, errOut)
		}
		if d := doc.Deliveries[0]; d.ID != id || d.Attempt != 2 || d.Status != 503 || d.Name != "email.open" || d.Error == "" {
			t.Errorf("dead-letter attempt %+v", d)
		}
		if code, out, _ := l.cli(t, "log", "--since", "2026-01-01T00:00:00Z", "--until", "2026-01-02T00:00:00Z"); code != 0 || !strings.HasSuffix(out, "\n0 attempts\n") {
			t.Errorf("log of a window before any attempt: exit %d, %q", code, out)
		}
		_, onePage, _ := l.cli(t, "log", "--json", "--limit", "0")
		pageSize = 1 // walk the server's cursor, one attempt a page
		defer func() { pageSize = 1000 }()
		code, paged, _ := l.cli(t, "log", "--json", "--limit", "0")
		var all struct {
			Deliveries []api.LogEntry `json:"deliveries"`
		}
		if code != 0 || paged != onePage || decodeOne(paged, &all) != nil || len(all.Deliveries) != 3 {
			t.Errorf("log over pages of one: exit %d\n%s\nwant as one page:\n%s", code, paged, onePage)
		}
		code, out, _ = l.cli(t, "log", "--limit", "2")
		if code != 0 || !strings.HasSuffix(out, "\nfirst 2 attempts (--limit 2; there may be more, --limit 0 lists all)\n") {
			t.Errorf("log --limit 2 over pages of one: exit %d\n%s", code, out)
		}
		if code, _, errOut := l.cli(t, "log", "--activity", "emial.*"); code != 1 || !strings.Contains(errOut, "matches no known activity") {
			t.Errorf("log with a pattern that matches nothing: exit %d, %q", code, errOut)
		}
	})
	t.Run("deadletters with filters", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"--id", id}, "\n1 dead letter\n"},
			{[]string{"--since", "1h", "--activity", "email.*"}, "\n1 dead letter\n"},
			{[]string{"--activity", "sms.*"}, "\n0 dead letters\n"},
			{[]string{"--id", "01OTHER"}, "\n0 dead letters\n"},
			{[]string{"--until", "2026-01-01T00:00:00Z"}, "\n0 dead letters\n"},
		} {
			code, out, errOut := l.cli(t, append([]string{"deadletters"}, tc.args...)...)
			if code != 0 || !strings.HasSuffix(out, tc.want) {
				t.Errorf("deadletters %v: exit %d, stdout %q, stderr %q; want %q", tc.args, code, out, errOut, tc.want)
			}
		}
	})
	t.Run("replay --dry-run", func(t *testing.T) {
		code, out, errOut := l.cli(t, "replay", "--destination", "down", "--dry-run")
		if code != 0 || out != "would replay 1 to down (dry run: nothing re-queued)\n  "+id+"\n" {
			t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
		}
		if _, out, _ := l.cli(t, "deadletters", "--destination", "down"); !strings.HasSuffix(out, "\n1 dead letter\n") {
			t.Errorf("a dry run re-queued: %q", out)
		}
		for _, args := range [][]string{{"--activity", "emial.*"}, {"--since", "1h", "--until", "2h"}} {
			code, out, errOut := l.cli(t, append([]string{"replay", "--destination", "down"}, args...)...)
			if code != 1 || out != "" || !strings.Contains(errOut, "relay: server said 400: ") {
				t.Errorf("replay %v, a filter that can match nothing: exit %d, stdout %q, stderr %q", args, code, out, errOut)
			}
		}
	})
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
			if d["name"] == "down" && (d["dead_lettered"] != 1.0 || d["failed_last_minute"] != 2.0 || d["last_failure_at"] == nil) ||
				d["name"] == "ok" && (d["delivered"] != 1.0 || d["delivered_last_minute"] != 1.0 || d["last_success_at"] == nil) {
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
	t.Run("log --follow", func(t *testing.T) {
		followEvery = 20 * time.Millisecond
		defer func() { followEvery = time.Second }()
		ctx, interrupt := context.WithCancel(context.Background())
		defer interrupt()
		var out, errOut syncBuffer
		done := make(chan int, 1)
		go func() {
			done <- run(ctx, []string{"log", "--follow", "--json", "--destination", "ok", "--server", l.admin, "--token", itAdminToken}, &out, &errOut)
		}()
		waitUntil(t, 10*time.Second, "the attempt made before --follow", func() bool { return strings.Contains(out.String(), id) })
		code, sent, _ := runCLI(t, "send", "--activity", "email.click", "--email", "bob@example.com", "--server", l.ingest, "--token", itIngestToken)
		later := strings.TrimSpace(strings.TrimPrefix(sent, "accepted "))
		if code != 0 || later == "" {
			t.Fatalf("send: exit %d, %q", code, sent)
		}
		waitUntil(t, 20*time.Second, "the attempt made after --follow started", func() bool { return strings.Contains(out.String(), later) })
		interrupt()
		if code := <-done; code != 0 || errOut.String() != "" {
			t.Errorf("after an interrupt: exit %d, stderr %q", code, errOut.String())
		}
		var ids []string
		for line := range strings.Lines(out.String()) {
			var d api.LogEntry
			if err := json.Unmarshal([]byte(line), &d); err != nil || d.Destination != "ok" || d.Outcome != "delivered" {
				t.Errorf("line %q (%v)", line, err)
			}
			ids = append(ids, d.ID)
		}
		if strings.Join(ids, " ") != id+" "+later {
			t.Errorf("followed %v, want %s then %s, each once", ids, id, later)
		}
	})
}
