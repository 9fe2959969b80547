package relay_test

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/relaydev/relay/relay"
	"github.com/relaydev/relay/relay/api"
)

// traceOf is GET /v1/activities/{id}.
func traceOf(t *testing.T, n *node, id string) (int, map[string]any) {
	t.Helper()
	return doJSON(t, "GET", n.admin+"/v1/activities/"+url.PathEscape(id), adminToken, "")
}

func traceDest(t *testing.T, tr map[string]any, name string) map[string]any {
	t.Helper()
	for _, d := range tr["destinations"].([]any) {
		if d := d.(map[string]any); d["name"] == name {
			return d
		}
	}
	t.Fatalf("trace has no destination %s: %s", name, mustJSON(t, tr))
	return nil
}

// TestTrace: one activity through four destinations — delivered, excluded
// by a pattern, failing into a dead letter, and a when rule that fails to
// evaluate — with every field of the trace checked, also after a restart.
func TestTrace(t *testing.T) {
	ok := newReceiver(t, secretA)
	failing := newReceiver(t, secretA)
	failing.setRespond(func(string, int) int { return http.StatusInternalServerError })
	dir := t.TempDir()
	yaml := baseYAML(dir) + "destinations:\n" +
		destYAML("ok", ok.srv.URL, secretA, "") +
		destYAML("excluded", ok.srv.URL, secretA, `    exclude: ["pageview"]`) +
		destYAML("failing", failing.srv.URL, secretA, "    retry: {schedule: [20ms]}") +
		destYAML("ruled", ok.srv.URL, secretA, `    when: 'activity.attributes.campaign == "bf"'`)
	n := startRelay(t, yaml)
	status, out := n.post(`{"type":"pageview","id":"t-1","attributes":{"n":12345678901234567891}}`, ingestToken)
	if status != http.StatusAccepted {
		t.Fatalf("ingest: %d %v", status, out)
	}
	waitFor(t, 30*time.Second, "the delivery and the dead letter", func() bool {
		return ok.delivered()["t-1"] == 1 && n.destinations()["failing"].DeadLettered == 1
	})
	check := func(n *node) {
		t.Helper()
		var tr map[string]any
		waitFor(t, 30*time.Second, "the trace to show every attempt", func() bool {
			var status int
			status, tr = traceOf(t, n, "t-1")
			return status == http.StatusOK && len(traceDest(t, tr, "failing")["attempts"].([]any)) == 2 &&
				len(traceDest(t, tr, "ok")["attempts"].([]any)) == 1
		})
		if tr["id"] != "t-1" || tr["name"] != "pageview" || tr["received_at"] == nil {
			t.Errorf("trace head: %s", mustJSON(t, tr))
		}
		act := tr["activity"].(map[string]any)
		raw := doRaw(t, "GET", n.admin+"/v1/activities/t-1", http.Header{"Authorization": {"Bearer " + adminToken}}, "")
		if act["id"] != "t-1" || !strings.Contains(string(raw.body), `"attributes":{"n":12345678901234567891}`) {
			t.Errorf("trace activity: %s", raw.body)
		}
		want := []struct {
			name, status, reason string
			selected             bool
			outcomes             []string
			codes                []float64
		}{
			{"ok", "delivered", `every activity is included`, true, []string{"delivered"}, []float64{204}},
			{"excluded", "not_selected", `excluded by "pageview"`, false, nil, nil},
			{"failing", "dead_letter", `every activity is included`, true, []string{"failed", "dead_letter"}, []float64{500, 500}},
			{"ruled", "not_selected", `when failed: `, false, nil, nil},
		}
		for i, w := range want {
			d := tr["destinations"].([]any)[i].(map[string]any)
			if d["name"] != w.name || d["status"] != w.status || d["selected"] != w.selected || !strings.Contains(d["reason"].(string), w.reason) {
				t.Errorf("%s: %s", w.name, mustJSON(t, d))
			}
			attempts := d["attempts"].([]any)
			if len(attempts) != len(w.outcomes) {
				t.Errorf("%s: %d attempts, want %d", w.name, len(attempts), len(w.outcomes))
				continue
			}
			for j, a := range attempts {
				a := a.(map[string]any)
				at, err := time.Parse(time.RFC3339Nano, a["at"].(string))
				if a["outcome"] != w.outcomes[j] || a["status"] != w.codes[j] || a["attempt"] != float64(j+1) || err != nil || at.IsZero() {
					t.Errorf("%s attempt %d: %s", w.name, j+1, mustJSON(t, a))
				}
				if _, ok := a["latency_ms"].(float64); !ok {
					t.Errorf("%s attempt %d without latency_ms", w.name, j+1)
				}
				if w.outcomes[j] != "delivered" && !strings.Contains(fmt.Sprint(a["error"]), "500") {
					t.Errorf("%s attempt %d error %q", w.name, j+1, a["error"])
				}
			}
		}
	}
	check(n)
	waitFor(t, 10*time.Second, "the when error counted", func() bool {
		return scrape(t, n, `relay_rule_errors_total{destination="ruled",reason="error"}`) == 1
	})
	if status, out := traceOf(t, n, "never-sent"); status != http.StatusNotFound || out["error"] == nil {
		t.Errorf("unknown id: %d %v", status, out)
	}
	n.stop()
	check(startRelay(t, yaml))
}

// scrape reads one series of /metrics (-1 when absent).
func scrape(t *testing.T, n *node, series string) float64 {
	t.Helper()
	req, _ := http.NewRequest("GET", n.admin+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	res := doRaw(t, "GET", n.admin+"/metrics", http.Header{"Authorization": {"Bearer " + adminToken}}, "")
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindSubmatch(res.body)
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

func deliveries(t *testing.T, n *node, query string) ([]map[string]any, string) {
	t.Helper()
	status, out := n.adminDo("GET", "/v1/deliveries?"+query, "")
	if status != http.StatusOK {
		t.Fatalf("deliveries?%s: %d %v", query, status, out)
	}
	var list []map[string]any
	for _, d := range out["deliveries"].([]any) {
		list = append(list, d.(map[string]any))
	}
	return list, out["next_cursor"].(string)
}

// TestDeliveryLogQueries: the log answers by destination, outcome and time
// window, newest first, page by page.
func TestDeliveryLogQueries(t *testing.T) {
	ok := newReceiver(t, secretA)
	bad := newReceiver(t, secretA)
	bad.setRespond(func(string, int) int { return http.StatusServiceUnavailable })
	n := startRelay(t, baseYAML(t.TempDir())+"destinations:\n"+destYAML("a", ok.srv.URL, secretA, "")+
		destYAML("b", bad.srv.URL, secretA, "    retry: {schedule: [10ms, 10ms]}\n    breaker: off"))
	send := func(from, to int) {
		var items []map[string]any
		for i := from; i < to; i++ {
			items = append(items, map[string]any{"type": "email", "action": "open", "id": fmt.Sprintf("q-%d", i)})
		}
		n.send(items...)
	}
	count := func(query string) int {
		list, _ := deliveries(t, n, query+"&limit=1000")
		return len(list)
	}
	send(0, 10)
	waitFor(t, 30*time.Second, "the first ten settled", func() bool {
		return count("destination=a") == 10 && count("destination=b&outcome=dead_letter") == 10
	})
	time.Sleep(20 * time.Millisecond) // a gap in time between the two rounds, for the window
	mid := time.Now().UTC()
	send(10, 30)
	waitFor(t, 30*time.Second, "all settled", func() bool {
		return count("destination=a") == 30 && count("destination=b&outcome=dead_letter") == 30
	})
	if got := count("destination=b&outcome=failed"); got != 60 {
		t.Errorf("b failed: %d, want 60", got)
	}
	if got := count("outcome=delivered"); got != 30 {
		t.Errorf("delivered anywhere: %d, want 30", got)
	}
	if got := count("destination=a&since=" + mid.Format(time.RFC3339Nano)); got != 20 {
		t.Errorf("a since the middle: %d, want 20", got)
	}
	if got := count("destination=a&until=" + mid.Format(time.RFC3339Nano)); got != 10 {
		t.Errorf("a until the middle: %d, want 10", got)
	}
	if got := count("destination=a&since=1h&activity=email.*"); got != 30 {
		t.Errorf("a in the last hour: %d, want 30", got)
	}
	// Newest first, and paging covers every entry once.
	seen := map[string]bool{}
	cursor, pages := "", 0
	var last time.Time
	for {
		q := "destination=b&limit=25"
		if cursor != "" {
			q += "&cursor=" + cursor
		}
		list, next := deliveries(t, n, q)
		pages++
		for _, d := range list {
			key := fmt.Sprintf("%s/%v", d["id"], d["attempt"])
			if seen[key] {
				t.Errorf("%s on two pages", key)
			}
			seen[key] = true
			at, _ := time.Parse(time.RFC3339Nano, d["at"].(string))
			// newest first in the order attempts finished: an attempt that
			// started earlier can finish later, so allow its latency
			if !last.IsZero() && at.After(last.Add(time.Second)) {
				t.Errorf("not newest first: %s after %s", at, last)
			}
			last = at
			if d["destination"] != "b" || d["name"] != "email.open" {
				t.Errorf("entry %v", d)
			}
		}
		if cursor = next; cursor == "" {
			break
		}
	}
	if len(seen) != 90 || pages != 4 {
		t.Errorf("%d entries over %d pages, want 90 over 4", len(seen), pages)
	}
	for _, q := range []string{"since=yesterday", "until=2026-13-01", "outcome=bogus", "activity=nope.*", "since=1m&until=2h", "destination=zz", "cursor=x"} {
		status, out := n.adminDo("GET", "/v1/deliveries?"+q, "")
		msg, _ := out["error"].(string)
		if status/100 != 4 || msg == "" || strings.Contains(msg, "parsing time") || strings.Contains(msg, "2006") {
			t.Errorf("%s: %d %q", q, status, msg)
		}
	}
}

// TestMetricsFromTheConsumers: pending rises while a destination is paused
// and falls after resume; attempts, rejections and replays are counted.
func TestMetricsFromTheConsumers(t *testing.T) {
	r := newReceiver(t, secretA)
	n := startRelay(t, baseYAML(t.TempDir())+"destinations:\n"+destYAML("d", r.srv.URL, secretA, "    retry: {schedule: [10ms]}"))
	if status, _ := n.adminDo("POST", "/v1/destinations/d/pause", ""); status != http.StatusOK {
		t.Fatal("pause")
	}
	if got := scrape(t, n, `relay_destination_state{destination="d",state="paused"}`); got != 1 {
		t.Errorf("state paused = %v", got)
	}
	n.send(map[string]any{"type": "pageview", "id": "m-1"}, map[string]any{"type": "pageview", "id": "m-2"}, map[string]any{"type": "pageview", "id": "m-3"})
	waitFor(t, 10*time.Second, "relay_pending 3", func() bool { return scrape(t, n, `relay_pending{destination="d"}`) == 3 })
	time.Sleep(1100 * time.Millisecond) // let the backlog age past a second
	if got := scrape(t, n, `relay_oldest_pending_seconds{destination="d"}`); got < 1 {
		t.Errorf("oldest pending %v s, want at least 1", got)
	}
	if st := n.destinations()["d"]; st.Pending != 3 || st.OldestPendingSeconds < 1 {
		t.Errorf("status %+v", st)
	}
	n.adminDo("POST", "/v1/destinations/d/resume", "")
	waitFor(t, 30*time.Second, "the backlog delivered", func() bool { return len(r.delivered()) == 3 })
	waitFor(t, 10*time.Second, "relay_pending 0", func() bool { return scrape(t, n, `relay_pending{destination="d"}`) == 0 })
	if got := scrape(t, n, `relay_destination_state{destination="d",state="active"}`); got != 1 {
		t.Errorf("state active = %v", got)
	}
	// An attempt is counted just after its activity is settled.
	waitFor(t, 10*time.Second, "3 delivered attempts counted", func() bool {
		return scrape(t, n, `relay_attempts_total{code="2xx",destination="d",outcome="delivered"}`) == 3
	})
	var st api.DestinationStatus
	waitFor(t, 10*time.Second, "the status after delivery", func() bool {
		st = n.destinations()["d"]
		return st.DeliveredLastMinute == 3 && st.LastSuccessAt != nil && st.P99LatencyMS != nil && st.OldestPendingSeconds == 0
	})
	n.post(`{"type":`, ingestToken)
	if got := scrape(t, n, `relay_ingest_rejected_total{reason="malformed"}`); got != 1 {
		t.Errorf("rejected malformed = %v", got)
	}
	r.setRespond(func(string, int) int { return http.StatusBadGateway })
	n.send(map[string]any{"type": "pageview", "id": "m-4"})
	waitFor(t, 30*time.Second, "a dead letter", func() bool { return n.destinations()["d"].DeadLettered == 1 })
	waitFor(t, 10*time.Second, "the dead-letter attempt counted", func() bool {
		return scrape(t, n, `relay_attempts_total{code="5xx",destination="d",outcome="dead_letter"}`) == 1
	})
	r.setRespond(nil)
	n.adminDo("POST", "/v1/replay", `{"destination":"d","since":"1h"}`)
	if got := scrape(t, n, `relay_replayed_total{destination="d"}`); got != 1 {
		t.Errorf("replayed = %v", got)
	}
}

// TestWhenTypeChecked: validate refuses a misspelt field and a non-bool
// expression at their line and column.
func TestWhenTypeChecked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "relay.yaml")
	yaml := baseYAML(t.TempDir()) + `destinations:
  - name: a
    type: webhook
    url: https://hooks.example.com/a
    secrets: ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]
    when: activity.atributes.campaign == "x"
  - name: b
    type: webhook
    url: https://hooks.example.com/b
    secrets: ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]
    when: activity.name
  - name: c
    type: webhook
    url: https://hooks.example.com/c
    secrets: ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]
    when: activity.type == "email" && activity.contact.email.endsWith("@example.com")
`
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := relay.LoadConfig(path)
	if err == nil {
		t.Fatal("validate passed")
	}
	msg := err.Error()
	for _, want := range []string{
		path + ":9:", "destinations[0].when: invalid CEL expression: undefined field 'atributes'",
		path + ":14:11: destinations[1].when: CEL expression must be a bool, it is string",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("errors:\n%s\nwant %q", msg, want)
		}
	}
	if strings.Contains(msg, "destinations[2]") {
		t.Errorf("a valid expression was refused:\n%s", msg)
	}
}
