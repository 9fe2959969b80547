package relay_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestConsentSuppressesEveryAttempt: after a person opts out on email, a
// `consent: email` destination gets none of their activities again — not
// the retry of one that was failing, not a new one, not a replayed dead
// letter, not a --history backfill — while a destination without
// consent gets everything, and the consent activities themselves pass.
// Each suppression is in the delivery log, the trace and the metric.
func TestConsentSuppressesEveryAttempt(t *testing.T) {
	mailer := newReceiver(t, secretA)
	var mu sync.Mutex
	failing := map[string]bool{} // ids the mailer answers 503 to
	mailer.setRespond(func(id string, n int) int {
		mu.Lock()
		defer mu.Unlock()
		if failing[id] {
			return http.StatusServiceUnavailable
		}
		return http.StatusNoContent
	})
	plain := newReceiver(t, secretB)
	yaml := baseYAML(t.TempDir()) + "destinations:\n" +
		destYAML("mailer", mailer.srv.URL, secretA, "    consent: email\n    retry: {schedule: [300ms, 300ms, 300ms, 300ms]}\n    breaker: off") +
		destYAML("plain", plain.srv.URL, secretB, "")
	n := startRelay(t, yaml)
	ann := map[string]any{"email": "Ann@Example.com"}
	at := func(d time.Duration) string { return time.Now().Add(d).UTC().Format(time.RFC3339Nano) }

	// Carl's activity dead-letters at the mailer; Ann's first one keeps failing.
	mu.Lock()
	failing["carl-1"], failing["ann-1"] = true, true
	mu.Unlock()
	n.send(map[string]any{"id": "carl-1", "type": "email", "action": "open", "contact": map[string]any{"email": "carl@example.com"}, "occurred_at": at(-time.Hour)})
	waitFor(t, 30*time.Second, "carl's dead letter", func() bool { return n.destinations()["mailer"].DeadLettered == 1 })
	n.send(map[string]any{"id": "ann-1", "type": "email", "action": "open", "contact": ann, "occurred_at": at(-time.Hour)},
		map[string]any{"id": "bo-1", "type": "email", "action": "open", "contact": map[string]any{"email": "bo@example.com"}})
	waitFor(t, 10*time.Second, "ann-1 attempted", func() bool { return len(mailer.attemptTimes("ann-1")) >= 1 })

	// Both opt out (Ann through ODP's shape, by identifier).
	n.send(map[string]any{"id": "ann-out", "type": "consent", "action": "opt-out", "contact": map[string]any{"email": "ann@example.com"}, "occurred_at": at(-time.Minute)},
		map[string]any{"id": "carl-out", "activity": "Unsubscribed from email", "contact": map[string]any{"email": "carl@example.com"}})
	mu.Lock()
	delete(failing, "ann-1") // the retry would succeed now: it must not be made
	mu.Unlock()
	attemptsBefore := len(mailer.attemptTimes("ann-1"))

	n.send(map[string]any{"id": "ann-2", "type": "email", "action": "click", "contact": ann},
		map[string]any{"id": "ann-late", "type": "consent", "action": "opt-in", "contact": ann, "occurred_at": at(-2 * time.Minute)}) // older than the opt-out
	waitFor(t, 30*time.Second, "ann-1 settled at the mailer", func() bool {
		_, out := n.adminDo("GET", "/v1/activities/ann-1", "")
		return destStatus(out, "mailer") == "suppressed"
	})
	waitSettled(t, n, "mailer", "plain")

	// Replay Carl's dead letter, and backfill everything from history.
	if status, out := n.adminDo("POST", "/v1/replay", `{"destination": "mailer"}`); status != http.StatusOK || out["replayed"] != float64(1) {
		t.Fatalf("replay: %d %v", status, out)
	}
	if status, out := n.adminDo("POST", "/v1/replay", `{"destination": "mailer", "history": true, "ids": ["ann-1", "ann-2", "bo-1"]}`); status != http.StatusOK {
		t.Fatalf("replay --history: %d %v", status, out)
	}
	waitFor(t, 30*time.Second, "carl's dead letter gone", func() bool { return n.destinations()["mailer"].DeadLettered == 0 })
	waitFor(t, 30*time.Second, "bo-1 delivered again", func() bool { return mailer.delivered()["bo-1"] == 2 })
	waitSettled(t, n, "mailer", "plain")

	got := mailer.delivered()
	for _, id := range []string{"ann-1", "ann-2", "carl-1"} {
		if got[id] != 0 {
			t.Errorf("mailer received %s %d times after the opt-out", id, got[id])
		}
	}
	if n := len(mailer.attemptTimes("ann-1")); n != attemptsBefore {
		t.Errorf("ann-1 attempted %d times at the mailer after the opt-out (%d before)", n-attemptsBefore, attemptsBefore)
	}
	for _, id := range []string{"ann-out", "carl-out", "ann-late"} {
		if got[id] != 1 {
			t.Errorf("consent activity %s reached the mailer %d times, want 1", id, got[id])
		}
	}
	for _, id := range []string{"ann-1", "ann-2", "carl-1", "bo-1", "ann-out"} {
		if plain.delivered()[id] != 1 {
			t.Errorf("plain (no consent) received %s %d times, want 1", id, plain.delivered()[id])
		}
	}

	_, out := n.adminDo("GET", "/v1/activities/ann-2", "")
	reason := lastError(out, "mailer")
	if !strings.HasPrefix(reason, "suppressed: email opted out at ") || !strings.HasSuffix(reason, " by consent.opt-out ann-out") {
		t.Errorf("trace of ann-2 at mailer: %q", reason)
	}
	if st := destStatus(out, "plain"); st != "delivered" {
		t.Errorf("ann-2 at plain: %s", st)
	}
	status, out := n.adminDo("GET", "/v1/deliveries?destination=mailer&outcome=suppressed", "")
	if status != http.StatusOK {
		t.Fatalf("deliveries: %d %v", status, out)
	}
	seen := map[string]bool{}
	for _, e := range out["deliveries"].([]any) {
		seen[e.(map[string]any)["id"].(string)] = true
	}
	for _, id := range []string{"ann-1", "ann-2", "carl-1"} {
		if !seen[id] {
			t.Errorf("no suppressed entry for %s in the delivery log: %v", id, seen)
		}
	}
	// ann-1, ann-2, carl-1 (replayed dead letter), ann-1 and ann-2 again (history).
	if v := n.metric(t, adminToken, `relay_suppressed_total\{channel="email",destination="mailer"\}`); v != 5 {
		t.Errorf("relay_suppressed_total = %v, want 5", v)
	}
}

// destStatus is a trace's status at a destination.
func destStatus(trace map[string]any, dest string) string {
	ds, _ := trace["destinations"].([]any)
	for _, d := range ds {
		if m := d.(map[string]any); m["name"] == dest {
			s, _ := m["status"].(string)
			return s
		}
	}
	return ""
}

// lastError is the error of a trace's last attempt at a destination.
func lastError(trace map[string]any, dest string) string {
	ds, _ := trace["destinations"].([]any)
	for _, d := range ds {
		m := d.(map[string]any)
		if m["name"] != dest {
			continue
		}
		ats, _ := m["attempts"].([]any)
		if len(ats) == 0 {
			return ""
		}
		return fmt.Sprint(ats[len(ats)-1].(map[string]any)["error"])
	}
	return ""
}
