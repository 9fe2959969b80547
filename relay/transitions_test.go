package relay_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"
)

// TestPausedThroughReloadAndRestart: a destination paused (by an operator,
// or by a 410) stays paused through a reload that changes it and through a
// restart: its new worker takes nothing before it knows the pause, so the
// backlog is not delivered until the resume — then all of it is.
func TestPausedThroughReloadAndRestart(t *testing.T) {
	for _, how := range []string{"reload", "restart"} {
		for _, by := range []string{"operator", "410"} {
			t.Run(how+" after a pause by "+by, func(t *testing.T) {
				rcv := newReceiver(t, secretA)
				head := baseYAML(t.TempDir()) + "destinations:\n"
				dest := func(schedule string) string {
					return destYAML("d", rcv.srv.URL, secretA, "    retry: {schedule: ["+schedule+"]}")
				}
				f := newConfigFile(t, head+dest("50ms"))
				n := startFromFile(t, f)
				if by == "operator" {
					if code, out := n.adminDo("POST", "/v1/destinations/d/pause", ""); code != http.StatusOK {
						t.Fatalf("pause: %d %v", code, out)
					}
				} else {
					rcv.setRespond(func(string, int) int { return http.StatusGone })
					n.send(emailOpens(1)...)
					waitFor(t, 10*time.Second, "the 410 to pause", func() bool { return n.destinations()["d"].State == "paused" })
				}
				rcv.setRespond(nil)
				before := len(rcv.allAttempts())
				ids := n.send(emailOpens(5)...)
				switch how {
				case "reload":
					f.write(t, head+dest("60ms"))
					if code, out := n.reload(t, adminToken); code != http.StatusOK || fmt.Sprint(out["changed"]) != "[d]" {
						t.Fatalf("reload: %d %v", code, out)
					}
				case "restart":
					n.stop()
					n = startFromFile(t, f)
				}
				waitFor(t, 10*time.Second, "the backlog pending", func() bool { return n.destinations()["d"].Pending >= 5 })
				// Nothing to wait for but time: the new worker must not
				// deliver while the destination is paused.
				time.Sleep(1500 * time.Millisecond)
				if got := len(rcv.allAttempts()) - before; got != 0 {
					t.Fatalf("%d attempts while paused, after the %s", got, how)
				}
				if st := n.destinations()["d"].State; st != "paused" {
					t.Fatalf("state %q after the %s", st, how)
				}
				if code, out := n.adminDo("POST", "/v1/destinations/d/resume", ""); code != http.StatusOK {
					t.Fatalf("resume: %d %v", code, out)
				}
				// After a restart right after ingest, activities the stopping
				// fan-out had asked JetStream for but not yet received come
				// again only after its ack wait (60 s): late, never lost.
				waitDelivered(t, rcv, 90*time.Second, ids)
			})
		}
	}
}

// TestOrderedHandBackKeepsAttemptCount: an ordered destination's lane
// retries in memory, without a redelivery; when it is handed back (a
// pause and resume, a back-off another contact's 429 starts) the activity's
// attempts so far still count: one the receiver always refuses has
// schedule+1 attempts, never more.
func TestOrderedHandBackKeepsAttemptCount(t *testing.T) {
	for _, how := range []string{"429 of another contact", "pause and resume"} {
		t.Run(how, func(t *testing.T) {
			rcv := newReceiver(t, secretA)
			n := startRelay(t, baseYAML(t.TempDir())+"destinations:\n"+destYAML("d", rcv.srv.URL, secretA,
				"    order: contact\n    breaker: off\n    retry: {schedule: [1s, 1s, 1s]}"))
			rcv.setRespond(func(id string, attempt int) int {
				switch id {
				case "refused":
					return http.StatusUnprocessableEntity
				case "throttled":
					if attempt == 1 {
						return http.StatusTooManyRequests
					}
				}
				return http.StatusNoContent
			})
			n.send(map[string]any{"id": "refused", "type": "email", "action": "open", "contact": map[string]any{"id": "c1"}})
			waitFor(t, 10*time.Second, "2 attempts", func() bool { return len(rcv.attemptTimes("refused")) >= 2 })
			if how == "pause and resume" {
				n.adminDo("POST", "/v1/destinations/d/pause", "")
				waitFor(t, 10*time.Second, "paused", func() bool { return n.destinations()["d"].State == "paused" })
				n.adminDo("POST", "/v1/destinations/d/resume", "")
			} else {
				n.send(map[string]any{"id": "throttled", "type": "email", "action": "open", "contact": map[string]any{"id": "c2"}})
			}
			waitFor(t, 30*time.Second, "the dead letter", func() bool { return n.destinations()["d"].DeadLettered == 1 })
			if got := len(rcv.attemptTimes("refused")); got != 4 {
				t.Errorf("%d attempts, schedule+1 is 4", got)
			}
		})
	}
}

// TestOrderedReloadKeepsGoing: a reload of an ordered destination frees
// its consumer's pin as the old worker stops, so the new worker is pinned
// at once: retries go on within their delay, not after the pin's TTL.
func TestOrderedReloadKeepsGoing(t *testing.T) {
	rcv := newReceiver(t, secretA)
	rcv.setRespond(func(string, int) int { return http.StatusInternalServerError })
	head := baseYAML(t.TempDir()) + "destinations:\n"
	dest := func(delay string) string {
		return destYAML("d", rcv.srv.URL, secretA, "    order: contact\n    breaker: off\n    retry: {schedule: ["+
			delay+", "+delay+", "+delay+", "+delay+", "+delay+", "+delay+", "+delay+", "+delay+", "+delay+", "+delay+"]}")
	}
	f := newConfigFile(t, head+dest("200ms"))
	n := startFromFile(t, f)
	n.send(map[string]any{"id": "lane", "type": "email", "action": "open", "contact": map[string]any{"id": "c1"}})
	waitFor(t, 10*time.Second, "2 attempts", func() bool { return len(rcv.attemptTimes("lane")) >= 2 })
	f.write(t, head+dest("250ms"))
	if code, out := n.reload(t, adminToken); code != http.StatusOK {
		t.Fatalf("reload: %d %v", code, out)
	}
	reloaded := time.Now()
	seen := len(rcv.attemptTimes("lane"))
	// The pin's TTL is 10 s: well within it, the next attempt comes.
	waitFor(t, 5*time.Second, "an attempt after the reload", func() bool { return len(rcv.attemptTimes("lane")) > seen })
	t.Logf("next attempt %s after the reload", time.Since(reloaded).Round(time.Millisecond))
}
