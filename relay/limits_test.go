package relay_test

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// slowReceiver takes a while per request and records concurrency.
type slowReceiver struct {
	srv                 *httptest.Server
	inFlight, maxFlight atomic.Int32
	started, completed  atomic.Int32
	release             chan struct{}
	mu                  sync.Mutex
}

func newSlowReceiver(t *testing.T, hold time.Duration) *slowReceiver {
	s := &slowReceiver{release: make(chan struct{})}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.started.Add(1)
		n := s.inFlight.Add(1)
		for {
			m := s.maxFlight.Load()
			if n <= m || s.maxFlight.CompareAndSwap(m, n) {
				break
			}
		}
		select { // a receiver doing work
		case <-time.After(hold):
		case <-s.release:
		}
		s.inFlight.Add(-1)
		w.WriteHeader(http.StatusOK)
		s.completed.Add(1)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

// TestMaxInFlightAndGracefulStop: no more than max_in_flight deliveries run
// at once, and stopping Relay lets the ones in flight finish.
func TestMaxInFlightAndGracefulStop(t *testing.T) {
	r := newSlowReceiver(t, 200*time.Millisecond)
	n := startRelay(t, baseYAML(t.TempDir())+"destinations:\n"+destYAML("slow", r.srv.URL, secretA, "    max_in_flight: 3"))
	var items []map[string]any
	for range 30 {
		items = append(items, map[string]any{"type": "pageview"})
	}
	n.send(items...)
	waitFor(t, 30*time.Second, "deliveries under way", func() bool { return r.completed.Load() >= 6 })
	n.stop()
	if got := r.maxFlight.Load(); got > 3 {
		t.Errorf("%d deliveries at once, max_in_flight is 3", got)
	}
	if s, c := r.started.Load(), r.completed.Load(); s != c {
		t.Errorf("stop cut deliveries short: %d started, %d completed", s, c)
	}
}

// TestRateLimit: rate_limit spaces deliveries out.
func TestRateLimit(t *testing.T) {
	r := newReceiver(t, secretA)
	n := startRelay(t, baseYAML(t.TempDir())+"destinations:\n"+destYAML("limited", r.srv.URL, secretA, "    rate_limit: 20/s"))
	var items []map[string]any
	for range 40 {
		items = append(items, map[string]any{"type": "pageview"})
	}
	start := time.Now()
	n.send(items...)
	waitFor(t, 30*time.Second, "40 deliveries", func() bool { return len(r.delivered()) == 40 })
	// 20 may go at once (the burst), the other 20 take a second at 20/s.
	if took := time.Since(start); took < 900*time.Millisecond {
		t.Errorf("40 deliveries at 20/s took %s, want at least ~1s", took)
	}
}

// TestCustomActivities: activities declared in relay.yaml are accepted and
// routed like built-in ones; undeclared ones are refused.
func TestCustomActivities(t *testing.T) {
	r := newReceiver(t, secretA)
	yaml := baseYAML(t.TempDir()) + `activities:
  - {name: loyalty.tier_changed, description: The contact moved to another loyalty tier.}
destinations:
` + destYAML("loyalty", r.srv.URL, secretA, `    include: ["loyalty.*"]`)
	n := startRelay(t, yaml)
	ids := n.send(map[string]any{"type": "loyalty", "action": "tier_changed"})
	if status, out := n.post(`{"type": "loyalty", "action": "points_expired"}`, ingestToken); status != 422 {
		t.Errorf("undeclared custom activity: %d %v", status, out)
	}
	waitFor(t, 30*time.Second, "the custom activity", func() bool { return r.delivered()[ids[0]] == 1 })
}
