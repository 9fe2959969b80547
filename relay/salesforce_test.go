package relay_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/relaydev/relay/connectors/salesforce/sftest"
)

func salesforceYAML(fake *sftest.Server, extra string) string {
	return fmt.Sprintf(`  - name: sf
    type: salesforce
    allow_private_network: true
    instance_url: %s
    auth: {token_url: %s, client_id: client-id, client_secret: client-secret}
    object: Activity__c
    external_id_field: Relay_Id__c
    fields: {Relay_Id__c: id, Type__c: name, Email__c: contact.email, Occurred_At__c: occurred_at}
    include: ["email.*", "order.purchase"]
    batch_wait: 200ms
    retry: {schedule: [100ms, 200ms]}
%s
`, fake.URL, fake.TokenURL(), extra)
}

// TestSalesforceThroughEngine: 1,000 activities reach the fake org as
// batches of at most 200 through the worker, exactly one record each; a
// REQUEST_LIMIT_EXCEEDED backs the destination off and everything still
// arrives; a permanent record error is a dead letter at once.
func TestSalesforceThroughEngine(t *testing.T) {
	fake := sftest.New(t, sftest.WithRequired("Email__c"))
	n := startRelay(t, baseYAML(t.TempDir())+"destinations:\n"+salesforceYAML(fake, ""))
	fake.FailNext(1, http.StatusForbidden, "REQUEST_LIMIT_EXCEEDED")
	var items []map[string]any
	for i := range 1000 {
		items = append(items, map[string]any{"type": "email", "action": "open", "contact": map[string]any{"email": fmt.Sprintf("c%d@example.com", i)}})
	}
	var ids []string
	for i := 0; i < len(items); i += 250 {
		ids = append(ids, n.send(items[i:i+250]...)...)
	}
	noEmail := n.send(map[string]any{"type": "order", "action": "purchase"})
	skipped := n.send(map[string]any{"type": "sms", "action": "sent", "contact": map[string]any{"email": "x@example.com"}})
	waitFor(t, 60*time.Second, "1,000 records", func() bool { return len(fake.Records()) == 1000 })
	waitFor(t, 30*time.Second, "a dead letter", func() bool { return n.destinations()["sf"].DeadLettered == 1 })
	waitSettled(t, n, "sf")
	recs := fake.Records()
	for _, id := range ids {
		if recs[id]["Type__c"] != "email.open" {
			t.Fatalf("record %s = %v", id, recs[id])
		}
	}
	if _, ok := recs[skipped[0]]; ok {
		t.Error("an activity outside include reached Salesforce")
	}
	if fake.MaxBatch() > 200 {
		t.Errorf("max batch %d > 200", fake.MaxBatch())
	}
	_, out := n.adminDo("GET", "/v1/deadletters?destination=sf", "")
	var list struct {
		DeadLetters []struct {
			ID       string `json:"id"`
			Attempts []struct {
				Error string `json:"error"`
			} `json:"attempts"`
		} `json:"deadletters"`
	}
	remarshal(t, out, &list)
	if len(list.DeadLetters) != 1 || list.DeadLetters[0].ID != noEmail[0] || len(list.DeadLetters[0].Attempts) != 1 {
		t.Fatalf("dead letters = %+v, want %s after one attempt", list.DeadLetters, noEmail[0])
	}
	t.Logf("1000 records in %d calls, largest batch %d", fake.Calls(), fake.MaxBatch())
}
