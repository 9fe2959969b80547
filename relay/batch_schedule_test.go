package relay_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/relaydev/relay/connectors/salesforce/sftest"
)

// TestBatchEmptyScheduleThrottled: retry: {schedule: []} is one attempt
// and no retry (N delays, N+1 attempts). A throttled attempt
// (REQUEST_LIMIT_EXCEEDED) then makes a dead letter of every activity of
// the batch after that one attempt: no panic on the schedule, no second
// call. A plain failure (500) is a dead letter at once too.
func TestBatchEmptyScheduleThrottled(t *testing.T) {
	fake := sftest.New(t)
	yaml := strings.Replace(salesforceYAML(fake, ""), "retry: {schedule: [100ms, 200ms]}", "retry: {schedule: []}", 1)
	if !strings.Contains(yaml, "schedule: []") {
		t.Fatal("the test config has no empty schedule")
	}
	n := startRelay(t, baseYAML(t.TempDir())+"destinations:\n"+yaml)
	fake.FailNext(1, http.StatusForbidden, "REQUEST_LIMIT_EXCEEDED")
	email := func(i int) map[string]any {
		return map[string]any{"type": "email", "action": "open", "contact": map[string]any{"email": "c" + string(rune('a'+i)) + "@example.com"}}
	}
	throttled := n.send(email(0), email(1), email(2))
	waitFor(t, 30*time.Second, "3 dead letters after the throttled call", func() bool { return n.destinations()["sf"].DeadLettered == 3 })
	if calls := fake.Calls(); calls != 1 {
		t.Errorf("%d upsert calls, want 1 (no retry)", calls)
	}

	fake.FailNext(1, http.StatusInternalServerError, "UNKNOWN_EXCEPTION")
	failed := n.send(email(3))
	waitFor(t, 30*time.Second, "a 4th dead letter after the failed call", func() bool { return n.destinations()["sf"].DeadLettered == 4 })
	waitSettled(t, n, "sf")
	if calls := fake.Calls(); calls != 2 {
		t.Errorf("%d upsert calls, want 2 (no retry)", calls)
	}
	if recs := fake.Records(); len(recs) != 0 {
		t.Errorf("records = %v, want none", recs)
	}
	_, out := n.adminDo("GET", "/v1/deadletters?destination=sf", "")
	var list struct {
		DeadLetters []struct {
			ID       string     `json:"id"`
			Attempts []struct{} `json:"attempts"`
		} `json:"deadletters"`
	}
	remarshal(t, out, &list)
	want := map[string]bool{failed[0]: true}
	for _, id := range throttled {
		want[id] = true
	}
	for _, dl := range list.DeadLetters {
		if !want[dl.ID] || len(dl.Attempts) != 1 {
			t.Errorf("dead letter %s after %d attempts, want one of %v after 1", dl.ID, len(dl.Attempts), want)
		}
		delete(want, dl.ID)
	}
	if len(want) > 0 {
		t.Errorf("no dead letter for %v", want)
	}
}
