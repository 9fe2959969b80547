package telemetry

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Replay is a replay request's span (none with telemetry off).
type Replay struct{ span trace.Span }

// StartReplay begins the span of a replay to dest; from is what it
// re-queues: "deadletter" or "history".
func (t *Tracing) StartReplay(ctx context.Context, dest, from string) Replay {
	if !t.On() {
		return Replay{}
	}
	_, span := t.tracer.Start(ctx, "replay", trace.WithAttributes(KeyDestination.String(dest), attribute.String("relay.replay", from)))
	return Replay{span: span}
}

// Link links the replay to the trace of an activity it re-queued, by the
// traceparent the activity was stored with (the span keeps at most 128).
func (r Replay) Link(traceparent string) {
	if r.span == nil || !r.span.IsRecording() {
		return
	}
	if sc, ok := remoteContext(traceparent, ""); ok {
		r.span.AddLink(trace.Link{SpanContext: sc})
	}
}

// End ends the span with how many activities were re-queued.
func (r Replay) End(n int, err error) {
	if r.span == nil {
		return
	}
	r.span.SetAttributes(attribute.Int("relay.replayed", n))
	if err != nil {
		r.span.RecordError(err)
		r.span.SetStatus(codes.Error, "replay failed")
	}
	r.span.End()
}
