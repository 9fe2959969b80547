package telemetry

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/relaydev/relay/config"
	"github.com/relaydev/relay/relay/activity"
	"github.com/relaydev/relay/relay/schedule"
	"github.com/relaydev/relay/relay/sink"
	"github.com/relaydev/relay/relay/telemetry/collector"
)

// BenchmarkDeliveryTracing is what tracing costs one delivery, as `relay
// bench --otlp` has it: its store span (a request of 100 activities
// without a producer's trace: each its own root, linked to the ingest
// span), one attempt span, and their export over OTLP/HTTP to a
// collector on loopback that counts them (flushed before the clock
// stops), at sample ratios 1 and 0.01.
func BenchmarkDeliveryTracing(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	col := collector.New(false)
	srv := col.Serve(ln)
	defer srv.Close()
	dest := &config.Destination{Name: "d", Type: "webhook", URL: "https://hooks.example.com/in"}
	for _, ratio := range []float64{1, 0.01} {
		b.Run("ratio="+strconv.FormatFloat(ratio, 'g', -1, 64), func(b *testing.B) {
			ctx := context.Background()
			tr, err := New(ctx, Settings{Endpoint: col.URL(), Protocol: "http", SampleRatio: ratio, BatchTimeout: time.Second}, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer tr.Shutdown(ctx)
			const batch = 100
			acts := make([]*activity.Activity, batch)
			for i := range acts {
				acts[i] = &activity.Activity{ID: "01JD0000000000000000000" + strconv.Itoa(100+i), Name: "email.open"}
			}
			b.ReportAllocs()
			i := 0
			var stores Stores
			var endIngest func()
			for b.Loop() {
				if i%batch == 0 {
					if endIngest != nil {
						endIngest()
					}
					ictx, span := tr.tracer.Start(ctx, "POST /v1/activities")
					endIngest = func() { span.End() }
					stores = tr.StartStores(ictx, batch)
				}
				a := acts[i%batch]
				h := nats.Header{}
				stores.Start(i%batch, h, a)
				stores.End(i%batch, nil, false)
				d := &sink.Delivery{Activity: a, Attempt: 1}
				at := tr.StartAttempt(ctx, dest, h, d)
				at.End(sink.Attempt{Status: 204}, schedule.Outcome{Action: schedule.Delivered})
				i++
			}
			if endIngest != nil {
				endIngest()
			}
			if err := tr.provider.ForceFlush(ctx); err != nil {
				b.Fatal(err)
			}
		})
	}
}
