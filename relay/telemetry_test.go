package relay_test

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/relaydev/relay/relay/telemetry"
	"github.com/relaydev/relay/relay/telemetry/collector"
)

// traceReceiver is a webhook receiver that records the traceparent of
// every attempt and answers with status(n), n counting attempts from 1.
type traceReceiver struct {
	srv    *httptest.Server
	status func(n int) int

	mu      sync.Mutex
	parents []string
}

func newTraceReceiver(t *testing.T, status func(n int) int) *traceReceiver {
	r := &traceReceiver{status: status}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.parents = append(r.parents, req.Header.Get("traceparent"))
		n := len(r.parents)
		r.mu.Unlock()
		w.WriteHeader(r.status(n))
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *traceReceiver) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.parents...)
}

// postTraced sends one activity to ingest with the given traceparent
// ("" for none) and returns its id.
func postTraced(t *testing.T, n *node, traceparent string, body string) string {
	t.Helper()
	req, err := http.NewRequest("POST", n.ingest+"/v1/activities", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+ingestToken)
	req.Header.Set("Content-Type", "application/json")
	if traceparent != "" {
		req.Header.Set("traceparent", traceparent)
		req.Header.Set("tracestate", "producer=1")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ IDs []string }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusAccepted || len(out.IDs) != 1 {
		t.Fatalf("ingest answered %d (%v)", resp.StatusCode, err)
	}
	return out.IDs[0]
}

const (
	producerTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	producerSpan  = "00f067aa0ba902b7"
)

// TestTraceFromProducerToReceivers exports Relay's spans to an OTLP
// receiver in this process and checks one activity's whole tree: the
// producer's span → ingest → store → every attempt at two destinations
// (one failing twice), each attempt's traceparent as the receiver saw it.
func TestTraceFromProducerToReceivers(t *testing.T) {
	col := collector.New(true)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := col.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	steady := newTraceReceiver(t, func(int) int { return http.StatusNoContent })
	flaky := newTraceReceiver(t, func(n int) int {
		if n <= 2 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	yaml := baseYAML(t.TempDir()) +
		fmt.Sprintf("telemetry: {otlp_endpoint: %q, sample_ratio: 1}\n", "http://"+ln.Addr().String()) +
		"destinations:\n" +
		destYAML("steady", steady.srv.URL, secretA, "") +
		destYAML("flaky", flaky.srv.URL, secretA, "    retry: {schedule: [100ms, 100ms]}\n    breaker: off")
	n := startRelay(t, yaml)
	id := postTraced(t, n, "00-"+producerTrace+"-"+producerSpan+"-01", `{"type":"email","action":"open","contact":{"email":"ann@example.com"}}`)
	waitFor(t, 20*time.Second, "one attempt at steady and three at flaky", func() bool {
		return len(steady.got()) == 1 && len(flaky.got()) == 3
	})
	n.stop() // exports the spans still held

	spans := map[string]*tracepb.Span{} // by span id
	for _, s := range col.Spans() {
		if got := hex.EncodeToString(s.TraceId); got != producerTrace {
			t.Errorf("span %q is in trace %s, not the producer's", s.Name, got)
		}
		spans[hex.EncodeToString(s.SpanId)] = s
	}
	ingest := only(t, col.Spans(), func(s *tracepb.Span) bool { return s.Name == "POST /v1/activities" })
	if got := hex.EncodeToString(ingest.ParentSpanId); got != producerSpan {
		t.Errorf("ingest span's parent is %s, want the producer's span %s", got, producerSpan)
	}
	if ingest.Kind != tracepb.Span_SPAN_KIND_SERVER || intAttr(ingest, "http.response.status_code") != http.StatusAccepted {
		t.Errorf("ingest span: kind %v, status %d", ingest.Kind, intAttr(ingest, "http.response.status_code"))
	}
	store := only(t, col.Spans(), func(s *tracepb.Span) bool { return s.Name == "store" })
	if !equalID(store.ParentSpanId, ingest.SpanId) {
		t.Errorf("store span's parent is %x, want the ingest span %x", store.ParentSpanId, ingest.SpanId)
	}
	if strAttr(store, "relay.activity.id") != id || strAttr(store, "relay.activity.name") != "email.open" {
		t.Errorf("store span attributes: %v", store.Attributes)
	}
	for _, tc := range []struct {
		dest     string
		rec      *traceReceiver
		statuses []int
		outcomes []string
	}{
		{"steady", steady, []int{204}, []string{"delivered"}},
		{"flaky", flaky, []int{500, 500, 200}, []string{"retry", "retry", "delivered"}},
	} {
		t.Run(tc.dest, func(t *testing.T) {
			for i, tp := range tc.rec.got() {
				tid, sid, _, ok := telemetry.ParseTraceParent(tp)
				if !ok || tid.String() != producerTrace {
					t.Fatalf("attempt %d sent traceparent %q, not in the producer's trace", i+1, tp)
				}
				att, ok := spans[sid.String()]
				if !ok {
					t.Fatalf("attempt %d's traceparent names span %s, which was not exported", i+1, sid)
				}
				if !equalID(att.ParentSpanId, store.SpanId) {
					t.Errorf("attempt %d's parent is %x, want the store span %x", i+1, att.ParentSpanId, store.SpanId)
				}
				want := map[string]string{"relay.destination": tc.dest, "relay.activity.id": id, "relay.activity.name": "email.open",
					"relay.outcome": tc.outcomes[i], "http.request.method": "POST", "server.address": "127.0.0.1"}
				for k, v := range want {
					if got := strAttr(att, k); got != v {
						t.Errorf("attempt %d: %s = %q, want %q", i+1, k, got, v)
					}
				}
				if got := intAttr(att, "http.response.status_code"); got != int64(tc.statuses[i]) {
					t.Errorf("attempt %d: http.response.status_code = %d, want %d", i+1, got, tc.statuses[i])
				}
				if got := intAttr(att, "relay.attempt"); got != int64(i+1) {
					t.Errorf("attempt %d: relay.attempt = %d", i+1, got)
				}
				if att.Kind != tracepb.Span_SPAN_KIND_CLIENT {
					t.Errorf("attempt %d: kind %v, want client", i+1, att.Kind)
				}
				// The fan-out hands a retry to the destination's own
				// consumer: the hand-over shows as an event.
				handed := slices.ContainsFunc(att.Events, func(e *tracepb.Span_Event) bool { return e.Name == "handed over" })
				if handed != (i > 0) {
					t.Errorf("attempt %d: handed-over event %v, want %v", i+1, handed, i > 0)
				}
			}
		})
	}
	attempts := 0
	for _, s := range spans {
		if s.Name == "POST" {
			attempts++
		}
	}
	if attempts != 4 {
		t.Errorf("%d attempt spans exported, want 4", attempts)
	}
}

// TestTraceparentWithTelemetryOff checks what travels with no span made:
// the producer's traceparent reaches the receiver as sent, and an activity
// sent without one carries a trace of its own, the same on every retry
// and on its replay from the dead letters.
func TestTraceparentWithTelemetryOff(t *testing.T) {
	var mu sync.Mutex
	failing := true
	rec := newTraceReceiver(t, func(int) int {
		mu.Lock()
		defer mu.Unlock()
		if failing {
			return http.StatusServiceUnavailable
		}
		return http.StatusNoContent
	})
	yaml := baseYAML(t.TempDir()) + "destinations:\n" +
		destYAML("hook", rec.srv.URL, secretA, "    retry: {schedule: [50ms]}\n    breaker: off")
	n := startRelay(t, yaml)

	producer := "00-" + producerTrace + "-" + producerSpan + "-01"
	postTraced(t, n, producer, `{"type":"email","action":"open","contact":{"email":"ann@example.com"}}`)
	id := postTraced(t, n, "", `{"type":"email","action":"click","contact":{"email":"bob@example.com"}}`)
	waitFor(t, 20*time.Second, "both activities dead letters", func() bool {
		_, out := n.adminDo("GET", "/v1/deadletters", "")
		dls, _ := out["deadletters"].([]any)
		return len(dls) == 2
	})
	mu.Lock()
	failing = false
	mu.Unlock()
	if status, out := n.adminDo("POST", "/v1/replay", `{"destination":"hook"}`); status != http.StatusOK {
		t.Fatalf("replay answered %d: %v", status, out)
	}
	waitFor(t, 20*time.Second, "the replays delivered", func() bool { return len(rec.got()) == 6 })

	own, _ := telemetry.ActivityTrace(id)
	byTrace := map[string]int{}
	for _, tp := range rec.got() {
		tid, sid, flags, ok := telemetry.ParseTraceParent(tp)
		if !ok {
			t.Fatalf("attempt sent traceparent %q", tp)
		}
		byTrace[tid.String()]++
		switch tid.String() {
		case producerTrace:
			if tp != producer {
				t.Errorf("the producer's traceparent went out as %q, want it as sent (%q)", tp, producer)
			}
		case own.String():
			if flags.IsSampled() {
				t.Errorf("%q: sampled, though nobody records the trace", tp)
			}
			_ = sid
		}
	}
	if byTrace[producerTrace] != 3 || byTrace[own.String()] != 3 {
		t.Errorf("attempts by trace: %v; want 3 in the producer's trace and 3 in %s (from the id)", byTrace, own)
	}
	_, out := n.adminDo("GET", "/v1/activities/"+id, "")
	if out["trace_id"] != own.String() {
		t.Errorf("GET /v1/activities/%s: trace_id %v, want %s", id, out["trace_id"], own)
	}
}

func only(t *testing.T, spans []*tracepb.Span, match func(*tracepb.Span) bool) *tracepb.Span {
	t.Helper()
	var found []*tracepb.Span
	var names []string
	for _, s := range spans {
		names = append(names, s.Name)
		if match(s) {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d matching spans among %v, want 1", len(found), names)
	}
	return found[0]
}

func equalID(a, b []byte) bool { return len(a) > 0 && hex.EncodeToString(a) == hex.EncodeToString(b) }

func strAttr(s *tracepb.Span, key string) string {
	for _, kv := range s.Attributes {
		if kv.Key == key {
			return kv.Value.GetStringValue()
		}
	}
	return ""
}

func intAttr(s *tracepb.Span, key string) int64 {
	for _, kv := range s.Attributes {
		if kv.Key == key {
			return kv.Value.GetIntValue()
		}
	}
	return -1
}
