package relay_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// TestPauseDoesNotUseUpAttempts pauses and resumes a destination again and
// again while a slow, failing receiver keeps every slot busy. Activities
// pulled but not yet attempted when a pause comes are handed back to
// JetStream, which counts that as a delivery; the schedule must count only
// real attempts, so every dead letter has every attempt of the schedule.
// Attempts still in flight when a pause drains the pull count against
// max_in_flight when delivery resumes.
func TestPauseDoesNotUseUpAttempts(t *testing.T) {
	var mu sync.Mutex
	attempts := map[string]int{}
	inFlight, maxInFlight := 0, 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		attempts[r.Header.Get("webhook-id")]++
		inFlight++
		maxInFlight = max(maxInFlight, inFlight)
		mu.Unlock()
		time.Sleep(20 * time.Millisecond) // a slow receiver, so pulled activities queue behind it
		mu.Lock()
		inFlight--
		mu.Unlock()
		w.WriteHeader(http.StatusInternalServerError)
	}))
	t.Cleanup(srv.Close)
	total := func() int {
		mu.Lock()
		defer mu.Unlock()
		sum := 0
		for _, n := range attempts {
			sum += n
		}
		return sum
	}
	yaml := baseYAML(t.TempDir()) + "destinations:\n" +
		destYAML("flaky", srv.URL, secretA, "    max_in_flight: 2\n    retry: {schedule: [100ms, 100ms]}\n    breaker: off")
	n := startRelay(t, yaml)
	items := make([]map[string]any, 60)
	for i := range items {
		items[i] = map[string]any{"type": "email", "action": "open", "contact": map[string]any{"email": fmt.Sprintf("p%d@example.com", i)}}
	}
	ids := n.send(items...)

	settled := func() bool { return n.destinations()["flaky"].DeadLettered == len(ids) }
	pauses := 0
	for range 20 {
		seen := total()
		waitFor(t, 30*time.Second, "more attempts", func() bool { return total() >= seen+3 || settled() })
		if settled() {
			break
		}
		n.adminDo("POST", "/v1/destinations/flaky/pause", "")
		waitFor(t, 10*time.Second, "paused", func() bool { return n.destinations()["flaky"].State == "paused" })
		n.adminDo("POST", "/v1/destinations/flaky/resume", "")
		pauses++
	}
	waitFor(t, 60*time.Second, "every activity a dead letter", settled)
	mu.Lock()
	defer mu.Unlock()
	short := 0
	for _, id := range ids {
		if attempts[id] != 3 {
			short++
			t.Errorf("%s: the receiver saw %d attempts, want 3 (1 + a schedule of 2)", id, attempts[id])
		}
	}
	if maxInFlight > 2 {
		t.Errorf("%d attempts in flight at once, max_in_flight is 2", maxInFlight)
	}
	t.Logf("%d pauses; %d of %d activities short of their attempts; at most %d in flight", pauses, short, len(ids), maxInFlight)
}
