package deliver

import (
	"slices"
	"sync"
	"time"

	"github.com/relaydev/relay/relay/sink"
	"github.com/relaydev/relay/relay/store"
)

// destStats is what this process saw of a destination's attempts in the
// last minute: counts per second, the latencies of the last 512 attempts
// (the p99 is of those among them made in the last minute, so under load
// it covers less than the minute), and the times of the last success and
// failure.
type destStats struct {
	mu          sync.Mutex
	sec         [60]int64 // unix second of each slot
	delivered   [60]int
	failed      [60]int
	lat         [512]float64 // latencies in ms, a ring
	latAt       [512]int64   // unix second of each
	latN        int
	lastSuccess time.Time
	lastFailure time.Time
}

func (s *destStats) add(at time.Time, ok bool, latencyMS float64) {
	now := at.Unix()
	i := int(now % 60)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sec[i] != now {
		s.sec[i], s.delivered[i], s.failed[i] = now, 0, 0
	}
	if ok {
		s.delivered[i]++
		s.lastSuccess = at
	} else {
		s.failed[i]++
		s.lastFailure = at
	}
	j := s.latN % len(s.lat)
	s.lat[j], s.latAt[j] = latencyMS, now
	s.latN++
}

// lastMinute returns delivered and failed attempts of the last 60 s and
// the p99 latency of the last 512 attempts that fall in that minute (-1
// when there were none).
func (s *destStats) lastMinute(now time.Time) (delivered, failed int, p99 float64) {
	from := now.Unix() - 59
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.sec {
		if s.sec[i] >= from {
			delivered += s.delivered[i]
			failed += s.failed[i]
		}
	}
	var lats []float64
	for i := 0; i < min(s.latN, len(s.lat)); i++ {
		if s.latAt[i] >= from {
			lats = append(lats, s.lat[i])
		}
	}
	if len(lats) == 0 {
		return delivered, failed, -1
	}
	slices.Sort(lats)
	return delivered, failed, lats[min(len(lats)-1, int(float64(len(lats))*0.99))]
}

func (s *destStats) last() (success, failure time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastSuccess, s.lastFailure
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
	w.stats.add(when, outcome == store.OutcomeDelivered, latency)
	w.dlog.Attempt(store.LogEntry{
		ID: d.Activity.ID, Name: d.Activity.Name, Destination: w.Name, Attempt: d.Attempt,
		At: when, Outcome: outcome, Status: at.Status, Error: at.Error, LatencyMS: latency, Probe: at.Probe,
	})
}
