package telemetry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/relaydev/relay/config"
	"github.com/relaydev/relay/relay/activity"
	"github.com/relaydev/relay/relay/schedule"
	"github.com/relaydev/relay/relay/sink"
	"github.com/relaydev/relay/relay/store"
)

func TestResolve(t *testing.T) {
	ratio := 0.5
	tests := []struct {
		name    string
		cfg     config.Telemetry
		env     map[string]string
		want    Settings
		wantErr string
	}{
		{"off by default", config.Telemetry{}, nil, Settings{}, ""},
		{"config", config.Telemetry{OTLPEndpoint: "http://c:4318", SampleRatio: &ratio}, nil,
			Settings{Endpoint: "http://c:4318", Protocol: "http", SampleRatio: 0.5}, ""},
		{"environment turns it on", config.Telemetry{}, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
			Settings{Endpoint: "(from OTEL_EXPORTER_OTLP_*)", Protocol: "grpc", SampleRatio: 1}, ""},
		{"traces endpoint", config.Telemetry{}, map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"},
			Settings{Endpoint: "(from OTEL_EXPORTER_OTLP_*)", Protocol: "http", SampleRatio: 1}, ""},
		{"config's protocol wins", config.Telemetry{OTLPEndpoint: "http://c:4318", Protocol: "http"}, map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
			Settings{Endpoint: "http://c:4318", Protocol: "http", SampleRatio: 1}, ""},
		{"sdk disabled", config.Telemetry{}, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}, Settings{}, ""},
		{"json protocol", config.Telemetry{}, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, Settings{},
			`OTEL_EXPORTER_OTLP_PROTOCOL "http/json" is not one Relay exports with`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Resolve(tt.cfg, func(k string) string { return tt.env[k] })
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got.Endpoint != tt.want.Endpoint || got.Protocol != tt.want.Protocol || got.SampleRatio != tt.want.SampleRatio {
				t.Errorf("got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

// TestAttemptOffAllocatesOnlyTheHeader: with telemetry off an attempt
// builds no span; it passes a stored traceparent on as it is (no
// allocation) and formats the one derived from the id (one).
func TestAttemptOffAllocatesOnlyTheHeader(t *testing.T) {
	var off *Tracing
	dest := &config.Destination{Name: "d", Type: "webhook", URL: "https://x.example"}
	d := &sink.Delivery{Activity: &activity.Activity{ID: "01JD00000000000000000000AA", Name: "email.open"}, Attempt: 1}
	stored := nats.Header{}
	stored.Set(store.HeaderTraceParent, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		h      nats.Header
		allocs float64
	}{{"stored", stored, 0}, {"derived", nats.Header{}, 1}} {
		got := testing.AllocsPerRun(200, func() {
			a := off.StartAttempt(ctx, dest, tc.h, d)
			a.End(sink.Attempt{Status: 204}, schedule.Outcome{})
		})
		if got > tc.allocs {
			t.Errorf("%s: %.0f allocations per attempt, want at most %.0f", tc.name, got, tc.allocs)
		}
		if _, _, _, ok := ParseTraceParent(d.TraceParent); !ok {
			t.Errorf("%s: traceparent %q", tc.name, d.TraceParent)
		}
	}
	if d.TraceParent[53:] != "00" {
		t.Errorf("derived traceparent %q is marked sampled", d.TraceParent)
	}
}

func TestLogHandler(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(LogHandler(slog.NewTextHandler(&buf, nil))).With("k", "v")
	tid, sid, _, _ := ParseTraceParent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	ctx := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid}))
	log.InfoContext(ctx, "with span")
	log.Info("without")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if !strings.Contains(lines[0], "trace_id=4bf92f3577b34da6a3ce929d0e0e4736 span_id=00f067aa0ba902b7") || !strings.Contains(lines[0], "k=v") {
		t.Errorf("line with a span: %s", lines[0])
	}
	if strings.Contains(lines[1], "trace_id") {
		t.Errorf("line without a span: %s", lines[1])
	}
}

// TestAttemptOnFollowsTheStoredSampling: with telemetry on, an attempt of
// an activity stored sampled is a recorded child of the stored span and
// sends its own span id, flags 01; one stored unsampled builds no span and
// still sends a valid traceparent in the same trace, flags 00.
func TestAttemptOnFollowsTheStoredSampling(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.5))))
	on := &Tracing{provider: tp, tracer: tp.Tracer(ScopeName)}
	dest := &config.Destination{Name: "d", Type: "webhook", URL: "https://hooks.example.com:8443/in"}
	const stored = "4bf92f3577b34da6a3ce929d0e0e4736"
	for _, flags := range []string{"01", "00"} {
		h := nats.Header{}
		h.Set(store.HeaderTraceParent, "00-"+stored+"-00f067aa0ba902b7-"+flags)
		d := &sink.Delivery{Activity: &activity.Activity{ID: "a", Name: "email.open"}, Attempt: 2}
		before := len(rec.Ended())
		a := on.StartAttempt(context.Background(), dest, h, d)
		a.End(sink.Attempt{Status: 503, Err: errors.New("down")}, schedule.Outcome{Action: schedule.Retry, In: time.Second})
		tid, sid, got, ok := ParseTraceParent(d.TraceParent)
		if !ok || tid.String() != stored || sid.String() == "00f067aa0ba902b7" || got.IsSampled() != (flags == "01") {
			t.Errorf("stored flags %s: sent %q", flags, d.TraceParent)
		}
		ended := rec.Ended()[before:]
		if flags == "00" {
			if len(ended) != 0 {
				t.Errorf("an unsampled attempt recorded %d spans", len(ended))
			}
			continue
		}
		if len(ended) != 1 || ended[0].SpanContext().SpanID() != sid || ended[0].Parent().SpanID().String() != "00f067aa0ba902b7" {
			t.Fatalf("sampled attempt: spans %v", ended)
		}
		attrs := map[string]string{}
		for _, kv := range ended[0].Attributes() {
			attrs[string(kv.Key)] = kv.Value.Emit()
		}
		want := map[string]string{"relay.destination": "d", "relay.activity.id": "a", "relay.activity.name": "email.open", "relay.attempt": "2",
			"relay.outcome": "retry", "http.response.status_code": "503", "error.type": "503", "server.address": "hooks.example.com", "server.port": "8443", "http.request.method": "POST"}
		for k, v := range want {
			if attrs[k] != v {
				t.Errorf("%s = %q, want %q", k, attrs[k], v)
			}
		}
	}
}

// TestAttemptEvents: a hand-over, a replay and the fan-out's wait for a
// slot show as events of the attempt's span; an attempt that did not
// wait has no wait event.
func TestAttemptEvents(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	on := &Tracing{provider: tp, tracer: tp.Tracer(ScopeName)}
	dest := &config.Destination{Name: "d", Type: "webhook", URL: "https://hooks.example.com/in"}
	tests := []struct {
		name   string
		header map[string]string
		wait   time.Duration
		want   []string
	}{
		{"straight from the fan-out", nil, 0, nil},
		{"after waiting for a slot", nil, 1500 * time.Millisecond, []string{"fan-out wait relay.wait_seconds=1.5"}},
		{"handed over", map[string]string{store.HeaderSince: "2026-12-08T10:00:00Z"}, 0, []string{"handed over relay.since=2026-12-08T10:00:00Z"}},
		{"replayed", map[string]string{store.HeaderReplay: "deadletter"}, 0, []string{"replayed relay.replay=deadletter"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := nats.Header{}
			h.Set(store.HeaderTraceParent, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
			for k, v := range tt.header {
				h.Set(k, v)
			}
			d := &sink.Delivery{Activity: &activity.Activity{ID: "a", Name: "email.open"}, Attempt: 1}
			before := len(rec.Ended())
			a := on.StartAttempt(context.Background(), dest, h, d)
			a.FanoutWait(tt.wait)
			a.End(sink.Attempt{Status: 204}, schedule.Outcome{Action: schedule.Delivered})
			ended := rec.Ended()[before:]
			if len(ended) != 1 {
				t.Fatalf("%d spans", len(ended))
			}
			var got []string
			for _, e := range ended[0].Events() {
				s := e.Name
				for _, kv := range e.Attributes {
					s += " " + string(kv.Key) + "=" + kv.Value.Emit()
				}
				got = append(got, s)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("events %q, want %q", got, tt.want)
			}
		})
	}
}
