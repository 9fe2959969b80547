package deliver

import (
	"time"

	"github.com/relaydev/relay/relay/api"
	"github.com/relaydev/relay/relay/sink"
	"github.com/relaydev/relay/relay/store"
)

// logAttempt records an attempt's outcome: the delivery log, the metrics
// and this process's figures for the destination.
func (w *Worker) logAttempt(d *delivery, at sink.Attempt, outcome string) {
	latency := at.LatencyMS
	if latency == 0 && at.Latency > 0 {
		latency = float64(at.Latency.Microseconds()) / 1000
	}
	when := at.At
	if when.IsZero() {
		when = time.Now().UTC()
	}
	w.metrics.Attempts.WithLabelValues(w.Name, outcome, codeClass(at.Status)).Inc()
	w.stats.Add(when, outcome == store.OutcomeDelivered, latency)
	w.st.Log.Attempt(store.LogEntry{LogEntry: api.LogEntry{
		ID: d.Activity.ID, Name: d.Activity.Name, Destination: w.Name, Attempt: d.Attempt,
		At: when, Outcome: outcome, Status: at.Status, Error: at.Error, LatencyMS: latency, Probe: at.Probe,
	}})
}

// codeClass is an HTTP status as relay_attempts_total's code label.
func codeClass(status int) string {
	switch {
	case status >= 200 && status < 300:
		return "2xx"
	case status >= 300 && status < 400:
		return "3xx"
	case status >= 400 && status < 500:
		return "4xx"
	case status >= 500 && status < 600:
		return "5xx"
	}
	return "none"
}
