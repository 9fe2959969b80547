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

// MaxSchedule is the longest retry schedule: an activity's attempt
// history must fit in its dead-letter record.
const MaxSchedule = 40

// Defaults fills every key left unset.
func Defaults(c *Config) {
	setString(&c.NATS.URL, "embedded")
	setString(&c.NATS.DataDir, "./data")
	setInt(&c.NATS.Replicas, 1)
	setDuration(&c.NATS.Retention, 168*time.Hour)
	setDuration(&c.NATS.DuplicateWindow, 2*time.Minute)
	setString(&c.Ingest.Listen, "127.0.0.1:8080")
	setInt(&c.Ingest.MaxBatch, 1000)
	if c.Ingest.MaxBody == 0 {
		c.Ingest.MaxBody = 5 << 20
	}
	if c.Ingest.MaxActivity == 0 {
		c.Ingest.MaxActivity = DefaultMaxActivity
	}
	if c.Ingest.MaxInflightBytes == 0 {
		c.Ingest.MaxInflightBytes = 64 << 20
	}
	if c.Engine.MaxHeldBytes == 0 {
		c.Engine.MaxHeldBytes = DefaultMaxHeldBytes
	}
	setString(&c.Log.Level, "info")
	setString(&c.Log.Format, "text")
	setDuration(&c.Log.Retention, 72*time.Hour)
	if c.Log.MaxBytes == 0 {
		c.Log.MaxBytes = 1 << 30
	}
	setString(&c.Admin.Listen, "127.0.0.1:8081")
	setDuration(&c.Admin.SessionTTL, 12*time.Hour)
	if c.Alerts.Enabled() {
		setDuration(&c.Alerts.Timeout, 10*time.Second)
		if c.Alerts.Retry.Schedule == nil {
			c.Alerts.Retry.Schedule = append([]Duration(nil), DefaultSchedule...)
		}
		setDuration(&c.Alerts.Retry.MaxAge, 72*time.Hour)
		setDuration(&c.Alerts.DeadLetterEvery, time.Minute)
	}
	for i := range c.Destinations {
		d := &c.Destinations[i]
		setDuration(&d.Timeout, 10*time.Second)
		setInt(&d.MaxInFlight, 64)
		setString(&d.Order, OrderNone)
		if d.MaxBody == 0 {
			d.MaxBody = DefaultMaxBody
		}
		if d.Retry.Schedule == nil {
			d.Retry.Schedule = append([]Duration(nil), DefaultSchedule...)
		}
		setDuration(&d.Retry.MaxAge, 72*time.Hour)
		if !d.Breaker.Off {
			setInt(&d.Breaker.Failures, 20)
			setDuration(&d.Breaker.Window, 5*time.Minute)
			setDuration(&d.Breaker.ProbeEvery, 30*time.Second)
		}
		if d.Type == "salesforce" {
			setString(&d.APIVersion, "v61.0")
			setInt(&d.BatchSize, 200)
			setDuration(&d.BatchWait, time.Second)
			setString(&d.Auth.Audience, "https://login.salesforce.com")
			relateDefaults(d)
		}
	}
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
