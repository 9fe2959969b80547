// Package collector is a small in-process OTLP/HTTP trace receiver: it
// decodes each export (protobuf) and keeps the spans, for `relay bench
// --otlp` and for tests that check the spans Relay exports.
package collector

import (
	"compress/gzip"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// maxExport bounds one export's body.
const maxExport = 64 << 20

// Collector receives OTLP/HTTP exports on POST /v1/traces.
type Collector struct {
	// Keep, when false, only counts the spans (a long bench run).
	Keep bool

	addr string // where Serve serves

	mu      sync.Mutex
	spans   []*tracepb.Span
	count   int
	exports int
	changed chan struct{}
}

// New returns a collector that keeps every span when keep is true.
func New(keep bool) *Collector { return &Collector{Keep: keep, changed: make(chan struct{})} }

// ServeHTTP decodes one export and answers as OTLP says: 200 with an
// ExportTraceServiceResponse, 400 for a body that is not one.
func (c *Collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" {
		http.NotFound(w, r)
		return
	}
	var body io.Reader = http.MaxBytesReader(w, r.Body, maxExport)
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(body)
		if err != nil {
			http.Error(w, "bad gzip body", http.StatusBadRequest)
			return
		}
		body = io.LimitReader(zr, maxExport)
	}
	data, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, "reading the export failed", http.StatusBadRequest)
		return
	}
	if !c.Keep { // count the spans on the wire, decoding no more
		n, ok := countSpans(data)
		if !ok {
			http.Error(w, "not an ExportTraceServiceRequest", http.StatusBadRequest)
			return
		}
		c.addCount(n)
	} else {
		var req coltracepb.ExportTraceServiceRequest
		if err := proto.Unmarshal(data, &req); err != nil {
			http.Error(w, "not an ExportTraceServiceRequest", http.StatusBadRequest)
			return
		}
		c.add(&req)
	}
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

func (c *Collector) add(req *coltracepb.ExportTraceServiceRequest) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			c.count += len(ss.GetSpans())
			c.spans = append(c.spans, ss.GetSpans()...)
		}
	}
	c.exported()
}

func (c *Collector) addCount(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.count += n
	c.exported()
}

// exported counts an export and wakes those waiting for one.
func (c *Collector) exported() {
	c.exports++
	close(c.changed)
	c.changed = make(chan struct{})
}

// countSpans counts the spans of an ExportTraceServiceRequest by walking
// its wire format: resource_spans (1) → scope_spans (2) → spans (2).
func countSpans(b []byte) (int, bool) {
	n := 0
	ok := eachField(b, 1, func(rs []byte) bool {
		return eachField(rs, 2, func(ss []byte) bool {
			return eachField(ss, 2, func([]byte) bool { n++; return true })
		})
	})
	return n, ok
}

// eachField calls f with the bytes of every length-delimited field num
// of the message b, skipping the others; false when b is malformed.
func eachField(b []byte, num protowire.Number, f func([]byte) bool) bool {
	for len(b) > 0 {
		fn, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		if fn == num && typ == protowire.BytesType {
			v, m := protowire.ConsumeBytes(b)
			if m < 0 || !f(v) {
				return false
			}
			b = b[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(fn, typ, b)
		if m < 0 {
			return false
		}
		b = b[m:]
	}
	return true
}

// Spans are the spans kept so far.
func (c *Collector) Spans() []*tracepb.Span {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*tracepb.Span(nil), c.spans...)
}

// Count is how many spans were received, and in how many exports.
func (c *Collector) Count() (spans, exports int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.count, c.exports
}

// Changed is closed at the next export received.
func (c *Collector) Changed() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.changed
}

// URL is the endpoint to export to, once Serve runs.
func (c *Collector) URL() string { return "http://" + c.addr }

// Serve serves the collector on ln until Close; it returns the server.
func (c *Collector) Serve(ln net.Listener) *http.Server {
	c.addr = ln.Addr().String()
	srv := &http.Server{Handler: c, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return srv
}
