package ingest

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/relaydev/relay/relay/activity"
)

// FuzzIngestDecode: the ingest decoder never panics on any body. A body it
// accepts is valid JSON and gives at most max_batch activities, each named,
// with an id and encoded as JSON that decodes back to itself. A body it
// refuses gets a 4xx status and a message, and every detail names an item
// of the batch and says what is wrong with it.
func FuzzIngestDecode(f *testing.F) {
	for _, s := range []string{
		`{"type": "email", "action": "open", "id": "client-1", "occurred_at": "2026-11-22T10:00:00Z", "contact": {"id": "c_1", "email": "ann@example.com", "phone": "+15550100"}, "attributes": {"campaign": "black-friday", "url": "https://x.example/a?b=c"}}`,
		`{"activity": "Opened email", "contact": {"email": "ann@example.com"}}`,
		`[{"type": "product", "action": "add_to_cart", "identifiers": {"email": "bob@example.com"}, "data": {"sku": "A-1", "price": 9.5}}, {"type": "pageview"}]`,
		`[{"type":"pageview"},{"type":"email","action":"open"},{"type":"nope"},{"type":"pageview","id":"has space"}]`,
		`{"type":"loyalty","action":"tier_changed","attributes":{"n":1e308,"nested":{"a":[1,2,{"b":null}]}}}`,
		`{"type":"pageview","contact":"ann"}`,
		`{"type":"pageview","occurred_at":"yesterday"}`,
		`{"type": "email",`,
		`[]`, `null`, `"email.open"`, ``, `[{}]`, `{"type":"pageview"}}`, `[{"type":"pageview"}]]`,
		`{"type":"pageview","Type":"email","TYPE":"sms"}`,
		"{\"type\":\"pageview\",\"id\":\"\xff\"}",
	} {
		f.Add([]byte(s), false)
	}
	f.Add([]byte(`{"type":"loyalty","action":"tier_changed"}`), true)
	f.Add([]byte(`[{"name":"a.b.c"},{"type":"x","action":"y"}]`), true)
	cat := activity.Builtin()
	f.Fuzz(func(t *testing.T, body []byte, allowCustom bool) {
		in := &Ingest{Catalog: cat, AllowCustom: allowCustom, MaxBatch: 50}
		acts, raws, bad := in.decode(body)
		if bad != nil {
			checkRefusal(t, bad, acts, raws)
			return
		}
		if !json.Valid(body) {
			t.Fatalf("accepted a body that is not JSON: %q", body)
		}
		if len(acts) == 0 || len(acts) > in.MaxBatch || len(raws) != len(acts) {
			t.Fatalf("accepted %d activities with %d encodings", len(acts), len(raws))
		}
		for i, a := range acts {
			checkAccepted(t, a, raws[i])
		}
	})
}

func checkRefusal(t *testing.T, bad *refusal, acts []*activity.Activity, raws [][]byte) {
	t.Helper()
	if acts != nil || raws != nil {
		t.Fatalf("refused (%d %s) yet returned activities", bad.status, bad.msg)
	}
	if bad.status < 400 || bad.status > 499 || strings.TrimSpace(bad.msg) == "" {
		t.Fatalf("refusal %d %q", bad.status, bad.msg)
	}
	if bad.status != http.StatusBadRequest && bad.status != http.StatusUnprocessableEntity && bad.status != http.StatusRequestEntityTooLarge {
		t.Fatalf("refusal status %d", bad.status)
	}
	for _, d := range bad.details {
		if strings.TrimSpace(d.Message) == "" || d.Index == nil || *d.Index < 0 {
			t.Fatalf("detail %+v of %q", d, bad.msg)
		}
	}
}

func checkAccepted(t *testing.T, a *activity.Activity, raw []byte) {
	t.Helper()
	if a.Name == "" || a.Type == "" || a.ID == "" || checkID(a.ID) != nil || a.OccurredAt.IsZero() || a.ReceivedAt.IsZero() {
		t.Fatalf("accepted activity %+v", a)
	}
	if _, _, err := activity.ParseName(a.Name); err != nil {
		t.Fatalf("accepted activity named %q: %v", a.Name, err)
	}
	var back activity.Activity
	if err := json.Unmarshal(raw, &back); err != nil {
		t.Fatalf("encoding %q does not decode: %v", raw, err)
	}
	again, err := activity.Encode(&back)
	if err != nil || !bytes.Equal(again, raw) {
		t.Fatalf("encoding does not round-trip:\n%s\n%s (%v)", raw, again, err)
	}
}
