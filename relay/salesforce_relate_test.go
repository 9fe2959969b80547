package relay_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/relaydev/relay/config"
	"github.com/relaydev/relay/connectors/salesforce/sftest"
	"github.com/relaydev/relay/relay"
)

// tasksYAML is the destination of examples/salesforce-tasks.yaml pointed at
// a fake org, with its fields and relate as the example writes them.
func tasksYAML(t *testing.T, name string, fake *sftest.Server, onMissing string) string {
	t.Helper()
	t.Setenv("SF_CLIENT_ID", "client-id")
	t.Setenv("SF_CLIENT_SECRET", "client-secret")
	cfg, err := config.Load(filepath.Join("..", "examples", "salesforce-tasks.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	d := cfg.Destinations[0]
	fields, _ := json.Marshal(d.Fields)
	r := d.Relate
	return fmt.Sprintf(`  - name: %s
    type: salesforce
    allow_private_network: true
    instance_url: %s
    auth: {token_url: %s, client_id: client-id, client_secret: client-secret}
    object: %s
    external_id_field: %s
    fields: %s
    relate: {field: %s, match: %s, value: %q, objects: [%s], on_missing: %s, cache_ttl: %s}
    include: ["email.*"]
    batch_wait: 300ms
    retry: {schedule: [100ms, 200ms]}
`, name, fake.URL, fake.TokenURL(), d.Object, d.ExternalIDField, fields,
		r.Field, r.Match, r.Value, strings.Join(r.Objects, ", "), onMissing, r.CacheTTL)
}

// TestSalesforceTasksRelated: activities become Tasks on the timeline of
// the Contact, else the Lead, with their email, through JetStream and the
// worker: one Contact and one Lead query per batch whatever its size, none
// for a second batch of the same people (cached), and nobody matching
// either leaves WhoId unset or makes a dead letter, as configured.
func TestSalesforceTasksRelated(t *testing.T) {
	task := sftest.WithObject("Task", "Relay_Id__c", "Subject", "WhoId", "Status", "Priority", "Description")
	unset, strict := sftest.New(t, task), sftest.New(t, task)
	var contact, lead [2]string
	for i, fake := range []*sftest.Server{unset, strict} {
		contact[i] = fake.AddContact(map[string]any{"Email": "ann@example.com", "LastName": "Ann"})
		fake.AddContact(map[string]any{"Email": "other@example.com", "LastName": "Other"})
		lead[i] = fake.AddLead(map[string]any{"Email": "lee@example.com", "LastName": "Lee", "Company": "Acme"})
	}
	n := startRelay(t, baseYAML(t.TempDir())+"destinations:\n"+
		tasksYAML(t, "sf-unset", unset, "leave_unset")+tasksYAML(t, "sf-strict", strict, "dead_letter"))

	people := func(round int) []map[string]any {
		var items []map[string]any
		for _, email := range []string{"ann@example.com", "Lee@Example.com", "nobody@example.com"} {
			items = append(items, map[string]any{"type": "email", "action": "open", "id": fmt.Sprintf("r%d-%s", round, email[:3]),
				"contact": map[string]any{"email": email}, "attributes": map[string]any{"campaign": "bf"}})
		}
		return items
	}
	n.send(people(1)...)
	waitFor(t, 30*time.Second, "the first batch", func() bool {
		return len(unset.Records()) == 3 && len(strict.Records()) == 2 && n.destinations()["sf-strict"].DeadLettered == 1
	})
	want := map[string]string{"r1-ann": contact[0], "r1-Lee": lead[0], "r1-nob": ""}
	recs := unset.Records()
	for id, who := range want {
		if got, _ := recs[id]["WhoId"].(string); got != who {
			t.Errorf("%s: WhoId = %q, want %q (%v)", id, got, who, recs[id])
		}
	}
	if r := recs["r1-ann"]; r["Subject"] != "Opened email" || r["Status"] != "Completed" || !strings.Contains(fmt.Sprint(r["Description"]), "(campaign bf)") {
		t.Errorf("task = %v", r)
	}
	if s := strict.Records(); s["r1-ann"]["WhoId"] != contact[1] || s["r1-Lee"]["WhoId"] != lead[1] {
		t.Errorf("strict records = %v", s)
	}
	calls, queries := unset.Calls(), unset.Queries()
	if len(queries) != 2*calls {
		t.Errorf("%d queries for %d batches, want a Contact and a Lead query per batch: %q", len(queries), calls, queries)
	}
	if calls == 1 {
		for _, email := range []string{"'ann@example.com'", "'Lee@Example.com'", "'nobody@example.com'"} {
			if !strings.Contains(queries[0], email) {
				t.Errorf("the Contact query does not ask for the whole batch (%s): %s", email, queries[0])
			}
		}
	}

	n.send(people(2)...)
	waitFor(t, 30*time.Second, "the second batch", func() bool {
		return len(unset.Records()) == 6 && len(strict.Records()) == 4 && n.destinations()["sf-strict"].DeadLettered == 2
	})
	if got := unset.Queries(); len(got) != len(queries) {
		t.Errorf("the second batch queried again: %q", got[len(queries):])
	}
	if recs := unset.Records(); recs["r2-ann"]["WhoId"] != contact[0] || recs["r2-Lee"]["WhoId"] != lead[0] {
		t.Errorf("second batch = %v", recs)
	}

	_, out := n.adminDo("GET", "/v1/deadletters?destination=sf-strict", "")
	var list struct {
		DeadLetters []struct {
			ID       string `json:"id"`
			Attempts []struct {
				Error string `json:"error"`
			} `json:"attempts"`
		} `json:"deadletters"`
	}
	remarshal(t, out, &list)
	for _, dl := range list.DeadLetters {
		if !strings.HasSuffix(dl.ID, "-nob") || len(dl.Attempts) != 1 || !strings.Contains(dl.Attempts[0].Error, `NO_MATCH: relate: no Contact or Lead with Email = "nobody@example.com"`) {
			t.Errorf("dead letter = %+v", dl)
		}
	}
}

// TestSalesforceExprsCheckedByValidate: field and relate expressions are
// type-checked at their line and column; relate's keys are checked too.
func TestSalesforceExprsCheckedByValidate(t *testing.T) {
	yaml := `ingest: {tokens: ["t"]}
admin: {token: "a"}
destinations:
  - name: sf
    type: salesforce
    instance_url: https://acme.my.salesforce.com
    auth: {token_url: https://acme.my.salesforce.com/services/oauth2/token, client_id: c, client_secret: s}
    object: Task
    external_id_field: Relay_Id__c
    fields:
      Relay_Id__c: id
      Subject: '"Opened by " + 1'
      Status: nome
      Description: activity.contact.email
    relate:
      field: WhoId
      value: 'activity.contact["email"'
      on_missing: drop
`
	path := filepath.Join(t.TempDir(), "relay.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := relay.LoadConfig(path)
	var errs config.Errors
	if !errors.As(err, &errs) {
		t.Fatalf("LoadConfig: %v", err)
	}
	want := []string{
		path + `:12:30: destinations[0].fields.Subject: invalid CEL expression: found no matching overload for '_+_'`,
		path + `:13:15: destinations[0].fields.Status: unknown activity path "nome"`,
		path + `:17:39: destinations[0].relate.value: invalid CEL expression: Syntax error: missing ']'`,
		path + `:18:19: destinations[0].relate.on_missing: unknown value "drop": want leave_unset or dead_letter`,
	}
	if len(errs) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%v", len(errs), len(want), errs)
	}
	for i, w := range want {
		if got := errs[i].Error(); !strings.HasPrefix(got, w) {
			t.Errorf("error %d:\n got %s\nwant prefix %s", i, got, w)
		}
	}
}
