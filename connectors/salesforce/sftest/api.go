package sftest

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"
)

// The org's API allowance: every call to /services/data/ counts in a
// rolling window (24 hours in Salesforce: 100,000 calls plus 1,000 per
// Enterprise licence), and every answer says how much of it is used in
// the header Sforce-Limit-Info: api-usage=N/M. Past the allowance a call
// is refused with 403 REQUEST_LIMIT_EXCEEDED and not counted. GET
// /services/data/vXX.X/limits answers {"DailyApiRequests": {"Max": M,
// "Remaining": M-N}, …}.

// WithAPILimit sets the org's allowance: max calls in a rolling window
// (default 100,000 in 24 h; tests shorten the window).
func WithAPILimit(max int, window time.Duration) Option {
	return func(o *options) { o.apiMax, o.apiWindow = max, window }
}

// WithFaults makes calls fail at random (seeded, so a run repeats): a
// share timeoutRate of them is applied by the org and then never answered
// (the caller's timeout ends them), a share unavailableRate is answered
// 503 SERVER_UNAVAILABLE without being applied.
func WithFaults(seed uint64, timeoutRate, unavailableRate float64) Option {
	return func(o *options) {
		o.faults = rand.New(rand.NewPCG(seed, seed^0x5f))
		o.timeoutRate, o.unavailableRate = timeoutRate, unavailableRate
	}
}

// WithLatency makes every data call take d before it is answered.
func WithLatency(d time.Duration) Option { return func(o *options) { o.latency = d } }

// MaxConcurrent is the most data calls the org had in flight at once.
func (s *Server) MaxConcurrent() int { s.mu.Lock(); defer s.mu.Unlock(); return s.maxInFlight }

// UseAPI counts n calls made now by the org's other integrations.
func (s *Server) UseAPI(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	for range n {
		s.usage = append(s.usage, now)
	}
}

// APIUsage is the org's calls in the window now and its allowance.
func (s *Server) APIUsage() (used, max int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.used(time.Now()), s.opts.apiMax
}

// APICalls is every call made to /services/data/ and answered, by
// anyone; Timeouts and Unavailable count the injected faults.
func (s *Server) APICalls() int    { s.mu.Lock(); defer s.mu.Unlock(); return s.apiCalls }
func (s *Server) Timeouts() int    { s.mu.Lock(); defer s.mu.Unlock(); return s.timeouts }
func (s *Server) Unavailable() int { s.mu.Lock(); defer s.mu.Unlock(); return s.unavailable }

// used drops the calls that left the window and counts the rest.
func (s *Server) used(now time.Time) int {
	cut := 0
	for cut < len(s.usage) && now.Sub(s.usage[cut]) >= s.opts.apiWindow {
		cut++
	}
	s.usage = s.usage[cut:]
	return len(s.usage)
}

// limitInfo is the Sforce-Limit-Info header's value.
func (s *Server) limitInfo(now time.Time) string {
	return fmt.Sprintf("api-usage=%d/%d", s.used(now), s.opts.apiMax)
}

type fate int

const (
	answered fate = iota
	unavailable
	timedOut
)

// api wraps a data resource: the session is checked, the call counted
// against the allowance (or refused past it), faults injected, and every
// answer carries Sforce-Limit-Info.
func (s *Server) api(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		now := time.Now()
		refused := func() {
			if strings.Contains(r.URL.Path, "/composite/sobjects/") {
				s.calls++ // Calls counts the upserts refused too
			}
		}
		if !s.authorized(w, r) {
			refused()
			s.mu.Unlock()
			return
		}
		if s.used(now) >= s.opts.apiMax {
			refused()
			w.Header().Set("Sforce-Limit-Info", s.limitInfo(now))
			writeJSON(w, http.StatusForbidden, []apiError{{Message: "TotalRequests Limit exceeded.", ErrorCode: "REQUEST_LIMIT_EXCEEDED"}})
			s.mu.Unlock()
			return
		}
		s.usage = append(s.usage, now)
		s.apiCalls++
		s.inFlight++
		s.maxInFlight = max(s.maxInFlight, s.inFlight)
		f := s.fate(r)
		info := s.limitInfo(now)
		latency := s.opts.latency
		s.mu.Unlock()
		defer func() { s.mu.Lock(); s.inFlight--; s.mu.Unlock() }()
		if latency > 0 {
			time.Sleep(latency) // the org's own time to answer
		}
		if f == unavailable {
			w.Header().Set("Sforce-Limit-Info", info)
			writeJSON(w, http.StatusServiceUnavailable, []apiError{{Message: "Server is temporarily unavailable", ErrorCode: "SERVER_UNAVAILABLE"}})
			return
		}
		rec := httptest.NewRecorder()
		h(rec, r)
		if f == timedOut {
			<-r.Context().Done() // applied; the answer never comes
			return
		}
		maps.Copy(w.Header(), rec.Header())
		w.Header().Set("Sforce-Limit-Info", info)
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	}
}

// fate draws a call's injected fault. /limits is never faulted: tests
// read the org through it.
func (s *Server) fate(r *http.Request) fate {
	if s.opts.faults == nil || strings.HasSuffix(r.URL.Path, "/limits") {
		return answered
	}
	x := s.opts.faults.Float64()
	switch {
	case x < s.opts.unavailableRate:
		s.unavailable++
		return unavailable
	case x < s.opts.unavailableRate+s.opts.timeoutRate:
		s.timeouts++
		return timedOut
	}
	return answered
}

// limits answers the limits resource.
func (s *Server) limits(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	used, max := s.used(time.Now()), s.opts.apiMax
	s.mu.Unlock()
	type limit struct {
		Max       int `json:"Max"`
		Remaining int `json:"Remaining"`
	}
	writeJSON(w, http.StatusOK, map[string]limit{
		"DailyApiRequests":                  {Max: max, Remaining: max - used},
		"DailyBulkApiBatches":               {Max: 15000, Remaining: 15000},
		"DailyBulkV2QueryJobs":              {Max: 10000, Remaining: 10000},
		"ConcurrentAsyncGetReportInstances": {Max: 200, Remaining: 200},
	})
}
