package relay_test

import (
	"bytes"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestEraseForgetsAPerson: after POST /v1/contacts/erase, none of the
// person's activities, hand-overs, retries, attempt histories, dead
// letters (a replayed one that failed again too) or delivery-log entries
// is left: no API shows them, the answer counts them, and a byte search of
// the data directory finds neither their address nor their phone number.
// Other people's data stays.
func TestEraseForgetsAPerson(t *testing.T) {
	const email, phone = "erin.forget@example.org", "+15557770123"
	down := newReceiver(t, secretA)
	var failing atomic.Bool
	failing.Store(true)
	down.setRespond(func(id string, n int) int {
		if failing.Load() && strings.HasPrefix(id, "erin-") {
			return http.StatusServiceUnavailable
		}
		return http.StatusNoContent
	})
	plain := newReceiver(t, secretB)
	dir := t.TempDir()
	yaml := baseYAML(dir) + "destinations:\n" +
		destYAML("down", down.srv.URL, secretA, "    retry: {schedule: [100ms, 100ms]}\n    breaker: off") +
		destYAML("slow", down.srv.URL, secretA, "    retry: {schedule: [1h]}\n    breaker: off") +
		destYAML("plain", plain.srv.URL, secretB, "")
	n := startRelay(t, yaml)
	erin := map[string]any{"email": "Erin.Forget@example.org", "phone": "+1 555 777 0123", "id": "c-erin"}
	var items []map[string]any
	for i := range 6 {
		items = append(items, map[string]any{"id": fmt.Sprintf("erin-%d", i), "type": "email", "action": "open", "contact": erin},
			map[string]any{"id": fmt.Sprintf("other-%d", i), "type": "email", "action": "open", "contact": map[string]any{"email": fmt.Sprintf("o%d@example.org", i)}})
	}
	items = append(items, map[string]any{"id": "erin-out", "type": "consent", "action": "opt-out", "contact": map[string]any{"email": email, "phone": phone}})
	n.send(items...)
	waitFor(t, 30*time.Second, "erin's dead letters at down", func() bool { return n.destinations()["down"].DeadLettered == 7 })
	// A replay that fails again: the dead letter is replaced.
	if status, out := n.adminDo("POST", "/v1/replay", `{"destination": "down", "ids": ["erin-0"]}`); status != http.StatusOK {
		t.Fatalf("replay: %d %v", status, out)
	}
	waitFor(t, 30*time.Second, "erin-0 dead again", func() bool {
		return len(down.attemptTimes("erin-0")) >= 6 && n.destinations()["down"].DeadLettered == 7
	})
	waitFor(t, 30*time.Second, "erin's retries waiting at slow", func() bool {
		_, out := n.adminDo("GET", "/v1/activities/erin-5", "")
		return destStatus(out, "slow") == "retrying"
	})
	status, out := n.adminDo("GET", "/v1/contacts?email="+strings.ToUpper(email), "")
	if status != http.StatusOK || len(out["activities"].([]any)) != 7 {
		t.Fatalf("contact before erasure: %d %v", status, out)
	}
	if ch := out["channels"].(map[string]any)["email"].(map[string]any); ch["state"] != "opted_out" || ch["activity_id"] != "erin-out" {
		t.Errorf("email channel: %v", ch)
	}
	// limit keeps the newest, newest first.
	_, out = n.adminDo("GET", "/v1/contacts?limit=3&email="+email, "")
	var newest []string
	for _, a := range out["activities"].([]any) {
		newest = append(newest, a.(map[string]any)["id"].(string))
	}
	if fmt.Sprint(newest) != "[erin-out erin-5 erin-4]" {
		t.Errorf("limit=3 lists %v, want [erin-out erin-5 erin-4]", newest)
	}

	status, out = n.adminDo("POST", "/v1/contacts/erase", fmt.Sprintf(`{"phone": %q}`, phone))
	if status != http.StatusOK {
		t.Fatalf("erase: %d %v", status, out)
	}
	erased := out["erased"].(map[string]any)
	// 7 activities (the replayed copy waits on QUEUES); 7 dead letters;
	// the histories of the retries waiting at slow.
	if erased["activities"] != float64(7) || erased["queued"].(float64) < 1 || erased["dead_letters"] != float64(7) || erased["attempt_histories"].(float64) < 6 || erased["log_entries"].(float64) < 7 {
		t.Errorf("erased %v", erased)
	}
	if h, _ := out["identifier_hash"].(string); !strings.HasPrefix(h, "sha256:") || strings.Contains(h, "555") {
		t.Errorf("identifier_hash %q", h)
	}
	if _, out := n.adminDo("GET", "/v1/contacts?email="+email, ""); len(out["activities"].([]any)) != 0 {
		t.Errorf("contact after erasure: %v", out["activities"])
	}
	for _, id := range []string{"erin-0", "erin-5", "erin-out"} {
		if status, _ := n.adminDo("GET", "/v1/activities/"+id, ""); status != http.StatusNotFound {
			t.Errorf("trace of %s after erasure: %d", id, status)
		}
	}
	if _, out := n.adminDo("GET", "/v1/deadletters?destination=down", ""); len(out["deadletters"].([]any)) != 0 {
		t.Errorf("dead letters after erasure: %v", out["deadletters"])
	}
	if _, out := n.adminDo("GET", "/v1/deliveries?limit=1000", ""); strings.Contains(fmt.Sprint(out), "erin-") {
		t.Errorf("delivery log after erasure still names erin's activities")
	}
	if status, out := n.adminDo("POST", "/v1/replay", `{"destination": "plain", "history": true, "ids": ["erin-1"]}`); status == http.StatusOK && out["replayed"] != float64(0) {
		t.Errorf("replay --history of an erased activity: %d %v", status, out)
	}
	if _, out := n.adminDo("GET", "/v1/activities/other-3", ""); destStatus(out, "plain") != "delivered" {
		t.Errorf("someone else's activity after the erasure: %v", out)
	}
	n.stop()
	for _, needle := range []string{email, "Erin.Forget", "555 777 0123", "c-erin"} {
		if where := grepDir(t, dir, needle); where != "" {
			t.Errorf("%q still in the data directory: %s", needle, where)
		}
	}
	if where := grepDir(t, dir, "o3@example.org"); where == "" {
		t.Error("someone else's address is gone from the data directory too: the search proves nothing")
	}
}

// grepDir names a file under dir holding needle (ignoring ASCII case), ""
// when none does.
func grepDir(t *testing.T, dir, needle string) string {
	t.Helper()
	found := ""
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || found != "" {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(bytes.ToLower(data), bytes.ToLower([]byte(needle))) {
			found = path
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}
