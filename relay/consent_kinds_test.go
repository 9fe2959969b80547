package relay_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/relaydev/relay/connectors/salesforce/sftest"
)

// TestConsentEveryKind: the check holds for a destination with order:
// contact (its lanes) and for a Salesforce destination (its batches), as
// for a fanned webhook: after Ann opts out of SMS, her activities reach
// neither; Bo's do; her opt-out itself passes.
func TestConsentEveryKind(t *testing.T) {
	lanes := newReceiver(t, secretA)
	fake := sftest.New(t, sftest.WithRequired("Email__c"))
	yaml := baseYAML(t.TempDir()) + "destinations:\n" +
		destYAML("lanes", lanes.srv.URL, secretA, "    consent: sms\n    order: contact") +
		salesforceYAML(fake, "    consent: sms")
	n := startRelay(t, yaml)
	ann := map[string]any{"email": "ann@example.com", "phone": "+1 555 0100"}
	out := n.send(map[string]any{"activity": "Unsubscribed from SMS", "contact": ann})[0]
	ids := n.send(
		map[string]any{"type": "email", "action": "open", "contact": ann},
		map[string]any{"type": "email", "action": "click", "contact": map[string]any{"email": "bo@example.com", "phone": "+15550199"}},
	)
	waitFor(t, 30*time.Second, "bo's activity at both", func() bool { return lanes.delivered()[ids[1]] == 1 && fake.Records()[ids[1]] != nil })
	waitSettled(t, n, "lanes", "sf")
	if lanes.delivered()[ids[0]] != 0 || fake.Records()[ids[0]] != nil {
		t.Errorf("ann's activity delivered after her SMS unsubscribe: lanes %d, salesforce %v", lanes.delivered()[ids[0]], fake.Records()[ids[0]])
	}
	if lanes.delivered()[out] != 1 {
		t.Errorf("the unsubscribe itself did not pass to lanes")
	}
	_, trace := n.adminDo("GET", "/v1/activities/"+ids[0], "")
	for _, dest := range []string{"lanes", "sf"} {
		if st := destStatus(trace, dest); st != "suppressed" {
			t.Errorf("ann's activity at %s: %s, want suppressed", dest, st)
		}
	}
	if reason := lastError(trace, "sf"); !strings.HasPrefix(reason, "suppressed: sms unsubscribed at ") {
		t.Errorf("reason at sf: %q", reason)
	}
	if status, _ := n.adminDo("GET", "/v1/deliveries?outcome=suppressed&destination=sf", ""); status != http.StatusOK {
		t.Errorf("deliveries: %d", status)
	}
}
