package relay_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestIngestBadInput: each bad request gets its status and a JSON error
// naming what is wrong, and a partly invalid batch accepts nothing.
func TestIngestBadInput(t *testing.T) {
	r := newReceiver(t, secretA)
	n := startRelay(t, baseYAML(t.TempDir())+"destinations:\n"+destYAML("all", r.srv.URL, secretA, ""))
	big := `[` + strings.Repeat(`{"type":"email","action":"open","attributes":{"pad":"`+strings.Repeat("x", 1<<20)+`"}},`, 5) + `{"type":"pageview"}]`
	tooMany := `[` + strings.Repeat(`{"type":"pageview"},`, 1000) + `{"type":"pageview"}]`
	tests := []struct {
		name, body, token string
		status            int
		errorHas          string
		detailHas         string
	}{
		{"malformed JSON", `{"type": "email",`, ingestToken, 400, "malformed JSON", ""},
		{"not an object", `"email.open"`, ingestToken, 400, "expected an object or an array", ""},
		{"no token", `{"type":"pageview"}`, "", 401, "bearer token", ""},
		{"wrong token", `{"type":"pageview"}`, "nope", 401, "bearer token", ""},
		{"oversized body", big, ingestToken, 413, "larger than", ""},
		{"too many items", tooMany, ingestToken, 413, "exceeds the limit of 1000", ""},
		{"unknown activity", `{"type":"email","action":"teleport"}`, ingestToken, 422, "unknown activity", `unknown activity \"email.teleport\"`},
		{"unknown Ortto name", `{"activity":"Teleported email"}`, ingestToken, 422, "unknown activity", "Teleported email"},
		{"missing type", `{"contact":{"email":"a@b"}}`, ingestToken, 400, "invalid activity", "missing"},
		{"bad time", `{"type":"pageview","occurred_at":"yesterday"}`, ingestToken, 400, "invalid activity", "occurred_at"},
		{"unknown field", `{"type":"pageview","colour":"red"}`, ingestToken, 400, "invalid activity", "colour"},
		{"wrong type", `{"type":"pageview","contact":"ann"}`, ingestToken, 400, "invalid activity", "contact"},
		{"partly invalid batch", `[{"type":"pageview"},{"type":"email","action":"open"},{"type":"nope"},{"type":"pageview","id":"has space"}]`, ingestToken, 400, "nothing of the 4-item batch was accepted", `"index":2`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, out := n.post(tc.body, tc.token)
			if status != tc.status {
				t.Fatalf("status = %d, want %d (%v)", status, tc.status, out)
			}
			msg, _ := out["error"].(string)
			if !strings.Contains(msg, tc.errorHas) {
				t.Errorf("error = %q, want it to contain %q", msg, tc.errorHas)
			}
			if tc.detailHas != "" {
				if details := fmt.Sprintf("%s", mustJSON(t, out["details"])); !strings.Contains(details, tc.detailHas) {
					t.Errorf("details = %s, want %q in them", details, tc.detailHas)
				}
			}
		})
	}
	// Nothing of the refused requests was accepted; a good one still is.
	ids := n.send(map[string]any{"type": "pageview"})
	waitFor(t, 30*time.Second, "the good activity", func() bool { return len(r.delivered()) == 1 })
	if got := r.delivered(); got[ids[0]] != 1 {
		t.Errorf("delivered %v, want only %s", got, ids[0])
	}
}

// TestIngestShapes: both namings and ODP's own event shape are accepted,
// ids are kept or generated, and a retry with the same id is not a second
// activity.
func TestIngestShapes(t *testing.T) {
	r := newReceiver(t, secretA)
	n := startRelay(t, baseYAML(t.TempDir())+"destinations:\n"+destYAML("all", r.srv.URL, secretA, ""))
	status, out := n.post(`[
	  {"type": "email", "action": "open", "id": "client-1", "occurred_at": "2026-11-22T10:00:00Z", "contact": {"email": "ann@example.com"}},
	  {"activity": "Opened email", "contact": {"email": "ann@example.com"}},
	  {"type": "product", "action": "add_to_cart", "identifiers": {"email": "bob@example.com"}, "data": {"sku": "A-1", "price": 9.5}},
	  {"type": "pageview"}
	]`, ingestToken)
	if status != http.StatusAccepted || out["accepted"] != float64(4) {
		t.Fatalf("ingest: %d %v", status, out)
	}
	ids := out["ids"].([]any)
	if ids[0] != "client-1" || ids[1] == "" || ids[1] == ids[2] {
		t.Errorf("ids = %v: want client-1 kept and others generated", ids)
	}
	status, out = n.post(`{"type": "email", "action": "open", "id": "client-1"}`, ingestToken)
	if status != http.StatusAccepted {
		t.Fatalf("retry: %d %v", status, out)
	}
	waitSettled(t, n, "all")
	got := r.delivered()
	if len(got) != 4 || got["client-1"] != 1 {
		t.Errorf("delivered %v: want 4 activities, client-1 once", got)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.names[ids[1].(string)] != "email.open" || r.names[ids[2].(string)] != "product.add_to_cart" || r.names[ids[3].(string)] != "pageview" {
		t.Errorf("names = %v", r.names)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
