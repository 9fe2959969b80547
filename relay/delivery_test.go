package relay_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/relaydev/relay/relay/activity"
)

// TestDeliveryOverCatalog sends every catalog activity, twice (one with the
// campaign the CEL rule wants, one without), to two destinations with
// different rules: each receives exactly its share, every signature verifies.
func TestDeliveryOverCatalog(t *testing.T) {
	a := newReceiver(t, secretA)
	b := newReceiver(t, secretB)
	yaml := baseYAML(t.TempDir()) + "destinations:\n" +
		destYAML("marketing", a.srv.URL, secretA, `    include: ["email.*", "sms.*", "journey.started"]
    exclude: ["email.sent"]
    when: 'activity.attributes.campaign == "black-friday"'`) +
		destYAML("everything-but-opens", b.srv.URL, secretB, `    exclude: ["*.open", "pageview"]`)
	n := startRelay(t, yaml)

	wantA, wantB := map[string]string{}, map[string]string{}
	var items []map[string]any
	for _, e := range activity.Builtin().Entries() {
		for _, campaign := range []string{"black-friday", "cyber-monday"} {
			items = append(items, map[string]any{
				"type": e.Type, "action": e.Action,
				"contact":    map[string]any{"email": "ann@example.com"},
				"attributes": map[string]any{"campaign": campaign},
			})
		}
	}
	ids := n.send(items...)
	if len(ids) != len(items) {
		t.Fatalf("accepted %d of %d", len(ids), len(items))
	}
	for i, item := range items {
		name := item["type"].(string)
		if act := item["action"].(string); act != "" {
			name += "." + act
		}
		campaign := item["attributes"].(map[string]any)["campaign"]
		// Expectations written out from the rules above, independently of the matcher.
		inA := (strings.HasPrefix(name, "email.") || strings.HasPrefix(name, "sms.") || name == "journey.started") &&
			name != "email.sent" && campaign == "black-friday"
		inB := !strings.HasSuffix(name, ".open") && name != "pageview"
		if inA {
			wantA[ids[i]] = name
		}
		if inB {
			wantB[ids[i]] = name
		}
	}
	if len(wantA) < 10 || len(wantB) < 100 {
		t.Fatalf("test data too thin: %d for marketing, %d for everything-but-opens", len(wantA), len(wantB))
	}
	waitSettled(t, n, "marketing", "everything-but-opens")
	checkExactly(t, "marketing", a, wantA)
	checkExactly(t, "everything-but-opens", b, wantB)
}

// waitSettled waits until the destinations have nothing pending.
func waitSettled(t *testing.T, n *node, names ...string) {
	t.Helper()
	waitFor(t, 60*time.Second, "destinations to settle", func() bool {
		ds := n.destinations()
		for _, name := range names {
			if ds[name].Pending > 0 {
				return false
			}
		}
		return true
	})
}

func checkExactly(t *testing.T, dest string, r *receiver, want map[string]string) {
	t.Helper()
	if bad := r.badSignatures(); len(bad) > 0 {
		t.Errorf("%s: %d bad deliveries, first: %s", dest, len(bad), bad[0])
	}
	got := r.delivered()
	for id, name := range want {
		if got[id] == 0 {
			t.Errorf("%s: %s (%s) not delivered", dest, id, name)
		}
	}
	for id, count := range got {
		if _, ok := want[id]; !ok {
			r.mu.Lock()
			t.Errorf("%s: got %s (%s) it should not", dest, id, r.names[id])
			r.mu.Unlock()
		}
		if count > 1 {
			t.Errorf("%s: %s delivered %d times", dest, id, count)
		}
	}
}

// TestRetryScheduleThenSuccess: a receiver that fails the first two attempts
// gets the activity on the third, after the schedule's delays.
func TestRetryScheduleThenSuccess(t *testing.T) {
	r := newReceiver(t, secretA)
	r.setRespond(func(id string, n int) int {
		if n <= 2 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	yaml := baseYAML(t.TempDir()) + "destinations:\n" +
		destYAML("flaky", r.srv.URL, secretA, `    retry: {schedule: [300ms, 600ms, 10s]}`)
	n := startRelay(t, yaml)
	ids := n.send(map[string]any{"type": "email", "action": "open", "contact": map[string]any{"email": "a@example.com"}})
	waitFor(t, 30*time.Second, "delivery on the third attempt", func() bool { return r.delivered()[ids[0]] == 1 })
	times := r.attemptTimes(ids[0])
	if len(times) != 3 {
		t.Fatalf("attempts = %d, want 3", len(times))
	}
	for i, want := range []time.Duration{300 * time.Millisecond, 600 * time.Millisecond} {
		if gap := times[i+1].Sub(times[i]); gap < want {
			t.Errorf("gap before attempt %d = %s, want at least %s", i+2, gap, want)
		}
	}
	waitSettled(t, n, "flaky")
	if st := n.destinations()["flaky"]; st.FailedAttempts != 2 || st.Delivered != 1 {
		t.Errorf("status = %+v, want 2 failed attempts and 1 delivered", st)
	}
}
