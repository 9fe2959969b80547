package relay

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// DestinationStatus is one row of GET /v1/destinations.
type DestinationStatus struct {
	Name           string `json:"name"`
	Type           string `json:"type"`
	State          string `json:"state"`
	Breaker        string `json:"breaker,omitempty"`
	Pending        uint64 `json:"pending"`
	Delivered      uint64 `json:"delivered"`
	FailedAttempts uint64 `json:"failed_attempts"`
	DeadLettered   int    `json:"dead_lettered"`
	// OldestPendingSeconds is the age of the oldest activity waiting or
	// being retried (0 when none).
	OldestPendingSeconds float64    `json:"oldest_pending_seconds"`
	LastSuccessAt        *time.Time `json:"last_success_at"`
	LastFailureAt        *time.Time `json:"last_failure_at"`
	// Figures of the last minute, as this process saw them.
	DeliveredLastMinute int      `json:"delivered_last_minute"`
	FailedLastMinute    int      `json:"failed_last_minute"`
	P99LatencyMS        *float64 `json:"p99_latency_ms"`
	// Order is set for a destination with order: contact.
	Order *OrderStatus `json:"order,omitempty"`
}

// backlog is what a destination's durable consumer holds: the same for
// every process.
type backlog struct {
	pending uint64
	oldest  time.Duration
}

// backlogOf reads the consumer: how many activities wait or are being
// retried, and how long the oldest has waited (the first message after
// the ack floor that the consumer's filters select).
func (r *Relay) backlogOf(ctx context.Context, w *Worker) (backlog, error) {
	cons, err := r.bus.JS.Consumer(ctx, StreamActivities, ConsumerName(w.Name))
	if err != nil {
		return backlog{}, fmt.Errorf("consumer of %s: %w", w.Name, err)
	}
	ci := cons.CachedInfo()
	b := backlog{pending: ci.NumPending + uint64(ci.NumAckPending)}
	if b.pending == 0 {
		return b, nil
	}
	from := ci.AckFloor.Stream + 1
	var oldest time.Time
	for _, f := range ci.Config.FilterSubjects {
		msg, err := r.bus.Activities.GetMsg(ctx, from, jetstream.WithGetMsgSubject(f))
		if err != nil {
			continue // nothing on that filter
		}
		if oldest.IsZero() || msg.Time.Before(oldest) {
			oldest = msg.Time
		}
	}
	if !oldest.IsZero() {
		b.oldest = max(0, time.Since(oldest))
	}
	return b, nil
}

// Status reports a destination's state, backlog and recent figures.
func (r *Relay) Status(ctx context.Context, w *Worker) (DestinationStatus, error) {
	st := DestinationStatus{Name: w.Name, Type: w.Cfg.Type, Breaker: w.breaker.State()}
	state, err := r.states.Get(ctx, w.Name)
	if err != nil {
		return st, err
	}
	st.State = state
	b, err := r.backlogOf(ctx, w)
	if err != nil {
		return st, err
	}
	st.Pending, st.OldestPendingSeconds = b.pending, b.oldest.Seconds()
	st.Order = w.orderStatus()
	st.Delivered = counterValue(r.metrics.Delivered, w.Name)
	st.FailedAttempts = counterValue(r.metrics.Failed, w.Name)
	if st.DeadLettered, err = r.dls.Count(ctx, w.Name); err != nil {
		return st, err
	}
	delivered, failed, p99 := w.stats.lastMinute(time.Now())
	st.DeliveredLastMinute, st.FailedLastMinute = delivered, failed
	if p99 >= 0 {
		st.P99LatencyMS = &p99
	}
	success, failure := w.stats.last()
	if r.dlog != nil { // the log is shared by every process
		if e, err := r.dlog.Last(ctx, w.Name, OutcomeDelivered); err == nil && e != nil && e.At.After(success) {
			success = e.At
		}
		for _, o := range []string{OutcomeFailed, OutcomeDeadLetter} {
			if e, err := r.dlog.Last(ctx, w.Name, o); err == nil && e != nil && e.At.After(failure) {
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
	r                      *Relay
	pending, oldest, state *prometheus.Desc
}

func newGauges(r *Relay) *gauges {
	return &gauges{r: r,
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
	r := g.r
	select {
	case <-r.started:
	default:
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, w := range r.workers {
		if b, err := r.backlogOf(ctx, w); err == nil {
			ch <- prometheus.MustNewConstMetric(g.pending, prometheus.GaugeValue, float64(b.pending), w.Name)
			ch <- prometheus.MustNewConstMetric(g.oldest, prometheus.GaugeValue, b.oldest.Seconds(), w.Name)
		}
		if state, err := r.states.Get(ctx, w.Name); err == nil {
			for _, s := range []string{StateActive, StatePaused} {
				v := 0.0
				if s == state {
					v = 1
				}
				ch <- prometheus.MustNewConstMetric(g.state, prometheus.GaugeValue, v, w.Name, s)
			}
		}
	}
}
