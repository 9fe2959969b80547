// Package metrics holds the Prometheus series Relay exports.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Set is the Prometheus series series Relay exports, on a registry of its own.
type Set struct {
	Registry     *prometheus.Registry
	Ingested     prometheus.Counter
	Delivered    *prometheus.CounterVec
	Failed       *prometheus.CounterVec
	DeadLettered *prometheus.CounterVec
	Latency      *prometheus.HistogramVec

	IngestRejected *prometheus.CounterVec // by reason
	Attempts       *prometheus.CounterVec // by destination, outcome, code
	RuleErrors     *prometheus.CounterVec // by destination and reason
	Replayed       *prometheus.CounterVec // by destination
	LogDropped     prometheus.Counter
	// DeadLettersDropped counts dead letters dropped by deadletters:
	// max_age or max_bytes, by reason.
	DeadLettersDropped *prometheus.CounterVec
	// Suppressed counts activities not delivered for a person's consent
	// state, by destination and channel.
	Suppressed *prometheus.CounterVec
}

// New registers Relay's series.
func New() *Set {
	m := &Set{
		Registry: prometheus.NewRegistry(),
		Ingested: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "relay_ingested_total", Help: "Activities accepted by ingest and persisted in JetStream.",
		}),
		Delivered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relay_delivered_total", Help: "Activities delivered, by destination.",
		}, []string{"destination"}),
		Failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relay_failed_attempts_total", Help: "Failed delivery attempts, by destination.",
		}, []string{"destination"}),
		DeadLettered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relay_dead_lettered_total", Help: "Activities that became dead letters, by destination.",
		}, []string{"destination"}),
		Latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "relay_attempt_duration_seconds",
			Help:    "Duration of delivery attempts, by destination.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
		}, []string{"destination"}),
	}
	m.IngestRejected = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "relay_ingest_rejected_total", Help: "Ingest requests refused, by reason: malformed, invalid, unknown_activity, too_large, busy, read, bus, media_type.",
	}, []string{"reason"})
	m.Attempts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "relay_attempts_total", Help: "Delivery attempts, by destination, outcome (delivered, failed, dead_letter) and HTTP status class (2xx, 3xx, 4xx, 5xx, none).",
	}, []string{"destination", "outcome", "code"})
	m.RuleErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "relay_rule_errors_total", Help: "Expressions that failed to evaluate, by destination and reason: error (a when rule counted as false), budget (a when, body or field expression stopped at its budget: the activity is a dead letter).",
	}, []string{"destination", "reason"})
	m.Replayed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "relay_replayed_total", Help: "Activities re-queued by replay, by destination.",
	}, []string{"destination"})
	m.LogDropped = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "relay_delivery_log_dropped_total", Help: "Delivery log entries dropped because the log's writer was behind (deliveries never wait for it).",
	})
	m.DeadLettersDropped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "relay_deadletters_dropped_total", Help: "Dead letters dropped for being older than deadletters.max_age (reason max_age) or the oldest past deadletters.max_bytes (reason max_bytes).",
	}, []string{"reason"})
	m.Suppressed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "relay_suppressed_total", Help: "Activities not delivered because the person opted out, unsubscribed, is unreachable, hard-bounced or reported abuse on the destination's consent channel, by destination and channel.",
	}, []string{"destination", "channel"})
	m.Registry.MustRegister(m.Suppressed, m.Ingested, m.Delivered, m.Failed, m.DeadLettered, m.Latency,
		m.IngestRejected, m.Attempts, m.RuleErrors, m.Replayed, m.LogDropped, m.DeadLettersDropped,
		SalesforceAPIRemaining, SalesforceAPIUsed,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}

// The Salesforce connector's series, kept by the connector (which has no
// Set of its own) and exported by every Set.
var (
	SalesforceAPIRemaining = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "relay_salesforce_api_remaining", Help: "Calls left in the Salesforce org's rolling 24 h API allowance, as the org last said, by destination.",
	}, []string{"destination"})
	SalesforceAPIUsed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "relay_salesforce_api_used_total", Help: "Calls Relay made to the Salesforce org's API, by destination.",
	}, []string{"destination"})
)

// CounterValue is v's count for one label.
func CounterValue(v *prometheus.CounterVec, label string) uint64 {
	var m dto.Metric
	if err := v.WithLabelValues(label).Write(&m); err != nil {
		return 0
	}
	return uint64(m.GetCounter().GetValue())
}
