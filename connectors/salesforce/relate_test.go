package salesforce

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/relaydev/relay/config"
	"github.com/relaydev/relay/connectors/salesforce/sftest"
	"github.com/relaydev/relay/relay/sink"
)

var taskFields = []string{"Subject", "WhoId", "Status", "Description"}

// taskDestination writes Tasks related by email, with expression fields.
func taskDestination(fake *sftest.Server, onMissing string) config.Destination {
	d := destination(fake)
	d.Object = "Task"
	d.Fields = map[string]string{
		"Relay_Id__c": "id",
		"Subject":     `activity.activity != "" ? activity.activity : activity.name`,
		"Status":      `"Completed"`,
		"Description": `"campaign " + (has(activity.attributes.campaign) ? activity.attributes.campaign : "-")`,
	}
	d.Relate = config.Relate{Field: "WhoId", Match: "Email", Value: "contact.email",
		Objects: []string{"Contact", "Lead"}, OnMissing: onMissing, CacheTTL: config.Duration(time.Minute)}
	return d
}

// emails are deliveries of email.open for these contact emails ("" for
// none); the id is "a<i>".
func emails(list ...string) []*sink.Delivery {
	var out []*sink.Delivery
	for i, e := range list {
		contact := `{}`
		if e != "" {
			contact = fmt.Sprintf(`{"email":%q}`, e)
		}
		raw := fmt.Sprintf(`{"id":"a%d","name":"email.open","type":"email","action":"open","activity":"Opened email",
			"occurred_at":"2026-11-22T10:00:00Z","contact":%s,"attributes":{"campaign":"bf"}}`, i, contact)
		out = append(out, &sink.Delivery{Raw: []byte(raw), Attempt: 1})
	}
	return out
}

func TestRelateContactsThenLeads(t *testing.T) {
	fake := newFake(t, sftest.WithObject("Task", "Relay_Id__c", taskFields...))
	ann := fake.AddContact(map[string]any{"Email": "ann@example.com", "LastName": "Ann"})
	bob := fake.AddContact(map[string]any{"Email": "Bob@Example.com", "LastName": "Bob"})
	lee := fake.AddLead(map[string]any{"Email": "lee@example.com", "LastName": "Lee", "Company": "Acme"})
	both := fake.AddLead(map[string]any{"Email": "ann@example.com", "LastName": "Ann", "Company": "Acme"})
	quote := fake.AddContact(map[string]any{"Email": "o'neil@example.com", "LastName": "O'Neil"})
	s := newSink(t, taskDestination(fake, "leave_unset"), nil)

	ats := s.DeliverBatch(context.Background(), emails("ann@example.com", "bob@example.com", "lee@example.com", "nobody@example.com", "", "o'neil@example.com", "ann@example.com"))
	if got := strings.Join(kinds(ats), ","); got != "ok,ok,ok,ok,ok,ok,ok" {
		t.Fatalf("kinds = %s (%v)", got, ats)
	}
	recs := fake.Records()
	want := map[string]string{"a0": ann, "a1": bob, "a2": lee, "a3": "", "a4": "", "a5": quote, "a6": ann}
	for id, who := range want {
		if got, _ := recs[id]["WhoId"].(string); got != who {
			t.Errorf("%s: WhoId = %q, want %q", id, got, who)
		}
	}
	if both == ann || recs["a0"]["Subject"] != "Opened email" || recs["a0"]["Status"] != "Completed" || recs["a0"]["Description"] != "campaign bf" {
		t.Errorf("task = %v", recs["a0"])
	}
	// One Contact query for the batch, one Lead query for what it left.
	qs := fake.Queries()
	if len(qs) != 2 || !strings.Contains(qs[0], "FROM Contact") || !strings.Contains(qs[1], "FROM Lead") {
		t.Fatalf("queries = %q", qs)
	}
	if strings.Contains(qs[1], "ann@") || !strings.Contains(qs[1], "nobody@example.com") {
		t.Errorf("the Lead query asks again for what Contacts answered: %s", qs[1])
	}

	// A second batch of known people (and of the one nobody is) asks nothing.
	ats = s.DeliverBatch(context.Background(), emails("ANN@example.com", "lee@example.com", "nobody@example.com"))
	if got := strings.Join(kinds(ats), ","); got != "ok,ok,ok" {
		t.Fatalf("second batch kinds = %s (%v)", got, ats)
	}
	if n := len(fake.Queries()); n != 2 {
		t.Errorf("second batch made %d queries, want none (cached): %q", n-2, fake.Queries()[2:])
	}
}

func TestRelateNoMatchDeadLetters(t *testing.T) {
	fake := newFake(t, sftest.WithObject("Task", "Relay_Id__c", taskFields...))
	ann := fake.AddContact(map[string]any{"Email": "ann@example.com"})
	s := newSink(t, taskDestination(fake, "dead_letter"), nil)
	ats := s.DeliverBatch(context.Background(), emails("ann@example.com", "nobody@example.com", ""))
	if got := strings.Join(kinds(ats), ","); got != "ok,permanent,permanent" {
		t.Fatalf("kinds = %s (%v)", got, ats)
	}
	if e := ats[1].Err.Error(); !strings.Contains(e, `NO_MATCH: relate: no Contact or Lead with Email = "nobody@example.com"`) {
		t.Errorf("no-match error = %q", e)
	}
	if e := ats[2].Err.Error(); !strings.Contains(e, "no Email value to match") {
		t.Errorf("no-value error = %q", e)
	}
	recs := fake.Records()
	if len(recs) != 1 || recs["a0"]["WhoId"] != ann {
		t.Errorf("records = %v, want only a0 related to %s", recs, ann)
	}
}

func TestRelatePagesAndFailures(t *testing.T) {
	fake := newFake(t, sftest.WithObject("Task", "Relay_Id__c", taskFields...), sftest.WithQueryPageSize(2))
	var list []string
	for i := range 5 {
		e := fmt.Sprintf("p%d@example.com", i)
		fake.AddContact(map[string]any{"Email": e})
		list = append(list, e)
	}
	d := taskDestination(fake, "dead_letter")
	d.Relate.CacheTTL = 0 // every batch asks
	s := newSink(t, d, nil)
	if got := strings.Join(kinds(s.DeliverBatch(context.Background(), emails(list...))), ","); got != "ok,ok,ok,ok,ok" {
		t.Fatalf("paged result: %s", got)
	}

	fake.FailNextQuery(1, http.StatusForbidden, "REQUEST_LIMIT_EXCEEDED")
	ats := s.DeliverBatch(context.Background(), emails(list[:2]...))
	if got := strings.Join(kinds(ats), ","); got != "throttle,throttle" {
		t.Errorf("request limit on the query: %s (%v)", got, ats)
	}
	fake.ExpireTokens() // 401: a new token, then the query again
	if got := strings.Join(kinds(s.DeliverBatch(context.Background(), emails(list[:2]...))), ","); got != "ok,ok" {
		t.Errorf("after an expired session: %s", got)
	}

	d.Relate.Match = "Emial"
	ats = newSink(t, d, nil).DeliverBatch(context.Background(), emails(list[:1]...))
	if k := kinds(ats); k[0] != "permanent" || !strings.Contains(ats[0].Err.Error(), "INVALID_FIELD") {
		t.Errorf("unknown match field: %v %v", k, ats[0].Err)
	}
}

func TestFieldExpressionError(t *testing.T) {
	fake := newFake(t, sftest.WithObject("Task", "Relay_Id__c", taskFields...))
	d := taskDestination(fake, "leave_unset")
	d.Fields["Description"] = `activity.attributes.missing`
	ats := newSink(t, d, nil).DeliverBatch(context.Background(), emails("ann@example.com"))
	if k := kinds(ats); k[0] != "permanent" || !strings.Contains(ats[0].Err.Error(), "fields.Description: no such key: missing") {
		t.Errorf("expression error: %v %v", k, ats[0].Err)
	}
	if fake.Calls() != 0 {
		t.Errorf("%d upsert calls for a batch with nothing to send", fake.Calls())
	}
}

// TestFakeQueryErrors: the fake's query resource answers bad SOQL as
// Salesforce does, so the sink's classification is tested against it.
func TestFakeQueryErrors(t *testing.T) {
	fake := newFake(t)
	tok := fakeToken(t, fake)
	tests := []struct {
		q      string
		status int
		want   string
	}{
		{"SELEC Id FROM Contact", 400, `"errorCode":"MALFORMED_QUERY"`},
		{"SELECT Id, Emial FROM Contact WHERE Emial IN ('a')", 400, `"errorCode":"INVALID_FIELD"`},
		{"SELECT Id FROM Contakt", 400, `"errorCode":"INVALID_TYPE"`},
		{"SELECT Id FROM Contact WHERE Email IN ('a\\q')", 400, `"errorCode":"MALFORMED_QUERY"`},
		{"SELECT Id, Email FROM Lead WHERE Email = 'x@example.com'", 200, `{"done":true,"records":[],"totalSize":0}`},
	}
	for _, tc := range tests {
		req, _ := http.NewRequest("GET", fake.URL+"/services/data/v61.0/query?q="+url.QueryEscape(tc.q), nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || !strings.Contains(string(body), tc.want) {
			t.Errorf("%s: %d %s, want %d %s", tc.q, resp.StatusCode, body, tc.status, tc.want)
		}
	}
}

// fakeToken gets an access token from the fake with client credentials.
func fakeToken(t *testing.T, fake *sftest.Server) string {
	t.Helper()
	resp, err := http.PostForm(fake.TokenURL(), url.Values{"grant_type": {"client_credentials"}, "client_id": {"client-id"}, "client_secret": {clientSecret}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	_, rest, _ := strings.Cut(string(body), `"access_token":"`)
	tok, _, _ := strings.Cut(rest, `"`)
	if tok == "" {
		t.Fatalf("token answer %s", body)
	}
	return tok
}
