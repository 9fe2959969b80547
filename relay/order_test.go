package relay_test

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// orderReceiver records, per contact, the activities (attributes.n) in the
// order of their first successful delivery, and checks that a contact
// never has two attempts in flight at once.
type orderReceiver struct {
	srv *httptest.Server

	mu       sync.Mutex
	first    map[string][]int     // contact -> n of each first success, in arrival order
	done     map[string]bool      // activity id -> delivered
	inFlight map[string]int       // contact -> attempts in flight
	overlaps int                  // attempts that began while another of the contact was in flight
	attempts map[string]int       // activity id -> attempts
	at       map[string]time.Time // activity id -> first success
	last     map[string]time.Time // activity id -> latest attempt
	contact  map[string]string    // activity id -> contact
	// respond decides the status of an attempt: contact, n, attempt number.
	respond func(contact string, n, attempt int) int
}

func newOrderReceiver(t *testing.T, respond func(contact string, n, attempt int) int) *orderReceiver {
	r := &orderReceiver{first: map[string][]int{}, done: map[string]bool{}, inFlight: map[string]int{},
		attempts: map[string]int{}, contact: map[string]string{}, at: map[string]time.Time{}, last: map[string]time.Time{}, respond: respond}
	r.srv = httptest.NewServer(http.HandlerFunc(r.handle))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *orderReceiver) handle(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	var msg struct {
		Data struct {
			ID      string `json:"id"`
			Contact struct {
				ID string `json:"id"`
			} `json:"contact"`
			Attributes struct {
				N int `json:"n"`
			} `json:"attributes"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &msg); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	id, contact, n := msg.Data.ID, msg.Data.Contact.ID, msg.Data.Attributes.N
	r.mu.Lock()
	if r.inFlight[contact] > 0 {
		r.overlaps++
	}
	r.inFlight[contact]++
	r.attempts[id]++
	r.last[id] = time.Now()
	r.contact[id] = contact
	status := r.respond(contact, n, r.attempts[id])
	r.mu.Unlock()
	time.Sleep(time.Millisecond) // an attempt takes a moment, so overlaps would show
	r.mu.Lock()
	r.inFlight[contact]--
	if status < 300 && !r.done[id] {
		r.done[id] = true
		r.first[contact] = append(r.first[contact], n)
		r.at[id] = time.Now()
	}
	r.mu.Unlock()
	w.WriteHeader(status)
}

func (r *orderReceiver) deliveredCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.done)
}

// check reports every contact whose first deliveries are not 0, 1, 2…
// (stored order) or are missing some, and any overlapping attempts.
func (r *orderReceiver) check(t *testing.T, contacts, each int) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	bad := 0
	for c := range contacts {
		got := r.first[fmt.Sprintf("c%d", c)]
		ok := len(got) == each
		for i := 0; ok && i < each; i++ {
			ok = got[i] == i
		}
		if !ok {
			if bad < 5 {
				t.Errorf("contact c%d: first deliveries in order %v, want 0..%d", c, got, each-1)
			}
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d contacts out of order or incomplete", bad, contacts)
	}
	if r.overlaps > 0 {
		t.Errorf("%d attempts began while an earlier one of the same contact was in flight", r.overlaps)
	}
}

// orderedDest is an ordered webhook destination with the given schedule.
func orderedDest(url, schedule string) string {
	return destYAML("ordered", url, secretA, fmt.Sprintf(`    order: contact
    max_in_flight: 64
    retry: {schedule: %s}`, schedule))
}

// sendRounds sends each contact's activities n = 0..each-1, round by round,
// so a contact's activities are stored in the order of n.
func sendRounds(t *testing.T, n *node, contacts, each int) {
	t.Helper()
	for i := range each {
		items := make([]map[string]any, 0, 1000)
		for c := range contacts {
			items = append(items, map[string]any{"id": fmt.Sprintf("c%d-%d", c, i), "type": "email", "action": "open",
				"contact": map[string]any{"id": fmt.Sprintf("c%d", c)}, "attributes": map[string]any{"n": i}})
			if len(items) == 1000 {
				n.send(items...)
				items = items[:0]
			}
		}
		if len(items) > 0 {
			n.send(items...)
		}
	}
}

func TestOrderPerContactThroughFailures(t *testing.T) {
	contacts, each := 2000, 10
	if testing.Short() {
		contacts = 500
	}
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(14, 14))
	recv := newOrderReceiver(t, func(string, int, int) int {
		mu.Lock()
		defer mu.Unlock()
		if rng.Float64() < 0.3 {
			return http.StatusServiceUnavailable
		}
		return http.StatusNoContent
	})
	n := startRelay(t, baseYAML(t.TempDir())+"destinations:\n"+
		orderedDest(recv.srv.URL, "[10ms, 20ms, 20ms, 20ms, 20ms, 20ms, 20ms, 20ms, 20ms, 20ms, 20ms, 20ms, 20ms, 20ms, 20ms]"))
	start := time.Now()
	sendRounds(t, n, contacts, each)
	waitFor(t, 120*time.Second, "every activity delivered", func() bool { return recv.deliveredCount() == contacts*each })
	t.Logf("%d activities of %d contacts delivered in order in %s", contacts*each, contacts, time.Since(start))
	recv.check(t, contacts, each)
	if _, out := n.adminDo("GET", "/v1/deadletters?destination=ordered", ""); out["total"] != float64(0) {
		t.Errorf("dead letters: %v", out["total"])
	}
}

func TestOrderDeadLetterHoldsOnlyItsContact(t *testing.T) {
	contacts, each := 200, 5
	recv := newOrderReceiver(t, func(contact string, n, _ int) int {
		if contact == "c0" && n == 0 {
			return http.StatusInternalServerError
		}
		return http.StatusNoContent
	})
	n := startRelay(t, baseYAML(t.TempDir())+"destinations:\n"+orderedDest(recv.srv.URL, "[2s, 2s, 2s]"))
	sendRounds(t, n, contacts, each)
	waitFor(t, 10*time.Second, "the trace and status to show c0's activities held behind the failing one", func() bool {
		status, out := n.adminDo("GET", "/v1/activities/c0-1", "")
		if status != http.StatusOK {
			return false
		}
		dests, _ := out["destinations"].([]any)
		if len(dests) != 1 {
			return false
		}
		d := dests[0].(map[string]any)
		order := n.destinations()["ordered"].Order
		return d["status"] == "pending" && d["held_behind"] == "c0-0" && order != nil && order.HeldBehind >= each-1
	})
	others := (contacts - 1) * each
	var othersDone time.Time
	waitFor(t, 30*time.Second, "the other contacts delivered", func() bool {
		recv.mu.Lock()
		defer recv.mu.Unlock()
		count := 0
		for c := 1; c < contacts; c++ {
			count += len(recv.first[fmt.Sprintf("c%d", c)])
		}
		if count == others && othersDone.IsZero() {
			othersDone = time.Now()
		}
		return count == others
	})
	waitFor(t, 30*time.Second, "c0's later activities delivered", func() bool {
		recv.mu.Lock()
		defer recv.mu.Unlock()
		return len(recv.first["c0"]) == each-1
	})
	recv.mu.Lock()
	defer recv.mu.Unlock()
	var failing string
	for id, k := range recv.attempts {
		if !recv.done[id] {
			failing = id
			if k != 4 {
				t.Errorf("the failing activity had %d attempts, want 4 (the whole schedule)", k)
			}
		}
	}
	lastAttempt := recv.last[failing]
	if !othersDone.Before(lastAttempt) {
		t.Errorf("other contacts done at %s, after the failing activity's last attempt at %s: they were held up", othersDone.Format(time.StampMilli), lastAttempt.Format(time.StampMilli))
	}
	if got := recv.first["c0"]; fmt.Sprint(got) != "[1 2 3 4]" {
		t.Errorf("c0 delivered %v, want [1 2 3 4]", got)
	}
	for id, at := range recv.at {
		if recv.contact[id] == "c0" && at.Before(lastAttempt) {
			t.Errorf("c0's activity %s delivered at %s, before the failing one's last attempt", id, at.Format(time.StampMilli))
		}
	}
	_, out := n.adminDo("GET", "/v1/deadletters?destination=ordered", "")
	if out["total"] != float64(1) {
		t.Errorf("dead letters: %v, want 1", out["total"])
	}
}

// TestOrderReplayKeepsStoredOrder: a contact's dead letters, one of them
// replayed alone and dead again (so the dead letters are no longer in
// stored order), are replayed together and arrive in stored order.
func TestOrderReplayKeepsStoredOrder(t *testing.T) {
	var failing sync.Map
	failing.Store("on", true)
	recv := newOrderReceiver(t, func(string, int, int) int {
		if _, on := failing.Load("on"); on {
			return http.StatusInternalServerError
		}
		return http.StatusNoContent
	})
	n := startRelay(t, baseYAML(t.TempDir())+"destinations:\n"+orderedDest(recv.srv.URL, "[50ms]"))
	deadLetters := func() float64 {
		_, out := n.adminDo("GET", "/v1/deadletters?destination=ordered", "")
		total, _ := out["total"].(float64)
		return total
	}
	for i := range 3 { // one post each: stored at different instants
		n.send(map[string]any{"id": fmt.Sprintf("c0-%d", i), "type": "email", "action": "open",
			"contact": map[string]any{"id": "c0"}, "attributes": map[string]any{"n": i}})
	}
	waitFor(t, 20*time.Second, "three dead letters", func() bool { return deadLetters() == 3 })
	if status, out := n.adminDo("POST", "/v1/replay", `{"destination": "ordered", "ids": ["c0-1"]}`); status != http.StatusOK {
		t.Fatalf("replay: %d %v", status, out)
	}
	waitFor(t, 20*time.Second, "c0-1 dead again", func() bool {
		recv.mu.Lock()
		defer recv.mu.Unlock()
		return recv.attempts["c0-1"] == 4 && deadLetters() == 3
	})
	failing.Delete("on")
	if status, out := n.adminDo("POST", "/v1/replay", `{"destination": "ordered"}`); status != http.StatusOK || out["replayed"] != float64(3) {
		t.Fatalf("replay: %d %v", status, out)
	}
	waitFor(t, 20*time.Second, "the replayed activities delivered", func() bool { return recv.deliveredCount() == 3 })
	recv.check(t, 1, 3)
}

// TestOrderTurnedOnAndOff: a destination's consumer changes to and from
// order: contact across restarts, keeping its place.
func TestOrderTurnedOnAndOff(t *testing.T) {
	recv := newOrderReceiver(t, func(string, int, int) int { return http.StatusNoContent })
	dir := t.TempDir()
	plain := destYAML("ordered", recv.srv.URL, secretA, "")
	for round, dest := range []string{plain, orderedDest(recv.srv.URL, "[50ms]"), plain} {
		n := startRelay(t, baseYAML(dir)+"destinations:\n"+dest)
		n.send(map[string]any{"id": fmt.Sprintf("c0-%d", round), "type": "email", "action": "open",
			"contact": map[string]any{"id": "c0"}, "attributes": map[string]any{"n": round}})
		waitFor(t, 10*time.Second, fmt.Sprintf("delivery in round %d", round), func() bool { return recv.deliveredCount() == round+1 })
		n.stop()
	}
	recv.check(t, 1, 3)
}

// TestOrderPauseKeepsRetryTiming: a contact's head waiting out its retry
// delay is handed back on a pause; after the resume its next attempt is
// still due a delay after the failed one (read from the attempt history),
// and the contact's next activity still waits for it.
func TestOrderPauseKeepsRetryTiming(t *testing.T) {
	recv := newOrderReceiver(t, func(_ string, n, attempt int) int {
		if n == 0 && attempt == 1 {
			return http.StatusServiceUnavailable
		}
		return http.StatusNoContent
	})
	n := startRelay(t, baseYAML(t.TempDir())+"destinations:\n"+orderedDest(recv.srv.URL, "[3s]"))
	n.send(map[string]any{"id": "c0-0", "type": "email", "action": "open", "contact": map[string]any{"id": "c0"}, "attributes": map[string]any{"n": 0}},
		map[string]any{"id": "c0-1", "type": "email", "action": "open", "contact": map[string]any{"id": "c0"}, "attributes": map[string]any{"n": 1}})
	waitFor(t, 10*time.Second, "the first attempt", func() bool {
		recv.mu.Lock()
		defer recv.mu.Unlock()
		return recv.attempts["c0-0"] == 1
	})
	recv.mu.Lock()
	failedAt := recv.last["c0-0"]
	recv.mu.Unlock()
	if status, _ := n.adminDo("POST", "/v1/destinations/ordered/pause", ""); status != http.StatusOK {
		t.Fatalf("pause: %d", status)
	}
	waitFor(t, 10*time.Second, "the lanes handed back", func() bool {
		o := n.destinations()["ordered"].Order
		return o != nil && o.Held == 0
	})
	if status, _ := n.adminDo("POST", "/v1/destinations/ordered/resume", ""); status != http.StatusOK {
		t.Fatalf("resume: %d", status)
	}
	waitFor(t, 15*time.Second, "both delivered", func() bool { return recv.deliveredCount() == 2 })
	recv.mu.Lock()
	retriedAt := recv.at["c0-0"]
	recv.mu.Unlock()
	// The history dates an attempt from its start, a moment before the
	// receiver sees it.
	if gap := retriedAt.Sub(failedAt); gap < 3*time.Second-100*time.Millisecond {
		t.Errorf("second attempt %s after the failed one, want the schedule's 3s", gap)
	}
	recv.check(t, 1, 2)
}

// TestOrderThroughBreaker: a receiver failing every attempt opens the
// breaker of an ordered destination; the lanes are handed back, the probe
// takes the oldest activity, and once the receiver is back every contact's
// activities arrive in stored order.
func TestOrderThroughBreaker(t *testing.T) {
	contacts, each := 20, 5
	var down sync.Map
	down.Store("on", true)
	recv := newOrderReceiver(t, func(string, int, int) int {
		if _, on := down.Load("on"); on {
			return http.StatusServiceUnavailable
		}
		return http.StatusNoContent
	})
	n := startRelay(t, baseYAML(t.TempDir())+"destinations:\n"+destYAML("ordered", recv.srv.URL, secretA, `    order: contact
    retry: {schedule: [100ms, 100ms, 100ms, 100ms, 100ms, 100ms, 100ms, 100ms, 100ms, 100ms, 100ms, 100ms, 100ms, 100ms, 100ms, 100ms, 100ms, 100ms, 100ms, 100ms]}
    breaker: {failures: 5, window: 10s, probe_every: 1s}`))
	sendRounds(t, n, contacts, each)
	waitFor(t, 20*time.Second, "the breaker open", func() bool { return n.destinations()["ordered"].Breaker == "open" })
	down.Delete("on")
	waitFor(t, 60*time.Second, "every activity delivered", func() bool { return recv.deliveredCount() == contacts*each })
	recv.check(t, contacts, each)
	if got := scrape(t, n, `relay_breaker_probes_total{destination="ordered",outcome="success"}`); got != 1 {
		t.Errorf("successful probes = %v, want 1", got)
	}
}
