// Package api is the admin API's wire types: what the server sends and
// the CLI and dashboard read. It imports nothing but the standard library.
package api

import (
	"encoding/json"
	"time"
)

// DestinationStatus is one row of GET /v1/destinations.
type DestinationStatus struct {
	Name           string `json:"name"`
	Type           string `json:"type"`
	State          string `json:"state"`
	Breaker        string `json:"breaker,omitempty"`
	Pending        uint64 `json:"pending"`
	Delivered      uint64 `json:"delivered"`
	FailedAttempts uint64 `json:"failed_attempts"`
	DeadLettered   int    `json:"dead_lettered"`
	// OldestPendingSeconds is the age of the oldest activity waiting or
	// being retried (0 when none).
	OldestPendingSeconds float64    `json:"oldest_pending_seconds"`
	LastSuccessAt        *time.Time `json:"last_success_at"`
	LastFailureAt        *time.Time `json:"last_failure_at"`
	// Figures of the last minute, as this process saw them.
	DeliveredLastMinute int      `json:"delivered_last_minute"`
	FailedLastMinute    int      `json:"failed_last_minute"`
	P99LatencyMS        *float64 `json:"p99_latency_ms"`
	// Order is set for a destination with order: contact.
	Order *OrderStatus `json:"order,omitempty"`
}

// OrderStatus is an ordered destination's lanes in this process, in GET
// /v1/destinations. Only the process working the destination holds
// activities; the others show zeros.
type OrderStatus struct {
	// Key is the order key: order_key, or the default list.
	Key string `json:"key"`
	// Held is how many activities this process holds in lanes.
	Held int `json:"held"`
	// Contacts is how many contacts have activities held.
	Contacts int `json:"contacts"`
	// HeldBehind is how many held activities wait behind an earlier one
	// of their contact.
	HeldBehind int `json:"held_behind"`
	// Resuming is true while the process waits, after taking the
	// destination over, for activities out elsewhere to come back.
	Resuming bool `json:"resuming"`
}

// Trace is what happened to one activity: GET /v1/activities/{id}.
type Trace struct {
	ID         string    `json:"id"`
	Name       string    `json:"name"`
	ReceivedAt time.Time `json:"received_at"`
	// TraceID is the W3C trace id every attempt of the activity sends in
	// traceparent: its producer's, or the one Relay started for it.
	TraceID      string             `json:"trace_id"`
	Activity     json.RawMessage    `json:"activity"`
	Destinations []DestinationTrace `json:"destinations"`
}

// DestinationTrace is the activity at one destination.
type DestinationTrace struct {
	Name     string       `json:"name"`
	Selected bool         `json:"selected"`
	Reason   string       `json:"reason"`
	Status   string       `json:"status"`
	Attempts []TraceEntry `json:"attempts"`

	// HeldBehind is the earlier activity of the same contact this one
	// waits behind (order: contact), as the process asked knows it.
	HeldBehind string `json:"held_behind,omitempty"`
}

// TraceEntry is one attempt in a trace.
type TraceEntry struct {
	Attempt   int       `json:"attempt"`
	At        time.Time `json:"at"`
	Status    int       `json:"status"`
	Error     string    `json:"error,omitempty"`
	LatencyMS float64   `json:"latency_ms"`
	Outcome   string    `json:"outcome"`
}

// DeadLetter is an activity whose delivery to one destination failed for
// good, with every attempt made.
type DeadLetter struct {
	ID          string          `json:"id"`
	Destination string          `json:"destination"`
	Activity    json.RawMessage `json:"activity"`
	Attempts    []Attempt       `json:"attempts"`
	DeadAt      time.Time       `json:"dead_at"`
}

// Attempt is the result of trying to deliver one activity once.
type Attempt struct {
	At     time.Time `json:"at"`
	Status int       `json:"status"` // HTTP status, 0 when there was no response
	Error  string    `json:"error,omitempty"`
	// LatencyMS is how long the attempt took, in milliseconds, as stored
	// and shown.
	LatencyMS float64 `json:"latency_ms"`
	// Probe marks a failed attempt the breaker made while open: it is
	// kept in the history and the trace but is no step of the activity's
	// schedule.
	Probe bool `json:"probe,omitempty"`
}

// LogEntry is one delivery attempt as the log keeps it.
type LogEntry struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	Destination string    `json:"destination"`
	Attempt     int       `json:"attempt"`
	At          time.Time `json:"at"`
	Outcome     string    `json:"outcome"`
	Status      int       `json:"status"`
	Error       string    `json:"error,omitempty"`
	LatencyMS   float64   `json:"latency_ms"`
	// Probe marks a failed attempt the breaker made while open, which is
	// no step of the activity's schedule.
	Probe bool `json:"probe,omitempty"`
}

// ReplayRequest selects what to deliver again to one destination.
type ReplayRequest struct {
	Destination string   `json:"destination"`
	Since       *TimeArg `json:"since,omitempty"` // RFC 3339 or a duration back from now
	Until       *TimeArg `json:"until,omitempty"`
	Activity    string   `json:"activity,omitempty"` // a pattern such as email.*
	IDs         []string `json:"ids,omitempty"`
	// History replays any retained activity from the ACTIVITIES stream
	// instead of dead letters.
	History bool `json:"history,omitempty"`
	// DryRun lists what would be re-queued without doing it.
	DryRun bool `json:"dry_run,omitempty"`
}

// ReplayResult is what a replay did, or would do.
type ReplayResult struct {
	Replayed int      `json:"replayed"`
	IDs      []string `json:"ids,omitempty"`
	DryRun   bool     `json:"dry_run,omitempty"`
	// Skipped counts, by reason, what the request's filters selected but
	// the destination's rules do not take (not re-queued, not counted).
	Skipped map[string]int `json:"skipped,omitempty"`
}

// ReloadResult says what a reload changed.
type ReloadResult struct {
	Added   []string `json:"added"`
	Changed []string `json:"changed"`
	Removed []string `json:"removed"`
	// Applied names the other keys that changed and took effect at once:
	// activities, sources.ortto, ingest.tokens, admin.token, a TLS
	// certificate, …
	Applied []string `json:"applied"`
	// RestartRequired names the keys that changed but only take effect at
	// the next start: nats, the listen addresses, tls turned on or off,
	// ingest.max_activity, alerts, log.
	RestartRequired []string `json:"restart_required"`
}

// Error is the body of an error answer: {"error": "…", "details": […]}.
// It is no Go error: a client reads it into one of its own.
type Error struct {
	Error   string   `json:"error"`
	Details []Detail `json:"details,omitempty"`
	IDs     []string `json:"ids,omitempty"`
}

// Detail names one problem of a request: which item, which field.
type Detail struct {
	Index   *int   `json:"index,omitempty"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

// Series is a destination's last hour or day in steps: GET
// /v1/destinations/{name}/series?window=1h|24h, and each destination of
// GET /v1/series.
type Series struct {
	Destination string `json:"destination"`
	// Window is 1h (steps of a minute) or 24h (steps of ten minutes).
	Window      string        `json:"window"`
	StepSeconds int           `json:"step_seconds"`
	Points      []SeriesPoint `json:"points"`
	// BreakerOpen lists when the breaker was not closed (open or
	// half-open), oldest first, clipped to the window.
	BreakerOpen []Interval `json:"breaker_open"`
}

// SeriesPoint is one step of a Series: the attempts that ended in it by
// outcome, their latency, and the backlog sampled in it.
type SeriesPoint struct {
	At         time.Time `json:"at"` // the step's start
	Delivered  int       `json:"delivered"`
	Failed     int       `json:"failed"`
	DeadLetter int       `json:"dead_letter"`
	// Suppressed counts activities a consent: destination did not send
	// (the person's channel state forbade it); they have no latency.
	Suppressed int `json:"suppressed"`
	// P50MS and P99MS are the attempts' latency percentiles, null when
	// there was no attempt.
	P50MS *float64 `json:"p50_ms"`
	P99MS *float64 `json:"p99_ms"`
	// Pending is the largest backlog sampled in the step.
	Pending uint64 `json:"pending"`
}

// Interval is a span of time; Until is null while it lasts.
type Interval struct {
	From  time.Time  `json:"from"`
	Until *time.Time `json:"until"`
}
