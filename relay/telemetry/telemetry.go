// Package telemetry is Relay's OpenTelemetry tracing: the tracer provider
// built from telemetry: and the OTEL_EXPORTER_OTLP_* variables, the W3C
// trace context an activity carries from its producer to every attempt,
// and the spans of ingest, store, each attempt, dead letter and replay.
// Off (a nil *Tracing), no span is built; the trace context still travels.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/relaydev/relay/config"
)

// ScopeName is the instrumentation scope of Relay's spans.
const ScopeName = "github.com/relaydev/relay"

// Tracing makes Relay's spans and exports them. A nil *Tracing is off:
// its methods build no span and only carry the trace context along.
type Tracing struct {
	provider *sdktrace.TracerProvider
	tracer   trace.Tracer
	// dests holds each destination's span attributes, by its name.
	dests sync.Map
}

// Settings is what New resolved from telemetry: and the environment.
type Settings struct {
	Endpoint    string // "" when telemetry is off
	Protocol    string // http or grpc
	SampleRatio float64
	Headers     map[string]string
	// BatchTimeout is how long spans wait before they are exported
	// (default 5s, OTEL_BSP_SCHEDULE_DELAY); 0 keeps the default.
	BatchTimeout time.Duration
}

// Resolve reads telemetry: and the environment (getenv, os.Getenv in
// production): what is written in telemetry: wins over a variable.
func Resolve(c config.Telemetry, getenv func(string) string) (Settings, error) {
	s := Settings{Endpoint: c.OTLPEndpoint, Protocol: c.Protocol, SampleRatio: 1}
	if c.SampleRatio != nil {
		s.SampleRatio = *c.SampleRatio
	}
	if strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") && s.Endpoint == "" {
		return Settings{}, nil
	}
	if s.Endpoint == "" && getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" && getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" {
		return Settings{}, nil // off
	}
	if s.Protocol == "" {
		p := getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
		if p == "" {
			p = getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
		}
		switch p {
		case "", "http/protobuf":
			s.Protocol = "http"
		case "grpc":
			s.Protocol = "grpc"
		default:
			return Settings{}, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL %q is not one Relay exports with: want http/protobuf or grpc", p)
		}
	}
	if len(c.Headers) > 0 {
		s.Headers = make(map[string]string, len(c.Headers))
		for k, v := range c.Headers {
			s.Headers[k] = v.Value()
		}
	}
	if s.Endpoint == "" {
		s.Endpoint = "(from OTEL_EXPORTER_OTLP_*)"
	}
	return s, nil
}

// New builds the tracer provider s describes; nil (off) when s has no
// endpoint. Export errors go to log. Shutdown flushes and stops it.
func New(ctx context.Context, s Settings, log *slog.Logger) (*Tracing, error) {
	if s.Endpoint == "" {
		return nil, nil
	}
	exp, err := exporter(ctx, s)
	if err != nil {
		return nil, fmt.Errorf("telemetry: %w", err)
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(attribute.String("service.name", "relay")))
	if err != nil {
		return nil, fmt.Errorf("telemetry: resource: %w", err)
	}
	if v, err := resource.New(ctx, resource.WithFromEnv()); err == nil { // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win
		if merged, err := resource.Merge(res, v); err == nil {
			res = merged
		}
	}
	bopts := []sdktrace.BatchSpanProcessorOption{sdktrace.WithMaxQueueSize(16384), sdktrace.WithMaxExportBatchSize(2048)}
	if s.BatchTimeout > 0 {
		bopts = append(bopts, sdktrace.WithBatchTimeout(s.BatchTimeout))
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp, bopts...),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(s.SampleRatio))),
	)
	if log != nil {
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
			log.Warn("telemetry: exporting spans failed", "error", err)
		}))
	}
	return &Tracing{provider: tp, tracer: tp.Tracer(ScopeName)}, nil
}

// exporter is the OTLP exporter of s's protocol. An endpoint written in
// telemetry: is a URL; without one the exporter reads the environment.
func exporter(ctx context.Context, s Settings) (*otlptrace.Exporter, error) {
	fromEnv := strings.HasPrefix(s.Endpoint, "(")
	if s.Protocol == "grpc" {
		var opts []otlptracegrpc.Option
		if !fromEnv {
			opts = append(opts, otlptracegrpc.WithEndpointURL(s.Endpoint))
		}
		if s.Headers != nil {
			opts = append(opts, otlptracegrpc.WithHeaders(s.Headers))
		}
		return otlptracegrpc.New(ctx, opts...)
	}
	var opts []otlptracehttp.Option
	if !fromEnv {
		u, err := url.Parse(s.Endpoint)
		if err != nil {
			return nil, errors.New("otlp_endpoint is not a URL")
		}
		if u.Path == "" || u.Path == "/" {
			u.Path = "/v1/traces"
		}
		opts = append(opts, otlptracehttp.WithEndpointURL(u.String()))
	}
	if s.Headers != nil {
		opts = append(opts, otlptracehttp.WithHeaders(s.Headers))
	}
	return otlptracehttp.New(ctx, opts...)
}

// On reports whether spans are made.
func (t *Tracing) On() bool { return t != nil }

// Shutdown exports the spans still held and stops the provider.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	return t.provider.Shutdown(ctx)
}

// Attribute keys of Relay's spans.
const (
	KeyDestination  = attribute.Key("relay.destination")
	KeyActivityName = attribute.Key("relay.activity.name")
	KeyActivityID   = attribute.Key("relay.activity.id")
	KeyAttempt      = attribute.Key("relay.attempt")
	KeyOutcome      = attribute.Key("relay.outcome")
)
