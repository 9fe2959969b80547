package api

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestTimeArgJSON checks what a TimeArg reads and writes: in a replay
// request, RFC 3339 text goes out as time.Time writes it, and either form
// comes back in.
func TestTimeArgJSON(t *testing.T) {
	plus1 := time.FixedZone("", 3600)
	tests := []struct {
		name string
		in   string    // a request's since
		want time.Time // as read; zero: relative to now (see back)
		back time.Duration
		out  string // the request written again
		err  string // in the error reading in, when it fails
	}{
		{name: "UTC", in: `"2026-11-22T10:00:00Z"`, want: time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC), out: `"2026-11-22T10:00:00Z"`},
		{name: "nanoseconds", in: `"2026-11-22T10:00:00.123456789Z"`, want: time.Date(2026, 11, 22, 10, 0, 0, 123456789, time.UTC), out: `"2026-11-22T10:00:00.123456789Z"`},
		{name: "offset, read as UTC", in: `"2026-11-22T11:00:00+01:00"`, want: time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC), out: `"2026-11-22T10:00:00Z"`},
		{name: "lower case", in: `"2026-11-22t10:00:00z"`, want: time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC), out: `"2026-11-22T10:00:00Z"`},
		{name: "duration", in: `"2h"`, back: 2 * time.Hour},
		{name: "null", in: `null`},
		{name: "empty", in: `""`, err: `want an RFC 3339 time like 2026-11-22T10:00:00Z or a duration back from now like 5m, got ""`},
		{name: "negative duration", in: `"-5m"`, err: `got "-5m" (a negative duration would be in the future)`},
		{name: "not a time", in: `"yesterday"`, err: `got "yesterday"`},
		{name: "offset beyond 23:59", in: `"2026-11-22T10:00:00+24:00"`, err: `got "2026-11-22T10:00:00+24:00"`},
		{name: "a number", in: `5`, err: "want a string: an RFC 3339 time like 2026-11-22T10:00:00Z or a duration back from now like 5m, got number"},
		{name: "an object", in: `{}`, err: "got object"},
		{name: "long", in: `"` + strings.Repeat("x", 100) + `"`, err: `got "` + strings.Repeat("x", 64) + `…"… (100 bytes)`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var req ReplayRequest
			before := time.Now()
			err := json.Unmarshal([]byte(`{"destination":"crm","since":`+tc.in+`}`), &req)
			after := time.Now()
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one with %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tc.in == "null":
				if req.Since != nil {
					t.Fatalf("since %v, want none", req.Since)
				}
			case tc.back > 0:
				if req.Since == nil || req.Since.Before(before.Add(-tc.back)) || req.Since.After(after.Add(-tc.back)) {
					t.Fatalf("since %v, want %s before now", req.Since, tc.back)
				}
			case req.Since == nil || !req.Since.Equal(tc.want) || req.Since.Location() != time.UTC:
				t.Fatalf("since %v, want %v in UTC", req.Since, tc.want)
			}
			if tc.out == "" {
				return
			}
			out, err := json.Marshal(req)
			if want := `{"destination":"crm","since":` + tc.out + `}`; err != nil || string(out) != want {
				t.Errorf("written again %s (%v), want %s", out, err, want)
			}
		})
	}
	// Out, a time keeps its zone as time.Time writes it; no bound is left out.
	req := ReplayRequest{Destination: "crm", Until: &TimeArg{time.Date(2026, 11, 22, 11, 30, 0, 0, plus1)}}
	out, err := json.Marshal(req)
	if want := `{"destination":"crm","until":"2026-11-22T11:30:00+01:00"}`; err != nil || string(out) != want {
		t.Errorf("got %s (%v), want %s", out, err, want)
	}
}

// TestParseTimeArg: "" is no time; a duration counts back from now.
func TestParseTimeArg(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"":                     {},
		"  ":                   {},
		"90m":                  now.Add(-90 * time.Minute),
		"2026-11-22T10:00:00Z": time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC),
	} {
		if got, err := ParseTimeArg(in, now); err != nil || !got.Equal(want) {
			t.Errorf("ParseTimeArg(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
}
