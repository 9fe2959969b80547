package relay_test

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"
)

// sourceDetails returns the details of an error answer of either source
// route as "index|field|message" lines.
func sourceDetails(out map[string]any) []string {
	var lines []string
	details, _ := out["details"].([]any)
	for _, d := range details {
		d, _ := d.(map[string]any)
		idx := "-"
		if i, ok := d["index"].(float64); ok {
			idx = fmt.Sprint(int(i))
		}
		field, _ := d["field"].(string)
		lines = append(lines, fmt.Sprintf("%s|%s|%v", idx, field, d["message"]))
	}
	return lines
}

// goWords are words of Go's own that an answer must never show a sender.
var goWords = []string{"json.Number", "<nil>", "map[", "interface", "[]interface", "Go value", "Go struct", "float64", "json.RawMessage", "struct {"}

func odpEvent(extra string) string {
	return `{"type":"email","action":"open","identifiers":{"email":"ann@example.com"}` + extra + `}`
}

// TestSourceStrictDecoding: the source routes decode as strictly as
// /v1/activities: duplicate names at any depth (also spelled with
// escapes), names differing only in case, invalid UTF-8 and lone
// surrogates are refused with 400 naming the item and the field; a value
// of the wrong JSON type is refused in words of JSON, never of Go.
func TestSourceStrictDecoding(t *testing.T) {
	yaml := baseYAML(t.TempDir()) + `sources:
  ortto:
    activity_ids:
      "act:cm:placed-order": order.purchase
destinations:
` + destYAML("hook", "http://127.0.0.1:9/", secretA, "")
	n := startRelay(t, yaml)
	odp := map[string]string{"x-api-key": ingestToken}
	ortto := map[string]string{"Authorization": "Bearer " + ingestToken}
	const (
		odpURL   = "/v3/events"
		orttoURL = "/v1/sources/ortto"
	)
	oc := func(activity string) string { // an Ortto payload around an activity object
		return `{"activity":` + activity + `,"contact":{"str::email":"ann@example.com"},"id":"x-1"}`
	}
	tests := []struct {
		name   string
		path   string
		body   string
		status int
		detail string // "index|field|message part" of some detail; "" when none is expected
		msg    string // a part of the error message
	}{
		// ODP: duplicates at any depth.
		{"odp duplicate type and action", odpURL, `{"type":"email","action":"open","type":"order","action":"purchase","identifiers":{"email":"a@example.com"}}`, 400, "0|type|duplicate", ""},
		{"odp duplicate identifier", odpURL, `{"type":"email","action":"open","identifiers":{"email":"a@example.com","email":"b@example.com"}}`, 400, "0|identifiers.email|duplicate", ""},
		{"odp duplicate deep in data", odpURL, odpEvent(`,"data":{"items":[{"sku":"a","sku":"b"}]}`), 400, "0|data.items.0.sku|duplicate", ""},
		{"odp duplicate spelled with an escape", odpURL, odpEvent(`,"data":{"k":1,"\u006b":2}`), 400, "0|data.k|duplicate", ""},
		{"odp duplicate idempotence_id", odpURL, odpEvent(`,"data":{"idempotence_id":"a","idempotence_id":"b"}`), 400, "0|data.idempotence_id|duplicate", ""},
		{"odp duplicate in the second event", odpURL, `[` + odpEvent("") + `,` + odpEvent(`,"data":{"k":1,"k":2}`) + `]`, 400, "1|data.k|duplicate", ""},
		// ODP: names differing only in case.
		{"odp Type beside type", odpURL, `{"type":"email","Type":"order","action":"open","identifiers":{"email":"a@example.com"}}`, 400, "0|Type|unknown field", ""},
		{"odp Type alone", odpURL, `{"Type":"email","action":"open","identifiers":{"email":"a@example.com"}}`, 400, "0|Type|unknown field", ""},
		{"odp IDENTIFIERS", odpURL, `{"type":"email","action":"open","IDENTIFIERS":{"email":"a@example.com"}}`, 400, "0|IDENTIFIERS|unknown field", ""},
		{"odp Idempotence_ID in data", odpURL, odpEvent(`,"data":{"Idempotence_ID":"x"}`), 400, "0|data.Idempotence_ID|case", ""},
		// ODP: text that is not UTF-8.
		{"odp invalid UTF-8 in data", odpURL, odpEvent(",\"data\":{\"k\":\"a\xc3\x28\"}"), 400, "0|data.k|invalid UTF-8", ""},
		{"odp invalid UTF-8 in a name", odpURL, odpEvent(",\"data\":{\"k\xff\":1}"), 400, "0|data|invalid UTF-8", ""},
		{"odp lone surrogate in identifiers", odpURL, `{"type":"email","action":"open","identifiers":{"email":"a\udc00@example.com"}}`, 400, "0|identifiers.email|surrogate", ""},
		{"odp high surrogate alone", odpURL, odpEvent(`,"data":{"k":"\ud83d x"}`), 400, "0|data.k|surrogate", ""},
		// ODP: JSON types, said in JSON's words.
		{"odp idempotence_id null", odpURL, odpEvent(`,"data":{"idempotence_id":null}`), 400, "0|data.idempotence_id|expected a string, got null", ""},
		{"odp idempotence_id a number", odpURL, odpEvent(`,"data":{"idempotence_id":7}`), 400, "0|data.idempotence_id|expected a string, got a number", ""},
		{"odp type a number", odpURL, `{"type":5,"identifiers":{"email":"a@example.com"}}`, 400, "0|type|expected a string, got a number", ""},
		{"odp type null", odpURL, `{"type":null,"identifiers":{"email":"a@example.com"}}`, 400, "0|type|", ""},
		{"odp action an object", odpURL, `{"type":"email","action":{},"identifiers":{"email":"a@example.com"}}`, 400, "0|action|expected a string, got an object", ""},
		{"odp action null", odpURL, `{"type":"email","action":null,"identifiers":{"email":"a@example.com"}}`, 400, "0|action|expected a string, got null", ""},
		{"odp identifiers an array", odpURL, `{"type":"email","action":"open","identifiers":[1]}`, 400, "0|identifiers|", ""},
		{"odp data a string", odpURL, odpEvent(`,"data":"x"`), 400, "0|data|expected an object, got a string", ""},
		{"odp ts null", odpURL, odpEvent(`,"data":{"ts":null}`), 400, "0|data.ts|got null", ""},
		{"odp ts true", odpURL, odpEvent(`,"data":{"ts":true}`), 400, "0|data.ts|got true", ""},
		{"odp ts hex", odpURL, odpEvent(`,"data":{"ts":"0x10"}`), 400, "0|data.ts|expected Unix seconds", ""},
		{"odp event a number", odpURL, `[` + odpEvent("") + `,7]`, 400, "1||(an object), got a number", ""},
		{"odp empty array", odpURL, `[]`, 400, "", "no events"},
		{"odp a string body", odpURL, `"x"`, 400, "", "got a string"},
		{"odp empty body", odpURL, ``, 400, "", "empty body"},

		// Ortto: duplicates at any depth.
		{"ortto duplicate field_id", orttoURL, oc(`{"field_id":"act::o","field_id":"act:cm:placed-order"}`), 400, "0|activity.field_id|duplicate", ""},
		{"ortto duplicate activity", orttoURL, `{"activity":{"field_id":"act::o"},"activity":{"field_id":"act::c"}}`, 400, "0|activity|duplicate", ""},
		{"ortto duplicate in contact", orttoURL, `{"activity":{"field_id":"act::o"},"contact":{"str::email":"a@example.com","str::email":"b@example.com"}}`, 400, "0|contact.str::email|duplicate", ""},
		{"ortto duplicate deep in attr", orttoURL, oc(`{"field_id":"act::o","attr":{"obj::x":{"a":[{"b":1,"b":2}]}}}`), 400, "0|activity.attr.obj::x.a.0.b|duplicate", ""},
		{"ortto duplicate in the second payload", orttoURL, `[` + oc(`{"field_id":"act::o"}`) + `,` + oc(`{"field_id":"act::o","id":"a","id":"b"}`) + `]`, 400, "1|activity.id|duplicate", ""},
		// Ortto: names differing only in case.
		{"ortto Activity", orttoURL, `{"Activity":{"field_id":"act::o"},"contact":{}}`, 400, "0|Activity|case", ""},
		{"ortto Field_ID", orttoURL, oc(`{"Field_ID":"act::o","field_id":"act::o"}`), 400, "0|activity.Field_ID|case", ""},
		{"ortto ID beside id", orttoURL, `{"activity":{"field_id":"act::o"},"id":"a","ID":"b"}`, 400, "0|ID|case", ""},
		// Ortto: text that is not UTF-8.
		{"ortto invalid UTF-8 in contact", orttoURL, "{\"activity\":{\"field_id\":\"act::o\"},\"contact\":{\"str::first\":\"\xc0\xaf\"}}", 400, "0|contact.str::first|invalid UTF-8", ""},
		{"ortto lone surrogate in attr", orttoURL, oc(`{"field_id":"act::o","attr":{"str::x":"\udc00"}}`), 400, "0|activity.attr.str::x|surrogate", ""},
		// Ortto: answers as docs/sources.md says.
		{"ortto no activity", orttoURL, `{"contact":{"str::email":"a@example.com"},"id":"x"}`, 400, "0|activity|Send activity payload", ""},
		{"ortto activity null", orttoURL, `{"activity":null,"id":"x"}`, 400, "0|activity|Send activity payload", ""},
		{"ortto no field_id", orttoURL, oc(`{"id":"a"}`), 400, "0|activity.field_id|missing", ""},
		{"ortto activity an array", orttoURL, `{"activity":[1]}`, 400, "0|activity|expected an object, got an array", ""},
		{"ortto field_id a number", orttoURL, oc(`{"field_id":7}`), 400, "0|activity.field_id|expected a string, got a number", ""},
		{"ortto field_id not Ortto's", orttoURL, oc(`{"field_id":"opened email"}`), 400, "0|activity.field_id|act::", ""},
		{"ortto field_id upper case", orttoURL, oc(`{"field_id":"ACT::O"}`), 400, "0|activity.field_id|act::", ""},
		{"ortto field_id with a newline", orttoURL, oc(`{"field_id":"act::o\n"}`), 400, "0|activity.field_id|act::", ""},
		{"ortto id a number", orttoURL, `{"activity":{"field_id":"act::o"},"id":5}`, 400, "0|id|expected a string, got a number", ""},
		{"ortto contact a string", orttoURL, `{"activity":{"field_id":"act::o"},"contact":"ann"}`, 400, "0|contact|expected an object, got a string", ""},
		{"ortto attr an array", orttoURL, oc(`{"field_id":"act::o","attr":[]}`), 400, "0|activity.attr|expected an object, got an array", ""},
		{"ortto created an object", orttoURL, oc(`{"field_id":"act::o","created":{}}`), 400, "0|activity.created|got an object", ""},
		{"ortto bad time", orttoURL, `{"activity":{"field_id":"act::o"},"time":"soon"}`, 400, "0|time|expected", ""},
		{"ortto empty array", orttoURL, `[]`, 400, "", "empty array"},
		{"ortto payload a number", orttoURL, `[7]`, 400, "0||(an object), got a number", ""},
		{"ortto a string body", orttoURL, `"x"`, 400, "", "got a string"},
		{"ortto unmapped id of Ortto's form", orttoURL, oc(`{"field_id":"act:cm:signed-up"}`), 422, "0|activity.field_id|sources.ortto.activity_ids", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hdr := odp
			if tc.path == orttoURL {
				hdr = ortto
			}
			status, _, out := postRaw(t, n.ingest+tc.path, tc.body, hdr)
			answer := mustJSON(t, out)
			if status != tc.status {
				t.Fatalf("status %d, want %d: %s", status, tc.status, answer)
			}
			if msg, _ := out["error"].(string); !strings.Contains(msg, tc.msg) || msg == "" {
				t.Errorf("error %q, want one with %q", msg, tc.msg)
			}
			for _, w := range goWords {
				if strings.Contains(answer, w) {
					t.Errorf("the answer names Go's %q: %s", w, answer)
				}
			}
			if tc.detail == "" {
				return
			}
			want := strings.SplitN(tc.detail, "|", 3)
			idx, field, part := want[0], want[1], want[2]
			for _, d := range sourceDetails(out) {
				if strings.HasPrefix(d, idx+"|"+field+"|") && strings.Contains(d[len(idx+"|"+field+"|"):], part) {
					return
				}
			}
			t.Errorf("details %q, want index %s, field %q and a message with %q", sourceDetails(out), idx, field, part)
		})
	}
	if d := n.destinations()["hook"]; d.Pending != 0 {
		t.Errorf("a refused request was stored: %+v", d)
	}
}

// TestSourceDuplicatesVisible: as on /v1/activities, the 202 of either
// source route lists the ids not stored again, repeated inside the request
// or already stored, and counts only what it stored.
func TestSourceDuplicatesVisible(t *testing.T) {
	r := newReceiver(t, secretA)
	n := startRelay(t, baseYAML(t.TempDir())+"destinations:\n"+destYAML("all", r.srv.URL, secretA, ""))
	odp := map[string]string{"x-api-key": ingestToken}
	ev := func(id string) string { return odpEvent(`,"data":{"idempotence_id":"` + id + `"}`) }
	status, _, out := postRaw(t, n.ingest+"/v3/events", "["+ev("od-1")+","+ev("od-2")+","+ev("od-1")+"]", odp)
	if status != http.StatusAccepted || out["title"] != "Accepted" || mustJSON(t, out["duplicates"]) != `["od-1"]` || out["accepted"] != float64(2) {
		t.Errorf("odp batch: %d %s", status, mustJSON(t, out))
	}
	status, _, out = postRaw(t, n.ingest+"/v3/events", ev("od-2"), odp)
	if status != http.StatusAccepted || mustJSON(t, out["duplicates"]) != `["od-2"]` || out["accepted"] != float64(0) {
		t.Errorf("odp resend: %d %s", status, mustJSON(t, out))
	}
	ortto := map[string]string{"Authorization": "Bearer " + ingestToken}
	status, _, out = postRaw(t, n.ingest+"/v1/sources/ortto", "["+orttoPayload("or-1", "act::o", `{}`)+","+orttoPayload("or-1", "act::o", `{}`)+"]", ortto)
	if status != http.StatusAccepted || mustJSON(t, out["duplicates"]) != `["or-1"]` || out["accepted"] != float64(1) {
		t.Errorf("ortto batch: %d %s", status, mustJSON(t, out))
	}
	status, _, out = postRaw(t, n.ingest+"/v1/sources/ortto", orttoPayload("or-1", "act::o", `{}`), ortto)
	if status != http.StatusAccepted || mustJSON(t, out["duplicates"]) != `["or-1"]` || out["accepted"] != float64(0) {
		t.Errorf("ortto redelivery: %d %s", status, mustJSON(t, out))
	}
	waitFor(t, 30*time.Second, "three activities", func() bool { return len(r.delivered()) == 3 })
	for id, c := range r.delivered() {
		if c != 1 {
			t.Errorf("%s delivered %d times", id, c)
		}
	}
}

// TestOrttoOtherFieldsAccepted: members Ortto adds beside the ones Relay
// reads (the campaign's fields, person fields the webhook is set up to
// send) are accepted, as Ortto gives up on a 400, and the 202 names them
// as not stored instead of dropping them silently.
func TestOrttoOtherFieldsAccepted(t *testing.T) {
	r := newReceiver(t, secretA)
	n := startRelay(t, baseYAML(t.TempDir())+"destinations:\n"+destYAML("all", r.srv.URL, secretA, ""))
	body := `{"activity":{"id":"a-1","field_id":"act::o","created":"2026-11-22T10:00:00Z","attr":{},"name":"Opened email"},
		"contact":{"str::email":"ann@example.com"},"id":"extra-1","time":"2026-11-22T10:00:01Z","webhook_id":"wh-1",
		"campaign_id":"c-1","campaign_name":"Welcome","contact_id":"006","email":"ann@example.com"}`
	status, _, out := postRaw(t, n.ingest+"/v1/sources/ortto", body, map[string]string{"Authorization": "Bearer " + ingestToken})
	ignored, _ := out["ignored"].([]any)
	var names []string
	for _, x := range ignored {
		names = append(names, fmt.Sprint(x))
	}
	sort.Strings(names)
	if status != http.StatusAccepted || strings.Join(names, ",") != "activity.name,campaign_id,campaign_name,contact_id,email" {
		t.Fatalf("%d %s, want 202 naming the members not stored", status, mustJSON(t, out))
	}
	waitFor(t, 30*time.Second, "the delivery", func() bool { return r.delivered()["extra-1"] == 1 })
}

// sourceFidelityCases add to fidelityCases what a re-encoder would change
// in a source's values: HTML characters and U+2028/U+2029 written as
// themselves, escapes a re-encoder would rewrite.
var sourceFidelityCases = append(append([]struct{ name, contact, attributes string }{}, fidelityCases...),
	struct{ name, contact, attributes string }{"html and separators as themselves", `{"email":"<ann>&co@example.com","x":"a` + "\u2028" + `b` + "\u2029" + `c"}`, `{"s":"<script>alert(1)</script> & ` + "\u2028" + `","n":1.50,"big":12345678901234567891}`},
	struct{ name, contact, attributes string }{"escapes kept", `{"email":"\u0061nn@example.com"}`, `{"s":"\u003cb\u003e \u0026 \/ \u00e9","t":"\ud83d\ude00"}`},
)

// withFirst puts member first in a JSON object's text, the rest as it was.
func withFirst(obj, member string) string {
	rest := strings.TrimPrefix(obj, "{")
	if strings.TrimSpace(rest) == "}" {
		return "{" + member + rest
	}
	return "{" + member + "," + rest
}

// TestSourceValuesArriveAsSent: what ODP and Ortto send as identifiers,
// data, contact and attr reaches a receiver byte for byte, as through
// /v1/activities: no HTML escaping, no compaction, number literals as
// written; a member Relay adds (ortto_field_id) leaves the rest as sent.
func TestSourceValuesArriveAsSent(t *testing.T) {
	r := newReceiver(t, secretA)
	yaml := baseYAML(t.TempDir()) + `activities:
  - name: ortto.activity
    description: an Ortto activity without a mapping
sources:
  ortto:
    unmapped: ortto.activity
destinations:
` + destYAML("all", r.srv.URL, secretA, "")
	n := startRelay(t, yaml)
	type want struct{ contact, attributes string }
	wants := map[string]want{}
	var events, payloads []string
	for i, tc := range sourceFidelityCases {
		contact := tc.contact
		if contact == `{}` { // ODP wants an identifier
			contact = `{ "email" : "e@example.com" }`
		}
		id := fmt.Sprintf("odp-fid-%d", i)
		data := withFirst(tc.attributes, `"idempotence_id":"`+id+`"`)
		events = append(events, fmt.Sprintf(`{"type":"order","action":"purchase","identifiers":%s,"data":%s}`, contact, data))
		wants[id] = want{contact, data}

		id = fmt.Sprintf("ortto-fid-%d", i)
		payloads = append(payloads, fmt.Sprintf(`{"activity":{"id":"a","field_id":"act::o","created":"2026-11-22T10:00:00Z","attr":%s},"contact":%s,"id":%q}`, tc.attributes, tc.contact, id))
		wants[id] = want{tc.contact, tc.attributes}

		id = fmt.Sprintf("ortto-unmapped-%d", i)
		payloads = append(payloads, fmt.Sprintf(`{"activity":{"field_id":"act:cm:signed-up","attr":%s},"contact":%s,"id":%q}`, tc.attributes, tc.contact, id))
		wants[id] = want{tc.contact, withFirst(tc.attributes, `"ortto_field_id":"act:cm:signed-up"`)}
	}
	status, _, out := postRaw(t, n.ingest+"/v3/events", "["+strings.Join(events, ",")+"]", map[string]string{"x-api-key": ingestToken})
	if status != http.StatusAccepted {
		t.Fatalf("odp: %d %s", status, mustJSON(t, out))
	}
	status, _, out = postRaw(t, n.ingest+"/v1/sources/ortto", "["+strings.Join(payloads, ",")+"]", map[string]string{"Authorization": "Bearer " + ingestToken})
	if status != http.StatusAccepted {
		t.Fatalf("ortto: %d %s", status, mustJSON(t, out))
	}
	waitFor(t, 30*time.Second, "every delivery", func() bool { return len(r.delivered()) == len(wants) })
	for id, w := range wants {
		d := parseRaw(t, r.body(id))
		if string(d.Data.Contact) != w.contact {
			t.Errorf("%s: contact\n got %.300s\nwant %.300s", id, d.Data.Contact, w.contact)
		}
		if string(d.Data.Attributes) != w.attributes {
			t.Errorf("%s: attributes\n got %.300s\nwant %.300s", id, d.Data.Attributes, w.attributes)
		}
	}
}

// TestOrttoMappingReloaded: a mapping added to sources.ortto applies with
// a reload, no restart, so Ortto's retries of a 422 get through.
func TestOrttoMappingReloaded(t *testing.T) {
	r := newReceiver(t, secretA)
	base := baseYAML(t.TempDir())
	dests := "destinations:\n" + destYAML("all", r.srv.URL, secretA, "")
	f := newConfigFile(t, base+dests)
	n := startFromFile(t, f)
	url := n.ingest + "/v1/sources/ortto"
	hdr := map[string]string{"Authorization": "Bearer " + ingestToken}
	payload := orttoPayload("rl-1", "act:cm:placed-order", `{"int::total":129990}`)
	if status, _, out := postRaw(t, url, payload, hdr); status != http.StatusUnprocessableEntity {
		t.Fatalf("before the mapping: %d %s", status, mustJSON(t, out))
	}
	f.write(t, base+"sources:\n  ortto:\n    activity_ids:\n      \"act:cm:placed-order\": order.purchase\n"+dests)
	if status, out := n.reload(t, adminToken); status != http.StatusOK {
		t.Fatalf("reload: %d %v", status, out)
	}
	if status, _, out := postRaw(t, url, payload, hdr); status != http.StatusAccepted {
		t.Fatalf("Ortto's retry after the reload: %d %s", status, mustJSON(t, out))
	}
	waitFor(t, 30*time.Second, "the delivery", func() bool { return r.delivered()["rl-1"] == 1 })
}
