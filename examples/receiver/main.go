// Command receiver is an example webhook endpoint for Relay. It verifies
// each delivery's Standard Webhooks signature, drops duplicates by
// webhook-id (Relay delivers at least once), and prints each activity.
//
//	go run ./examples/receiver [--listen 127.0.0.1:9000] [--secret whsec_…] [--fail-rate 0.3]
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/relaydev/relay/connectors/webhook"
)

// demoSecret is the secret the shipped relay.yaml signs with.
const demoSecret = "whsec_ZGVtby1zZWNyZXQtZm9yLXRoZS1leGFtcGxlLXJlY2VpdmVy"

func main() {
	listen := flag.String("listen", "127.0.0.1:9000", "address to listen on")
	secret := flag.String("secret", envOr("RELAY_WEBHOOK_SECRET", demoSecret), "whsec_… secret (default $RELAY_WEBHOOK_SECRET, else the demo secret)")
	failRate := flag.Float64("fail-rate", 0, "answer 503 to this share (0..1) of deliveries, to watch Relay retry")
	flag.Parse()
	if *failRate < 0 || *failRate > 1 {
		fmt.Fprintln(os.Stderr, "receiver: --fail-rate must be from 0 to 1")
		os.Exit(2)
	}
	mux := http.NewServeMux()
	mux.Handle("POST /webhook", newHandler(*secret, *failRate, os.Stdout))
	slog.Info("receiver listening", "url", "http://"+*listen+"/webhook")
	srv := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
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
	out      io.Writer

	mu   sync.Mutex
	seen map[string]bool // webhook-ids already processed
}

func newHandler(secret string, failRate float64, out io.Writer) *handler {
	return &handler{secret: secret, failRate: failRate, out: out, seen: map[string]bool{}}
}

// payload is the body Relay sends (DESIGN §4), the parts printed here.
type payload struct {
	Type string `json:"type"`
	Data struct {
		Contact    map[string]any `json:"contact"`
		Attributes map[string]any `json:"attributes"`
	} `json:"data"`
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		http.Error(w, "body too large or unreadable", http.StatusRequestEntityTooLarge)
		return
	}
	id := r.Header.Get("webhook-id")
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
	contact, _ := json.Marshal(p.Data.Contact)
	attrs, _ := json.Marshal(p.Data.Attributes)
	fmt.Fprintf(h.out, "%s %s %-22s contact=%s attributes=%s\n", time.Now().Format(time.TimeOnly), id, p.Type, contact, attrs)
	w.WriteHeader(http.StatusNoContent)
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
