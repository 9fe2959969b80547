package relay_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestEngineMaxInFlight: engine.max_in_flight bounds the calls in flight
// across every destination — plain, ordered and retrying ones alike —
// while each destination's own max_in_flight would allow more, and every
// activity still arrives.
func TestEngineMaxInFlight(t *testing.T) {
	for _, bound := range []int{1, 3} {
		t.Run(fmt.Sprintf("max_in_flight %d", bound), func(t *testing.T) {
			var now, peak atomic.Int32
			var mu sync.Mutex
			got := map[string]int{}   // destination/id -> deliveries
			tries := map[string]int{} // destination/id -> attempts
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
				n := now.Add(1)
				defer now.Add(-1)
				for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
				}
				time.Sleep(2 * time.Millisecond) // the call takes a while, so calls overlap
				key := req.URL.Path + "/" + req.Header.Get("webhook-id")
				mu.Lock()
				defer mu.Unlock()
				tries[key]++
				if strings.HasPrefix(req.URL.Path, "/flaky") && tries[key] == 1 {
					w.WriteHeader(http.StatusServiceUnavailable)
					return
				}
				got[key]++
				w.WriteHeader(http.StatusNoContent)
			}))
			defer srv.Close()
			dests := []string{"a", "b", "c", "ordered", "flaky"}
			yaml := baseYAML(t.TempDir()) + fmt.Sprintf("engine: {max_in_flight: %d}\ndestinations:\n", bound)
			for _, d := range dests {
				extra := ""
				switch d {
				case "ordered":
					extra = ", order: contact"
				case "flaky": // every first attempt fails: no breaker
					extra = ", breaker: off"
				}
				yaml += fmt.Sprintf("  - {name: %s, type: webhook, url: %q, allow_private_network: true, secrets: [%q], max_in_flight: 4, retry: {schedule: [50ms]}%s}\n",
					d, srv.URL+"/"+d, secretA, extra)
			}
			n := startRelay(t, yaml)
			const activities = 40
			var batch []string
			for i := range activities {
				batch = append(batch, fmt.Sprintf(`{"id":"calls-%d","type":"email","action":"open","contact":{"email":"c%d@example.com"}}`, i, i%7))
			}
			if code, out := n.post("["+strings.Join(batch, ",")+"]", ingestToken); code != http.StatusAccepted {
				t.Fatalf("ingest: %d %v", code, out)
			}
			waitFor(t, 60*time.Second, "every destination to get every activity", func() bool {
				mu.Lock()
				defer mu.Unlock()
				return len(got) == activities*len(dests)
			})
			mu.Lock()
			defer mu.Unlock()
			for k, c := range got {
				if c != 1 {
					t.Errorf("%s delivered %d times", k, c)
				}
			}
			if p := peak.Load(); p > int32(bound) {
				t.Errorf("%d calls were in flight at once, engine.max_in_flight is %d", p, bound)
			}
		})
	}
}
