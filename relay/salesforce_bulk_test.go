package relay_test

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/relaydev/relay/config"
	"github.com/relaydev/relay/connectors/salesforce"
	"github.com/relaydev/relay/connectors/salesforce/sftest"
	"github.com/relaydev/relay/connectors/webhook"
	"github.com/relaydev/relay/relay"
	"github.com/relaydev/relay/relay/sink"
)

// startSalesforce runs Relay with its Salesforce destinations built with
// opts (a shortened API window).
func startSalesforce(t *testing.T, yaml string, opts salesforce.Options) *node {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(yaml), func(k string) (string, bool) { return os.LookupEnv(k) })
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	sinks := map[string]sink.Connector{}
	for _, d := range cfg.Destinations {
		s, err := salesforce.New(d, opts)
		if err != nil {
			t.Fatalf("salesforce %s: %v", d.Name, err)
		}
		t.Cleanup(s.Close)
		sinks[d.Name] = sink.Batched(s)
	}
	newWebhook := func(d config.Destination) (sink.Connector, error) { // the alerts destination
		s, err := webhook.New(d, webhook.Options{})
		if err != nil {
			return sink.Connector{}, err
		}
		return sink.Connector{Sink: s, Close: s.Close}, nil
	}
	r, err := relay.New(cfg, relay.Options{Sinks: sinks, NewSink: newWebhook, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("relay.New: %v", err)
	}
	return runNode(t, r)
}

// sendMany ingests n email.open activities, 1,000 a request; campaign(i)
// is the i-th one's attributes.campaign.
func sendMany(n *node, count int, campaign func(i int) string) []string {
	var ids []string
	for i := 0; i < count; i += 1000 {
		var items []map[string]any
		for j := i; j < min(i+1000, count); j++ {
			items = append(items, map[string]any{"type": "email", "action": "open",
				"contact": map[string]any{"email": fmt.Sprintf("c%d@example.com", j)}, "attributes": map[string]any{"campaign": campaign(j)}})
		}
		ids = append(ids, n.send(items...)...)
	}
	return ids
}

// drainCount is how many activities TestSalesforceBacklogDrainsInBulk
// drains: 200,000, 20,000 with -short, or RELAY_SF_DRAIN.
func drainCount(t *testing.T) int {
	if v := os.Getenv("RELAY_SF_DRAIN"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("RELAY_SF_DRAIN=%q: want a count", v)
		}
		return n
	}
	if testing.Short() {
		return 20_000
	}
	return 200_000
}

// TestSalesforceBacklogDrainsInBulk: activities waiting while the
// destination was paused drain through Bulk API 2.0 jobs when it resumes:
// at most 20 jobs and 300 API calls in all (through Collections the same
// backlog is 1,000+ calls at 200,000); 1% refused for their content
// (a restricted picklist) are dead letters with the code and field within
// 60 s of their job finishing, every other activity is in the org once.
func TestSalesforceBacklogDrainsInBulk(t *testing.T) {
	count := drainCount(t)
	fake := sftest.New(t, sftest.WithPicklist("Campaign__c", true, "bf", "xmas"))
	yaml := baseYAML(t.TempDir()) + "destinations:\n" + salesforceYAML(fake, "") +
		"    fields: {Relay_Id__c: id, Type__c: name, Email__c: contact.email, Campaign__c: attributes.campaign}\n"
	yaml = strings.Replace(yaml, "    fields: {Relay_Id__c: id, Type__c: name, Email__c: contact.email, Occurred_At__c: occurred_at}\n", "", 1)
	n := startRelay(t, yaml)
	pauseQuiet(t, n)
	bad := func(i int) bool { return i%100 == 42 }
	ids := sendMany(n, count, func(i int) string {
		if bad(i) {
			return "summer"
		}
		return "bf"
	})
	cons := sfConsumer(t, n)
	waitFor(t, 2*time.Minute, "the backlog stored", func() bool { return consumerInfo(t, cons).NumPending == uint64(count) })
	start := time.Now()
	if code, out := n.adminDo("POST", "/v1/destinations/sf/resume", ""); code != http.StatusOK {
		t.Fatalf("resume: %d %v", code, out)
	}
	waitFor(t, 5*time.Minute, "the backlog drained", func() bool {
		st := n.destinations()["sf"]
		return st.Pending == 0 && st.DeadLettered == count/100
	})
	took := time.Since(start)
	recs := fake.Records()
	for i, id := range ids {
		if _, ok := recs[id]; ok == bad(i) {
			t.Fatalf("activity %d (%s): in the org %v", i, id, ok)
		}
	}
	if len(recs) != count-count/100 {
		t.Errorf("%d records, want %d", len(recs), count-count/100)
	}
	if fake.Jobs() > 20 || fake.APICalls() > 300 || fake.Calls() > 0 {
		t.Errorf("%d jobs, %d API calls, %d collections calls; want at most 20 jobs and 300 calls", fake.Jobs(), fake.APICalls(), fake.Calls())
	}
	_, out := n.adminDo("GET", "/v1/deadletters?destination=sf&limit=100", "")
	var list struct {
		DeadLetters []struct {
			ID       string    `json:"id"`
			DeadAt   time.Time `json:"dead_at"`
			Attempts []struct {
				Error string `json:"error"`
			} `json:"attempts"`
		} `json:"deadletters"`
	}
	remarshal(t, out, &list)
	if len(list.DeadLetters) == 0 {
		t.Fatal("no dead letters listed")
	}
	var slowest time.Duration
	for _, dl := range list.DeadLetters {
		done := fake.JobDone(dl.ID)
		slowest = max(slowest, dl.DeadAt.Sub(done))
		e := dl.Attempts[len(dl.Attempts)-1].Error
		if len(dl.Attempts) != 1 || !strings.Contains(e, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST") || !strings.Contains(e, "fields: Campaign__c") {
			t.Errorf("dead letter %s: %+v", dl.ID, dl.Attempts)
		}
		if after := dl.DeadAt.Sub(done); done.IsZero() || after < 0 || after > 60*time.Second {
			t.Errorf("dead letter %s made %s after its job finished (%s)", dl.ID, after, done)
		}
	}
	t.Logf("%d activities drained in %s (%.0f/s): %d Bulk jobs %v, %d API calls, %d dead letters, the %d listed made at most %s after their job finished",
		count, took.Round(time.Millisecond), float64(count)/took.Seconds(), fake.Jobs(), fake.JobRows(), fake.APICalls(), count/100, len(list.DeadLetters), slowest.Round(time.Millisecond))
}

// pauseQuiet pauses sf and waits until its worker has no pull open (it
// sees the pause a moment later: until then it opens one each batch_wait).
func pauseQuiet(t *testing.T, n *node) {
	t.Helper()
	if code, out := n.adminDo("POST", "/v1/destinations/sf/pause", ""); code != http.StatusOK {
		t.Fatalf("pause: %d %v", code, out)
	}
	waitFor(t, 10*time.Second, "sf paused", func() bool { return n.destinations()["sf"].State == "paused" })
	cons := sfConsumer(t, n)
	var closedSince time.Time
	waitFor(t, 10*time.Second, "no pull open for 400ms", func() bool {
		if consumerInfo(t, cons).NumWaiting > 0 {
			closedSince = time.Time{}
			return false
		}
		if closedSince.IsZero() {
			closedSince = time.Now()
		}
		return time.Since(closedSince) > 400*time.Millisecond
	})
}

// TestSalesforceBudgetHolds: with max_share 0.1 of a 10,000-call window,
// Relay's calls in the window stay at or under 1,000; the destination's
// state is budget (status and metrics show it) and it resumes by itself
// when the window frees, delivering everything.
func TestSalesforceBudgetHolds(t *testing.T) {
	const window = 6 * time.Second
	fake := sftest.New(t, sftest.WithAPILimit(10_000, window))
	alerts := newAlertReceiver(t, secretB)
	extra := "    batch_size: 1\n    api_budget: {max_share: 0.1, reserve: 0}\n"
	alertsYAML := fmt.Sprintf("alerts: {url: %q, secrets: [%q], allow_private_network: true}\n", alerts.srv.URL+"/alerts", secretB)
	n := startSalesforce(t, baseYAML(t.TempDir())+"destinations:\n"+salesforceYAML(fake, extra)+alertsYAML, salesforce.Options{Window: window})
	const count = 1200
	sendMany(n, count, func(int) string { return "bf" })
	waitFor(t, 60*time.Second, "state budget", func() bool { return n.destinations()["sf"].State == "budget" })
	used, _ := fake.APIUsage()
	if used > 1000 {
		t.Errorf("Relay's calls in the window: %d, more than its share (1,000)", used)
	}
	metricsText := adminText(t, n, "/metrics")
	for _, want := range []string{`relay_salesforce_api_remaining{destination="sf"}`, `relay_salesforce_api_used_total{destination="sf"}`,
		`relay_destination_state{destination="sf",state="budget"} 1`} {
		if !strings.Contains(metricsText, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	waitFor(t, 30*time.Second, "the held alert", func() bool { return len(alerts.events("relay.destination.held")) == 1 })
	if a := alerts.events("relay.destination.held")[0]; a.Data["reason"] != "budget" || a.Data["destination"] != "sf" {
		t.Errorf("held alert: %v", a.Data)
	}
	waitFor(t, 60*time.Second, "every activity delivered", func() bool { return len(fake.Records()) == count })
	waitSettled(t, n, "sf")
	if st := n.destinations()["sf"].State; st != "active" {
		t.Errorf("state %q after the window freed, want active", st)
	}
	t.Logf("%d records; org usage %d at the hold", len(fake.Records()), used)
}

// adminText GETs an admin path as text.
func adminText(t *testing.T, n *node, path string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", n.admin+path, nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return string(data)
}
