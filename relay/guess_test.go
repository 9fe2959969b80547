package relay_test

import (
	"net/http"
	"strconv"
	"testing"
)

// TestWrongTokensLimited: guessing the admin or ingest token is limited per
// client: after a burst of wrong tokens, every request of that client is a
// 429 with Retry-After — the right token too, so a guess learns nothing —
// and the other API's listener counts apart.
func TestWrongTokensLimited(t *testing.T) {
	n := startRelay(t, baseYAML(t.TempDir()))
	bad := http.Header{"Authorization": {"Bearer guess"}}
	limited := 0
	for i := range 400 {
		res := doRaw(t, "GET", n.admin+"/v1/destinations", bad, "")
		switch res.status {
		case http.StatusUnauthorized:
			if limited > 0 {
				t.Fatalf("request %d: 401 after %d were limited", i, limited)
			}
		case http.StatusTooManyRequests:
			limited++
			if s, err := strconv.Atoi(res.header.Get("Retry-After")); err != nil || s < 1 {
				t.Fatalf("Retry-After %q", res.header.Get("Retry-After"))
			}
		default:
			t.Fatalf("request %d: %d %s", i, res.status, res.body)
		}
	}
	if limited < 50 {
		t.Fatalf("only %d of 400 wrong tokens limited", limited)
	}
	right := doRaw(t, "GET", n.admin+"/v1/destinations", http.Header{"Authorization": {"Bearer " + adminToken}}, "")
	if right.status != http.StatusTooManyRequests {
		t.Errorf("the right token while limited: %d, want 429", right.status)
	}
	// The ingest listener keeps its own count; its three routes share it.
	if status, _ := n.post(`{"type":"pageview"}`, ingestToken); status != http.StatusAccepted {
		t.Errorf("ingest with the right token: %d", status)
	}
	routes := []struct {
		path string
		h    http.Header
	}{
		{"/v1/activities", http.Header{"Authorization": {"Bearer guess"}}},
		{"/v3/events", http.Header{"X-Api-Key": {"guess"}}},
		{"/v1/sources/ortto", http.Header{"Authorization": {"Basic Z3Vlc3M6Z3Vlc3M="}}},
	}
	seen := map[int]int{}
	for i := range 400 {
		r := routes[i%len(routes)]
		seen[doRaw(t, "POST", n.ingest+r.path, r.h, `{}`).status]++
	}
	if seen[http.StatusTooManyRequests] < 50 || seen[http.StatusUnauthorized] == 0 || len(seen) != 2 {
		t.Errorf("400 wrong tokens over the ingest routes: %v", seen)
	}
}
