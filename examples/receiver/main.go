// Command receiver is an example webhook endpoint for Relay. It verifies
// each delivery's Standard Webhooks signature, drops duplicates by
// webhook-id (Relay delivers at least once), and prints each activity.
// With --headers it also prints each delivery's webhook headers, its raw
// body and a `relay verify` command that checks it.
//
//	go run ./examples/receiver [--listen 127.0.0.1:9000] [--secret whsec_…] [--fail-rate 0.3] [--headers]
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/relaydev/relay/connectors/webhook"
)

// demoSecret is the secret the shipped relay.yaml signs with.
const demoSecret = "whsec_ZGVtby1zZWNyZXQtZm9yLXRoZS1leGFtcGxlLXJlY2VpdmVy"

// options are the receiver's flags.
type options struct {
	listen, secret string
	failRate       float64
	headers        bool
}

// parseOptions reads the flags. The secret's default is not a flag
// default, so --help never prints $RELAY_WEBHOOK_SECRET.
func parseOptions(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("receiver", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.listen, "listen", "127.0.0.1:9000", "address to listen on")
	fs.StringVar(&o.secret, "secret", "", "whsec_… secret (default $RELAY_WEBHOOK_SECRET, else the demo secret relay.yaml ships with)")
	fs.Float64Var(&o.failRate, "fail-rate", 0, "answer 503 to this share (0..1) of deliveries, to watch Relay retry")
	fs.BoolVar(&o.headers, "headers", false, "print each delivery's webhook-id, webhook-timestamp and webhook-signature headers and raw body, to try relay verify on")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if o.failRate < 0 || o.failRate > 1 {
		return o, errors.New("--fail-rate must be from 0 to 1")
	}
	if o.secret == "" {
		o.secret = envOr("RELAY_WEBHOOK_SECRET", demoSecret)
	}
	return o, nil
}

func main() {
	o, err := parseOptions(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "receiver:", err)
		os.Exit(2)
	}
	mux := http.NewServeMux()
	h := newHandler(o.secret, o.failRate, os.Stdout)
	h.headers = o.headers
	mux.Handle("POST /webhook", h)
	slog.Info("receiver listening", "url", "http://"+o.listen+"/webhook")
	srv := &http.Server{Addr: o.listen, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	if err := srv.ListenAndServe(); err != nil {
		slog.Error("receiver stopped", "err", err)
		os.Exit(1)
	}
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// handler receives Relay's webhooks.
type handler struct {
	secret   string
	failRate float64
	headers  bool // print the webhook headers and raw body of each delivery
	out      io.Writer

	mu   sync.Mutex
	seen map[string]bool // webhook-ids already processed
}

func newHandler(secret string, failRate float64, out io.Writer) *handler {
	return &handler{secret: secret, failRate: failRate, out: out, seen: map[string]bool{}}
}

// payload is the body Relay sends, the parts printed here. Contact and
// attributes stay the JSON text that arrived, so a value prints as sent
// (129.50, not 129.5).
type payload struct {
	Type string `json:"type"`
	Data struct {
		Contact    json.RawMessage `json:"contact"`
		Attributes json.RawMessage `json:"attributes"`
	} `json:"data"`
}

// compact is JSON text on one line, its values as they are; null when
// absent.
func compact(raw json.RawMessage) []byte {
	var b bytes.Buffer
	if len(raw) == 0 || json.Compact(&b, raw) != nil {
		return []byte("null")
	}
	return b.Bytes()
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		http.Error(w, "body too large or unreadable", http.StatusRequestEntityTooLarge)
		return
	}
	id := r.Header.Get("webhook-id")
	if h.headers {
		h.printHeaders(r.Header, body)
	}
	if err := webhook.VerifyRequest(h.secret, r.Header, body, time.Now()); err != nil {
		slog.Warn("rejected delivery", "webhook_id", id, "err", err)
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var p payload
	if err := json.Unmarshal(body, &p); err != nil {
		http.Error(w, "bad JSON", http.StatusBadRequest)
		return
	}
	if h.failRate > 0 && rand.Float64() < h.failRate {
		http.Error(w, "simulated outage", http.StatusServiceUnavailable)
		return
	}
	if !h.firstTime(id) {
		fmt.Fprintf(h.out, "%s %s duplicate, already processed\n", time.Now().Format(time.TimeOnly), id)
		w.WriteHeader(http.StatusOK) // 2xx, so Relay stops retrying
		return
	}
	contact, attrs := compact(p.Data.Contact), compact(p.Data.Attributes)
	fmt.Fprintf(h.out, "%s %s %-22s contact=%s attributes=%s\n", time.Now().Format(time.TimeOnly), id, p.Type, contact, attrs)
	w.WriteHeader(http.StatusNoContent)
}

// printHeaders writes what a delivery carries, verbatim, and the relay
// verify command that checks it (the secret taken from
// $RELAY_WEBHOOK_SECRET, never printed).
func (h *handler) printHeaders(header http.Header, body []byte) {
	id, ts, sig := header.Get("webhook-id"), header.Get("webhook-timestamp"), header.Get("webhook-signature")
	h.mu.Lock()
	defer h.mu.Unlock()
	fmt.Fprintf(h.out, "webhook-id: %s\nwebhook-timestamp: %s\nwebhook-signature: %s\nbody: %s\n", id, ts, sig, body)
	fmt.Fprintf(h.out, "verify: printf %%s %s | relay verify --id %s --timestamp %s --signature %s\n",
		shellQuote(string(body)), shellQuote(id), shellQuote(ts), shellQuote(sig))
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// firstTime records id and reports whether it is new. A real receiver
// keeps this in its database, in the transaction that processes the event.
func (h *handler) firstTime(id string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.seen[id] {
		return false
	}
	h.seen[id] = true
	return true
}
