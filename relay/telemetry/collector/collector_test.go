package collector

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// TestCountingMatchesDecoding: a collector that only counts finds as many
// spans as one that decodes them all, and both refuse what is not an
// export.
func TestCountingMatchesDecoding(t *testing.T) {
	req := &coltracepb.ExportTraceServiceRequest{}
	for r := range 3 {
		rs := &tracepb.ResourceSpans{Resource: &resourcepb.Resource{}, SchemaUrl: "x"}
		for s := range r + 1 {
			ss := &tracepb.ScopeSpans{SchemaUrl: "y"}
			for i := range s + 2 {
				ss.Spans = append(ss.Spans, &tracepb.Span{Name: "s", TraceId: make([]byte, 16), SpanId: []byte{1, 2, 3, 4, 5, 6, 7, byte(i + 1)}})
			}
			rs.ScopeSpans = append(rs.ScopeSpans, ss)
		}
		req.ResourceSpans = append(req.ResourceSpans, rs)
	}
	body, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	const want = 2 + (2 + 3) + (2 + 3 + 4)
	for _, keep := range []bool{true, false} {
		c := New(keep)
		for _, tc := range []struct {
			body   []byte
			status int
		}{{body, http.StatusOK}, {[]byte{0x0a, 0xff}, http.StatusBadRequest}} {
			rec := httptest.NewRecorder()
			c.ServeHTTP(rec, httptest.NewRequest("POST", "/v1/traces", bytes.NewReader(tc.body)))
			if rec.Code != tc.status {
				t.Errorf("keep %v: status %d, want %d", keep, rec.Code, tc.status)
			}
		}
		if n, exports := c.Count(); n != want || exports != 1 {
			t.Errorf("keep %v: %d spans in %d exports, want %d in 1", keep, n, exports, want)
		}
		if keep && len(c.Spans()) != want {
			t.Errorf("kept %d spans", len(c.Spans()))
		}
	}
}
