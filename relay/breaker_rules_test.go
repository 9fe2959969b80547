package relay_test

import (
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// waitDelivered waits until the receiver got every id at least once.
func waitDelivered(t *testing.T, rcv *receiver, within time.Duration, ids []string) {
	t.Helper()
	waitFor(t, within, fmt.Sprintf("all %d activities delivered", len(ids)), func() bool {
		got := rcv.delivered()
		for _, id := range ids {
			if got[id] == 0 {
				return false
			}
		}
		return true
	})
}

// watchBreaker records whether the destination's breaker was ever seen
// other than closed, until the test ends.
func watchBreaker(t *testing.T, n *node, dest string) *atomic.Bool {
	var opened atomic.Bool
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if st, ok := n.destinations()[dest]; ok && st.Breaker != "closed" {
				opened.Store(true)
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
	return &opened
}

// TestBreakerKeepsClosedWhileSomeSucceed: a receiver that refuses some
// payloads is not down. Fifty activities, thirty of them answered 500
// (twenty succeed on their third attempt, ten never), the others 200: the
// retries of the failing ones come in a burst of failures in a row, but
// the window holds successes, so the breaker stays closed, the twenty good
// ones are delivered, the twenty are delivered on their third attempt and
// the ten become dead letters after schedule+1 attempts.
func TestBreakerKeepsClosedWhileSomeSucceed(t *testing.T) {
	rcv := newReceiver(t, secretA)
	kind := map[string]int{} // 0 good, 1 fails twice, 2 always fails
	n := startRelay(t, baseYAML(t.TempDir())+"destinations:\n"+destYAML("d", rcv.srv.URL, secretA,
		`    retry: {schedule: [200ms, 400ms, 600ms]}`))
	items := emailOpens(50)
	ids := make([]string, len(items))
	for i, it := range items {
		ids[i] = fmt.Sprintf("mixed-%02d", i)
		it["id"] = ids[i]
	}
	// Interleaved: two of every five are good, the others fail; of
	// those, every third always fails.
	failing := 0
	for i, id := range ids {
		if i%5 == 0 || i%5 == 4 {
			continue
		}
		kind[id] = 1
		if failing%3 == 0 {
			kind[id] = 2
		}
		failing++
	}
	opened := watchBreaker(t, n, "d")
	rcv.setRespond(func(id string, attempt int) int {
		switch kind[id] {
		case 1:
			if attempt < 3 {
				return http.StatusInternalServerError
			}
		case 2:
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	n.send(items...)
	var good []string
	dead := 0
	for _, id := range ids {
		if kind[id] == 2 {
			dead++
		} else {
			good = append(good, id)
		}
	}
	waitDelivered(t, rcv, 20*time.Second, good)
	waitFor(t, 20*time.Second, fmt.Sprintf("%d dead letters", dead), func() bool { return n.destinations()["d"].DeadLettered == dead })
	if opened.Load() {
		t.Error("the breaker opened although attempts succeeded in its window")
	}
	for _, id := range ids {
		if got := len(rcv.attemptTimes(id)); got > 4 {
			t.Errorf("%s: %d attempts, schedule+1 is 4", id, got)
		}
		if kind[id] == 2 && len(rcv.attemptTimes(id)) != 4 {
			t.Errorf("dead letter %s after %d attempts, want 4", id, len(rcv.attemptTimes(id)))
		}
	}
}

// TestRefusedFewNeverOpen: a receiver that is up but refuses a few
// payloads, and nothing else is sent: the window holds only their
// failures, but of fewer different activities than `failures`, so the
// breaker stays closed and they end as dead letters on their schedule
// (were it to open, failed probes would use up none of their retries and
// they would wait until max_age).
func TestRefusedFewNeverOpen(t *testing.T) {
	rcv := newReceiver(t, secretA)
	rcv.setRespond(func(string, int) int { return http.StatusInternalServerError })
	n := startRelay(t, baseYAML(t.TempDir())+"destinations:\n"+destYAML("d", rcv.srv.URL, secretA, `    retry: {schedule: [100ms, 100ms, 100ms, 100ms, 100ms, 100ms, 100ms, 100ms, 100ms, 100ms, 100ms, 100ms]}
    breaker: {failures: 5, window: 10s, probe_every: 500ms}`))
	opened := watchBreaker(t, n, "d")
	n.send(emailOpens(4)...)
	waitFor(t, 20*time.Second, "4 dead letters", func() bool { return n.destinations()["d"].DeadLettered == 4 })
	if opened.Load() {
		t.Error("the breaker opened on 52 failures of 4 activities")
	}
}

// TestBreakerOpensWhenAllFail: the rule's other half. Every attempt of the
// window failed and there were at least `failures`: it opens, even though
// attempts succeeded before the window.
func TestBreakerOpensWhenAllFail(t *testing.T) {
	var down atomic.Bool
	rcv := newReceiver(t, secretA)
	rcv.setRespond(func(string, int) int {
		if down.Load() {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	n := startRelay(t, baseYAML(t.TempDir())+"destinations:\n"+destYAML("d", rcv.srv.URL, secretA, `    max_in_flight: 4
    retry: {schedule: [300ms, 300ms, 300ms, 300ms, 300ms, 300ms, 300ms, 300ms, 300ms, 300ms]}
    breaker: {failures: 5, window: 1s, probe_every: 500ms}`))
	waitDelivered(t, rcv, 10*time.Second, n.send(emailOpens(5)...))
	down.Store(true)
	ids := n.send(emailOpens(10)...)
	waitFor(t, 20*time.Second, "the breaker to open", func() bool { return n.destinations()["d"].Breaker != "closed" })
	down.Store(false)
	waitDelivered(t, rcv, 20*time.Second, ids)
	if dl := n.destinations()["d"].DeadLettered; dl != 0 {
		t.Errorf("%d dead letters", dl)
	}
}

// orderings are a destination's YAML lines for each way it may order its
// deliveries, by name.
var orderings = map[string]string{"unordered": "", "ordered": "    order: contact\n"}

// TestProbeUsesNoRetries: while the breaker is open, the activity each
// probe takes keeps its retries: failed probes are the breaker's attempts.
// Twelve failed probes of five activities against a schedule of eight
// delays, and nothing is a dead letter; every activity is delivered once
// the receiver is back.
func TestProbeUsesNoRetries(t *testing.T) {
	for name, order := range orderings {
		t.Run(name, func(t *testing.T) {
			var down atomic.Bool
			down.Store(true)
			rcv := newReceiver(t, secretA)
			rcv.setRespond(func(string, int) int {
				if down.Load() {
					return http.StatusInternalServerError
				}
				return http.StatusOK
			})
			n := startRelay(t, baseYAML(t.TempDir())+"destinations:\n"+destYAML("d", rcv.srv.URL, secretA, order+`    retry: {schedule: [200ms, 200ms, 200ms, 200ms, 200ms, 200ms, 200ms, 200ms]}
    breaker: {failures: 5, window: 3s, probe_every: 300ms}`))
			ids := n.send(emailOpens(5)...)
			waitFor(t, 30*time.Second, "the breaker to open", func() bool { return n.destinations()["d"].Breaker != "closed" })
			waitFor(t, 60*time.Second, "12 failed probes", func() bool { return n.probes(t, "d", "failure") >= 12 })
			if dl := n.destinations()["d"].DeadLettered; dl != 0 {
				t.Fatalf("%d dead letters while the breaker was open", dl)
			}
			down.Store(false)
			waitDelivered(t, rcv, 30*time.Second, ids)
			if dl := n.destinations()["d"].DeadLettered; dl != 0 {
				t.Errorf("%d dead letters", dl)
			}
		})
	}
}

// TestProbeRefusedClosesBreaker: once the receiver is back, a probe it
// answers with a refusal of that activity (422) closes the breaker — the
// receiver is up — and the refused activity goes on through its schedule
// to a dead letter. An ordered destination probes the oldest activity
// every time: handed back as a failed probe, a refused one would keep the
// breaker open for good while the receiver takes the rest.
func TestProbeRefusedClosesBreaker(t *testing.T) {
	for name, order := range orderings {
		t.Run(name, func(t *testing.T) {
			var down atomic.Bool
			down.Store(true)
			var refused atomic.Value
			refused.Store("")
			rcv := newReceiver(t, secretA)
			rcv.setRespond(func(id string, _ int) int {
				switch {
				case down.Load():
					return http.StatusInternalServerError
				case id == refused.Load().(string):
					return http.StatusUnprocessableEntity
				}
				return http.StatusOK
			})
			n := startRelay(t, baseYAML(t.TempDir())+"destinations:\n"+destYAML("d", rcv.srv.URL, secretA, order+`    retry: {schedule: [200ms, 200ms, 200ms]}
    breaker: {failures: 5, window: 3s, probe_every: 300ms}`))
			ids := n.send(emailOpens(6)...)
			refused.Store(ids[0]) // the oldest: an ordered destination's probe
			waitFor(t, 30*time.Second, "the breaker to open", func() bool { return n.destinations()["d"].Breaker != "closed" })
			waitFor(t, 30*time.Second, "a failed probe", func() bool { return n.probes(t, "d", "failure") >= 1 })
			down.Store(false)
			waitDelivered(t, rcv, 30*time.Second, ids[1:])
			waitFor(t, 30*time.Second, "the refused activity's dead letter", func() bool { return n.destinations()["d"].DeadLettered == 1 })
			if b := n.destinations()["d"].Breaker; b != "closed" {
				t.Errorf("breaker %q after the others were delivered", b)
			}
		})
	}
}

// TestResumeWhileOpenProbes: a pause while the breaker is open stops the
// probes; the resume starts them again, so the breaker closes once the
// receiver is back — after an operator's pause, and after a 410 that
// paused the destination.
func TestResumeWhileOpenProbes(t *testing.T) {
	for _, how := range []string{"operator", "410"} {
		t.Run(how, func(t *testing.T) {
			var status atomic.Int32
			status.Store(http.StatusInternalServerError)
			rcv := newReceiver(t, secretA)
			rcv.setRespond(func(string, int) int { return int(status.Load()) })
			n := startRelay(t, baseYAML(t.TempDir())+"destinations:\n"+destYAML("d", rcv.srv.URL, secretA, `    retry: {schedule: [1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s]}
    breaker: {failures: 5, window: 3s, probe_every: 300ms}`))
			ids := n.send(emailOpens(20)...)
			waitFor(t, 30*time.Second, "the breaker to open", func() bool { return n.destinations()["d"].Breaker != "closed" })
			if how == "operator" {
				if code, out := n.adminDo("POST", "/v1/destinations/d/pause", ""); code != http.StatusOK {
					t.Fatalf("pause: %d %v", code, out)
				}
			} else {
				status.Store(http.StatusGone) // the next probe pauses it
			}
			waitFor(t, 30*time.Second, "the destination paused", func() bool { return n.destinations()["d"].State == "paused" })
			status.Store(http.StatusOK)
			if code, out := n.adminDo("POST", "/v1/destinations/d/resume", ""); code != http.StatusOK {
				t.Fatalf("resume: %d %v", code, out)
			}
			waitDelivered(t, rcv, 20*time.Second, ids)
			waitFor(t, 10*time.Second, "the breaker to close", func() bool { return n.destinations()["d"].Breaker == "closed" })
		})
	}
}
