package telemetry

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/relaydev/relay/config"
	"github.com/relaydev/relay/relay/activity"
	"github.com/relaydev/relay/relay/schedule"
	"github.com/relaydev/relay/relay/sink"
	"github.com/relaydev/relay/relay/store"
)

// BenchmarkAttemptSpan is what an attempt's tracing costs: off, on and
// sampled (the span kept, here in memory), on and not sampled.
func BenchmarkAttemptSpan(b *testing.B) {
	dest := &config.Destination{Name: "d", Type: "webhook", URL: "https://hooks.example.com/in"}
	d := &sink.Delivery{Activity: &activity.Activity{ID: "01JD00000000000000000000AA", Name: "email.open"}, Attempt: 1}
	sampled, unsampled := nats.Header{}, nats.Header{}
	sampled.Set(store.HeaderTraceParent, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	unsampled.Set(store.HeaderTraceParent, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sdktrace.NewSimpleSpanProcessor(tracetest.NewNoopExporter())),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())))
	on := &Tracing{provider: tp, tracer: tp.Tracer(ScopeName)}
	ctx := context.Background()
	for _, bc := range []struct {
		name string
		t    *Tracing
		h    nats.Header
	}{{"off", nil, sampled}, {"on-sampled", on, sampled}, {"on-not-sampled", on, unsampled}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				a := bc.t.StartAttempt(ctx, dest, bc.h, d)
				a.End(sink.Attempt{Status: 204}, schedule.Outcome{})
			}
		})
	}
}
