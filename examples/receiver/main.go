// Command receiver is an example webhook endpoint for Relay: it verifies
// every delivery's signature with Relay's own verifier, drops duplicates by
// webhook-id, and prints each activity.
//
//	go run ./examples/receiver [--listen 127.0.0.1:9000] [--secret whsec_…] [--fail-rate 0.3]
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
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
	secret := flag.String("secret", envOr("RELAY_WEBHOOK_SECRET", demoSecret), "whsec_… secret ($RELAY_WEBHOOK_SECRET)")
	failRate := flag.Float64("fail-rate", 0, "answer 503 to this share of deliveries, to watch retries")
	flag.Parse()
	h := &handler{secret: *secret, failRate: *failRate, seen: map[string]bool{}, out: os.Stdout}
	http.Handle("POST /webhook", h)
	log.Printf("receiver listening on http://%s/webhook", *listen)
	srv := &http.Server{Addr: *listen, ReadHeaderTimeout: 5 * time.Second}
	log.Fatal(srv.ListenAndServe())
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

type handler struct {
	secret   string
	failRate float64
	out      io.Writer

	mu   sync.Mutex
	seen map[string]bool
}

// payload is the webhook body Relay sends.
type payload struct {
	Type string `json:"type"`
	Data struct {
		ID         string         `json:"id"`
		OccurredAt time.Time      `json:"occurred_at"`
		Contact    map[string]any `json:"contact"`
		Attributes map[string]any `json:"attributes"`
	} `json:"data"`
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, "read body", http.StatusBadRequest)
		return
	}
	if err := webhook.VerifyRequest(h.secret, r.Header, body, time.Now()); err != nil {
		log.Printf("rejected %s: %v", r.Header.Get("webhook-id"), err)
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	if h.failRate > 0 && rand.Float64() < h.failRate {
		http.Error(w, "simulated outage", http.StatusServiceUnavailable)
		return
	}
	id := r.Header.Get("webhook-id")
	h.mu.Lock()
	dup := h.seen[id]
	h.seen[id] = true
	h.mu.Unlock()
	if dup {
		fmt.Fprintf(h.out, "%s duplicate %s (already processed)\n", time.Now().Format(time.TimeOnly), id)
		w.WriteHeader(http.StatusOK)
		return
	}
	var p payload
	if err := json.Unmarshal(body, &p); err != nil {
		http.Error(w, "bad JSON", http.StatusBadRequest)
		return
	}
	contact, _ := json.Marshal(p.Data.Contact)
	attrs, _ := json.Marshal(p.Data.Attributes)
	fmt.Fprintf(h.out, "%s %s %-22s contact=%s attributes=%s\n", time.Now().Format(time.TimeOnly), id, p.Type, contact, attrs)
	w.WriteHeader(http.StatusNoContent)
}
