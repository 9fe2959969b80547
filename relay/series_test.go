package relay_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/relaydev/relay/relay/api"
)

// getSeries reads GET path as a series.
func (n *node) getJSON(t *testing.T, path string, v any) int {
	t.Helper()
	req, _ := http.NewRequest("GET", n.admin+path, nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(data, v); err != nil {
			t.Fatalf("GET %s: %v in %s", path, err, data)
		}
	}
	return resp.StatusCode
}

// TestSeriesAPI: a destination's series counts its attempts by outcome in
// the minute they ended, with their latency, as GET /v1/deliveries lists
// them; the day's window adds them up in ten-minute steps; GET /v1/series
// gives every destination's hour; a bad window is 400 and an unknown
// destination 404.
func TestSeriesAPI(t *testing.T) {
	ok := newReceiver(t, secretA)
	bad := newReceiver(t, secretA)
	bad.setRespond(func(string, int) int { return http.StatusServiceUnavailable })
	yaml := baseYAML(t.TempDir()) + "destinations:\n" +
		destYAML("crm", ok.srv.URL, secretA, "") +
		destYAML("billing", bad.srv.URL, secretA, "    retry: {schedule: [10ms, 10ms]}\n    breaker: off")
	n := startRelay(t, yaml)
	var items []map[string]any
	for i := range 5 {
		items = append(items, map[string]any{"type": "email", "action": "open", "contact": map[string]any{"email": fmt.Sprintf("p%d@example.com", i)}})
	}
	n.send(items...)
	waitFor(t, 30*time.Second, "5 delivered to crm and 5 dead letters for billing", func() bool {
		d := n.destinations()
		return d["crm"].Delivered == 5 && d["billing"].DeadLettered == 5
	})

	var logged struct{ Deliveries []api.LogEntry }
	waitFor(t, 10*time.Second, "billing's 15 attempts in the log", func() bool {
		n.getJSON(t, "/v1/deliveries?destination=billing&limit=100", &logged)
		return len(logged.Deliveries) == 15
	})
	want := map[string]int{}
	for _, e := range logged.Deliveries {
		want[e.Outcome]++
	}
	var s api.Series
	if st := n.getJSON(t, "/v1/destinations/billing/series?window=1h", &s); st != http.StatusOK {
		t.Fatalf("series: %d", st)
	}
	if s.Destination != "billing" || s.Window != "1h" || s.StepSeconds != 60 || len(s.Points) != 60 {
		t.Fatalf("series head: %s %s %d s, %d points", s.Destination, s.Window, s.StepSeconds, len(s.Points))
	}
	got := map[string]int{}
	withLatency := 0
	for _, p := range s.Points {
		got["delivered"] += p.Delivered
		got["failed"] += p.Failed
		got["dead_letter"] += p.DeadLetter
		if p.P50MS != nil && p.P99MS != nil && *p.P50MS > 0 && *p.P99MS >= *p.P50MS {
			withLatency++
		}
	}
	if got["failed"] != want["failed"] || got["dead_letter"] != want["dead_letter"] || got["delivered"] != 0 || want["dead_letter"] != 5 {
		t.Errorf("series counts %v, the log has %v", got, want)
	}
	if withLatency == 0 {
		t.Error("no point has a latency")
	}
	if last := s.Points[len(s.Points)-1]; time.Since(last.At) > time.Minute || time.Since(last.At) < 0 {
		t.Errorf("the last point starts %s, not this minute", last.At)
	}

	var day api.Series
	if st := n.getJSON(t, "/v1/destinations/crm/series?window=24h", &day); st != http.StatusOK || len(day.Points) != 144 || day.StepSeconds != 600 {
		t.Fatalf("24h: %d, %d points of %d s", st, len(day.Points), day.StepSeconds)
	}
	total := 0
	for _, p := range day.Points {
		total += p.Delivered
	}
	if total != 5 {
		t.Errorf("crm's day: %d delivered, want 5", total)
	}

	var all struct {
		Window string
		Series []api.Series
	}
	if st := n.getJSON(t, "/v1/series", &all); st != http.StatusOK || all.Window != "1h" {
		t.Fatalf("all: %d %+v", st, all.Window)
	}
	byName := map[string]int{}
	for _, sr := range all.Series {
		for _, p := range sr.Points {
			byName[sr.Destination] += p.Delivered + p.Failed + p.DeadLetter
		}
	}
	if byName["crm"] != 5 || byName["billing"] != 15 {
		t.Errorf("all: attempts %v, want crm 5, billing 15", byName)
	}

	for path, want := range map[string]int{
		"/v1/destinations/billing/series?window=2h": 400,
		"/v1/destinations/nope/series":              404,
		"/v1/destinations/a.b/series":               404,
		"/v1/series?window=24h":                     400,
	} {
		if st, body := n.adminDo("GET", path, ""); st != want || body["error"] == nil {
			t.Errorf("GET %s: %d %v, want %d with an error", path, st, body, want)
		}
	}
}

// TestReloadNamesOtherKeysApplied: a reload that changes only
// sources.ortto.activity_ids, or the tokens, says so (applied), beside no
// destination added, changed or removed; and a destination removed by a
// reload keeps its delivery log readable.
func TestReloadNamesOtherKeysApplied(t *testing.T) {
	dir := t.TempDir()
	rcv := newReceiver(t, secretA)
	dest := "destinations:\n" + destYAML("hook", rcv.srv.URL, secretA, "")
	ortto := func(to string) string {
		return "sources: {ortto: {activity_ids: {'act:cm:placed-order': " + to + "}}}\n"
	}
	f := newConfigFile(t, tokensYAML(dir, ingestToken, adminToken)+ortto("order.purchase")+dest)
	n := startFromFile(t, f)
	id := n.send(map[string]any{"type": "email", "action": "open", "contact": map[string]any{"email": "a@example.com"}})[0]
	waitFor(t, 30*time.Second, "the delivery", func() bool { return rcv.delivered()[id] == 1 })

	f.write(t, tokensYAML(dir, ingestToken, adminToken)+ortto("order.cancel")+dest)
	status, out := n.reload(t, adminToken)
	if status != http.StatusOK || fmt.Sprint(out["applied"]) != "[sources.ortto]" || fmt.Sprint(out["changed"]) != "[]" {
		t.Fatalf("reload of activity_ids: %d %v", status, out)
	}

	f.write(t, tokensYAML(dir, "ingest2", adminToken)+ortto("order.cancel")+"destinations: []\n")
	status, out = n.reload(t, adminToken)
	if status != http.StatusOK || fmt.Sprint(out["applied"]) != "[ingest.tokens]" || fmt.Sprint(out["removed"]) != "[hook]" {
		t.Fatalf("reload of tokens, hook removed: %d %v", status, out)
	}
	var logged struct{ Deliveries []api.LogEntry }
	waitFor(t, 10*time.Second, "the removed destination's log", func() bool {
		return n.getJSON(t, "/v1/deliveries?destination=hook", &logged) == http.StatusOK && len(logged.Deliveries) == 1
	})
	var trace api.Trace
	if st := n.getJSON(t, "/v1/activities/"+id, &trace); st != http.StatusOK {
		t.Fatalf("trace: %d", st)
	}
	var hook *api.DestinationTrace
	for i := range trace.Destinations {
		if trace.Destinations[i].Name == "hook" {
			hook = &trace.Destinations[i]
		}
	}
	if hook == nil || hook.Status != "removed" || len(hook.Attempts) != 1 || hook.Attempts[0].Outcome != "delivered" {
		t.Errorf("the trace of a removed destination's activity: %+v", trace.Destinations)
	}
	if st, _ := n.adminDo("GET", "/v1/deliveries?destination=never-was", ""); st != http.StatusNotFound {
		t.Errorf("deliveries of a destination never configured: %d, want 404", st)
	}
}
