package salesforce

import (
	"context"
	"net/http"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/relaydev/relay/relay/metrics"
)

// budget keeps Relay's calls within api_budget: its own calls in the
// org's rolling window at most max_share of the org's allowance, and the
// org's remaining calls never brought under the reserve. It learns the
// allowance and the org's use from the Sforce-Limit-Info header of every
// answer and from the limits resource, read at start and every
// limitsEvery.
type budget struct {
	dest    string
	share   float64
	reserve int
	window  time.Duration

	mu       sync.Mutex
	max      int         // the org's allowance; 0 until known
	used     int         // the org's calls in the window, as last told, plus Relay's since
	own      []time.Time // Relay's calls in the window, oldest first
	limitsAt time.Time   // when the limits resource was last read
}

func newBudget(dest string, share float64, reserve int, window time.Duration) *budget {
	return &budget{dest: dest, share: share, reserve: reserve, window: window}
}

// limitsEvery is how often the limits resource is read: every five minutes
// of a 24 h window, proportionally less for a shorter one.
func (b *budget) limitsEvery() time.Duration {
	return min(max(b.window/288, 50*time.Millisecond), 5*time.Minute)
}

var limitInfoRE = regexp.MustCompile(`api-usage=(\d+)/(\d+)`)

// observe reads an answer's Sforce-Limit-Info: api-usage=N/M.
func (b *budget) observe(h http.Header) {
	m := limitInfoRE.FindStringSubmatch(h.Get("Sforce-Limit-Info"))
	if m == nil {
		return
	}
	used, err1 := strconv.Atoi(m[1])
	limit, err2 := strconv.Atoi(m[2])
	if err1 != nil || err2 != nil || limit <= 0 {
		return
	}
	b.set(used, limit)
}

// set records the org's use and allowance.
func (b *budget) set(used, limit int) {
	b.mu.Lock()
	b.used, b.max = used, limit
	b.mu.Unlock()
	metrics.SalesforceAPIRemaining.WithLabelValues(b.dest).Set(float64(limit - used))
}

// spend counts one call Relay makes.
func (b *budget) spend(now time.Time) {
	b.mu.Lock()
	b.own = append(b.own, now)
	b.used++
	b.mu.Unlock()
	metrics.SalesforceAPIUsed.WithLabelValues(b.dest).Inc()
}

// prune drops Relay's calls that left the window.
func (b *budget) prune(now time.Time) {
	cut := 0
	for cut < len(b.own) && now.Sub(b.own[cut]) >= b.window {
		cut++
	}
	b.own = b.own[cut:]
}

// until is when cost more calls fit the budget: zero when they fit now (or
// the allowance is not known yet). Past the share, that is when enough of
// Relay's own calls leave the window; under the reserve (the org's other
// use, which Relay cannot see leave), when the limits resource is next
// read.
func (b *budget) until(cost int, now time.Time) time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.prune(now)
	if b.max == 0 {
		return time.Time{}
	}
	var t time.Time
	share := int(b.share * float64(b.max))
	if over := len(b.own) + cost - share; over > 0 {
		t = now.Add(b.window) // more than the share holds at all: the whole window
		if over <= len(b.own) {
			t = b.own[over-1].Add(b.window)
		}
	}
	if b.max-b.used-cost < b.reserve {
		r := b.limitsAt.Add(b.limitsEvery())
		if soon := now.Add(time.Millisecond); r.Before(soon) {
			r = soon
		}
		if r.After(t) {
			t = r
		}
	}
	return t
}

// limitsDue reports whether the limits resource should be read now.
func (b *budget) limitsDue(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return now.Sub(b.limitsAt) >= b.limitsEvery()
}

func (b *budget) limitsRead(now time.Time) {
	b.mu.Lock()
	b.limitsAt = now
	b.mu.Unlock()
}

// usage is Relay's own calls in the window now and its share of them.
func (b *budget) usage(now time.Time) (own, share int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.prune(now)
	return len(b.own), int(b.share * float64(b.max))
}

// limits is the part of the limits resource Relay reads.
type limits struct {
	DailyAPIRequests struct {
		Max       int `json:"Max"`
		Remaining int `json:"Remaining"`
	} `json:"DailyApiRequests"`
}

// refreshLimits reads the limits resource when it is due; a failure is
// logged and tried again when next due.
func (s *Sink) refreshLimits(ctx context.Context) {
	now := time.Now()
	if own, share := s.budget.usage(now); !s.budget.limitsDue(now) || (share > 0 && own >= share) {
		return // not due, or Relay's share is spent: the read would pass it
	}
	s.budget.limitsRead(now)
	var l limits
	if err := s.getJSON(ctx, "/services/data/"+s.version+"/limits", &l); err != nil {
		s.log.Warn("reading the org's API limits", "error", err)
		return
	}
	if d := l.DailyAPIRequests; d.Max > 0 {
		s.budget.set(d.Max-d.Remaining, d.Max)
	}
}

// checkAtStart checks the mapping against the org's description of the
// object once, when the destination starts, logging each problem (relay
// validate --remote reports them before a deploy).
func (s *Sink) checkAtStart(ctx context.Context) {
	problems, err := s.Check(ctx)
	if err != nil {
		s.log.Warn("could not check the fields against the org", "error", err)
		return
	}
	for _, p := range problems {
		s.log.Warn("the org refuses this mapping: activities will be dead letters", "path", p.Path, "problem", p.Message)
	}
}

// jobCalls is what a Bulk job costs at the least: create, upload, close,
// a poll or two, and its three results.
const jobCalls = 8

// Hold holds the destination while its next batch would not fit the API
// budget: the worker asks before each batch, and takes nothing while the
// time returned is ahead (state budget).
func (s *Sink) Hold(ctx context.Context) (time.Time, string) {
	s.checked.Do(func() { s.checkAtStart(ctx) })
	s.refreshLimits(ctx)
	if t := s.budget.until(jobCalls, time.Now()); !t.IsZero() {
		return t, "budget"
	}
	return time.Time{}, ""
}
