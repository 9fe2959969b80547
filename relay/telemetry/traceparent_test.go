package telemetry

import (
	"testing"

	"go.opentelemetry.io/otel/trace"
)

func TestParseTraceParent(t *testing.T) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	tests := []struct {
		name    string
		in      string
		ok      bool
		sampled bool
	}{
		{"valid sampled", tp, true, true},
		{"valid unsampled", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", true, false},
		{"other flags kept to sampled", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03", true, true},
		{"later version with more fields", "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds", true, true},
		{"version 00 too long", tp + "-x", false, false},
		{"version ff", "ff" + tp[2:], false, false},
		{"upper case", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", false, false},
		{"zero trace id", "00-00000000000000000000000000000000-00f067aa0ba902b7-01", false, false},
		{"zero parent id", "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", false, false},
		{"short", tp[:54], false, false},
		{"bad separator", "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false, false},
		{"not hex", "00-4bf92f3577b34da6a3ce929d0e0e47zz-00f067aa0ba902b7-01", false, false},
		{"empty", "", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tid, sid, flags, ok := ParseTraceParent(tt.in)
			if ok != tt.ok {
				t.Fatalf("ok = %v, want %v", ok, tt.ok)
			}
			if !ok {
				return
			}
			if tid.String() != "4bf92f3577b34da6a3ce929d0e0e4736" || sid.String() != "00f067aa0ba902b7" {
				t.Errorf("ids %s %s", tid, sid)
			}
			if flags.IsSampled() != tt.sampled {
				t.Errorf("sampled = %v, want %v", flags.IsSampled(), tt.sampled)
			}
		})
	}
}

func TestFormatTraceParentRoundTrip(t *testing.T) {
	tid, sid := ActivityTrace("01JD0000000000000000000000")
	for _, flags := range []trace.TraceFlags{0, trace.FlagsSampled} {
		s := FormatTraceParent(tid, sid, flags)
		gt, gs, gf, ok := ParseTraceParent(s)
		if !ok || gt != tid || gs != sid || gf != flags {
			t.Errorf("%s read back as %s %s %s %v", s, gt, gs, gf, ok)
		}
	}
}

func TestActivityTraceIsStable(t *testing.T) {
	a1, s1 := ActivityTrace("act-1")
	a2, s2 := ActivityTrace("act-1")
	b, _ := ActivityTrace("act-2")
	if a1 != a2 || s1 != s2 {
		t.Error("the same id gives another trace")
	}
	if a1 == b {
		t.Error("two ids give the same trace")
	}
	if got := TraceID("", "act-1"); got != a1.String() {
		t.Errorf("TraceID without a traceparent = %s, want %s", got, a1)
	}
	if got := TraceID("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "act-1"); got != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("TraceID with a traceparent = %s", got)
	}
}
