package relay_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/relaydev/relay/config"
	"github.com/relaydev/relay/relay"
	"github.com/relaydev/relay/relay/ingest"
)

// postRaw sends body to url with the given headers and returns status,
// headers and the decoded JSON answer.
func postRaw(t *testing.T, url, body string, header map[string]string) (int, http.Header, map[string]any) {
	t.Helper()
	req, err := http.NewRequest("POST", url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatalf("%s: answer %q is not a JSON object: %v", url, data, err)
	}
	return resp.StatusCode, resp.Header, out
}

// TestODPEventsAPI: requests in the shapes of ODP's event API, with the
// answers ODP gives: 202 {"title": "Accepted", "status": 202, "timestamp"},
// and errors as {"title", "status", "timestamp", "message",
// "detail": {"invalids": [{"event", "message"}]}}.
func TestODPEventsAPI(t *testing.T) {
	base := strings.Replace(baseYAML(t.TempDir()), "]}", "], max_batch: 3}", 1)
	n := startRelay(t, base+"destinations:\n"+destYAML("all", "http://127.0.0.1:9/", secretA, ""))
	key := map[string]string{"x-api-key": ingestToken}
	tests := []struct {
		name    string
		header  map[string]string
		body    string
		status  int
		title   string
		invalid string // a message of detail.invalids[0], with its event index
	}{
		{"single event", key,
			`{"type": "product", "action": "add_to_cart", "identifiers": {"email": "ann@example.com"}, "data": {"product_id": "sku-1", "idempotence_id": "odp-1"}}`,
			202, "Accepted", ""},
		{"batch with several identifier kinds", key,
			`[{"type": "pageview", "identifiers": {"vuid": "a1b2c3", "fs_user_id": "u-42"}, "data": {"page": "/pricing", "idempotence_id": "odp-2"}},
			  {"type": "order", "action": "purchase", "identifiers": {"customer_id": "c-9", "email": "bob@example.com"}, "data": {"order_id": "o-1", "total": 129.99, "ts": 1795860000}}]`,
			202, "Accepted", ""},
		{"missing idempotence_id: Relay makes the id", key,
			`{"type": "email", "action": "open", "identifiers": {"email": "ann@example.com"}, "data": {"campaign": "bf"}}`,
			202, "Accepted", ""},
		{"ts as an ISO 8601 time", key,
			`{"type": "email", "action": "click", "identifiers": {"email": "ann@example.com"}, "data": {"ts": "2026-11-22T10:00:00Z"}}`,
			202, "Accepted", ""},
		{"no x-api-key", nil, `{"type": "email", "action": "open", "identifiers": {"email": "a@example.com"}}`, 401, "Unauthorized", ""},
		{"wrong x-api-key", map[string]string{"x-api-key": "nope"}, `{"type": "email", "action": "open", "identifiers": {"email": "a@example.com"}}`, 401, "Unauthorized", ""},
		{"bearer is not ODP's auth", map[string]string{"Authorization": "Bearer " + ingestToken}, `{"type": "email", "action": "open", "identifiers": {"email": "a@example.com"}}`, 401, "Unauthorized", ""},
		{"missing type", key, `[{"type": "email", "action": "open", "identifiers": {"email": "a@example.com"}}, {"action": "open", "identifiers": {"email": "a@example.com"}}]`,
			400, "Bad Request", "1:type is required"},
		{"no identifiers", key, `{"type": "email", "action": "open", "identifiers": {}}`, 400, "Bad Request", "0:at least one identifier is required"},
		{"idempotence_id not a string", key, `{"type": "email", "action": "open", "identifiers": {"email": "a@example.com"}, "data": {"idempotence_id": 7}}`, 400, "Bad Request", "0:expected a string"},
		{"bad ts", key, `{"type": "email", "action": "open", "identifiers": {"email": "a@example.com"}, "data": {"ts": "yesterday"}}`, 400, "Bad Request", "0:expected Unix seconds"},
		{"unknown field", key, `{"type": "email", "action": "open", "identifiers": {"email": "a@example.com"}, "extra": 1}`, 400, "Bad Request", "0:unknown field"},
		{"malformed JSON", key, `{"type": "email"`, 400, "Bad Request", ""},
		{"an activity the catalog lacks", key, `{"type": "venue", "action": "visited", "identifiers": {"email": "a@example.com"}}`, 422, "Unprocessable Entity", "0:unknown activity"},
		{"batch over ingest.max_batch", key, `[` + strings.Repeat(`{"type": "email", "action": "open", "identifiers": {"email": "a@example.com"}},`, 3) + `{"type": "email", "action": "open", "identifiers": {"email": "a@example.com"}}]`,
			413, "Request Entity Too Large", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, _, out := postRaw(t, n.ingest+"/v3/events", tc.body, tc.header)
			if status != tc.status || out["title"] != tc.title || out["status"] != float64(tc.status) {
				t.Fatalf("answer %d %v, want %d with title %q", status, out, tc.status, tc.title)
			}
			if ts, _ := out["timestamp"].(string); !strings.HasSuffix(ts, "Z") {
				t.Errorf("timestamp = %v", out["timestamp"])
			}
			if status >= 400 {
				if msg, _ := out["message"].(string); msg == "" || out["error"] != msg {
					t.Errorf("error answer without a message: %v", out)
				}
			}
			if tc.invalid == "" {
				return
			}
			idx, msg, _ := strings.Cut(tc.invalid, ":")
			detail, _ := out["detail"].(map[string]any)
			invalids, _ := detail["invalids"].([]any)
			if len(invalids) == 0 {
				t.Fatalf("no detail.invalids in %v", out)
			}
			first := invalids[0].(map[string]any)
			if fmt.Sprint(first["event"]) != idx || !strings.Contains(fmt.Sprint(first["message"]), msg) {
				t.Errorf("invalids[0] = %v, want event %s and %q", first, idx, msg)
			}
		})
	}
}

// TestODPBatchDeliveredIntact: an ODP-shaped batch reaches a webhook with
// identifiers as contact and data as attributes, every value as sent
// (integers beyond float64, decimals with their zeros), idempotence_id as
// the activity id and ts as its time.
func TestODPBatchDeliveredIntact(t *testing.T) {
	rcv := newBodyReceiver(t, secretA)
	n := startRelay(t, baseYAML(t.TempDir())+"destinations:\n"+destYAML("hook", rcv.srv.URL+"/hook", secretA, ""))
	data1 := `{"order_id":9007199254740993,"total":129.50,"big":123456789012345678901234567890,"items":[{"sku":"a","qty":3}],"idempotence_id":"odp-order-1","ts":1795860000}`
	ids1 := `{"email":"ann@example.com","customer_id":"c-9"}`
	data2 := `{"product_id":"sku-1","price":1.10,"idempotence_id":"odp-cart-1"}`
	ids2 := `{"vuid":"a1b2c3","fs_user_id":"u-42"}`
	body := fmt.Sprintf(`[{"type":"order","action":"purchase","identifiers":%s,"data":%s},{"type":"product","action":"add_to_cart","identifiers":%s,"data":%s}]`, ids1, data1, ids2, data2)
	status, _, out := postRaw(t, n.ingest+"/v3/events", body, map[string]string{"x-api-key": ingestToken})
	if status != http.StatusAccepted {
		t.Fatalf("answer %d %v", status, out)
	}
	for _, want := range []struct{ id, name, contact, attrs, at string }{
		{"odp-order-1", "order.purchase", ids1, data1, "2026-11-28T10:00:00Z"},
		{"odp-cart-1", "product.add_to_cart", ids2, data2, ""},
	} {
		var env struct {
			Type string `json:"type"`
			Data struct {
				ID         string          `json:"id"`
				Name       string          `json:"name"`
				OccurredAt string          `json:"occurred_at"`
				Contact    json.RawMessage `json:"contact"`
				Attributes json.RawMessage `json:"attributes"`
			} `json:"data"`
		}
		waitFor(t, 20*time.Second, want.id, func() bool {
			rcv.mu.Lock()
			defer rcv.mu.Unlock()
			b := rcv.bodies["/hook "+want.id]
			return b != nil && json.Unmarshal(b, &env) == nil
		})
		d := env.Data
		if d.ID != want.id || d.Name != want.name || string(d.Contact) != want.contact || string(d.Attributes) != want.attrs {
			t.Errorf("delivered %s:\n got %s %s contact %s attributes %s\nwant %s %s contact %s attributes %s",
				want.id, d.ID, d.Name, d.Contact, d.Attributes, want.id, want.name, want.contact, want.attrs)
		}
		if want.at != "" && d.OccurredAt != want.at {
			t.Errorf("%s occurred_at = %s, want %s", want.id, d.OccurredAt, want.at)
		}
	}
	if _, bad := rcv.body("x"); len(bad) > 0 {
		t.Errorf("bad signatures: %v", bad)
	}
}

func (r *bodyReceiver) body(key string) ([]byte, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.bodies[key], append([]string(nil), r.bad...)
}

// orttoPayload is an Ortto webhook delivery for an activity.
func orttoPayload(id, fieldID, attr string) string {
	return fmt.Sprintf(`{"activity": {"id": "a-%s", "field_id": %q, "created": "2026-11-22T10:00:00Z", "attr": %s},
		"contact": {"id": "006123", "str::email": "ann@example.com", "str::first": "Ann"},
		"id": %q, "time": "2026-11-22T10:00:01Z", "webhook_id": "wh-1"}`, id, fieldID, attr, id)
}

// TestOrttoSource: Ortto's webhook payloads for several activities are
// stored under their catalog names (built-in and configured ids), with
// contact and attr as sent; Basic auth wants an ingest token as password;
// the test delivery is answered 200 and never stored; an unmapped id is a
// 422 naming it.
func TestOrttoSource(t *testing.T) {
	rcv := newReceiver(t, secretA)
	yaml := baseYAML(t.TempDir()) + `sources:
  ortto:
    activity_ids:
      "act:cm:placed-order": order.purchase
destinations:
` + destYAML("hook", rcv.srv.URL, secretA, "")
	n := startRelay(t, yaml)
	url := n.ingest + "/v1/sources/ortto"
	basic := func(user, pass string) map[string]string {
		req, _ := http.NewRequest("POST", url, nil)
		req.SetBasicAuth(user, pass)
		return map[string]string{"Authorization": req.Header.Get("Authorization")}
	}
	good := basic("ortto", ingestToken)

	for _, tc := range []struct {
		name   string
		header map[string]string
	}{
		{"no credentials", nil},
		{"wrong password", basic("ortto", "wrong")},
		{"token as user name", basic(ingestToken, "")},
		{"wrong bearer", map[string]string{"Authorization": "Bearer wrong"}},
	} {
		status, h, out := postRaw(t, url, orttoPayload("refused-"+tc.name[:2], "act::o", `{}`), tc.header)
		if status != http.StatusUnauthorized || !strings.HasPrefix(h.Get("WWW-Authenticate"), "Basic") || out["error"] == nil {
			t.Errorf("%s: %d %v %v, want 401 with a Basic challenge", tc.name, status, h.Get("WWW-Authenticate"), out)
		}
	}

	status, _, out := postRaw(t, url, orttoPayload("test-1", ingest.OrttoTestID, `{}`), good)
	if status != http.StatusOK || out["stored"] != false {
		t.Errorf("test delivery: %d %v, want 200 not stored", status, out)
	}
	status, _, out = postRaw(t, url, orttoPayload("x-1", "act:cm:signed-up", `{}`), good)
	if msg := fmt.Sprint(out["error"]); status != http.StatusUnprocessableEntity || !strings.Contains(msg, `"act:cm:signed-up"`) || !strings.Contains(msg, "sources.ortto.activity_ids") {
		t.Errorf("unmapped id: %d %v", status, out)
	}

	want := map[string]string{"o-1": "email.open", "c-1": "email.click", "s-1": "email.sent", "p-1": "order.purchase"}
	fields := map[string]string{"o-1": "act::o", "c-1": "act::c", "s-1": "act::s", "p-1": "act:cm:placed-order"}
	for id, fid := range fields {
		hdr := good
		if id == "c-1" { // a bearer token works too
			hdr = map[string]string{"Authorization": "Bearer " + ingestToken}
		}
		status, _, out := postRaw(t, url, orttoPayload(id, fid, `{"str::url":"https://example.com/p","int::total":129990}`), hdr)
		if status != http.StatusAccepted {
			t.Fatalf("%s: %d %v", fid, status, out)
		}
	}
	waitFor(t, 20*time.Second, "four deliveries", func() bool { return len(rcv.delivered()) == 4 })
	waitSettled(t, n, "hook")
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	for id, name := range want {
		if rcv.names[id] != name {
			t.Errorf("%s delivered as %q, want %s", id, rcv.names[id], name)
		}
	}
	for _, id := range []string{"test-1", "x-1", "refused-no", "refused-wr"} {
		if rcv.got[id] > 0 {
			t.Errorf("%s was stored and delivered", id)
		}
	}
}

// TestOrttoUnmappedKept: with sources.ortto.unmapped, an id without a
// mapping is stored as that activity, its field id in attributes.
func TestOrttoUnmappedKept(t *testing.T) {
	rcv := newBodyReceiver(t, secretA)
	yaml := baseYAML(t.TempDir()) + `activities:
  - name: ortto.activity
    description: an Ortto activity without a mapping
sources:
  ortto:
    unmapped: ortto.activity
destinations:
` + destYAML("hook", rcv.srv.URL+"/hook", secretA, "")
	n := startRelay(t, yaml)
	status, _, out := postRaw(t, n.ingest+"/v1/sources/ortto", orttoPayload("k-1", "act:cm:signed-up", `{"str::plan":"pro","int::seats":12}`),
		map[string]string{"Authorization": "Bearer " + ingestToken})
	if status != http.StatusAccepted {
		t.Fatalf("%d %v", status, out)
	}
	var env struct {
		Data struct {
			Name       string          `json:"name"`
			OccurredAt string          `json:"occurred_at"`
			Contact    json.RawMessage `json:"contact"`
			Attributes json.RawMessage `json:"attributes"`
		} `json:"data"`
	}
	waitFor(t, 20*time.Second, "the delivery", func() bool {
		b, _ := rcv.body("/hook k-1")
		return b != nil && json.Unmarshal(b, &env) == nil
	})
	if d := env.Data; d.Name != "ortto.activity" || d.OccurredAt != "2026-11-22T10:00:00Z" ||
		string(d.Attributes) != `{"ortto_field_id":"act:cm:signed-up","str::plan":"pro","int::seats":12}` ||
		string(d.Contact) != `{"id": "006123", "str::email": "ann@example.com", "str::first": "Ann"}` { // as sent, spaces included
		t.Errorf("delivered %+v", d)
	}
}

// TestOrttoMappingValidated: relay validate checks sources.ortto against
// the catalog, at the line and column of each bad entry.
func TestOrttoMappingValidated(t *testing.T) {
	yaml := `ingest: {tokens: ["t"]}
admin: {token: "a"}
sources:
  ortto:
    activity_ids:
      "act:cm:placed-order": order.purchase
      "act:cm:signed-up": account.signup
      "bad id": email.open
    unmapped: ortto.other
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
		path + `:7:27: sources.ortto.activity_ids.act:cm:signed-up: activity "account.signup" is not in the catalog`,
		path + `:8:17: sources.ortto.activity_ids.bad id: invalid Ortto activity id "bad id"`,
		path + `:9:15: sources.ortto.unmapped: activity "ortto.other" is not in the catalog`,
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

// TestSourceAuthRefusals: the source routes refuse every credential that
// is not an ingest token in the place their sender puts it, with one
// answer per route that never repeats what was sent.
func TestSourceAuthRefusals(t *testing.T) {
	n := startRelay(t, baseYAML(t.TempDir())+"destinations:\n"+destYAML("hook", "http://127.0.0.1:9/", secretA, ""))
	basic := func(user, pass string) string {
		req, _ := http.NewRequest("POST", "http://x", nil)
		req.SetBasicAuth(user, pass)
		return req.Header.Get("Authorization")
	}
	routes := []struct {
		name, path, body string
		cases            map[string]map[string]string // case -> headers
		query            []string
	}{
		{"odp", "/v3/events", `{"type":"email","action":"open","identifiers":{"email":"a@example.com"}}`, map[string]map[string]string{
			"none":            nil,
			"wrong key":       {"x-api-key": "wrong-" + ingestToken},
			"prefix":          {"x-api-key": ingestToken[:len(ingestToken)-1]},
			"token and more":  {"x-api-key": ingestToken + "x"},
			"bearer":          {"Authorization": "Bearer " + ingestToken},
			"basic":           {"Authorization": basic("relay", ingestToken)},
			"the admin token": {"x-api-key": adminToken},
			"empty key":       {"x-api-key": ""},
		}, []string{"?x-api-key=" + ingestToken, "?api_key=" + ingestToken}},
		{"ortto", "/v1/sources/ortto", orttoPayload("auth-1", "act::o", `{}`), map[string]map[string]string{
			"none":             nil,
			"wrong password":   {"Authorization": basic("ortto", "wrong")},
			"empty password":   {"Authorization": basic(ingestToken, "")},
			"password prefix":  {"Authorization": basic("ortto", ingestToken[:len(ingestToken)-1])},
			"the admin token":  {"Authorization": basic("ortto", adminToken)},
			"wrong bearer":     {"Authorization": "Bearer wrong"},
			"x-api-key":        {"x-api-key": ingestToken},
			"basic not base64": {"Authorization": "Basic " + ingestToken},
		}, []string{"?token=" + ingestToken, "?access_token=" + ingestToken}},
	}
	for _, rt := range routes {
		var first string
		check := func(name, url string, header map[string]string) {
			status, _, out := postRaw(t, url, rt.body, header)
			b, _ := json.Marshal(out["error"])
			if status != http.StatusUnauthorized || strings.Contains(string(b), ingestToken) {
				t.Errorf("%s/%s: %d %v", rt.name, name, status, out)
				return
			}
			if first == "" {
				first = string(b)
			} else if string(b) != first {
				t.Errorf("%s/%s: refusal %s differs from %s", rt.name, name, b, first)
			}
		}
		for name, h := range rt.cases {
			check(name, n.ingest+rt.path, h)
		}
		for _, q := range rt.query {
			check(q, n.ingest+rt.path+q, nil)
		}
	}
	if d := n.destinations()["hook"]; d.Pending != 0 {
		t.Errorf("a refused request was stored: %+v", d)
	}
}
