package config

import "time"

// Default values, in one place.
var (
	DefaultSchedule = []Duration{
		Duration(5 * time.Second), Duration(30 * time.Second), Duration(5 * time.Minute),
		Duration(30 * time.Minute), Duration(2 * time.Hour), Duration(5 * time.Hour), Duration(10 * time.Hour),
	}
)

// DefaultMaxBody is a destination's max_body default: the largest body its
// body expression may produce.
const DefaultMaxBody = 1 << 20

// DefaultMaxActivity is ingest.max_activity's default: with its dead-letter
// record it fits NATS's default max_payload of 1 MiB.
const DefaultMaxActivity = 512 << 10

// MaxActivityLimit is the largest ingest.max_activity allowed: the bus's
// messages can be at most 64 MiB.
const MaxActivityLimit = 32 << 20

// DefaultMaxHeldBytes is engine.max_held_bytes's default.
const DefaultMaxHeldBytes = 64 << 20

// DefaultEngineMaxInFlight is engine.max_in_flight's default.
const DefaultEngineMaxInFlight = 1024

// MaxSchedule is the longest retry schedule: an activity's attempt
// history must fit in its dead-letter record.
const MaxSchedule = 40

// Defaults fills every key left unset.
func Defaults(c *Config) {
	natsDefaults(&c.NATS)
	ingestDefaults(&c.Ingest)
	if c.Engine.MaxHeldBytes == 0 {
		c.Engine.MaxHeldBytes = DefaultMaxHeldBytes
	}
	setInt(&c.Engine.MaxInFlight, DefaultEngineMaxInFlight)
	setDuration(&c.DeadLetters.MaxAge, 30*24*time.Hour)
	if c.DeadLetters.MaxBytes == 0 {
		c.DeadLetters.MaxBytes = 1 << 30
	}
	logDefaults(&c.Log)
	setString(&c.Admin.Listen, "127.0.0.1:8081")
	setDuration(&c.Admin.SessionTTL, 12*time.Hour)
	if c.Alerts.Enabled() {
		alertsDefaults(&c.Alerts)
	}
	for i := range c.Destinations {
		destinationDefaults(&c.Destinations[i])
	}
}

// natsDefaults fills the keys of nats: left unset.
func natsDefaults(n *NATS) {
	setString(&n.URL, "embedded")
	setString(&n.DataDir, "./data")
	setInt(&n.Replicas, 1)
	setDuration(&n.Retention, 168*time.Hour)
	setDuration(&n.DuplicateWindow, 2*time.Minute)
}

// ingestDefaults fills the keys of ingest: left unset.
func ingestDefaults(in *Ingest) {
	setString(&in.Listen, "127.0.0.1:8080")
	setInt(&in.MaxBatch, 1000)
	if in.MaxBody == 0 {
		in.MaxBody = 5 << 20
	}
	if in.MaxActivity == 0 {
		in.MaxActivity = DefaultMaxActivity
	}
	if in.MaxInflightBytes == 0 {
		in.MaxInflightBytes = 64 << 20
	}
}

// logDefaults fills the keys of log: left unset.
func logDefaults(l *Log) {
	setString(&l.Level, "info")
	setString(&l.Format, "text")
	setDuration(&l.Retention, 72*time.Hour)
	if l.MaxBytes == 0 {
		l.MaxBytes = 1 << 30
	}
}

// alertsDefaults fills the keys of an enabled alerts: section.
func alertsDefaults(a *Alerts) {
	setDuration(&a.Timeout, 10*time.Second)
	retryDefaults(&a.Retry)
	setDuration(&a.DeadLetterEvery, time.Minute)
}

// destinationDefaults fills a destination's keys left unset, the
// breaker's unless it is off and a Salesforce destination's own.
func destinationDefaults(d *Destination) {
	setDuration(&d.Timeout, 10*time.Second)
	setInt(&d.MaxInFlight, 64)
	setString(&d.Order, OrderNone)
	if d.MaxBody == 0 {
		d.MaxBody = DefaultMaxBody
	}
	retryDefaults(&d.Retry)
	if !d.Breaker.Off {
		setInt(&d.Breaker.Failures, 20)
		setDuration(&d.Breaker.Window, 5*time.Minute)
		setDuration(&d.Breaker.ProbeEvery, 30*time.Second)
	}
	if d.Type == "salesforce" {
		salesforceDefaults(d)
	}
}

// retryDefaults fills a retry: the default schedule, and a max_age of 72h.
func retryDefaults(r *Retry) {
	if r.Schedule == nil {
		r.Schedule = append([]Duration(nil), DefaultSchedule...)
	}
	setDuration(&r.MaxAge, 72*time.Hour)
}

// salesforceDefaults fills the keys only a Salesforce destination has.
func salesforceDefaults(d *Destination) {
	setString(&d.APIVersion, "v61.0")
	setInt(&d.BatchSize, 200)
	setDuration(&d.BatchWait, time.Second)
	setString(&d.Auth.Audience, "https://login.salesforce.com")
	if d.APIBudget.MaxShare == 0 {
		d.APIBudget.MaxShare = 0.25
	}
	if _, ok := d.Pos["api_budget.reserve"]; !ok {
		d.APIBudget.Reserve = 5000
	}
	setInt(&d.MaxConcurrentCalls, 4)
	setInt(&d.BulkThreshold, 2000)
	setString(&d.DuplicateRules, DuplicateBlock)
	relateDefaults(d)
}

func setString(s *string, v string) {
	if *s == "" {
		*s = v
	}
}

func setInt(i *int, v int) {
	if *i == 0 {
		*i = v
	}
}

func setDuration(d *Duration, v time.Duration) {
	if *d == 0 {
		*d = Duration(v)
	}
}

func relateDefaults(d *Destination) {
	if !d.HasRelate() {
		return
	}
	r := &d.Relate
	setString(&r.Match, "Email")
	setString(&r.Value, "contact.email")
	setString(&r.OnMissing, "leave_unset")
	if r.Objects == nil {
		r.Objects = []string{"Contact", "Lead"}
	}
	if _, ok := d.Pos["relate.cache_ttl"]; !ok {
		r.CacheTTL = Duration(10 * time.Minute)
	}
}
