package relay_test

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestConsentUnderLoad: 1,000 people opting in and out at random through
// a 50,000-activity run (5,000 with -short), 10% of first attempts failing
// into retries, then a replay --history of everything. A `consent: email`
// destination receives no non-consent activity of a person more than 1 s
// after an opt-out that was their last wish at the time; it does receive
// those of people opted in (the check is not vacuous).
func TestConsentUnderLoad(t *testing.T) {
	const people = 1000
	total := 50_000
	if testing.Short() {
		total = 5_000
	}
	type arrival struct {
		id string
		at time.Time
	}
	var mu sync.Mutex
	var arrivals []arrival
	seen := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		id := r.Header.Get("webhook-id")
		now := time.Now()
		mu.Lock()
		defer mu.Unlock()
		seen[id]++
		if seen[id] == 1 && strings.HasSuffix(id, "7") { // a tenth of first attempts fail
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		arrivals = append(arrivals, arrival{id, now})
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	yaml := baseYAML(t.TempDir()) + "destinations:\n" +
		destYAML("mailer", srv.URL, secretA, "    consent: email\n    retry: {schedule: [200ms, 500ms, 1s]}\n    breaker: off\n    max_in_flight: 128")
	n := startRelay(t, yaml)

	// A person's wishes, by the batch that carried them: sent is when the
	// batch was posted (an opt-in may apply from then on), stored when
	// ingest answered 202 (an opt-out must apply 1 s later). A batch with
	// both for one person leaves them undecided until their next wish.
	type wish struct {
		state      string // "out", "in" or "both"
		sent, done time.Time
	}
	wishes := make([][]wish, people) // per person, in the order sent
	owner := map[string]int{}        // activity id -> person
	consentIDs := map[string]bool{}
	rng := rand.New(rand.NewPCG(1, 2))
	const batch = 500
	deadline := time.Now().Add(5 * time.Minute)
	for sent := 0; sent < total; sent += batch {
		if time.Now().After(deadline) {
			t.Fatalf("sending took over 5 minutes (%d sent)", sent)
		}
		items := make([]map[string]any, 0, batch)
		changed := map[int]string{}
		mark := func(p int, state string) {
			if old, ok := changed[p]; ok && old != state {
				state = "both"
			}
			changed[p] = state
		}
		for i := range batch {
			p := rng.IntN(people)
			id := fmt.Sprintf("a%06d", sent+i)
			owner[id] = p
			item := map[string]any{"id": id, "contact": map[string]any{"email": fmt.Sprintf("P%d@Example.com", p)}}
			switch r := rng.IntN(100); {
			case r < 3:
				item["type"], item["action"] = "consent", "opt-out"
				mark(p, "out")
			case r < 5:
				item["activity"] = "Subscribed to email"
				mark(p, "in")
			default:
				item["type"], item["action"] = "email", "open"
			}
			if _, ok := item["type"]; (ok && item["type"] == "consent") || item["activity"] != nil {
				consentIDs[id] = true
			}
			items = append(items, item)
		}
		body, _ := json.Marshal(items)
		sentAt := time.Now()
		status, out := n.post(string(body), ingestToken)
		if status != http.StatusAccepted {
			t.Fatalf("ingest: %d %v", status, out)
		}
		done := time.Now()
		for p, state := range changed {
			wishes[p] = append(wishes[p], wish{state, sentAt, done})
		}
	}
	waitFor(t, 3*time.Minute, "the run to settle", func() bool { return n.destinations()["mailer"].Pending == 0 })
	if status, out := n.adminDo("POST", "/v1/replay", `{"destination": "mailer", "history": true, "activity": "email.*"}`); status != http.StatusOK {
		t.Fatalf("replay --history: %d %v", status, out)
	}
	waitFor(t, 3*time.Minute, "the replay to settle", func() bool { return n.destinations()["mailer"].Pending == 0 })

	mu.Lock()
	defer mu.Unlock()
	violations, allowed := 0, 0
	for _, a := range arrivals {
		if consentIDs[a.id] {
			continue
		}
		ws := wishes[owner[a.id]]
		// The person's last wish sent before this delivery.
		i := sort.Search(len(ws), func(i int) bool { return !ws[i].sent.Before(a.at) }) - 1
		if i >= 0 && ws[i].state == "out" && a.at.After(ws[i].done.Add(time.Second)) {
			violations++
			if violations <= 5 {
				t.Errorf("%s of person %d delivered at %s, %s after their opt-out", a.id, owner[a.id], a.at.Format(time.RFC3339Nano), a.at.Sub(ws[i].done))
			}
		} else {
			allowed++
		}
	}
	suppressed := n.metric(t, adminToken, `relay_suppressed_total\{channel="email",destination="mailer"\}`)
	t.Logf("%d activities, %d deliveries of non-consent activities, %d after an opt-out, %v suppressed", total, allowed+violations, violations, suppressed)
	if violations > 0 {
		t.Errorf("%d deliveries after an opt-out", violations)
	}
	if allowed == 0 || suppressed == 0 {
		t.Errorf("vacuous run: %d allowed deliveries, %v suppressed", allowed, suppressed)
	}
}
