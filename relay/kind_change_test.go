package relay_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relaydev/relay/connectors/salesforce/sftest"
)

// The kind of a destination decides where what it has yet to deliver
// waits: a fanned webhook's retries and hand-overs on QUEUES, an ordered
// or batch destination's activities in its own consumer of ACTIVITIES. A
// change of kind, by a reload or a restart, must move them, never drop
// them (docs/config.md: a reload drops nothing pending).

// kindRetries is a schedule (20s) long enough that nothing becomes a dead letter
// while a test holds its receiver down.
var kindRetries = "    breaker: off\n    retry: {schedule: [" + strings.Repeat("500ms, ", 39) + "500ms]}\n"

// failing makes a receiver answer 503 until the returned function is called.
func failing(r *receiver) (heal func()) {
	var down atomic.Bool
	down.Store(true)
	r.setRespond(func(string, int) int {
		if down.Load() {
			return http.StatusServiceUnavailable
		}
		return http.StatusNoContent
	})
	return func() { down.Store(false) }
}

// sendKind sends n email activities with ids of their own, one contact each.
func sendKind(t *testing.T, n *node, prefix string, count int) []string {
	t.Helper()
	var items []map[string]any
	for i := range count {
		items = append(items, map[string]any{"id": fmt.Sprintf("%s-%d", prefix, i), "type": "email", "action": "open",
			"contact": map[string]any{"id": fmt.Sprintf("%s-c%d", prefix, i)}})
	}
	return n.send(items...)
}

// attemptedTwice waits until the receiver has refused every id at least
// twice: the first attempt (the fan-out's or the lane's) and a retry.
func attemptedTwice(t *testing.T, r *receiver, ids []string) {
	t.Helper()
	waitFor(t, 30*time.Second, "every activity retried", func() bool {
		for _, id := range ids {
			if len(r.attemptTimes(id)) < 2 {
				return false
			}
		}
		return true
	})
}

// allDelivered waits for every id at the receiver, then for the
// destination's pending to come back to 0, and checks there is no dead
// letter.
func allDelivered(t *testing.T, n *node, dest string, r *receiver, ids []string) {
	t.Helper()
	waitFor(t, 60*time.Second, "every activity delivered after the change of kind", func() bool {
		got := r.delivered()
		for _, id := range ids {
			if got[id] == 0 {
				return false
			}
		}
		return true
	})
	waitSettled(t, n, dest)
	if dl := n.destinations()[dest].DeadLettered; dl != 0 {
		t.Errorf("%d dead letters", dl)
	}
	if bad := r.badSignatures(); len(bad) > 0 {
		t.Errorf("bad deliveries: %v", bad)
	}
}

// pendingAtLeast checks that status counts what waits.
func pendingAtLeast(t *testing.T, n *node, dest string, want int) {
	t.Helper()
	if got := n.destinations()[dest].Pending; got < uint64(want) {
		t.Errorf("status pending %d right after the change of kind, want at least %d", got, want)
	}
}

func kindYAML(dir, url, extra string) string {
	return tokensYAML(dir, ingestToken, adminToken) + "destinations:\n" + destYAML("hook", url, secretA, kindRetries+extra)
}

// TestKindFannedToOrderedOnReload: a fanned webhook's retries wait on
// QUEUES; a reload gives the destination order: contact; every one of
// them is still delivered, and status counts them meanwhile.
func TestKindFannedToOrderedOnReload(t *testing.T) {
	rcv := newReceiver(t, secretA)
	heal := failing(rcv)
	dir := t.TempDir()
	f := newConfigFile(t, kindYAML(dir, rcv.srv.URL, ""))
	n := startFromFile(t, f)
	ids := sendKind(t, n, "r", 5)
	attemptedTwice(t, rcv, ids)

	f.write(t, kindYAML(dir, rcv.srv.URL, "    order: contact\n"))
	if status, out := n.reload(t, adminToken); status != http.StatusOK || fmt.Sprint(out["changed"]) != "[hook]" {
		t.Fatalf("reload: %d %v", status, out)
	}
	pendingAtLeast(t, n, "hook", len(ids))
	heal()
	allDelivered(t, n, "hook", rcv, ids)
}

// TestKindFannedToOrderedOnRestart: the same through a restart with the
// changed config.
func TestKindFannedToOrderedOnRestart(t *testing.T) {
	rcv := newReceiver(t, secretA)
	heal := failing(rcv)
	dir := t.TempDir()
	f := newConfigFile(t, kindYAML(dir, rcv.srv.URL, ""))
	n := startFromFile(t, f)
	ids := sendKind(t, n, "s", 5)
	attemptedTwice(t, rcv, ids)
	n.stop()

	f.write(t, kindYAML(dir, rcv.srv.URL, "    order: contact\n"))
	n = startFromFile(t, f)
	pendingAtLeast(t, n, "hook", len(ids))
	heal()
	allDelivered(t, n, "hook", rcv, ids)
}

// TestKindOrderedToFannedOnReload: an ordered destination holds activities
// it has not delivered (its receiver refuses them); a reload makes it a
// plain, fanned webhook; they are handed over and delivered.
func TestKindOrderedToFannedOnReload(t *testing.T) {
	rcv := newReceiver(t, secretA)
	heal := failing(rcv)
	dir := t.TempDir()
	f := newConfigFile(t, kindYAML(dir, rcv.srv.URL, "    order: contact\n"))
	n := startFromFile(t, f)
	ids := sendKind(t, n, "o", 5)
	attemptedTwice(t, rcv, ids)

	f.write(t, kindYAML(dir, rcv.srv.URL, ""))
	if status, out := n.reload(t, adminToken); status != http.StatusOK || fmt.Sprint(out["changed"]) != "[hook]" {
		t.Fatalf("reload: %d %v", status, out)
	}
	pendingAtLeast(t, n, "hook", len(ids))
	heal()
	allDelivered(t, n, "hook", rcv, ids)
	// Activities sent after the change go through the fan-out, once.
	later := sendKind(t, n, "p", 3)
	allDelivered(t, n, "hook", rcv, later)
	for id, c := range rcv.delivered() {
		if c > 1 && strings.HasPrefix(id, "p-") {
			t.Errorf("%s delivered %d times", id, c)
		}
	}
}

// TestKindOrderedToFannedOnRestart: the same through a restart.
func TestKindOrderedToFannedOnRestart(t *testing.T) {
	rcv := newReceiver(t, secretA)
	heal := failing(rcv)
	dir := t.TempDir()
	f := newConfigFile(t, kindYAML(dir, rcv.srv.URL, "    order: contact\n"))
	n := startFromFile(t, f)
	ids := sendKind(t, n, "q", 5)
	attemptedTwice(t, rcv, ids)
	n.stop()

	f.write(t, kindYAML(dir, rcv.srv.URL, ""))
	n = startFromFile(t, f)
	pendingAtLeast(t, n, "hook", len(ids))
	heal()
	allDelivered(t, n, "hook", rcv, ids)
}

// TestKindFannedToBatchOnRestart: a fanned webhook's retries wait on
// QUEUES; the destination comes back as a Salesforce (batch) destination
// of the same name; every activity reaches the org.
func TestKindFannedToBatchOnRestart(t *testing.T) {
	rcv := newReceiver(t, secretA)
	failing(rcv)
	fake := sftest.New(t)
	dir := t.TempDir()
	n := startRelay(t, baseYAML(dir)+"destinations:\n"+destYAML("sf", rcv.srv.URL, secretA, kindRetries))
	var items []map[string]any
	for i := range 5 {
		items = append(items, map[string]any{"type": "email", "action": "open", "contact": map[string]any{"email": fmt.Sprintf("b%d@example.com", i)}})
	}
	ids := n.send(items...)
	attemptedTwice(t, rcv, ids)
	n.stop()

	n = startRelay(t, baseYAML(dir)+"destinations:\n"+salesforceYAML(fake, "    breaker: off"))
	pendingAtLeast(t, n, "sf", len(ids))
	waitFor(t, 60*time.Second, "every activity in the org", func() bool {
		recs := fake.Records()
		for _, id := range ids {
			if _, ok := recs[id]; !ok {
				return false
			}
		}
		return true
	})
	waitSettled(t, n, "sf")
	if dl := n.destinations()["sf"].DeadLettered; dl != 0 {
		t.Errorf("%d dead letters", dl)
	}
}
