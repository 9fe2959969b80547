package relay_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// allAttempts is every attempt the receiver got, in time order.
func (r *receiver) allAttempts() []time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	var all []time.Time
	for _, ts := range r.attempts {
		all = append(all, ts...)
	}
	slices.SortFunc(all, func(a, b time.Time) int { return a.Compare(b) })
	return all
}

func countSince(ts []time.Time, since time.Time) int {
	n := 0
	for _, t := range ts {
		if !t.Before(since) {
			n++
		}
	}
	return n
}

// probes reads relay_breaker_probes_total of a destination and outcome.
func (n *node) probes(t *testing.T, dest, outcome string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", n.admin+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	series := fmt.Sprintf(`relay_breaker_probes_total{destination=%q,outcome=%q}`, dest, outcome)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindSubmatch(body)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return int(v)
}

// breakerDest is a destination whose breaker opens once 3s went by
// without a success and with at least 5 failures, and probes each second,
// with a retry schedule long enough that nothing becomes a dead letter in
// the test unless retries are used up while down.
func breakerDest(url string) string {
	return destYAML("d", url, secretA, `    max_in_flight: 4
    retry: {schedule: [1s, 1s, 1s, 1s, 1s, 1s]}
    breaker: {failures: 5, window: 3s, probe_every: 1s}`)
}

func emailOpens(n int) []map[string]any {
	items := make([]map[string]any, n)
	for i := range items {
		items[i] = map[string]any{"type": "email", "action": "open", "contact": map[string]any{"email": fmt.Sprintf("b%d@example.com", i)}}
	}
	return items
}

// TestBreakerDownThenBack: a receiver down for a while gets only probes
// while the breaker is open, and every activity once it is back, with no
// dead letter; twice over, as a flapping receiver.
func TestBreakerDownThenBack(t *testing.T) {
	var down atomic.Bool
	rcv := newReceiver(t, secretA)
	rcv.setRespond(func(string, int) int {
		if down.Load() {
			return http.StatusServiceUnavailable
		}
		return http.StatusNoContent
	})
	n := startRelay(t, baseYAML(t.TempDir())+"destinations:\n"+breakerDest(rcv.srv.URL))
	if got := n.destinations()["d"].Breaker; got != "closed" {
		t.Fatalf("breaker at start: %q", got)
	}
	var ids []string
	for cycle := 1; cycle <= 2; cycle++ {
		down.Store(true)
		ids = append(ids, n.send(emailOpens(40)...)...)
		waitFor(t, 30*time.Second, "the breaker to open", func() bool { return n.destinations()["d"].Breaker != "closed" })
		opened := time.Now()
		before := n.probes(t, "d", "failure")
		waitFor(t, 30*time.Second, "5 failed probes", func() bool { return n.probes(t, "d", "failure") >= before+5 })
		probes := n.probes(t, "d", "failure") - before
		attempts := rcv.allAttempts()
		whileOpen := countSince(attempts, opened)
		// Attempts in flight when it opened finish; after them, only probes.
		if whileOpen > probes+4+1 {
			t.Errorf("cycle %d: %d attempts in the %s the breaker was open, with %d probes", cycle, whileOpen, time.Since(opened).Round(time.Millisecond), probes)
		}
		var gaps []time.Duration
		open := attempts[len(attempts)-whileOpen:]
		for i := 5; i < len(open); i++ { // the last probes, past any attempt in flight
			gaps = append(gaps, open[i].Sub(open[i-1]))
		}
		for _, g := range gaps {
			if g < 800*time.Millisecond {
				t.Errorf("cycle %d: probes %s apart, want one each second: %v", cycle, g, gaps)
				break
			}
		}
		down.Store(false)
		back := time.Now()
		waitFor(t, 60*time.Second, "every activity delivered", func() bool {
			got := rcv.delivered()
			for _, id := range ids {
				if got[id] == 0 {
					return false
				}
			}
			return true
		})
		recovery := time.Since(back)
		waitFor(t, 10*time.Second, "the breaker to close", func() bool { return n.destinations()["d"].Breaker == "closed" })
		t.Logf("cycle %d: %d attempts while open (%d probes, %s), every activity delivered %s after the receiver came back",
			cycle, whileOpen, probes, back.Sub(opened).Round(time.Millisecond), recovery.Round(time.Millisecond))
	}
	if dl := n.destinations()["d"].DeadLettered; dl != 0 {
		t.Errorf("%d dead letters: waiting activities used up retries", dl)
	}
}

// TestBreakerSharedByTwoProcesses: two Relays on one NATS see the same
// breaker; while it is open only one of them probes at a time.
func TestBreakerSharedByTwoProcesses(t *testing.T) {
	url := secureNATS(t, func(*server.Options) {})
	var down atomic.Bool
	down.Store(true)
	rcv := newReceiver(t, secretA)
	rcv.setRespond(func(string, int) int {
		if down.Load() {
			return http.StatusServiceUnavailable
		}
		return http.StatusNoContent
	})
	yaml := fmt.Sprintf(`nats: {url: %q}
ingest: {listen: "127.0.0.1:0", tokens: [%q]}
admin: {listen: "127.0.0.1:0", token: %q}
destinations:
%s`, url, ingestToken, adminToken, breakerDest(rcv.srv.URL))
	a, b := startRelay(t, yaml), startRelay(t, yaml)
	ids := a.send(emailOpens(60)...)
	waitFor(t, 30*time.Second, "the breaker to open in both", func() bool {
		return a.destinations()["d"].Breaker != "closed" && b.destinations()["d"].Breaker != "closed"
	})
	opened := time.Now()
	probes := func() int { return a.probes(t, "d", "failure") + b.probes(t, "d", "failure") }
	before := probes()
	waitFor(t, 30*time.Second, "6 failed probes", func() bool { return probes() >= before+6 })
	made := probes() - before
	whileOpen := countSince(rcv.allAttempts(), opened)
	if whileOpen > made+2*4+1 {
		t.Errorf("%d attempts while open, with %d probes from both processes", whileOpen, made)
	}
	elapsed := time.Since(opened)
	if maxProbes := int(elapsed/time.Second) + 2; made > maxProbes {
		t.Errorf("%d probes in %s: both processes probed each second", made, elapsed)
	}
	t.Logf("%d attempts and %d probes (a %d, b %d) in the %s the breaker was open", whileOpen, made,
		a.probes(t, "d", "failure"), b.probes(t, "d", "failure"), elapsed.Round(time.Millisecond))
	down.Store(false)
	waitFor(t, 60*time.Second, "every activity delivered", func() bool {
		got := rcv.delivered()
		for _, id := range ids {
			if got[id] == 0 {
				return false
			}
		}
		return true
	})
	waitFor(t, 10*time.Second, "the breaker to close in both", func() bool {
		return a.destinations()["d"].Breaker == "closed" && b.destinations()["d"].Breaker == "closed"
	})
	if dl := a.destinations()["d"].DeadLettered; dl != 0 {
		t.Errorf("%d dead letters", dl)
	}
}

// TestBreakerRampsUp: when the breaker closes, a backlog is not sent at
// full concurrency at once: one attempt at a time at first, doubling each
// second up to max_in_flight.
func TestBreakerRampsUp(t *testing.T) {
	var down atomic.Bool
	down.Store(true)
	var (
		mu      sync.Mutex
		cur     int
		samples []struct {
			at time.Time
			n  int
		}
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		mu.Lock()
		cur++
		samples = append(samples, struct {
			at time.Time
			n  int
		}{time.Now(), cur})
		mu.Unlock()
		time.Sleep(50 * time.Millisecond) // a receiver that takes its time
		mu.Lock()
		cur--
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	n := startRelay(t, baseYAML(t.TempDir())+"destinations:\n"+destYAML("d", srv.URL, secretA, `    max_in_flight: 16
    retry: {schedule: [1s, 1s, 1s, 1s, 1s, 1s]}
    breaker: {failures: 5, window: 10s, probe_every: 1s}`))
	n.send(emailOpens(300)...)
	waitFor(t, 30*time.Second, "the breaker to open", func() bool { return n.destinations()["d"].Breaker != "closed" })
	down.Store(false)
	waitFor(t, 60*time.Second, "all 300 delivered", func() bool { return n.destinations()["d"].Delivered == 300 })
	mu.Lock()
	defer mu.Unlock()
	closed := samples[0].at // the successful probe
	early, peak := 0, 0
	for _, s := range samples {
		if s.at.Sub(closed) < 900*time.Millisecond {
			early = max(early, s.n)
		}
		peak = max(peak, s.n)
	}
	if early > 2 {
		t.Errorf("%d attempts at once in the first second after the breaker closed; want a ramp from 1", early)
	}
	if peak < 8 {
		t.Errorf("concurrency peaked at %d; the ramp should reach max_in_flight's range (16)", peak)
	}
	t.Logf("concurrency: at most %d in the first 900ms after the breaker closed, peak %d; 300 delivered in %s",
		early, peak, samples[len(samples)-1].at.Sub(closed).Round(time.Millisecond))
}

// TestBreakerHoldsAcrossReload: a destination changed by a reload while
// its breaker is open starts its new worker held: still only probes.
func TestBreakerHoldsAcrossReload(t *testing.T) {
	var down atomic.Bool
	down.Store(true)
	rcv := newReceiver(t, secretA)
	rcv.setRespond(func(string, int) int {
		if down.Load() {
			return http.StatusServiceUnavailable
		}
		return http.StatusNoContent
	})
	head := baseYAML(t.TempDir()) + "destinations:\n"
	f := newConfigFile(t, head+breakerDest(rcv.srv.URL))
	n := startFromFile(t, f)
	ids := n.send(emailOpens(30)...)
	waitFor(t, 30*time.Second, "the breaker to open", func() bool { return n.destinations()["d"].Breaker != "closed" })
	f.write(t, head+breakerDest(rcv.srv.URL)+"    rate_limit: 100/s\n")
	if status, out := n.reload(t, adminToken); status != http.StatusOK || fmt.Sprint(out["changed"]) != "[d]" {
		t.Fatalf("reload: %d %v", status, out)
	}
	reloaded := time.Now()
	before := n.probes(t, "d", "failure")
	waitFor(t, 30*time.Second, "3 more failed probes", func() bool { return n.probes(t, "d", "failure") >= before+3 })
	probes := n.probes(t, "d", "failure") - before
	if got := countSince(rcv.allAttempts(), reloaded); got > probes+1 {
		t.Errorf("%d attempts after the reload with the breaker open, with %d probes", got, probes)
	}
	down.Store(false)
	waitFor(t, 60*time.Second, "every activity delivered", func() bool {
		got := rcv.delivered()
		for _, id := range ids {
			if got[id] == 0 {
				return false
			}
		}
		return true
	})
}
