package telemetry

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/relaydev/relay/config"
	"github.com/relaydev/relay/relay/schedule"
	"github.com/relaydev/relay/relay/sink"
	"github.com/relaydev/relay/relay/store"
)

// Attempt is one attempt's span (none with telemetry off, or for an
// attempt not sampled: then it only carries the trace context).
type Attempt struct {
	span trace.Span
	// What End records, all at once (one copy into the span).
	dest     []attribute.KeyValue
	id, name string
	n        int
}

// StartAttempt gives d the trace context its attempt sends, from the
// stored activity's headers h: with telemetry off the stored traceparent
// as it is (or the one derived from the activity's id), costing nothing
// but formatting that one; on, a client span that is a child of the
// store span (its id is the parent id the receiver sees). Every attempt
// of an activity, retries and replays too, is in the same trace.
func (t *Tracing) StartAttempt(ctx context.Context, dest *config.Destination, h nats.Header, d *sink.Delivery) Attempt {
	parent, state := h.Get(store.HeaderTraceParent), h.Get(store.HeaderTraceState)
	if parent == "" {
		// Stored without one: the trace comes from the activity's id, and
		// it is not sampled (flags 00), so no span is built; on, the
		// attempt gets an id of its own.
		tid, sid := ActivityTrace(d.Activity.ID)
		if t.On() {
			sid = newSpanID()
		}
		d.TraceParent, d.TraceState = FormatTraceParent(tid, sid, 0), state
		return Attempt{}
	}
	d.TraceParent, d.TraceState = parent, state
	if !t.On() {
		return Attempt{}
	}
	sc, ok := remoteContext(parent, state)
	if ok && !sc.IsSampled() {
		// The sampler follows the parent: no span would be recorded, so
		// none is built; the attempt still has an id of its own.
		d.TraceParent = FormatTraceParent(sc.TraceID(), newSpanID(), 0)
		return Attempt{}
	}
	if ok {
		ctx = trace.ContextWithRemoteSpanContext(ctx, sc)
	}
	_, span := t.tracer.Start(ctx, method(dest), clientSpan...)
	own := span.SpanContext()
	d.TraceParent = FormatTraceParent(own.TraceID(), own.SpanID(), own.TraceFlags())
	if !span.IsRecording() {
		return Attempt{span: span}
	}
	if v := h.Get(store.HeaderSince); v != "" {
		span.AddEvent("handed over", trace.WithAttributes(attribute.String("relay.since", v)))
	}
	if v := h.Get(store.HeaderReplay); v != "" {
		span.AddEvent("replayed", trace.WithAttributes(attribute.String("relay.replay", v)))
	}
	return Attempt{span: span, dest: t.destinationAttrs(dest), id: d.Activity.ID, name: d.Activity.Name, n: d.Attempt}
}

// FanoutWait marks on the span that the fan-out waited d for one of the
// destination's attempt slots before it took the activity (nothing for 0).
func (a Attempt) FanoutWait(d time.Duration) {
	if d <= 0 || a.span == nil || !a.span.IsRecording() {
		return
	}
	a.span.AddEvent("fan-out wait", trace.WithAttributes(attribute.Float64("relay.wait_seconds", d.Seconds())))
}

// newSpanID is a random span id for a span not recorded.
func newSpanID() trace.SpanID {
	var sid trace.SpanID
	for !sid.IsValid() {
		binary.NativeEndian.PutUint64(sid[:], rand.Uint64())
	}
	return sid
}

// End ends the attempt's span with its HTTP status and outcome (what
// settle decided); a dead letter adds a short span of its own.
func (a Attempt) End(at sink.Attempt, out schedule.Outcome) {
	if a.span == nil || !a.span.IsRecording() {
		return
	}
	buf := attrsPool.Get().(*[]attribute.KeyValue)
	defer func() { *buf = (*buf)[:0]; attrsPool.Put(buf) }()
	attrs := append((*buf)[:0], a.dest...)
	attrs = append(attrs, KeyActivityID.String(a.id), KeyActivityName.String(a.name), KeyAttempt.Int(a.n), KeyOutcome.String(out.Action.String()))
	if at.Status > 0 {
		attrs = append(attrs, attribute.Int("http.response.status_code", at.Status))
	}
	if out.Action == schedule.Retry || out.Action == schedule.Pause {
		attrs = append(attrs, attribute.Float64("relay.retry_in_seconds", out.In.Seconds()))
	}
	if at.Err != nil {
		kind, _ := sink.Classify(at.Err)
		errType := kind.String()
		if at.Status >= 400 {
			errType = strconv.Itoa(at.Status)
		}
		attrs = append(attrs, attribute.String("error.type", errType))
		a.span.SetStatus(codes.Error, at.Error)
	}
	a.span.SetAttributes(attrs...) // copied into the span: buf goes back to the pool
	*buf = attrs
	if out.Action == schedule.DeadLetter {
		ctx := trace.ContextWithSpan(context.Background(), a.span)
		_, dl := a.span.TracerProvider().Tracer(ScopeName).Start(ctx, "dead letter", trace.WithAttributes(KeyOutcome.String("dead_letter")))
		dl.End()
	}
	a.span.End()
}

// attrsPool holds the slices End gathers an attempt's attributes in.
var attrsPool = sync.Pool{New: func() any { s := make([]attribute.KeyValue, 0, 16); return &s }}

// method is the attempt span's name: its HTTP method, as the semantic
// conventions of HTTP clients name them.
func method(d *config.Destination) string {
	if d.Type == "salesforce" {
		return "PATCH"
	}
	return "POST"
}

// destinationAttrs are the attributes of a destination's attempts: its
// name and type, the HTTP method and the server (never the URL, which may
// carry a token).
// Worked out once per destination (a worker's config does not change: a
// reload makes another worker).
// Kept by name, so a reload's new worker replaces its predecessor's entry
// rather than adding one (and keeping the old config alive).
func (t *Tracing) destinationAttrs(d *config.Destination) []attribute.KeyValue {
	if v, ok := t.dests.Load(d.Name); ok {
		if e := v.(destAttrs); e.cfg == d {
			return e.attrs
		}
	}
	attrs := newDestinationAttrs(d)
	t.dests.Store(d.Name, destAttrs{cfg: d, attrs: attrs})
	return attrs
}

// destAttrs are a destination's attempt attributes and the config they
// were worked out from.
type destAttrs struct {
	cfg   *config.Destination
	attrs []attribute.KeyValue
}

func newDestinationAttrs(d *config.Destination) []attribute.KeyValue {
	raw := d.URL
	if d.Type == "salesforce" {
		raw = d.InstanceURL
	}
	attrs := []attribute.KeyValue{KeyDestination.String(d.Name), attribute.String("http.request.method", method(d))}
	if u, err := url.Parse(raw); err == nil && u.Host != "" {
		port := u.Port()
		if port == "" {
			port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
		}
		attrs = append(attrs, attribute.String("server.address", u.Hostname()))
		if p, err := strconv.Atoi(port); err == nil {
			attrs = append(attrs, attribute.Int("server.port", p))
		}
	}
	return attrs
}
