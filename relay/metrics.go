package relay

import (
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Metrics are the Prometheus series Relay exports, on a registry of its own.
type Metrics struct {
	Registry     *prometheus.Registry
	Ingested     prometheus.Counter
	Delivered    *prometheus.CounterVec
	Failed       *prometheus.CounterVec
	DeadLettered *prometheus.CounterVec
	Latency      *prometheus.HistogramVec
}

// NewMetrics registers Relay's series.
func NewMetrics() *Metrics {
	m := &Metrics{
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
	m.Registry.MustRegister(m.Ingested, m.Delivered, m.Failed, m.DeadLettered, m.Latency,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}

func counterValue(v *prometheus.CounterVec, label string) uint64 {
	var m dto.Metric
	if err := v.WithLabelValues(label).Write(&m); err != nil {
		return 0
	}
	return uint64(m.GetCounter().GetValue())
}
