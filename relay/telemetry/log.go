package telemetry

import (
	"context"
	"log/slog"

	"go.opentelemetry.io/otel/trace"
)

// LogHandler adds trace_id and span_id to a record logged with a context
// that holds a span (slog's …Context calls).
func LogHandler(h slog.Handler) slog.Handler { return logHandler{h} }

type logHandler struct{ slog.Handler }

func (h logHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	return h.Handler.Handle(ctx, r)
}

func (h logHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return logHandler{h.Handler.WithAttrs(attrs)}
}

func (h logHandler) WithGroup(name string) slog.Handler { return logHandler{h.Handler.WithGroup(name)} }

// LogAttrs are the trace_id and span_id a log line about an attempt
// carries: those of the traceparent it sent (the span id is the
// attempt's own when telemetry is on). Empty for an invalid one.
func LogAttrs(traceparent string) []any {
	tid, sid, _, ok := ParseTraceParent(traceparent)
	if !ok {
		return nil
	}
	return []any{"trace_id", tid.String(), "span_id", sid.String()}
}
