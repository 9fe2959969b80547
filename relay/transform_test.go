package relay_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relaydev/relay/config"
	"github.com/relaydev/relay/connectors/webhook"
	"github.com/relaydev/relay/relay"
	"github.com/relaydev/relay/relay/expr"
	"github.com/relaydev/relay/relay/sink"
)

func TestEvalBodyKeepsNumbersExact(t *testing.T) {
	raw := []byte(`{"id":"a1","name":"order.purchase","type":"order","action":"purchase",
		"occurred_at":"2026-11-22T10:00:00Z","received_at":"2026-11-22T10:00:01.5Z",
		"contact":{"email":"ann@example.com","score":-12},
		"attributes":{"order_id":9007199254740993,"big":18446744073709551615,"price":19.99,
		  "huge":123456789012345678901234567890,"items":[{"sku":"a","qty":3}],"note":"<b>&"}}`)
	tests := []struct {
		body, want string
	}{
		{`{"order_id": activity.attributes.order_id, "big": activity.attributes.big}`,
			`{"big":18446744073709551615,"order_id":9007199254740993}`},
		{`[activity.attributes.price, activity.contact.score, activity.attributes.order_id + 1]`,
			`[19.99,-12,9007199254740994]`},
		{`{"items": activity.attributes.items, "note": activity.attributes.note}`,
			`{"items":[{"qty":3,"sku":"a"}],"note":"<b>&"}`},
		{`{"at": activity.occurred_at, "got": activity.received_at, "id": activity.id}`,
			`{"at":"2026-11-22T10:00:00Z","got":"2026-11-22T10:00:01.5Z","id":"a1"}`},
		{`{"huge": activity.attributes.huge}`, `{"huge":1.2345678901234568e+29}`},
	}
	for _, tc := range tests {
		p, cerr := expr.Compile(tc.body, expr.Object)
		if cerr != nil {
			t.Fatalf("%s: %v", tc.body, cerr)
		}
		got, err := sink.EvalBody(p, &sink.Delivery{Raw: raw}, 0)
		if err != nil {
			t.Fatalf("%s: %v", tc.body, err)
		}
		if string(got) != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.body, got, tc.want)
		}
	}
}

func TestEvalBodyErrors(t *testing.T) {
	raw := []byte(`{"id":"a1","name":"email.open","contact":{"email":"ann@example.com"}}`)
	tests := []struct{ body, want string }{
		{`{"x": activity.attributes.campaign}`, "no such key: campaign"},
		{`activity.contact`, ""}, // a map: fine
		{`dyn(activity.id)`, "body must be a map or a list"},
		{`{"n": 1.0 / 0.0}`, "has no JSON form"},
		{`{1: "a"}`, "is not a string"},
	}
	for _, tc := range tests {
		p, cerr := expr.Compile(tc.body, expr.Object)
		if cerr != nil {
			t.Fatalf("%s: %v", tc.body, cerr)
		}
		_, err := sink.EvalBody(p, &sink.Delivery{Raw: raw}, 0)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.body, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: error %v, want %q", tc.body, err, tc.want)
		}
	}
}

// TestBodyTypeCheckedByValidate: validate reports a body that is not a map
// or a list, and a bad expression at its line and column, also inside a
// | block.
func TestBodyTypeCheckedByValidate(t *testing.T) {
	yaml := `ingest: {tokens: ["t"]}
admin: {token: "a"}
destinations:
  - name: typed
    type: webhook
    url: https://example.com/hook
    secrets: ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]
    body: 'activity.name + "!"'
  - name: syntax
    type: webhook
    url: https://example.com/hook
    secrets: ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]
    body: |
      {"text": activity.name,
       "who": activity.contact.email +}
  - name: unknown
    type: webhook
    url: https://example.com/hook
    secrets: ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]
    body: '{"text": actvity.name}'
  - name: fine
    type: webhook
    url: https://example.com/hook
    secrets: ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]
    body: |
      [activity.id, {"n": activity.attributes.n}]
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
		path + `:8:12: destinations[0].body: CEL expression must be a map or a list, it is string`,
		path + `:15:39: destinations[1].body: invalid CEL expression`,
		path + `:20:21: destinations[2].body: invalid CEL expression: undeclared reference to 'actvity'`,
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

// bodyReceiver verifies every request's signature over the body it got
// and keeps the bodies by path and webhook-id.
type bodyReceiver struct {
	srv    *httptest.Server
	secret string
	mu     sync.Mutex
	bodies map[string][]byte // "<path> <webhook-id>" -> body
	bad    []string
}

func newBodyReceiver(t *testing.T, secret string) *bodyReceiver {
	r := &bodyReceiver{secret: secret, bodies: map[string][]byte{}}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		err := webhook.VerifyRequest(r.secret, req.Header, body, time.Now())
		r.mu.Lock()
		defer r.mu.Unlock()
		if err != nil {
			r.bad = append(r.bad, err.Error())
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		r.bodies[req.URL.Path+" "+req.Header.Get("webhook-id")] = body
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// wait returns the body delivered to path for id, failing on a bad signature.
func (r *bodyReceiver) wait(t *testing.T, path, id string) map[string]any {
	t.Helper()
	var body []byte
	waitFor(t, 20*time.Second, "a delivery to "+path, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		if len(r.bad) > 0 {
			t.Fatalf("bad signatures: %v", r.bad)
		}
		body = r.bodies[path+" "+id]
		return body != nil
	})
	var out map[string]any
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.UseNumber()
	if err := dec.Decode(&out); err != nil {
		t.Fatalf("%s: body %s: %v", path, body, err)
	}
	return out
}

// exampleBody reads the body expression of an example config.
func exampleBody(t *testing.T, file string) string {
	t.Helper()
	cfg, err := config.Load(filepath.Join("..", "examples", file))
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if d := cfg.Destinations[0]; d.Body != "" {
		return d.Body
	}
	t.Fatalf("%s: no body", file)
	return ""
}

// blockYAML writes an expression as a | block under a destination.
func blockYAML(key, src string) string {
	var b strings.Builder
	b.WriteString("    " + key + ": |\n")
	for _, line := range strings.Split(strings.TrimRight(src, "\n"), "\n") {
		b.WriteString("      " + line + "\n")
	}
	return b.String()
}

// TestBodyExamplesDelivered sends one activity to the two example bodies
// and checks what each receiver got, signature verified.
func TestBodyExamplesDelivered(t *testing.T) {
	rcv := newBodyReceiver(t, secretA)
	yaml := baseYAML(t.TempDir()) + "destinations:\n" +
		destYAML("slack", rcv.srv.URL+"/slack", secretA, blockYAML("body", exampleBody(t, "slack.yaml"))) +
		destYAML("flat", rcv.srv.URL+"/flat", secretA, blockYAML("body", exampleBody(t, "flat-record.yaml")))
	n := startRelay(t, yaml)
	ids := n.send(map[string]any{
		"type": "order", "action": "purchase", "id": "ord-1", "occurred_at": "2026-11-22T10:00:00Z",
		"contact":    map[string]any{"id": "c_1", "email": "ann@example.com"},
		"attributes": map[string]any{"order_id": uint64(18446744073709551615), "revenue": 129.5, "campaign": "black-friday"},
	})
	slack := rcv.wait(t, "/slack", ids[0])
	if text, _ := slack["text"].(string); !strings.HasSuffix(text, " by ann@example.com") {
		t.Errorf("slack text = %q", slack["text"])
	}
	blocks, _ := slack["blocks"].([]any)
	if len(blocks) != 2 || !strings.Contains(fmt.Sprint(blocks[0]), "*order.purchase* at 2026-11-22T10:00:00Z") {
		t.Errorf("slack blocks = %v", slack["blocks"])
	}
	flat := rcv.wait(t, "/flat", ids[0])
	want := map[string]string{"event_id": "ord-1", "event": "order.purchase", "occurred_at": "2026-11-22T10:00:00Z",
		"contact_id": "c_1", "email": "ann@example.com", "order_id": "18446744073709551615", "revenue": "129.5", "campaign": "black-friday"}
	for k, w := range want {
		if got := fmt.Sprint(flat[k]); got != w {
			t.Errorf("flat %s = %s, want %s", k, got, w)
		}
	}
	if _, ok := flat["received_at"].(string); !ok || len(flat) != len(want)+1 {
		t.Errorf("flat record = %v", flat)
	}
}

// TestBodyEvalErrorDeadLetters: an activity the body cannot be built for
// is a dead letter after one attempt, with the reason; the next one that
// can is delivered.
func TestBodyEvalErrorDeadLetters(t *testing.T) {
	rcv := newBodyReceiver(t, secretA)
	body := `{"campaign": activity.attributes.campaign}`
	yaml := baseYAML(t.TempDir()) + "destinations:\n" +
		destYAML("strict", rcv.srv.URL+"/strict", secretA, "    retry: {schedule: [1s, 1s, 1s]}\n    body: '"+body+"'")
	n := startRelay(t, yaml)
	ids := n.send(
		map[string]any{"type": "email", "action": "open", "id": "no-campaign"},
		map[string]any{"type": "email", "action": "open", "id": "with-campaign", "attributes": map[string]any{"campaign": "bf"}},
	)
	if got := rcv.wait(t, "/strict", ids[1]); got["campaign"] != "bf" {
		t.Errorf("delivered body = %v", got)
	}
	var dl []struct {
		Activity struct{ ID string } `json:"activity"`
		Attempts []sink.Attempt      `json:"attempts"`
	}
	waitFor(t, 20*time.Second, "the dead letter", func() bool {
		_, out := n.adminDo("GET", "/v1/deadletters?destination=strict", "")
		data, _ := json.Marshal(out["deadletters"])
		_ = json.Unmarshal(data, &dl)
		return len(dl) == 1
	})
	if dl[0].Activity.ID != "no-campaign" || len(dl[0].Attempts) != 1 {
		t.Fatalf("dead letter = %+v, want no-campaign after 1 attempt", dl[0])
	}
	if e := dl[0].Attempts[0].Error; !strings.Contains(e, "body: no such key: campaign") {
		t.Errorf("dead letter reason = %q", e)
	}
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	if b := rcv.bodies["/strict no-campaign"]; b != nil {
		t.Errorf("the receiver got %s", b)
	}
}
