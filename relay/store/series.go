package store

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/relaydev/relay/relay/api"
)

// Roll-ups of the delivery log: stream SERIES keeps, per minute and
// destination, how many of the attempts begun in it ended delivered,
// failed or as a dead letter, a histogram of their latency, the backlog sampled in the minute
// and when the breaker was open. Each process adds up the attempts it logs
// and publishes its share once the minute is over; a reader adds up the
// shares. A chart of a day reads at most 1,440 small messages per process
// for one destination, and the chart of every destination's hour 60 per
// process, never the log itself.
//
// On relay.series.dest.<destination> a message is one destination's
// minute; on relay.series.all one process's minute of every destination
// (in chunks of seriesChunk destinations), for the destinations page.
const (
	StreamSeries      = "SERIES"
	subjectSeriesDest = "relay.series.dest."
	subjectSeriesAll  = "relay.series.all"
	// seriesRetention keeps a day and the step in progress.
	seriesRetention = 25 * time.Hour
	seriesMaxBytes  = 512 << 20
	seriesChunk     = 500
	// SeriesSample is how often the backlog and the breaker are sampled.
	SeriesSample = 10 * time.Second
)

// Windows a series is read over: one step's length each.
var seriesSteps = map[string]time.Duration{"1h": time.Minute, "24h": 10 * time.Minute}

// SeriesWindow returns a window's step, or false for a window not served.
func SeriesWindow(w string) (step time.Duration, ok bool) {
	step, ok = seriesSteps[w]
	return step, ok
}

// Latency buckets: eight per doubling from latencyBase ms, so a
// percentile read from the histogram is within 9% of the attempts'.
const (
	latencyBase    = 0.05
	latencyPerStep = 8
	latencyMax     = 200 // about 21 minutes
)

func latencyBucket(ms float64) int {
	if ms <= latencyBase {
		return 0
	}
	return min(int(math.Ceil(latencyPerStep*math.Log2(ms/latencyBase))), latencyMax)
}

// latencyUpper is a bucket's upper bound in ms, to three significant
// digits.
func latencyUpper(b int) float64 {
	v := latencyBase * math.Exp2(float64(b)/latencyPerStep)
	p := math.Pow(10, 2-math.Floor(math.Log10(v)))
	return math.Round(v*p) / p
}

// seriesRecord is one process's roll-up of one destination's minute.
type seriesRecord struct {
	Destination string      `json:"d,omitempty"`
	Minute      int64       `json:"m"` // Unix seconds of the minute's start
	Delivered   int         `json:"ok,omitempty"`
	Failed      int         `json:"f,omitempty"`
	DeadLetter  int         `json:"dl,omitempty"`
	Suppressed  int         `json:"s,omitempty"`
	Latency     map[int]int `json:"l,omitempty"` // bucket → attempts
	Pending     uint64      `json:"p,omitempty"`
	// Open lists spans, Unix seconds, when the breaker was sampled open
	// or half-open; the last may go on in a later minute.
	Open [][2]int64 `json:"o,omitempty"`
}

func (r *seriesRecord) empty() bool {
	return r.Delivered == 0 && r.Failed == 0 && r.DeadLetter == 0 && r.Suppressed == 0 && r.Pending == 0 && len(r.Open) == 0
}

type seriesKey struct {
	dest   string
	minute int64
}

// Gauge is what a sample reads of one destination: its backlog, and
// whether its breaker is not closed.
type Gauge struct {
	Pending     uint64
	BreakerOpen bool
}

// Series rolls up what the delivery log records and reads the roll-ups.
type Series struct {
	js     jetstream.JetStream
	log    *slog.Logger
	now    func() time.Time
	flushM sync.RWMutex // a flush waits for the reads under way

	// shards hold the minutes not yet published, by destination: an
	// attempt locks only its destination's shard.
	shards [seriesShards]seriesShard

	mu        sync.Mutex           // guards openSince and lastFlush
	openSince map[string]time.Time // destinations whose breaker is open
	lastFlush time.Time

	// all is the last answer of ReadAll, kept allFor: every dashboard
	// open on the destinations page asks it every few seconds.
	allMu sync.Mutex
	all   struct {
		at   time.Time
		key  string
		list []api.Series
	}
}

// allFor is how long an answer of ReadAll is reused.
const allFor = 5 * time.Second

const seriesShards = 32

type seriesShard struct {
	mu      sync.Mutex
	minutes map[seriesKey]*seriesRecord
}

// shard is a destination's shard (FNV-1a of its name).
func (s *Series) shard(dest string) *seriesShard {
	h := uint32(2166136261)
	for i := 0; i < len(dest); i++ {
		h ^= uint32(dest[i])
		h *= 16777619
	}
	return &s.shards[h%seriesShards]
}

// newSeries is a Series publishing with js.
func newSeries(js jetstream.JetStream, log *slog.Logger) *Series {
	s := &Series{js: js, log: log, now: time.Now, openSince: map[string]time.Time{}}
	for i := range s.shards {
		s.shards[i].minutes = map[seriesKey]*seriesRecord{}
	}
	return s
}

// OpenSeries creates or updates the SERIES stream.
func OpenSeries(ctx context.Context, js jetstream.JetStream, replicas int, log *slog.Logger) (*Series, error) {
	_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        StreamSeries,
		Description: "Relay: per-minute roll-ups of the delivery log, for charts",
		Subjects:    []string{subjectSeriesDest + "*", subjectSeriesAll},
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
		MaxAge:      seriesRetention,
		MaxBytes:    seriesMaxBytes,
		Discard:     jetstream.DiscardOld,
	})
	if err != nil {
		return nil, fmt.Errorf("create stream %s: %w", StreamSeries, err)
	}
	return newSeries(js, log), nil
}

// record returns the minute's record of a destination; sh.mu is held.
func (sh *seriesShard) record(dest string, at time.Time) *seriesRecord {
	k := seriesKey{dest, at.Truncate(time.Minute).Unix()}
	r := sh.minutes[k]
	if r == nil {
		r = &seriesRecord{Minute: k.minute}
		sh.minutes[k] = r
	}
	return r
}

// update runs fn on a destination's record of the minute at.
func (s *Series) update(dest string, at time.Time, fn func(*seriesRecord)) {
	sh := s.shard(dest)
	sh.mu.Lock()
	fn(sh.record(dest, at))
	sh.mu.Unlock()
}

// add counts one logged attempt in its minute.
func (s *Series) add(e *LogEntry) {
	if s == nil {
		return
	}
	at := e.At
	if at.IsZero() {
		at = s.now()
	}
	sh := s.shard(e.Destination)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	r := sh.record(e.Destination, at)
	switch e.Outcome {
	case OutcomeDelivered:
		r.Delivered++
	case OutcomeFailed:
		r.Failed++
	case OutcomeDeadLetter:
		r.DeadLetter++
	case OutcomeSuppressed: // not attempted: no latency
		r.Suppressed++
		return
	}
	if r.Latency == nil {
		r.Latency = map[int]int{}
	}
	r.Latency[latencyBucket(e.LatencyMS)]++
}

// Sample records each destination's backlog and breaker now.
func (s *Series) Sample(gauges map[string]Gauge) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for dest, g := range gauges {
		since, open := s.openSince[dest]
		switch {
		case g.BreakerOpen && !open:
			s.openSince[dest] = now
		case !g.BreakerOpen && open:
			s.update(dest, now, func(r *seriesRecord) { r.Open = append(r.Open, [2]int64{since.Unix(), now.Unix()}) })
			delete(s.openSince, dest)
		}
		sh := s.shard(dest)
		sh.mu.Lock()
		if g.Pending > 0 {
			sh.record(dest, now).Pending = g.Pending
		} else if r := sh.minutes[seriesKey{dest, now.Truncate(time.Minute).Unix()}]; r != nil {
			r.Pending = 0
		}
		sh.mu.Unlock()
	}
	for dest, since := range s.openSince {
		if _, ok := gauges[dest]; !ok { // removed: its open span ends
			s.update(dest, now, func(r *seriesRecord) { r.Open = append(r.Open, [2]int64{since.Unix(), now.Unix()}) })
			delete(s.openSince, dest)
		}
	}
}

// Run samples every SeriesSample and publishes each minute once it is
// over, until ctx is done (DeliveryLog.Close publishes the rest).
func (s *Series) Run(ctx context.Context, sample func(context.Context) (map[string]Gauge, error)) {
	tick := time.NewTicker(SeriesSample)
	defer tick.Stop()
	for {
		if g, err := sample(ctx); err == nil {
			s.Sample(g)
		} else if ctx.Err() == nil {
			s.log.Warn("series: sampling the destinations failed", "error", err)
		}
		s.Flush(ctx, false)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// Flush publishes the minutes that are over (all with everything): one
// message per destination and minute, and the minute of every destination
// in chunks. A breaker still open is published as open up to now in each
// minute it lasts. What fails to publish is logged and not kept.
func (s *Series) Flush(ctx context.Context, everything bool) {
	if s == nil {
		return
	}
	s.flushM.Lock()
	defer s.flushM.Unlock()
	now := s.now()
	current := now.Truncate(time.Minute).Unix()
	s.mu.Lock()
	if everything || s.lastFlush.Truncate(time.Minute).Unix() < current {
		at := now.Add(-time.Minute)
		if everything {
			at = now
		}
		for dest, since := range s.openSince {
			s.update(dest, at, func(r *seriesRecord) { r.Open = append(r.Open, [2]int64{since.Unix(), now.Unix()}) })
		}
	}
	s.lastFlush = now
	s.mu.Unlock()
	var out []*seriesRecord
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for k, r := range sh.minutes {
			if !everything && k.minute >= current {
				continue
			}
			delete(sh.minutes, k)
			if !r.empty() {
				r.Destination = k.dest
				out = append(out, r)
			}
		}
		sh.mu.Unlock()
	}
	if len(out) > 0 {
		s.publish(ctx, out)
	}
}

func (s *Series) publish(ctx context.Context, out []*seriesRecord) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	slices.SortFunc(out, func(a, b *seriesRecord) int { return int(a.Minute - b.Minute) })
	var futures []jetstream.PubAckFuture
	pub := func(subject string, v any) {
		data, err := json.Marshal(v)
		if err != nil {
			return
		}
		f, err := s.js.PublishMsgAsync(&nats.Msg{Subject: subject, Data: data})
		if err != nil {
			s.log.Warn("series: publish failed", "subject", subject, "error", err)
			return
		}
		futures = append(futures, f)
	}
	for _, r := range out {
		one := *r
		one.Destination = ""
		pub(subjectSeriesDest+r.Destination, &one)
	}
	for chunk := range slices.Chunk(out, seriesChunk) {
		pub(subjectSeriesAll, chunk)
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			s.log.Warn("series: publish failed", "error", err)
		case <-ctx.Done():
			s.log.Warn("series: publish not acknowledged", "error", ctx.Err())
			return
		}
	}
}
