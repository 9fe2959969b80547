package config

import (
	"strings"
	"testing"
	"time"
)

const retryHead = "ingest: {tokens: [t]}\nadmin: {token: a}\n"

func retryDest(retry string) string {
	return retryHead + "destinations:\n  - name: a\n    type: webhook\n    url: https://x.example\n    secrets: [whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw]\n" + retry
}

// TestEmptyScheduleIsOneAttempt: `schedule: []` is kept as written (one
// attempt, no retry), not replaced by the default; an omitted or null
// schedule is the default.
func TestEmptyScheduleIsOneAttempt(t *testing.T) {
	tests := []struct {
		name, retry string
		want        int
	}{
		{"empty list", "    retry: {schedule: []}\n", 0},
		{"empty block list", "    retry:\n      schedule: []\n", 0},
		{"omitted", "", len(DefaultSchedule)},
		{"null", "    retry: {schedule: ~}\n", len(DefaultSchedule)},
		{"one delay", "    retry: {schedule: [1s]}\n", 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse("x.yaml", []byte(retryDest(tc.retry)), env(nil))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			r := cfg.Destinations[0].Retry
			if len(r.Schedule) != tc.want || len(r.Durations()) != tc.want {
				t.Errorf("schedule = %v, want %d delays", r.Schedule, tc.want)
			}
			if r.MaxAge <= 0 {
				t.Errorf("max_age = %v, want the default", r.MaxAge)
			}
		})
	}
}

// TestRetryValidatedEverywhere: the alerts' retry is checked like a
// destination's (at most MaxSchedule delays, each positive, a positive
// max_age), each error at its line and column naming the key.
func TestRetryValidatedEverywhere(t *testing.T) {
	long := strings.TrimSuffix(strings.Repeat("1s, ", MaxSchedule+1), ", ")
	alerts := func(retry string) string {
		return retryHead + "alerts:\n  url: https://alerts.example\n  secrets: [whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw]\n  retry: " + retry + "\n"
	}
	tests := []struct {
		name, yaml, want string
	}{
		{"destination too long", retryDest("    retry: {schedule: [" + long + "]}\n"), "x.yaml:8:23: destinations[0].retry.schedule: at most 40 delays (it has 41)"},
		{"destination zero delay", retryDest("    retry: {schedule: [1s, 0s]}\n"), "x.yaml:8:28: destinations[0].retry.schedule[1]: delay must be positive"},
		{"destination negative max_age", retryDest("    retry: {max_age: -1h}\n"), "x.yaml:8:22: destinations[0].retry.max_age: must be positive"},
		{"alerts too long", alerts("{schedule: [" + long + "]}"), "x.yaml:6:21: alerts.retry.schedule: at most 40 delays (it has 41)"},
		{"alerts zero delay", alerts("{schedule: [0s]}"), "x.yaml:6:22: alerts.retry.schedule[0]: delay must be positive"},
		{"alerts negative max_age", alerts("{max_age: -1h}"), "x.yaml:6:20: alerts.retry.max_age: must be positive"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("x.yaml", []byte(tc.yaml), env(nil))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %v, want %q", err, tc.want)
			}
		})
	}
	// The alerts' empty schedule is one attempt too.
	cfg, err := Parse("x.yaml", []byte(alerts("{schedule: []}")), env(nil))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if d := cfg.Alerts.Destination(); len(d.Retry.Schedule) != 0 || time.Duration(d.Retry.MaxAge) != 72*time.Hour {
		t.Errorf("alerts retry = %+v, want no delays and the default max_age", d.Retry)
	}
}
