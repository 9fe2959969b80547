package engine

import (
	"context"
	"errors"
	"fmt"
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

// backlogOf reads the consumers: how many activities wait or are being
// retried, and how long the oldest has waited (the first message after
// the ack floor that the consumer's filters select). A fanned
// destination's own consumer holds its retries and hand-overs; the
// activities the fan-out has not settled yet count too when one of them
// is of a name the destination takes (fan is the fan-out consumer's info,
// read once for all destinations before theirs; nil reads it).
//
// While the worker moves what the destination held as another kind
// (consumers.go: moveOver), that consumer counts too, read first: a
// message moved in between is counted twice for a moment, never missed.
func (e *Engine) backlogOf(ctx context.Context, w *deliver.Worker, fan *jetstream.ConsumerInfo) (backlog, error) {
	var b backlog
	var oldest time.Time
	if w.Moving() {
		stream, st := store.StreamActivities, e.bus.Activities
		if !w.Fanned() {
			stream, st = store.StreamQueues, e.bus.Queues
		}
		if cons, err := e.bus.JS.Consumer(ctx, stream, store.ConsumerName(w.Name)); err == nil {
			ci := cons.CachedInfo()
			if n := ci.NumPending + uint64(ci.NumAckPending); n > 0 {
				b.pending += n
				filters := ci.Config.FilterSubjects
				if ci.Config.FilterSubject != "" {
					filters = append(filters, ci.Config.FilterSubject)
				}
				oldest = firstAfter(ctx, st, ci.AckFloor.Stream+1, filters)
			}
		}
	}
	if w.Fanned() && fan == nil {
		// Read before the destination's own: an activity handed over in
		// between is then counted twice for a moment, never missed.
		fan, _ = e.fanoutInfo(ctx)
	}
	ci := &jetstream.ConsumerInfo{} // a fanned destination's, not made yet: nothing of its own
	cons, err := e.bus.JS.Consumer(ctx, w.Stream(), store.ConsumerName(w.Name))
	switch {
	case err == nil:
		ci = cons.CachedInfo()
	case !w.Fanned() || !errors.Is(err, jetstream.ErrConsumerNotFound):
		return backlog{}, fmt.Errorf("consumer of %s: %w", w.Name, err)
	}
	if n := ci.NumPending + uint64(ci.NumAckPending); n > 0 {
		b.pending += n
		if t := firstAfter(ctx, e.streamOf(w), ci.AckFloor.Stream+1, ci.Config.FilterSubjects); !t.IsZero() && (oldest.IsZero() || t.Before(oldest)) {
			oldest = t
		}
	}
	if w.Fanned() {
		// Looked up whatever the counts say: an activity stored a moment
		// ago may not be counted by the consumer yet, but is in the stream.
		if fan != nil {
			if t := firstAfter(ctx, e.bus.Activities, fan.AckFloor.Stream+1, w.Rules.FilterSubjects()); !t.IsZero() {
				b.pending += max(1, fan.NumPending+uint64(fan.NumAckPending))
				if oldest.IsZero() || t.Before(oldest) {
					oldest = t
				}
			}
		}
	}
	if !oldest.IsZero() {
		b.oldest = max(0, time.Since(oldest))
	}
	return b, nil
}

// firstAfter is the time of the first stored message from seq on whose
// subject one of filters selects; zero when there is none.
func firstAfter(ctx context.Context, st jetstream.Stream, seq uint64, filters []string) time.Time {
	var oldest time.Time
	for _, f := range filters {
		msg, err := st.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(f))
		if err != nil {
			continue // nothing on that filter
		}
		if oldest.IsZero() || msg.Time.Before(oldest) {
			oldest = msg.Time
		}
	}
	return oldest
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

// Status reports a destination's state, backlog and recent figures.
func (e *Engine) Status(ctx context.Context, w *deliver.Worker) (api.DestinationStatus, error) {
	st := api.DestinationStatus{Name: w.Name, Type: w.Cfg.Type, Breaker: w.BreakerState()}
	state, err := e.states.Get(ctx, w.Name)
	if err != nil {
		return st, err
	}
	st.State = state
	b, err := e.backlogOf(ctx, w, nil)
	if err != nil {
		return st, err
	}
	st.Pending, st.OldestPendingSeconds = b.pending, b.oldest.Seconds()
	st.Order = w.Order()
	st.Delivered = metrics.CounterValue(e.metrics.Delivered, w.Name)
	st.FailedAttempts = metrics.CounterValue(e.metrics.Failed, w.Name)
	if st.DeadLettered, err = e.dls.Count(ctx, w.Name); err != nil {
		return st, err
	}
	delivered, failed, p99 := w.Recent(time.Now())
	st.DeliveredLastMinute, st.FailedLastMinute = delivered, failed
	if p99 >= 0 {
		st.P99LatencyMS = &p99
	}
	success, failure := w.LastOutcomes()
	if e.dlog != nil { // the log is shared by every process
		if e, err := e.dlog.Last(ctx, w.Name, store.OutcomeDelivered); err == nil && e != nil && e.At.After(success) {
			success = e.At
		}
		for _, o := range []string{store.OutcomeFailed, store.OutcomeDeadLetter} {
			if e, err := e.dlog.Last(ctx, w.Name, o); err == nil && e != nil && e.At.After(failure) {
				failure = e.At
			}
		}
	}
	if !success.IsZero() {
		st.LastSuccessAt = &success
	}
	if !failure.IsZero() {
		st.LastFailureAt = &failure
	}
	return st, nil
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
		state:   prometheus.NewDesc("relay_destination_state", "1 for a destination's current state (active, paused), 0 for the others.", []string{"destination", "state"}, nil),
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
	fan, _ := e.fanoutInfo(ctx)
	for _, w := range e.Workers() {
		if b, err := e.backlogOf(ctx, w, fan); err == nil {
			ch <- prometheus.MustNewConstMetric(g.pending, prometheus.GaugeValue, float64(b.pending), w.Name)
			ch <- prometheus.MustNewConstMetric(g.oldest, prometheus.GaugeValue, b.oldest.Seconds(), w.Name)
		}
		if state, err := e.states.Get(ctx, w.Name); err == nil {
			for _, s := range []string{store.StateActive, store.StatePaused} {
				v := 0.0
				if s == state {
					v = 1
				}
				ch <- prometheus.MustNewConstMetric(g.state, prometheus.GaugeValue, v, w.Name, s)
			}
		}
	}
}
