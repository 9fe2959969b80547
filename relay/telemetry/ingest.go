package telemetry

import (
	"context"
	"net/http"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/relaydev/relay/relay/activity"
	"github.com/relaydev/relay/relay/store"
)

// producerKey keys the producer's trace context in a request's context
// when telemetry is off (on, the ingest span's context holds it).
type producerKey struct{}

// producer is a producer's trace context as it is stored.
type producer struct{ parent, state string }

// Ingest wraps an ingest route: it reads the producer's traceparent and
// tracestate and, with telemetry on, makes the request's server span
// (POST <route>), a child of the producer's span when there is one.
func (t *Tracing) Ingest(route string, next http.Handler) http.Handler {
	if !t.On() {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if p, ok := producerContext(r.Header); ok {
				r = r.WithContext(context.WithValue(r.Context(), producerKey{}, p))
			}
			next.ServeHTTP(w, r)
		})
	}
	name := http.MethodPost + " " + route
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		if sc, ok := remoteContext(r.Header.Get("Traceparent"), r.Header.Get("Tracestate")); ok {
			ctx = context.WithValue(trace.ContextWithRemoteSpanContext(ctx, sc), remoteKey{}, true)
		}
		ctx, span := t.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(
			attribute.String("http.request.method", r.Method),
			attribute.String("http.route", route),
			attribute.String("url.path", r.URL.Path),
		))
		defer span.End()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(sw, r.WithContext(ctx))
		span.SetAttributes(attribute.Int("http.response.status_code", sw.status))
		if sw.status >= 500 {
			span.SetStatus(codes.Error, http.StatusText(sw.status))
		}
	})
}

// producerContext is a request's valid trace context, as stored: a
// traceparent of a later version than 00 is stored as 00.
func producerContext(h http.Header) (producer, bool) {
	tp := h.Get("Traceparent")
	if tp == "" {
		return producer{}, false
	}
	tid, sid, flags, ok := ParseTraceParent(tp)
	if !ok {
		return producer{}, false
	}
	if len(tp) != traceParentLen || tp[:2] != "00" {
		tp = FormatTraceParent(tid, sid, flags)
	}
	p := producer{parent: tp}
	if ts, err := trace.ParseTraceState(h.Get("Tracestate")); err == nil && ts.Len() > 0 {
		p.state = ts.String()
	}
	return p, true
}

// remoteContext is the span context a traceparent and tracestate name;
// ok is false when the traceparent is not valid (a bad tracestate is
// dropped, as the recommendation says).
func remoteContext(parent, state string) (trace.SpanContext, bool) {
	tid, sid, flags, ok := ParseTraceParent(parent)
	if !ok {
		return trace.SpanContext{}, false
	}
	cfg := trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: flags, Remote: true}
	if state != "" {
		if ts, err := trace.ParseTraceState(state); err == nil {
			cfg.TraceState = ts
		}
	}
	return trace.NewSpanContext(cfg), true
}

// statusWriter keeps the status a handler answered with.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// Stores makes the store spans of one ingest request's activities.
type Stores struct {
	t      *Tracing
	ctx    context.Context
	single bool // the request carries one activity
	spans  []trace.Span
	prod   producer
	fromP  bool // the request carried a producer's trace context
	// roots starts the store span of each activity of a request of
	// several without a producer's trace: a root linked to the ingest
	// span (made once per request).
	roots []trace.SpanStartOption
}

// StartStores begins storing n activities of the request whose context is
// ctx.
func (t *Tracing) StartStores(ctx context.Context, n int) Stores {
	s := Stores{t: t, ctx: ctx, single: n == 1}
	if !t.On() {
		s.prod, s.fromP = ctx.Value(producerKey{}).(producer)
		return s
	}
	s.spans = make([]trace.Span, n)
	span := trace.SpanFromContext(ctx)
	span.SetAttributes(attribute.Int("relay.activities", n))
	s.fromP = span.SpanContext().IsValid() && hasRemoteParent(ctx)
	if !s.fromP && !s.single {
		s.roots = []trace.SpanStartOption{producerSpan[0], trace.WithNewRoot(), trace.WithLinks(trace.LinkFromContext(ctx))}
	}
	return s
}

// hasRemoteParent reports whether the ingest span continues a producer's
// trace (the wrapper put its context under the span).
func hasRemoteParent(ctx context.Context) bool {
	return ctx.Value(remoteKey{}) != nil
}

type remoteKey struct{}

// Start sets the trace context activity i is stored with on its headers
// h: the producer's (telemetry off), or its store span's, a child of the
// ingest span. Without a producer's trace, a request of several
// activities starts a trace for each (its store span a root, linked to
// the ingest span); with telemetry off the trace then comes from the id
// (ActivityTrace) and nothing is stored.
func (s *Stores) Start(i int, h nats.Header, a *activity.Activity) {
	if s.spans == nil {
		if s.fromP {
			h.Set(store.HeaderTraceParent, s.prod.parent)
			if s.prod.state != "" {
				h.Set(store.HeaderTraceState, s.prod.state)
			}
		}
		return
	}
	opts := producerSpan
	if s.roots != nil {
		opts = s.roots
	} else if in := trace.SpanContextFromContext(s.ctx); in.IsValid() && !in.IsSampled() {
		// A child of an ingest span not sampled is not either: no span
		// is built, the activity is stored with an id of its own.
		h.Set(store.HeaderTraceParent, FormatTraceParent(in.TraceID(), newSpanID(), 0))
		if in.TraceState().Len() > 0 {
			h.Set(store.HeaderTraceState, in.TraceState().String())
		}
		return
	}
	_, span := s.t.tracer.Start(s.ctx, "store", opts...)
	s.spans[i] = span
	if span.IsRecording() { // attributes only for a span kept: most are not at a low sample_ratio
		span.SetAttributes(KeyActivityID.String(a.ID), KeyActivityName.String(a.Name), attribute.String("messaging.system", "nats"))
	}
	sc := span.SpanContext()
	h.Set(store.HeaderTraceParent, FormatTraceParent(sc.TraceID(), sc.SpanID(), sc.TraceFlags()))
	if sc.TraceState().Len() > 0 {
		h.Set(store.HeaderTraceState, sc.TraceState().String())
	}
}

// producerSpan and clientSpan are the start options of store and attempt
// spans, made once.
var (
	producerSpan = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindProducer)}
	clientSpan   = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient)}
)

// End ends activity i's store span: err is why it was not stored, and
// duplicate says JetStream had it already.
func (s *Stores) End(i int, err error, duplicate bool) {
	if s.spans == nil || s.spans[i] == nil {
		return
	}
	span := s.spans[i]
	if duplicate {
		span.SetAttributes(attribute.Bool("relay.duplicate", true))
	}
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, "not stored")
	}
	span.End()
	s.spans[i] = nil
}

// EndAll ends the spans of activities not stored (the request failed part
// way, or one was left out as a repeat of another).
func (s *Stores) EndAll() {
	for _, span := range s.spans {
		if span != nil {
			span.SetStatus(codes.Error, "not stored")
			span.End()
		}
	}
}
