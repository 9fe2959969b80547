package salesforce

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/relaydev/relay/connectors/salesforce/sftest"
	"github.com/relaydev/relay/relay/sink"
)

// campaigns are deliveries whose attributes.campaign is campaign(i).
func campaigns(n int, campaign func(i int) string) []*sink.Delivery {
	out := make([]*sink.Delivery, n)
	for i := range out {
		raw := fmt.Sprintf(`{"id":"act-%06d","name":"email.open","type":"email","action":"open",
			"occurred_at":"2026-11-22T10:00:00Z","contact":{"email":"c%d@example.com"},"attributes":{"campaign":%q}}`, i, i, campaign(i))
		out[i] = &sink.Delivery{Raw: []byte(raw), Attempt: 1}
	}
	return out
}

// TestBulkJobSettlesEachRow: a batch above 200 goes as one Bulk API 2.0
// upsert job in a handful of calls; 1% of the rows, refused for their
// content (a value not in a restricted picklist), fail permanently with
// Salesforce's code, field and message; the other 99% are delivered.
func TestBulkJobSettlesEachRow(t *testing.T) {
	fake := newFake(t, sftest.WithPicklist("Campaign__c", true, "bf", "xmas"))
	s := newSink(t, destination(fake), nil)
	ds := campaigns(5000, func(i int) string {
		if i%100 == 7 {
			return "summer"
		}
		return "bf"
	})
	ats := s.DeliverBatch(context.Background(), ds)
	ok, refused := 0, 0
	for i, at := range ats {
		if at.Err == nil {
			ok++
			continue
		}
		k, _ := sink.Classify(at.Err)
		msg := at.Err.Error()
		if i%100 != 7 || k != sink.Permanent || !strings.Contains(msg, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST") ||
			!strings.Contains(msg, "fields: Campaign__c") || !strings.Contains(msg, "bad value for restricted picklist field: summer") {
			t.Fatalf("row %d: %s %v", i, k, at.Err)
		}
		refused++
	}
	if ok != 4950 || refused != 50 {
		t.Errorf("delivered %d, refused %d; want 4950 and 50", ok, refused)
	}
	if fake.Jobs() != 1 || fake.APICalls() > jobCalls || fake.Calls() != 0 {
		t.Errorf("%d jobs, %d API calls, %d collections calls; want 1 job in at most %d calls and no collections call", fake.Jobs(), fake.APICalls(), fake.Calls(), jobCalls)
	}
	if rec := fake.Records()["act-000001"]; rec["Campaign__c"] != "bf" || rec["Email__c"] != "c1@example.com" || rec["Type__c"] != "email.open" {
		t.Errorf("record = %v", rec)
	}
	if got := s.BatchFor(2000); got != 200 {
		t.Errorf("BatchFor(2000) = %d, want batch_size (200)", got)
	}
	if got := s.BatchFor(2001); got != 2001 {
		t.Errorf("BatchFor(2001) = %d, want 2001", got)
	}
	if got := s.BatchFor(1 << 30); got != MaxJobRows {
		t.Errorf("BatchFor(large) = %d, want %d", got, MaxJobRows)
	}
}

// TestBulkFailedJob: a job that fails part way settles the rows it
// processed and hands the others back unattempted (sink.Hold); a job whose
// upload is refused is abandoned and made again as a new job.
func TestBulkFailedJob(t *testing.T) {
	fake := newFake(t)
	s := newSink(t, destination(fake), nil)
	fake.FailNextJob(300)
	ats := s.DeliverBatch(context.Background(), campaigns(1000, func(int) string { return "bf" }))
	if got := kindCounts(ats); got["ok"] != 300 || got["hold"] != 700 {
		t.Fatalf("outcomes %v, want 300 ok and 700 hold", got)
	}
	fake.FailNextUpload(1, http.StatusInternalServerError, "UNKNOWN_EXCEPTION")
	ats = s.DeliverBatch(context.Background(), campaigns(1000, func(int) string { return "bf" }))
	if got := kindCounts(ats); got["ok"] != 1000 {
		t.Fatalf("outcomes %v after a refused upload, want 1000 ok", got)
	}
	if fake.Jobs() != 3 || len(fake.Records()) != 1000 {
		t.Errorf("%d jobs, %d records; want 3 and 1000", fake.Jobs(), len(fake.Records()))
	}
}

func kindCounts(ats []sink.Attempt) map[string]int {
	out := map[string]int{}
	for _, k := range kinds(ats) {
		out[k]++
	}
	return out
}

// TestBulkGroupsByParent: Tasks related to their Contact go in a job
// sorted by WhoId, so the org's parallel chunks rarely write the same
// parent; the rows that still meet a lock (a parent across two chunks)
// fail with UNABLE_TO_LOCK_ROW, to be retried, never dead-lettered.
func TestBulkGroupsByParent(t *testing.T) {
	fake := newFake(t, sftest.WithObject("Task", "Relay_Id__c", taskFields...), sftest.WithParentLocks("WhoId", 100))
	var list []string
	for i := range 30 {
		fake.AddContact(map[string]any{"Email": fmt.Sprintf("p%d@example.com", i)})
	}
	for i := range 1000 {
		list = append(list, fmt.Sprintf("p%d@example.com", i%30))
	}
	s := newSink(t, taskDestination(fake, "leave_unset"), nil)
	ats := s.DeliverBatch(context.Background(), emails(list...))
	locked := 0
	for i, at := range ats {
		if at.Err == nil {
			continue
		}
		if k, _ := sink.Classify(at.Err); k != sink.Retry || !strings.Contains(at.Err.Error(), "UNABLE_TO_LOCK_ROW") {
			t.Fatalf("row %d: %v", i, at.Err)
		}
		locked++
	}
	// 10 chunks of 100: at most 9 parents cross a boundary, 34 rows each.
	if locked > 9*34 {
		t.Errorf("%d rows locked; sorted by parent, at most %d can be", locked, 9*34)
	}
	t.Logf("%d of 1000 rows met a lock", locked)
}

// TestParseRowError reads sf__Error as Bulk API 2.0 writes it:
// CODE:message:fields --, the message free to hold colons.
func TestParseRowError(t *testing.T) {
	tests := []struct {
		in, code, msg string
		fields        []string
	}{
		{"REQUIRED_FIELD_MISSING:Required fields are missing: [LastName]:LastName --", "REQUIRED_FIELD_MISSING", "Required fields are missing: [LastName]", []string{"LastName"}},
		{"FIELD_CUSTOM_VALIDATION_EXCEPTION:Amount must be positive:Amount__c,Total__c --", "FIELD_CUSTOM_VALIDATION_EXCEPTION", "Amount must be positive", []string{"Amount__c", "Total__c"}},
		{"UNABLE_TO_LOCK_ROW:unable to obtain exclusive access to this record:--", "UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access to this record", nil},
		{"DUPLICATE_EXTERNAL_ID:Relay_Id__c: more than one record found for external id field: [a0B1, a0B2]:Relay_Id__c --", "DUPLICATE_EXTERNAL_ID", "Relay_Id__c: more than one record found for external id field: [a0B1, a0B2]", []string{"Relay_Id__c"}},
		{"UNKNOWN_EXCEPTION", "UNKNOWN_EXCEPTION", "", nil},
	}
	for _, tc := range tests {
		code, msg, fields := parseRowError(tc.in)
		if code != tc.code || msg != tc.msg || strings.Join(fields, ",") != strings.Join(tc.fields, ",") {
			t.Errorf("%q: %q %q %q", tc.in, code, msg, fields)
		}
	}
}
