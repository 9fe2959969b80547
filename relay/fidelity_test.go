package relay_test

import (
	"bytes"
	"context"
	stdjson "encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/relaydev/relay/config"
	"github.com/relaydev/relay/connectors/webhook"
	"github.com/relaydev/relay/relay"
	"github.com/relaydev/relay/relay/sink"
)

// rawData is the parts of a webhook body kept as the raw JSON text they
// arrived as.
type rawData struct {
	Type      string `json:"type"`
	Timestamp string `json:"timestamp"`
	Data      struct {
		ID         string         `json:"id"`
		OccurredAt string         `json:"occurred_at"`
		Contact    jsontext.Value `json:"contact"`
		Attributes jsontext.Value `json:"attributes"`
	} `json:"data"`
}

func parseRaw(t *testing.T, body []byte) rawData {
	t.Helper()
	var d rawData
	if err := json.Unmarshal(body, &d, json.RejectUnknownMembers(false)); err != nil {
		t.Fatalf("webhook body %q: %v", body, err)
	}
	return d
}

// sameValues compares two JSON texts value for value, number literals as
// written (1.50 is not 1.5).
func sameValues(t *testing.T, a, b []byte) bool {
	t.Helper()
	decode := func(x []byte) any {
		dec := stdjson.NewDecoder(bytes.NewReader(x))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("decode %q: %v", x, err)
		}
		return v
	}
	return reflect.DeepEqual(decode(a), decode(b))
}

func deep(n int) string {
	return strings.Repeat(`{"a":[`, n) + `1` + strings.Repeat(`]}`, n)
}

// fidelityCases are contact and attributes texts that must arrive byte
// for byte: numbers beyond float64, literals float64 would rewrite,
// unicode literal and escaped, HTML characters, nesting, spacing.
var fidelityCases = []struct{ name, contact, attributes string }{
	{"beyond uint64", `{"id":"c_1"}`, `{"order_id":12345678901234567891}`},
	{"beyond float64 precision", `{"id":"c_2"}`, `{"n":9007199254740993,"m":-9007199254740993}`},
	{"literals float64 rewrites", `{"id":"c_3"}`, `{"tiny":1e-999,"p":1.50,"neg":-0,"e":1E+2,"huge":1e400,"long":0.1000000000000000055511151231257827}`},
	{"unicode", `{"email":"zoë@example.com","name":"\u00e9\ud83d\ude00 😀"}`, `{"s":"é 😀 \u2028 \u2029 עברית e\u0301 𝄞","esc":"\"q\" \\ \/ \b\f\n\r\t \u0000"}`},
	{"html characters", `{"id":"c_5"}`, `{"html":"<b>&amp;</b> <script>","url":"https://x.example/a?b=c&d=<e>"}`},
	{"nested", `{"id":"c_6","ids":{"crm":[1,2,{"x":null}]}}`, `{"a":{"b":[1,{"c":[null,true,false,"x",[],{}]}]}}`},
	{"spacing", `{ "id" : "c_7" }`, "{\n  \"k\" : [ 1 , 2.0 ] ,\t\"e\":{ }\n}"},
	{"deep", `{"id":"c_8"}`, deep(200)},
	{"empty", `{}`, `{}`},
}

// TestValuesArriveAsSent: contact and attributes reach the receiver as the
// producer's exact JSON text, the dead letters hold the same values, and a
// replay delivers the same text again.
func TestValuesArriveAsSent(t *testing.T) {
	ok := newReceiver(t, secretA)
	dead := newReceiver(t, secretA)
	dead.setRespond(func(string, int) int { return http.StatusInternalServerError })
	n := startRelay(t, baseYAML(t.TempDir())+"destinations:\n"+destYAML("ok", ok.srv.URL, secretA, "")+
		destYAML("dead", dead.srv.URL, secretA, "    retry: {schedule: [20ms]}"))
	var items []string
	for i, tc := range fidelityCases {
		items = append(items, fmt.Sprintf(`{"type":"order","action":"purchase","id":"fid-%d","contact":%s,"attributes":%s}`, i, tc.contact, tc.attributes))
	}
	status, out := n.post("["+strings.Join(items, ",")+"]", ingestToken)
	if status != http.StatusAccepted {
		t.Fatalf("ingest: %d %v", status, out)
	}
	check := func(r *receiver, when string) {
		t.Helper()
		waitFor(t, 30*time.Second, when, func() bool { return len(r.delivered()) == len(fidelityCases) })
		for i, tc := range fidelityCases {
			d := parseRaw(t, r.body(fmt.Sprintf("fid-%d", i)))
			if string(d.Data.Contact) != tc.contact {
				t.Errorf("%s, %s: contact\n got %s\nwant %s", when, tc.name, d.Data.Contact, tc.contact)
			}
			if string(d.Data.Attributes) != tc.attributes {
				t.Errorf("%s, %s: attributes\n got %.300s\nwant %.300s", when, tc.name, d.Data.Attributes, tc.attributes)
			}
		}
	}
	check(ok, "delivered")

	// The dead letters hold the same values.
	waitFor(t, 30*time.Second, "the dead letters", func() bool { return n.destinations()["dead"].DeadLettered == len(fidelityCases) })
	resp, err := http.NewRequest("GET", n.admin+"/v1/deadletters?destination=dead&limit=100", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Header.Set("Authorization", "Bearer "+adminToken)
	res, err := http.DefaultClient.Do(resp)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	var dls struct {
		DeadLetters []struct {
			ID       string `json:"id"`
			Activity struct {
				Contact    jsontext.Value `json:"contact"`
				Attributes jsontext.Value `json:"attributes"`
			} `json:"activity"`
		} `json:"deadletters"`
	}
	if err := json.Unmarshal(body, &dls, json.RejectUnknownMembers(false)); err != nil {
		t.Fatalf("dead letters %s: %v", body, err)
	}
	if len(dls.DeadLetters) != len(fidelityCases) {
		t.Fatalf("%d dead letters, want %d", len(dls.DeadLetters), len(fidelityCases))
	}
	for _, dl := range dls.DeadLetters {
		var i int
		fmt.Sscanf(dl.ID, "fid-%d", &i)
		tc := fidelityCases[i]
		if !sameValues(t, dl.Activity.Contact, []byte(tc.contact)) || !sameValues(t, dl.Activity.Attributes, []byte(tc.attributes)) {
			t.Errorf("dead letter %s (%s) changed values:\n%.300s\n%.300s", dl.ID, tc.name, dl.Activity.Contact, dl.Activity.Attributes)
		}
	}

	// Replayed, they arrive byte for byte again.
	dead.setRespond(nil)
	if status, out := n.adminDo("POST", "/v1/replay", `{"destination":"dead"}`); status != http.StatusOK {
		t.Fatalf("replay: %d %v", status, out)
	}
	check(dead, "replayed")
}

// TestRefusedNotRepaired: what cannot be kept faithfully is refused with
// 400 naming the item and the field, never repaired; nothing of the batch
// is stored.
func TestRefusedNotRepaired(t *testing.T) {
	r := newReceiver(t, secretA)
	n := startRelay(t, customYAML(t.TempDir())+"destinations:\n"+destYAML("all", r.srv.URL, secretA, ""))
	_ = n
	tests := []struct {
		name      string
		item      string // the bad item, sent at index 1 of a batch
		field     string
		detailHas string
	}{
		{"invalid UTF-8 in id", "{\"type\":\"pageview\",\"id\":\"inv-\xff\"}", "id", "invalid UTF-8"},
		{"another invalid UTF-8 id", "{\"type\":\"pageview\",\"id\":\"inv-\xfe\"}", "id", "invalid UTF-8"},
		{"invalid UTF-8 in a value", "{\"type\":\"pageview\",\"attributes\":{\"k\":\"a\xc3\x28\"}}", "attributes.k", "invalid UTF-8"},
		{"invalid UTF-8 in a key", "{\"type\":\"pageview\",\"attributes\":{\"k\xff\":1}}", "attributes", "invalid UTF-8"},
		{"overlong UTF-8", "{\"type\":\"pageview\",\"attributes\":{\"k\":\"\xc0\xaf\"}}", "attributes.k", "invalid UTF-8"},
		{"UTF-8 surrogate", "{\"type\":\"pageview\",\"contact\":{\"k\":\"\xed\xa0\x80\"}}", "contact.k", "invalid UTF-8"},
		{"lone surrogate escape", `{"type":"pageview","attributes":{"k":"\udc00"}}`, "attributes.k", "surrogate"},
		{"high surrogate alone", `{"type":"pageview","attributes":{"k":"\ud83d x"}}`, "attributes.k", "surrogate"},
		{"duplicate top-level key", `{"type":"pageview","id":"a","id":"b"}`, "id", "duplicate"},
		{"duplicate attribute", `{"type":"pageview","attributes":{"k":1,"k":2}}`, "attributes.k", "duplicate"},
		{"duplicate nested key", `{"type":"pageview","contact":{"ids":{"x":1,"x":1}}}`, "contact.ids.x", "duplicate"},
		{"key differing in case", `{"type":"pageview","ID":"b"}`, "ID", "unknown field"},
		{"year 10000 in UTC", `{"type":"pageview","occurred_at":"9999-12-31T23:59:59-23:59"}`, "occurred_at", "outside years"},
		{"year 0 in UTC", `{"type":"pageview","occurred_at":"0001-01-01T00:30:00+01:00"}`, "occurred_at", "outside years"},
		{"year 0", `{"type":"pageview","occurred_at":"0000-06-01T00:00:00Z"}`, "occurred_at", "outside years"},
		{"not RFC 3339", `{"type":"pageview","occurred_at":"2026-11-22 10:00:00"}`, "occurred_at", "RFC 3339"},
		{"offset out of range", `{"type":"pageview","occurred_at":"2026-11-22T10:00:00+24:00"}`, "occurred_at", "RFC 3339"},
		{"id too long", `{"type":"pageview","id":"` + strings.Repeat("i", 129) + `"}`, "id", "longer than 128"},
		{"type too long", `{"type":"` + strings.Repeat("t", 4100) + `"}`, "type", "longer than"},
		{"action too long", `{"type":"x","action":"` + strings.Repeat("a", 65) + `"}`, "type", "longer than 64"},
		{"display name too long", `{"activity":"` + strings.Repeat("A", 300) + `"}`, "activity", "longer than 256"},
		{"subject wildcard in type", `{"type":"a*"}`, "type", "allowed"},
		{"subject wildcard in name", `{"name":"a.>"}`, "name", "allowed"},
		{"three-part name", `{"name":"a.b.c"}`, "name", "more than two"},
		{"contact not an object", `{"type":"pageview","contact":[1]}`, "contact", "expected an object"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body := fmt.Sprintf(`[{"type":"pageview","id":"good-%d-a"},%s,{"type":"pageview","id":"good-%d-b"}]`, i, tc.item, i)
			status, out := n.post(body, ingestToken)
			if status != http.StatusBadRequest {
				t.Fatalf("status = %d, want 400 (%v)", status, out)
			}
			details, _ := out["details"].([]any)
			found := false
			for _, d := range details {
				d := d.(map[string]any)
				if idx, _ := d["index"].(float64); idx == 1 && d["field"] == tc.field && strings.Contains(d["message"].(string), tc.detailHas) {
					found = true
				}
			}
			if !found {
				t.Errorf("details = %s, want index 1, field %q, message with %q", mustJSON(t, details), tc.field, tc.detailHas)
			}
			if b := mustJSON(t, out); len(b) > 1024 {
				t.Errorf("error body of %d bytes quotes too much of the input: %.200s", len(b), b)
			}
		})
	}
	ids := n.send(map[string]any{"type": "pageview", "id": "marker"})
	waitFor(t, 30*time.Second, "the marker", func() bool { return r.delivered()[ids[0]] == 1 })
	if got := r.delivered(); len(got) != 1 {
		t.Errorf("delivered %v: items of refused batches were stored", got)
	}
}

// TestOccurredAtEveryZone: a time in any offset keeps its instant; the
// edges of years 0001-9999 in UTC are accepted.
func TestOccurredAtEveryZone(t *testing.T) {
	r := newReceiver(t, secretA)
	n := startRelay(t, baseYAML(t.TempDir())+"destinations:\n"+destYAML("all", r.srv.URL, secretA, ""))
	var items []string
	want := map[string]time.Time{}
	for off := -(23*60 + 59); off <= 23*60+59; off += 37 {
		sign, a := '+', off
		if off < 0 {
			sign, a = '-', -off
		}
		s := fmt.Sprintf("2026-03-29T01:30:00.123456789%c%02d:%02d", sign, a/60, a%60)
		id := fmt.Sprintf("tz%d", off)
		want[id], _ = time.Parse(time.RFC3339Nano, s)
		items = append(items, fmt.Sprintf(`{"type":"pageview","id":%q,"occurred_at":%q}`, id, s))
	}
	for i, s := range []string{"0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999999Z", "0001-01-01T23:59:00+23:59", "9999-12-31T00:00:01-23:59", "2026-11-22t10:00:00z"} {
		id := fmt.Sprintf("edge%d", i)
		tm, err := time.Parse(time.RFC3339Nano, strings.ToUpper(s))
		if err != nil {
			t.Fatal(err)
		}
		want[id] = tm
		items = append(items, fmt.Sprintf(`{"type":"pageview","id":%q,"occurred_at":%q}`, id, s))
	}
	status, out := n.post("["+strings.Join(items, ",")+"]", ingestToken)
	if status != http.StatusAccepted {
		t.Fatalf("ingest: %d %v", status, out)
	}
	waitFor(t, 30*time.Second, "every time", func() bool { return len(r.delivered()) == len(want) })
	for id, w := range want {
		d := parseRaw(t, r.body(id))
		got, err := time.Parse(time.RFC3339Nano, d.Data.OccurredAt)
		if err != nil || !got.Equal(w) {
			t.Errorf("%s: occurred_at %q, want the instant %s", id, d.Data.OccurredAt, w.UTC().Format(time.RFC3339Nano))
		}
		if ts, err := time.Parse(time.RFC3339Nano, d.Timestamp); err != nil || !ts.Equal(w) {
			t.Errorf("%s: timestamp %q, want the instant %s", id, d.Timestamp, w.UTC().Format(time.RFC3339Nano))
		}
	}
}

// TestDuplicatesVisible: an id repeated inside a request is stored once and
// listed in duplicates; a resend of a stored id is a duplicate, not new.
func TestDuplicatesVisible(t *testing.T) {
	r := newReceiver(t, secretA)
	n := startRelay(t, baseYAML(t.TempDir())+"destinations:\n"+destYAML("all", r.srv.URL, secretA, ""))
	status, out := n.post(`[{"type":"pageview","id":"d1"},{"type":"pageview","id":"d2"},{"type":"pageview","id":"d1"}]`, ingestToken)
	if status != http.StatusAccepted {
		t.Fatalf("ingest: %d %v", status, out)
	}
	if got := mustJSON(t, out); got != `{"accepted":2,"duplicates":["d1"],"ids":["d1","d2","d1"]}` {
		t.Errorf("answer %s", got)
	}
	status, out = n.post(`[{"type":"pageview","id":"d2"},{"type":"pageview","id":"d3"}]`, ingestToken)
	if got := mustJSON(t, out); status != http.StatusAccepted || got != `{"accepted":1,"duplicates":["d2"],"ids":["d2","d3"]}` {
		t.Errorf("resend: %d %s", status, got)
	}
	waitFor(t, 30*time.Second, "three activities", func() bool { return len(r.delivered()) == 3 })
	for id, c := range r.delivered() {
		if c != 1 {
			t.Errorf("%s delivered %d times", id, c)
		}
	}
}

// TestMaxActivity: an activity over ingest.max_activity is 413 naming it and
// nothing of its batch is stored; one of the largest size that keeps
// failing becomes a dead letter, also after replays, never a loop.
func TestMaxActivity(t *testing.T) {
	r := newReceiver(t, secretA)
	r.setRespond(func(string, int) int { return http.StatusInternalServerError })
	n := startRelay(t, baseYAML(t.TempDir())+"destinations:\n"+destYAML("all", r.srv.URL, secretA, "    retry: {schedule: [10ms, 10ms]}"))
	const limit = 512 << 10 // the default
	pad := func(size int) string {
		base := `{"type":"pageview","id":"%s","attributes":{"pad":"%s"}}`
		// the stored activity adds name, type, action and times: ~150 bytes
		return fmt.Sprintf(base, "big", strings.Repeat("x", size-170))
	}
	status, out := n.post(`[{"type":"pageview","id":"small-1"},`+pad(limit+200)+`,{"type":"pageview","id":"small-2"}]`, ingestToken)
	if status != http.StatusRequestEntityTooLarge || !strings.Contains(mustJSON(t, out["details"]), `"index":1`) || !strings.Contains(mustJSON(t, out), "ingest.max_activity") {
		t.Fatalf("over the limit: %d %s", status, mustJSON(t, out))
	}
	status, out = n.post(pad(limit-100), ingestToken)
	if status != http.StatusAccepted {
		t.Fatalf("at the limit: %d %v", status, out)
	}
	for round := 1; round <= 3; round++ {
		waitFor(t, 30*time.Second, fmt.Sprintf("dead letter, round %d", round), func() bool { return n.destinations()["all"].DeadLettered == 1 })
		if round < 3 {
			if status, out := n.adminDo("POST", "/v1/replay", `{"destination":"all"}`); status != http.StatusOK {
				t.Fatalf("replay: %d %v", status, out)
			}
			waitFor(t, 30*time.Second, "replay leaving the list", func() bool { return n.destinations()["all"].DeadLettered == 0 })
		}
	}
	if got := len(r.attemptTimes("big")); got != 9 {
		t.Errorf("%d attempts, want 3 per round", got)
	}
	if _, ok := r.delivered()["small-1"]; ok {
		t.Error("an item of the refused batch was stored")
	}
}

// TestBusTooSmallRefused: an external server whose max_payload cannot carry
// the largest activity as a dead letter is refused at start, naming both
// sizes; a config that fits starts.
func TestBusTooSmallRefused(t *testing.T) {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), MaxPayload: 256 << 10, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	yaml := func(maxActivity string) string {
		return fmt.Sprintf(`nats: {url: %q}
ingest: {listen: "127.0.0.1:0", tokens: [%q], max_activity: %s}
admin: {listen: "127.0.0.1:0", token: %q}
destinations:
`, ns.ClientURL(), ingestToken, maxActivity, adminToken) + destYAML("d", "http://127.0.0.1:1/", secretA, "")
	}
	err = runBriefly(t, yaml("512KiB"))
	if err == nil || !strings.Contains(err.Error(), "max_payload is 262144 bytes") || !strings.Contains(err.Error(), "ingest.max_activity") {
		t.Fatalf("start with max_activity 512KiB on a 256 KiB bus: %v", err)
	}
	startRelay(t, yaml("128KiB"))
}

// TestHostileNamesKeepTheBus: names that would break a NATS subject or the
// protocol's control line are refused, and the bus stays connected.
func TestHostileNamesKeepTheBus(t *testing.T) {
	r := newReceiver(t, secretA)
	n := startRelay(t, customYAML(t.TempDir())+"destinations:\n"+destYAML("all", r.srv.URL, secretA, ""))
	for _, name := range []string{strings.Repeat("t", 4100), strings.Repeat("a", 64) + "." + strings.Repeat("b", 4100), "a b", "a\r\nPUB x 1", "a\x00", "a.*", ">", "é"} {
		body, _ := stdjson.Marshal(map[string]any{"type": name, "id": "h"})
		if status, out := n.post(string(body), ingestToken); status != http.StatusBadRequest {
			t.Errorf("type %.40q: %d %v", name, status, out)
		}
	}
	ids := n.send(map[string]any{"type": "custom_" + strings.Repeat("x", 57), "action": strings.Repeat("y", 64)})
	waitFor(t, 30*time.Second, "a normal activity", func() bool { return r.delivered()[ids[0]] == 1 })
	if status, _ := doJSON(t, "GET", n.admin+"/readyz", "", ""); status != http.StatusOK {
		t.Errorf("readyz %d", status)
	}
}

// TestBusClosedForGood: when the connection to NATS closes for good the
// relay stops with an error (so the process exits non-zero) and reports
// itself unhealthy, instead of answering 503 for ever.
func TestBusClosedForGood(t *testing.T) {
	r := newReceiver(t, secretA)
	n := startRelay(t, baseYAML(t.TempDir())+"destinations:\n"+destYAML("all", r.srv.URL, secretA, ""))
	if status, _ := doJSON(t, "GET", n.ingest+"/healthz", "", ""); status != http.StatusOK {
		t.Fatalf("healthz %d before", status)
	}
	n.relay.CloseBus()
	select {
	case err := <-n.done:
		if err == nil || !strings.Contains(err.Error(), "closed for good") {
			t.Errorf("Run returned %v, want the connection closed for good", err)
		}
		n.done <- err // for the cleanup's stop
	case <-time.After(30 * time.Second):
		t.Fatal("the relay kept running with its bus closed")
	}
	if n.relay.Healthy() {
		t.Error("still healthy")
	}
}

// runBriefly runs a relay that is expected to fail at start and returns
// its error (nil if it started: it is then stopped).
func runBriefly(t *testing.T, yaml string) error {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(yaml), func(string) (string, bool) { return "", false })
	if err != nil {
		return err
	}
	sinks := map[string]sink.Connector{}
	for _, d := range cfg.Destinations {
		s, err := webhook.New(d, webhook.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		sinks[d.Name] = sink.One(s)
	}
	r, err := relay.New(cfg, relay.Options{Sinks: sinks, Logger: testLogger(t)})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	select {
	case err := <-done:
		return err
	case <-r.Started():
		cancel()
		<-done
		return nil
	case <-time.After(30 * time.Second):
		t.Fatal("neither started nor failed in 30s")
		return nil
	}
}

// customYAML is baseYAML with ingest.allow_custom.
func customYAML(dir string) string {
	return strings.Replace(baseYAML(dir), "tokens: [", "allow_custom: true, tokens: [", 1)
}

// TestIngestMemoryBound: beyond ingest.max_inflight_bytes a request gets 503
// with Retry-After instead of growing the process; it is accepted once the
// others are done.
func TestIngestMemoryBound(t *testing.T) {
	r := newReceiver(t, secretA)
	yaml := strings.Replace(baseYAML(t.TempDir()), "tokens: [", "max_body: 256KiB, max_inflight_bytes: 256KiB, tokens: [", 1)
	n := startRelay(t, yaml+"destinations:\n"+destYAML("all", r.srv.URL, secretA, ""))
	slow := `{"type":"pageview","id":"slow","attributes":{"pad":"` + strings.Repeat("x", 200<<10) + `"}}`
	pr, pw := io.Pipe()
	req, _ := http.NewRequest("POST", n.ingest+"/v1/activities", pr)
	req.ContentLength = int64(len(slow))
	req.Header.Set("Authorization", "Bearer "+ingestToken)
	done := make(chan int, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- 0
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	if _, err := pw.Write([]byte(slow[:100])); err != nil {
		t.Fatal(err)
	}
	other := `{"type":"pageview","id":"other","attributes":{"pad":"` + strings.Repeat("y", 100<<10) + `"}}`
	var retryAfter string
	waitFor(t, 10*time.Second, "a 503 while the slow request holds the budget", func() bool {
		req, _ := http.NewRequest("POST", n.ingest+"/v1/activities", strings.NewReader(other))
		req.Header.Set("Authorization", "Bearer "+ingestToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		retryAfter = resp.Header.Get("Retry-After")
		return resp.StatusCode == http.StatusServiceUnavailable
	})
	if retryAfter == "" {
		t.Error("503 without Retry-After")
	}
	if _, err := pw.Write([]byte(slow[100:])); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	if status := <-done; status != http.StatusAccepted {
		t.Fatalf("the slow request: %d", status)
	}
	if status, out := n.post(other, ingestToken); status != http.StatusAccepted {
		t.Fatalf("after the slow one: %d %v", status, out)
	}
	waitFor(t, 30*time.Second, "both", func() bool { return r.delivered()["slow"] == 1 && r.delivered()["other"] == 1 })
}

// TestAPIEdges: the Bearer scheme in any case, 404 and 405 as JSON, and no
// error that echoes a huge input.
func TestAPIEdges(t *testing.T) {
	r := newReceiver(t, secretA)
	n := startRelay(t, baseYAML(t.TempDir())+"destinations:\n"+destYAML("all", r.srv.URL, secretA, ""))
	for _, h := range []string{"bearer " + ingestToken, "BEARER " + ingestToken, "Bearer   " + ingestToken, "bEaReR " + ingestToken} {
		res := doRaw(t, "POST", n.ingest+"/v1/activities", http.Header{"Authorization": {h}}, `{"type":"pageview"}`)
		if res.status != http.StatusAccepted {
			t.Errorf("Authorization %.10q…: %d %s", h, res.status, res.body)
		}
	}
	for _, tc := range []struct {
		method, url string
		status      int
	}{
		{"GET", n.ingest + "/nope", 404}, {"GET", n.admin + "/v1/nope", 404},
		{"GET", n.ingest + "/v1/activities", 405}, {"DELETE", n.admin + "/v1/replay", 405},
	} {
		res := doRaw(t, tc.method, tc.url, http.Header{"Authorization": {"Bearer " + adminToken}}, "")
		var body map[string]any
		if res.status != tc.status || stdjson.Unmarshal([]byte(res.body), &body) != nil || body["error"] == nil {
			t.Errorf("%s %s: %d %q, want %d with a JSON error", tc.method, tc.url, res.status, res.body, tc.status)
		}
	}
	huge := strings.Repeat("9", 1<<20)
	for _, body := range []string{
		`{"type":"pageview","attributes":{"n":` + huge + `x}}`,
		`{"type":"` + huge + `"}`,
		`{"activity":"` + huge + `"}`,
		`{"type":"pageview","` + huge + `":1}`,
		`{"type":"pageview","occurred_at":"` + huge + `"}`,
		`{"type":"pageview","id":"` + huge + `"}`,
		`[` + huge,
	} {
		res := doRaw(t, "POST", n.ingest+"/v1/activities", http.Header{"Authorization": {"Bearer " + ingestToken}}, body)
		if res.status/100 != 4 || len(res.body) > 1024 {
			t.Errorf("%.40s…: %d with a %d-byte answer: %.300s", body, res.status, len(res.body), res.body)
		}
	}
}

// TestUndecodableBecomesDeadLetter: a stored message a worker cannot read
// (published straight to NATS, say) becomes a dead letter with the reason;
// a well-formed one published the same way is delivered.
func TestUndecodableBecomesDeadLetter(t *testing.T) {
	r := newReceiver(t, secretA)
	n := startRelay(t, baseYAML(t.TempDir())+"destinations:\n"+destYAML("plain", r.srv.URL, secretA, "")+
		destYAML("ruled", r.srv.URL, secretA, `    when: 'activity.type == "pageview"'`))
	nc := n.relay.BusConn()
	for _, data := range []string{"not json", `{"id":"x"}`, "\xff\xfe"} {
		if err := nc.Publish("activities.pageview", []byte(data)); err != nil {
			t.Fatal(err)
		}
	}
	good := `{"id":"direct-1","name":"pageview","type":"pageview","action":"","occurred_at":"2026-11-22T10:00:00Z","received_at":"2026-11-22T10:00:00Z"}`
	if err := nc.Publish("activities.pageview", []byte(good)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "three dead letters each", func() bool {
		d := n.destinations()
		return d["plain"].DeadLettered == 3 && d["ruled"].DeadLettered == 3
	})
	waitFor(t, 30*time.Second, "the good one", func() bool { return r.delivered()["direct-1"] == 2 })
	status, out := n.adminDo("GET", "/v1/deadletters?destination=plain", "")
	if status != http.StatusOK {
		t.Fatalf("dead letters: %d %v", status, out)
	}
	for _, dl := range out["deadletters"].([]any) {
		attempts := dl.(map[string]any)["attempts"].([]any)
		if msg, _ := attempts[0].(map[string]any)["error"].(string); !strings.Contains(msg, "undecodable activity") {
			t.Errorf("dead letter %v: reason %q", dl.(map[string]any)["id"], msg)
		}
	}
}
