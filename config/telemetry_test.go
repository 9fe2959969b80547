package config

import (
	"strings"
	"testing"
)

// TestValidateTelemetry: telemetry: takes an http(s) URL, http or grpc, a
// ratio from 0 to 1 and export headers, each problem at its position; an
// export header's value is a secret that never prints.
func TestValidateTelemetry(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       string // "" = valid
	}{
		{"off", "", ""},
		{"http", "telemetry: {otlp_endpoint: \"http://collector:4318\", sample_ratio: 0.25}\n", ""},
		{"grpc with headers", "telemetry:\n  otlp_endpoint: https://otlp.example:4317\n  protocol: grpc\n  headers: {x-api-key: k}\n", ""},
		{"ratio zero", "telemetry: {otlp_endpoint: \"http://c:4318\", sample_ratio: 0}\n", ""},
		{"no scheme", "telemetry: {otlp_endpoint: \"collector:4318\"}\n",
			`relay.yaml:3:28: telemetry.otlp_endpoint: want a URL such as http://collector:4318, got "collector:4318"`},
		{"other scheme", "telemetry: {otlp_endpoint: \"grpc://c:4317\"}\n", `telemetry.otlp_endpoint: want a URL such as http://collector:4318`},
		{"protocol", "telemetry: {otlp_endpoint: \"http://c:4318\", protocol: http/json}\n",
			`relay.yaml:3:55: telemetry.protocol: want http or grpc, got "http/json"`},
		{"ratio above 1", "telemetry: {otlp_endpoint: \"http://c:4318\", sample_ratio: 1.5}\n",
			`telemetry.sample_ratio: want a number from 0 to 1, got 1.5`},
		{"ratio below 0", "telemetry: {sample_ratio: -0.1}\n", `telemetry.sample_ratio: want a number from 0 to 1, got -0.1`},
		{"bad header name", "telemetry:\n  otlp_endpoint: http://c:4318\n  headers: {\"a b\": v}\n", `invalid header name "a b"`},
		{"header with CR", "telemetry:\n  otlp_endpoint: http://c:4318\n  headers: {k: \"a\\rb\"}\n", `telemetry.headers.k: header value has a control character (CR at byte 1)`},
		{"unknown key", "telemetry: {endpoint: \"http://c:4318\"}\n", `relay.yaml:3:13: telemetry.endpoint: unknown key "endpoint"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := parseOne(t, valuesHead+tt.yaml, nil)
			if tt.want == "" && got != "" || !strings.Contains(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// TestTelemetryHeadersNeverPrint: an export header (an API key) shows
// redacted wherever the config is printed.
func TestTelemetryHeadersNeverPrint(t *testing.T) {
	cfg, err := Parse("relay.yaml", []byte(valuesHead+"telemetry:\n  otlp_endpoint: http://c:4318\n  headers: {x-api-key: \"${KEY}\"}\n"), env(map[string]string{"KEY": "hunter2-secret"}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Telemetry.Headers["x-api-key"].Value() != "hunter2-secret" {
		t.Fatalf("header value %q", cfg.Telemetry.Headers["x-api-key"].Value())
	}
	if s := cfg.Telemetry.Headers["x-api-key"].String(); strings.Contains(s, "hunter2") {
		t.Errorf("header prints as %q", s)
	}
}

// TestWebhookHeadersCannotSetTraceContext: traceparent and tracestate
// are Relay's on every attempt.
func TestWebhookHeadersCannotSetTraceContext(t *testing.T) {
	got := parseOne(t, valuesHead+valuesWebhook+"    headers: {traceparent: x}\n", nil)
	if !strings.Contains(got, `header "traceparent" is set by Relay`) {
		t.Errorf("got %q", got)
	}
}
