package relay_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relaydev/relay/config"
)

// TestHeldBytesOrderedBacklog: an ordered destination whose receiver fails
// while a backlog of large activities (300 × 200 KB, 60 contacts × 5) is
// stored holds no more than engine.max_held_bytes (8 MiB, against 60 MB of
// activities); once the receiver is healthy every activity is delivered
// once, in stored order per contact.
func TestHeldBytesOrderedBacklog(t *testing.T) {
	const (
		contacts = 60
		each     = 5
		budget   = 8 << 20
		pad      = 200_000
	)
	var healthy atomic.Bool
	rcv := newOrderReceiver(t, func(string, int, int) int {
		if healthy.Load() {
			return http.StatusOK
		}
		return http.StatusInternalServerError
	})
	schedule := "[" + strings.TrimSuffix(strings.Repeat("3s, ", 39), ", ") + "]"
	yaml := baseYAML(t.TempDir()) + fmt.Sprintf("engine: {max_held_bytes: %d}\ndestinations:\n", budget) +
		orderedDest(rcv.srv.URL, schedule) + "    breaker: off\n"
	n := startRelay(t, yaml)
	filler := strings.Repeat("x", pad)
	for i := range each {
		for from := 0; from < contacts; from += 15 { // 15 × 200 KB a request, under ingest.max_body
			items := make([]map[string]any, 0, 15)
			for c := from; c < min(from+15, contacts); c++ {
				items = append(items, map[string]any{"id": fmt.Sprintf("c%d-%d", c, i), "type": "email", "action": "open",
					"contact": map[string]any{"id": fmt.Sprintf("c%d", c)}, "attributes": map[string]any{"n": i, "pad": filler}})
			}
			n.send(items...)
		}
	}
	// Every contact's head has been attempted (and failed) and the lanes
	// hold the whole backlog.
	waitFor(t, 3*time.Minute, "the lanes to hold the backlog", func() bool {
		st := n.destinations()["ordered"].Order
		rcv.mu.Lock()
		tried := len(rcv.attempts)
		rcv.mu.Unlock()
		return st != nil && st.Held == contacts*each && tried == contacts
	})
	now, peak := n.relay.HeldBytes()
	t.Logf("held while failing: %d bytes now, %d at most (budget %d; the backlog is %d bytes)", now, peak, budget, contacts*each*pad)
	if peak > budget {
		t.Errorf("the engine held %d bytes at most, over engine.max_held_bytes %d", peak, budget)
	}
	healthy.Store(true)
	waitFor(t, 120*time.Second, "every activity delivered", func() bool { return rcv.deliveredCount() == contacts*each })
	rcv.check(t, contacts, each)
	rcv.mu.Lock()
	for id, at := range rcv.at {
		if rcv.last[id].After(at) {
			t.Errorf("activity %s attempted again after it was delivered", id)
		}
	}
	rcv.mu.Unlock()
	waitFor(t, 30*time.Second, "the lanes to be empty", func() bool {
		now, _ := n.relay.HeldBytes()
		return now == 0
	})
	_, peak = n.relay.HeldBytes()
	if peak > budget {
		t.Errorf("the engine held %d bytes at most, over engine.max_held_bytes %d", peak, budget)
	}
}

// TestHeldConfig: engine.max_held_bytes has its documented default and is
// refused, at its position, below ingest.max_activity.
func TestHeldConfig(t *testing.T) {
	base := "nats: {url: embedded}\ningest: {tokens: [t]}\nadmin: {token: a}\n"
	cfg, err := config.Parse("relay.yaml", []byte(base), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Engine.MaxHeldBytes != config.DefaultMaxHeldBytes || config.DefaultMaxHeldBytes != 64<<20 {
		t.Errorf("engine.max_held_bytes defaults to %d, want 64 MiB", cfg.Engine.MaxHeldBytes)
	}
	cfg, err = config.Parse("relay.yaml", []byte(base+"engine:\n  max_held_bytes: 100KiB\n"), func(string) (string, bool) { return "", false })
	if err == nil {
		t.Fatalf("engine.max_held_bytes of 100KiB accepted: %+v", cfg.Engine)
	}
	if !strings.Contains(err.Error(), "relay.yaml:5:") || !strings.Contains(err.Error(), "engine.max_held_bytes") {
		t.Errorf("error %q does not name engine.max_held_bytes at line 5", err)
	}
	if _, err := config.Parse("relay.yaml", []byte(base+"engine:\n  max_held_bytes: 16MiB\n"), func(string) (string, bool) { return "", false }); err != nil {
		t.Errorf("engine.max_held_bytes of 16MiB refused: %v", err)
	}
}

// TestHeldBytesStopsTaking: when even the lanes' handles reach
// engine.max_held_bytes (600 contacts × 2 activities behind a
// failing receiver, a 256 KiB budget), the ordered destination takes no
// more from the stream until some settle; what its pull had buffered is
// handed back, and once the receiver is healthy every activity is
// delivered once, in stored order per contact.
func TestHeldBytesStopsTaking(t *testing.T) {
	const (
		contacts = 600
		each     = 2
		budget   = 256 << 10
	)
	var healthy atomic.Bool
	rcv := newOrderReceiver(t, func(string, int, int) int {
		if healthy.Load() {
			return http.StatusOK
		}
		return http.StatusInternalServerError
	})
	schedule := "[" + strings.TrimSuffix(strings.Repeat("1s, ", 39), ", ") + "]"
	yaml := baseYAML(t.TempDir()) + fmt.Sprintf("engine: {max_held_bytes: %d}\n", budget) +
		"destinations:\n" +
		orderedDest(rcv.srv.URL, schedule) + "    breaker: off\n"
	yaml = strings.Replace(yaml, "ingest: {", "ingest: {max_activity: 16KiB, max_body: 1MiB, max_inflight_bytes: 4MiB, ", 1)
	n := startRelay(t, yaml)
	// One activity first, so the lanes' start (while they wait for what
	// was out, they take what arrives whatever the budget) is behind.
	n.send(map[string]any{"id": "first", "type": "email", "action": "open", "contact": map[string]any{"id": "first"}})
	waitFor(t, 30*time.Second, "the first activity attempted", func() bool {
		rcv.mu.Lock()
		defer rcv.mu.Unlock()
		return rcv.attempts["first"] > 0
	})
	sendRounds(t, n, contacts, each)
	// The lanes fill up to the budget and stop there: less than an
	// activity of the largest size (16 KiB) from it.
	var held int
	waitFor(t, 60*time.Second, "the lanes to reach the budget", func() bool {
		now, _ := n.relay.HeldBytes()
		st := n.destinations()["ordered"].Order
		held = st.Held
		return now > budget-20<<10
	})
	if held >= contacts*each {
		t.Errorf("the lanes hold all %d activities: %d bytes", held, contacts*each)
	}
	now, peak := n.relay.HeldBytes()
	t.Logf("lanes hold %d of %d activities: %d bytes now, %d at most (budget %d)", held, contacts*each, now, peak, budget)
	if peak > budget {
		t.Errorf("the engine held %d bytes at most, over engine.max_held_bytes %d", peak, budget)
	}
	healthy.Store(true)
	waitFor(t, 120*time.Second, "every activity delivered", func() bool { return rcv.deliveredCount() == contacts*each+1 })
	rcv.check(t, contacts, each)
	rcv.mu.Lock()
	for id, at := range rcv.at {
		if rcv.last[id].After(at) {
			t.Errorf("activity %s attempted again after it was delivered", id)
		}
	}
	rcv.mu.Unlock()
	if _, peak := n.relay.HeldBytes(); peak > budget {
		t.Errorf("the engine held %d bytes at most, over engine.max_held_bytes %d", peak, budget)
	}
}
