// Package recent is what one process saw of a destination's attempts in
// the last minute, for status: counts, p99 latency, last success and failure.
package recent

import (
	"slices"
	"sync"
	"time"
)

// Stats is what this process saw of a destination's attempts in the
// last minute: counts per second, the latencies of the last 512 attempts
// (the p99 is of those among them made in the last minute, so under load
// it covers less than the minute), and the times of the last success and
// failure.
type Stats struct {
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

// Add counts one attempt made at at, delivered (ok) or failed, and its
// latency.
func (s *Stats) Add(at time.Time, ok bool, latencyMS float64) {
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

// LastMinute returns delivered and failed attempts of the last 60 s and
// the p99 latency of the last 512 attempts that fall in that minute (-1
// when there were none).
func (s *Stats) LastMinute(now time.Time) (delivered, failed int, p99 float64) {
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

// Last is when an attempt last succeeded and last failed (zero when never).
func (s *Stats) Last() (success, failure time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastSuccess, s.lastFailure
}
