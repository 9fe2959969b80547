package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/relaydev/relay/relay/api"
	"github.com/relaydev/relay/relay/deliver"
	"github.com/relaydev/relay/relay/metrics"
	"github.com/relaydev/relay/relay/store"
)

// backlog is what a destination's durable consumer holds: the same for
// every process.
type backlog struct {
	pending uint64
	oldest  time.Duration
}

// consumers is what status reads of the consumers, once for all
// destinations: the fan-out's, and every consumer of both streams by name
// (one listing each, not a request per destination).
type consumers struct {
	fan                *jetstream.ConsumerInfo // nil when it cannot be read
	queues, activities map[string]*jetstream.ConsumerInfo
}

// readConsumers lists the consumers. The fan-out's is read first: an
// activity handed over in between is then counted twice for a moment,
// never missed.
func (e *Engine) readConsumers(ctx context.Context) (*consumers, error) {
	c := &consumers{}
	c.fan, _ = e.fanoutInfo(ctx)
	var err error
	if c.activities, err = listConsumers(ctx, e.bus.Activities); err != nil {
		return nil, err
	}
	if c.queues, err = listConsumers(ctx, e.bus.Queues); err != nil {
		return nil, err
	}
	return c, nil
}

// consumerInfo reads one consumer's info now; nil when it cannot.
func consumerInfo(ctx context.Context, js jetstream.JetStream, stream, name string) *jetstream.ConsumerInfo {
	cons, err := js.Consumer(ctx, stream, name)
	if err != nil {
		return nil
	}
	return cons.CachedInfo()
}

// listConsumers is every consumer of a stream by name.
func listConsumers(ctx context.Context, st jetstream.Stream) (map[string]*jetstream.ConsumerInfo, error) {
	out := map[string]*jetstream.ConsumerInfo{}
	l := st.ListConsumers(ctx)
	for ci := range l.Info() {
		out[ci.Name] = ci
	}
	if err := l.Err(); err != nil {
		return nil, fmt.Errorf("list consumers: %w", err)
	}
	return out, nil
}

// backlogOf reads the consumers: how many activities wait or are being
// retried, and how long the oldest has waited (the first message after
// the ack floor that the consumer's filters select). A fanned
// destination's own consumer holds its retries and hand-overs; the
// activities the fan-out has not settled yet count too when one of them
// is of a name the destination takes.
//
// While the worker moves what the destination held as another kind
// (kindchange), that consumer counts too, read first and then its own
// again: a message moved in between is counted twice for a moment, never
// missed.
func (e *Engine) backlogOf(ctx context.Context, w *deliver.Worker, c *consumers) (backlog, error) {
	var b backlog
	var oldest time.Time
	name := store.ConsumerName(w.Name)
	ci := c.activities[name]
	if w.Stream() == store.StreamQueues {
		ci = c.queues[name]
	}
	if w.Moving() {
		// Both read now, the former first (the listings read the streams
		// one after the other, in one order for every destination).
		st, formerStream, ownStream := e.bus.Activities, store.StreamActivities, store.StreamQueues
		if !w.Fanned() {
			st, formerStream, ownStream = e.bus.Queues, store.StreamQueues, store.StreamActivities
		}
		former := consumerInfo(ctx, e.bus.JS, formerStream, name)
		ci = consumerInfo(ctx, e.bus.JS, ownStream, name)
		if former != nil {
			if n := former.NumPending + uint64(former.NumAckPending); n > 0 {
				b.pending += n
				filters := former.Config.FilterSubjects
				if former.Config.FilterSubject != "" {
					filters = append(filters, former.Config.FilterSubject)
				}
				oldest = e.firstAfter(ctx, st, former.AckFloor.Stream+1, filters)
			}
		}
	}
	switch {
	case ci == nil && !w.Fanned():
		return backlog{}, fmt.Errorf("consumer of %s: %w", w.Name, jetstream.ErrConsumerNotFound)
	case ci == nil:
		ci = &jetstream.ConsumerInfo{} // a fanned destination's, not made yet: nothing of its own
	}
	if n := ci.NumPending + uint64(ci.NumAckPending); n > 0 {
		b.pending += n
		if t := e.firstAfter(ctx, e.streamOf(w), ci.AckFloor.Stream+1, ci.Config.FilterSubjects); !t.IsZero() && (oldest.IsZero() || t.Before(oldest)) {
			oldest = t
		}
	}
	if w.Fanned() && c.fan != nil {
		// Looked up whatever the counts say: an activity stored a moment
		// ago may not be counted by the consumer yet, but is in the stream.
		if t := e.firstAfter(ctx, e.bus.Activities, c.fan.AckFloor.Stream+1, w.Rules.FilterSubjects()); !t.IsZero() {
			b.pending += max(1, c.fan.NumPending+uint64(c.fan.NumAckPending))
			if oldest.IsZero() || t.Before(oldest) {
				oldest = t
			}
		}
	}
	if !oldest.IsZero() {
		b.oldest = max(0, time.Since(oldest))
	}
	return b, nil
}

// firstAfter is the time of the first stored message from seq on whose
// subject one of filters selects; zero when there is none. Answers are
// kept for firstTTL: destinations share filters, and a retry waiting does
// not move its consumer's ack floor.
func (e *Engine) firstAfter(ctx context.Context, st jetstream.Stream, seq uint64, filters []string) time.Time {
	var oldest time.Time
	for _, f := range filters {
		t, ok := e.first.get(st, seq, f)
		if !ok {
			msg, err := st.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(f))
			if err == nil {
				t = msg.Time
			} else if !errors.Is(err, jetstream.ErrMsgNotFound) {
				continue // not known: not kept
			}
			e.first.put(st, seq, f, t)
		}
		if !t.IsZero() && (oldest.IsZero() || t.Before(oldest)) {
			oldest = t
		}
	}
	return oldest
}

// firstTTL is how long a firstAfter answer is kept, and maxFirst how many
// are kept at most.
const (
	firstTTL = 2 * time.Second
	maxFirst = 100000
)

// firstCache holds firstAfter's answers by stream, sequence and filter.
type firstCache struct {
	mu sync.Mutex
	m  map[firstKey]firstAnswer
}

type firstKey struct {
	stream jetstream.Stream
	seq    uint64
	filter string
}

type firstAnswer struct {
	t, at time.Time
}

func (c *firstCache) get(st jetstream.Stream, seq uint64, filter string) (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	a, ok := c.m[firstKey{st, seq, filter}]
	if !ok || time.Since(a.at) > firstTTL {
		return time.Time{}, false
	}
	return a.t, true
}

func (c *firstCache) put(st jetstream.Stream, seq uint64, filter string, t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxFirst { // answers expire in seconds: start afresh
		c.m = map[firstKey]firstAnswer{}
	}
	c.m[firstKey{st, seq, filter}] = firstAnswer{t: t, at: time.Now()}
}

// streamOf is the stream of a destination's own consumer.
func (e *Engine) streamOf(w *deliver.Worker) jetstream.Stream {
	if w.Stream() == store.StreamQueues {
		return e.bus.Queues
	}
	return e.bus.Activities
}

// fanoutInfo reads the fan-out consumer's info.
func (e *Engine) fanoutInfo(ctx context.Context) (*jetstream.ConsumerInfo, error) {
	cons, err := e.bus.JS.Consumer(ctx, store.StreamActivities, store.FanoutConsumer)
	if err != nil {
		return nil, fmt.Errorf("consumer %s: %w", store.FanoutConsumer, err)
	}
	return cons.CachedInfo(), nil
}

// statusParallel is how many destinations' consumers Statuses reads at
// once: each is a few round trips to the server.
const statusParallel = 32

// Statuses reports every destination's status. What all share is read
// once (the fan-out's consumer, the dead letters' counts); each
// destination's own consumer and log are read statusParallel at a time.
func (e *Engine) Statuses(ctx context.Context) ([]api.DestinationStatus, error) {
	workers := e.Workers()
	c, err := e.readConsumers(ctx)
	if err != nil {
		return nil, err
	}
	dead, err := e.dls.Counts(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]api.DestinationStatus, len(workers))
	errs := make([]error, len(workers))
	sem := make(chan struct{}, statusParallel)
	var wg sync.WaitGroup
	for i, w := range workers {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			out[i], errs[i] = e.status(ctx, w, c, dead[w.Name])
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// status reports a destination's state, backlog and recent figures; c is
// what was read of the consumers and dead the destination's dead letters.
func (e *Engine) status(ctx context.Context, w *deliver.Worker, c *consumers, dead int) (api.DestinationStatus, error) {
	st := api.DestinationStatus{Name: w.Name, Type: w.Cfg.Type, Breaker: w.BreakerState(), DeadLettered: dead}
	state, err := e.states.Current(ctx, w.Name)
	if err != nil {
		return st, err
	}
	st.State = shownState(w, state)
	b, err := e.backlogOf(ctx, w, c)
	if err != nil {
		return st, err
	}
	st.Pending, st.OldestPendingSeconds = b.pending, b.oldest.Seconds()
	st.Order = w.Order()
	st.Delivered = metrics.CounterValue(e.metrics.Delivered, w.Name)
	st.FailedAttempts = metrics.CounterValue(e.metrics.Failed, w.Name)
	delivered, failed, p99 := w.Recent(time.Now())
	st.DeliveredLastMinute, st.FailedLastMinute = delivered, failed
	if p99 >= 0 {
		st.P99LatencyMS = &p99
	}
	success, failure := e.lastOutcomes(ctx, w)
	if !success.IsZero() {
		st.LastSuccessAt = &success
	}
	if !failure.IsZero() {
		st.LastFailureAt = &failure
	}
	return st, nil
}

// lastOutcomes is when the destination last had an attempt delivered and
// one fail: this process's figures, or the delivery log's (shared by every
// process) when later. The log's are kept for lastTTL and then read again
// in the background, the kept ones answering meanwhile: a status of a
// thousand destinations does not wait for three thousand reads.
func (e *Engine) lastOutcomes(ctx context.Context, w *deliver.Worker) (success, failure time.Time) {
	success, failure = w.LastOutcomes()
	if e.dlog == nil {
		return success, failure
	}
	logged, fresh, ok := e.last.get(w.Name)
	switch {
	case !ok:
		logged = e.readLast(ctx, w.Name)
	case !fresh && e.last.refreshing(w.Name):
		go func() {
			e.last.sem <- struct{}{}
			defer func() { <-e.last.sem }()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			e.readLast(ctx, w.Name)
		}()
	}
	if logged.success.After(success) {
		success = logged.success
	}
	if logged.failure.After(failure) {
		failure = logged.failure
	}
	return success, failure
}

// readLast reads the delivery log's last outcomes of dest and keeps them.
func (e *Engine) readLast(ctx context.Context, dest string) lastOutcome {
	var l lastOutcome
	if entry, err := e.dlog.Last(ctx, dest, store.OutcomeDelivered); err == nil && entry != nil {
		l.success = entry.At
	}
	for _, o := range []string{store.OutcomeFailed, store.OutcomeDeadLetter} {
		if entry, err := e.dlog.Last(ctx, dest, o); err == nil && entry != nil && entry.At.After(l.failure) {
			l.failure = entry.At
		}
	}
	e.last.put(dest, l)
	return l
}

// lastTTL is how long the delivery log's last outcomes of a destination
// are taken as they were read.
const lastTTL = 5 * time.Second

// lastOutcome is the delivery log's last success and failure of a
// destination.
type lastOutcome struct {
	success, failure time.Time
}

// lastCache keeps each destination's lastOutcome, when it was read, and
// whether it is being read again.
type lastCache struct {
	mu      sync.Mutex
	m       map[string]lastEntry
	reading map[string]bool
	sem     chan struct{} // bounds the reads in the background
}

type lastEntry struct {
	l  lastOutcome
	at time.Time
}

func (c *lastCache) get(dest string) (l lastOutcome, fresh, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[dest]
	return e.l, ok && time.Since(e.at) <= lastTTL, ok
}

// refreshing claims dest's read: false when one is under way.
func (c *lastCache) refreshing(dest string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.reading[dest] {
		return false
	}
	if c.reading == nil {
		c.reading = map[string]bool{}
	}
	c.reading[dest] = true
	return true
}

func (c *lastCache) put(dest string, l lastOutcome) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]lastEntry{}
	}
	c.m[dest] = lastEntry{l: l, at: time.Now()}
	delete(c.reading, dest)
}

// gauges exports what the consumers hold, read at each scrape, so every
// process reports the same: relay_pending, relay_oldest_pending_seconds,
// relay_destination_state.
type gauges struct {
	e                      *Engine
	pending, oldest, state *prometheus.Desc
}

func newGauges(e *Engine) *gauges {
	return &gauges{e: e,
		pending: prometheus.NewDesc("relay_pending", "Activities waiting or being retried for a destination (from its durable consumer, shared by every process).", []string{"destination"}, nil),
		oldest:  prometheus.NewDesc("relay_oldest_pending_seconds", "Age of the oldest activity waiting or being retried for a destination.", []string{"destination"}, nil),
		state:   prometheus.NewDesc("relay_destination_state", "1 for a destination's current state (active, paused; budget for a Salesforce destination held at its API budget), 0 for the others.", []string{"destination", "state"}, nil),
	}
}

func (g *gauges) Describe(ch chan<- *prometheus.Desc) {
	ch <- g.pending
	ch <- g.oldest
	ch <- g.state
}

func (g *gauges) Collect(ch chan<- prometheus.Metric) {
	e := g.e
	select {
	case <-e.started:
	default:
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := e.readConsumers(ctx)
	if err != nil {
		return
	}
	for _, w := range e.Workers() {
		if b, err := e.backlogOf(ctx, w, c); err == nil {
			ch <- prometheus.MustNewConstMetric(g.pending, prometheus.GaugeValue, float64(b.pending), w.Name)
			ch <- prometheus.MustNewConstMetric(g.oldest, prometheus.GaugeValue, b.oldest.Seconds(), w.Name)
		}
		if state, err := e.states.Current(ctx, w.Name); err == nil {
			states := gaugeStates
			if w.Cfg.Type == "salesforce" { // held at its API budget
				states = heldGaugeStates
			}
			state = shownState(w, state)
			for _, s := range states {
				v := 0.0
				if s == state {
					v = 1
				}
				ch <- prometheus.MustNewConstMetric(g.state, prometheus.GaugeValue, v, w.Name, s)
			}
		}
	}
}

// The states relay_destination_state has a series for: a Salesforce
// destination can also be held at its API budget.
var (
	gaugeStates     = []string{store.StateActive, store.StatePaused}
	heldGaugeStates = []string{store.StateActive, store.StatePaused, "budget"}
)

// shownState is the state status and the metrics show: an active
// destination its connector holds shows why ("budget"), as it resumes by
// itself.
func shownState(w *deliver.Worker, state string) string {
	if reason := w.HeldBy(); reason != "" && state == store.StateActive {
		return reason
	}
	return state
}
