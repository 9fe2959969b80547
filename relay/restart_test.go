package relay_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestConfigChangeOnRestart: a restart with new include patterns and a new
// destination takes effect without re-sending what was already delivered;
// the new destination starts with new activities, and replay --history
// backfills it.
func TestConfigChangeOnRestart(t *testing.T) {
	a := newReceiver(t, secretA)
	b := newReceiver(t, secretB)
	dir := t.TempDir()
	first := startRelay(t, baseYAML(dir)+"destinations:\n"+destYAML("a", a.srv.URL, secretA, `    include: ["email.*"]`))
	old := first.send(map[string]any{"type": "email", "action": "open"}, map[string]any{"type": "sms", "action": "sent"})
	waitSettled(t, first, "a")
	first.stop()

	second := startRelay(t, baseYAML(dir)+"destinations:\n"+
		destYAML("a", a.srv.URL, secretA, `    include: ["email.*", "sms.*"]`)+
		destYAML("b", b.srv.URL, secretB, ""))
	fresh := second.send(map[string]any{"type": "sms", "action": "sent"}, map[string]any{"type": "email", "action": "click"})
	waitFor(t, 30*time.Second, "new activities at a and b", func() bool {
		ga, gb := a.delivered(), b.delivered()
		return ga[fresh[0]] == 1 && ga[fresh[1]] == 1 && gb[fresh[0]] == 1 && gb[fresh[1]] == 1
	})
	waitSettled(t, second, "a", "b")
	// The old email is not sent again. The old sms, outside include when it
	// arrived, may follow if the consumer had not moved past it: JetStream
	// applies new filters from the consumer's position on.
	got := a.delivered()
	if got[old[0]] != 1 || got[old[1]] > 1 || len(got) < 3 || len(got) > 4 {
		t.Errorf("a got %v: want the old email once and the 2 new", got)
	}
	before := len(got)
	if got := b.delivered(); len(got) != 2 {
		t.Errorf("new destination b got %v, want only the 2 new activities", got)
	}

	// Backfill b with everything retained, email only.
	status, out := second.adminDo("POST", "/v1/replay", `{"destination": "b", "history": true, "activity": "email.*"}`)
	if status != http.StatusOK || out["replayed"] != float64(2) {
		t.Fatalf("history replay: %d %v", status, out)
	}
	waitFor(t, 30*time.Second, "backfill of b", func() bool { return b.delivered()[old[0]] == 1 })
	waitSettled(t, second, "a", "b")
	if got := b.delivered(); got[old[1]] != 0 || got[fresh[1]] != 2 || len(got) != 3 {
		t.Errorf("b after backfill: %v; want the old email, the new click twice (replayed), never the old sms", got)
	}
	if got := a.delivered(); len(got) != before {
		t.Errorf("the replay reached a: %v", got)
	}
}

// TestAdminAPI: auth, readiness, metrics, unknown names, no secrets.
func TestAdminAPI(t *testing.T) {
	r := newReceiver(t, secretA)
	n := startRelay(t, baseYAML(t.TempDir())+"destinations:\n"+destYAML("hook", r.srv.URL, secretA, ""))
	n.send(map[string]any{"type": "email", "action": "open"})
	waitSettled(t, n, "hook")
	tests := []struct {
		method, path, token, body string
		status                    int
		has                       string
	}{
		{"GET", "/healthz", "", "", 200, "ok"},
		{"GET", "/readyz", "", "", 200, "ready"},
		{"GET", "/v1/destinations", "", "", 401, "bearer token"},
		{"GET", "/v1/destinations", "wrong", "", 401, "bearer token"},
		{"GET", "/v1/destinations?token=" + adminToken, "", "", 401, "bearer token"},
		{"GET", "/v1/destinations", adminToken, "", 200, `"delivered":1`},
		{"GET", "/metrics", adminToken, "", 200, `relay_delivered_total{destination="hook"} 1`},
		{"POST", "/v1/destinations/nope/pause", adminToken, "", 404, "unknown destination"},
		{"GET", "/v1/deadletters?limit=0", adminToken, "", 400, "limit"},
		{"GET", "/v1/deadletters?cursor=x", adminToken, "", 400, "cursor"},
		{"POST", "/v1/replay", adminToken, `{"destination": "nope"}`, 404, "unknown destination"},
		{"POST", "/v1/replay", adminToken, `{"destination": "hook", "activity": "Email.*"}`, 400, "invalid activity pattern"},
		{"POST", "/v1/replay", adminToken, `{"destinaton": "hook"}`, 400, "unknown field"},
	}
	for _, tc := range tests {
		req, _ := http.NewRequest(tc.method, n.admin+tc.path, strings.NewReader(tc.body))
		if tc.token != "" {
			req.Header.Set("Authorization", "Bearer "+tc.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var sb strings.Builder
		_, _ = io.Copy(&sb, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || !strings.Contains(sb.String(), tc.has) {
			t.Errorf("%s %s: %d %q, want %d with %q", tc.method, tc.path, resp.StatusCode, sb.String(), tc.status, tc.has)
		}
		if strings.Contains(sb.String(), "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw") || strings.Contains(sb.String(), ingestToken) {
			t.Errorf("%s %s leaks a secret", tc.method, tc.path)
		}
	}
}
