package relay_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestStatusCostAtScale holds GET /v1/destinations at 1,000 destinations,
// many of them with dead letters and retries waiting, to a bounded number
// of round trips to NATS: what all destinations share is read once (the
// consumers in one listing a stream, the dead letters' counts in one
// stream read), the states come from the shared watch, the delivery log's
// last outcomes are kept a moment. A status that went back to a few
// requests per destination, or to a read per dead letter, fails here.
// (Round trips, not seconds: the count does not depend on the machine.)
func TestStatusCostAtScale(t *testing.T) {
	if testing.Short() {
		t.Skip("1,000 destinations: not with -short")
	}
	const dests = 1000
	refuse := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "bad payload", http.StatusBadRequest) // no retry: a dead letter at once
	}))
	defer refuse.Close()
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable) // retried later
	}))
	defer failing.Close()
	var b strings.Builder
	b.WriteString(baseYAML(t.TempDir()) + "destinations:\n")
	for i := range dests {
		url, schedule := refuse.URL, "[]"
		if i%2 == 1 {
			url, schedule = failing.URL, "[1h]"
		}
		fmt.Fprintf(&b, "  - {name: d%d, type: webhook, url: %q, secrets: [%q], allow_private_network: true, include: [\"email.*\"], retry: {schedule: %s, max_age: 2h}, breaker: off}\n", i, url, secretA, schedule)
	}
	n := startRelay(t, b.String())
	for i := range 3 {
		n.send(map[string]any{"type": "email", "action": "open", "id": fmt.Sprintf("s-%d", i), "contact": map[string]any{"email": "a@example.com"}})
	}
	var dead, pending int
	defer func() {
		if t.Failed() {
			t.Logf("%d dead letters, %d pending", dead, pending)
		}
	}()
	waitFor(t, 2*time.Minute, "every destination to settle its first attempts", func() bool {
		dead, pending = 0, 0
		for _, st := range n.destinations() {
			dead += st.DeadLettered
			pending += int(st.Pending)
		}
		return dead == 3*dests/2 && pending >= 3*dests/2
	})
	nc := n.relay.BusConn()
	n.destinations() // reads the delivery log's last outcomes once
	before := nc.Stats().OutMsgs
	sts := n.destinations()
	trips := nc.Stats().OutMsgs - before
	if len(sts) != dests {
		t.Fatalf("%d destinations in the status, want %d", len(sts), dests)
	}
	t.Logf("GET /v1/destinations at %d destinations (%d dead letters, %d retrying): %d round trips to NATS", dests, 3*dests/2, 3*dests/2, trips)
	// The consumers' listings take a few pages; a lookup of the oldest
	// waiting message each for the destinations with retries waiting.
	if limit := uint64(dests/2 + 100); trips > limit {
		t.Errorf("%d round trips for one status of %d destinations, want at most %d", trips, dests, limit)
	}
}
