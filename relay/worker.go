// The worker's stages, one a file: pull.go takes activities from the
// destination's consumer (pauses, back-offs, rate limit), attempt.go decodes
// and matches one and makes the attempt, settle.go acks, retries or
// dead-letters it after the attempt.

package relay

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/time/rate"

	"github.com/relaydev/relay/config"
)

// Worker delivers one destination's activities from its durable consumer.
type Worker struct {
	Name  string
	Cfg   config.Destination
	Rules *Rules
	Sink  Sink      // one of Sink or Batch is set
	Batch BatchSink // nil for sinks that take one activity at a time

	bus      *Bus
	dls      *DeadLetters
	history  *History
	states   *States
	metrics  *Metrics
	log      *slog.Logger
	limiter  *rate.Limiter
	schedule []time.Duration
	maxAge   time.Duration
	ackWait  time.Duration
	maxHold  time.Duration

	cons      jetstream.Consumer
	paused    atomic.Bool  // opPaused, or the breaker holds (see updatePaused)
	opPaused  atomic.Bool  // paused by an operator, or by a 410
	breaker   *breaker     // nil with breaker: off
	alerts    *Alerter     // nil without alerts
	throttled atomic.Int64 // unix nanos until which the destination backs off
	changed   chan struct{}
	// slots holds one token per attempt in flight. It outlives a pull: the
	// iterator drained on a pause or back-off leaves attempts in flight,
	// and the next iterator's activities wait for them (max_in_flight).
	slots    chan struct{}
	inflight sync.WaitGroup
	// ruleLogged is when a `when` error was last logged (unix nanos).
	ruleLogged atomic.Int64
	dlog       *DeliveryLog
	session    atomic.Pointer[orderSession] // the lanes of order: contact, while pulling
	stats      destStats
	debug      bool // the process logs at debug level
}

// ConsumerName is the durable consumer of a destination.
func ConsumerName(dest string) string { return "relay_" + dest }

func (w *Worker) init() {
	w.schedule = w.Cfg.Retry.Durations()
	w.maxAge = time.Duration(w.Cfg.Retry.MaxAge)
	timeout := time.Duration(w.Cfg.Timeout)
	w.ackWait = 2*timeout + 30*time.Second
	if w.Batch != nil {
		_, wait := w.Batch.Batch()
		w.ackWait += wait
	}
	// An activity waiting in its slot through a back-off, then attempted,
	// must fit in the ack wait: longer back-offs hand it back instead.
	w.maxHold = (w.ackWait - 2*timeout) / 2
	if ps := w.Cfg.RateLimit.PerSecond(); ps > 0 {
		w.limiter = rate.NewLimiter(rate.Limit(ps), max(1, int(math.Ceil(ps))))
	}
	w.changed = make(chan struct{}, 1)
	w.slots = make(chan struct{}, max(1, w.Cfg.MaxInFlight))
	w.log = w.log.With("destination", w.Name)
	w.debug = w.log.Enabled(context.Background(), slog.LevelDebug)
	w.initOrder()
}

// Ensure creates or updates the destination's durable consumer. Filters
// follow the include patterns; a new consumer starts with new activities
// (replay --history backfills older ones).
func (w *Worker) Ensure(ctx context.Context) error {
	filters := append(w.Rules.FilterSubjects(), subjectRedeliver+w.Name)
	cfg := jetstream.ConsumerConfig{
		Durable:        ConsumerName(w.Name),
		Description:    "Relay destination " + w.Name,
		FilterSubjects: filters,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        w.ackWait,
		MaxDeliver:     -1,
		MaxAckPending:  max(1000, 4*w.Cfg.MaxInFlight),
		DeliverPolicy:  jetstream.DeliverNewPolicy,
		Replicas:       0,
	}
	if err := w.orderConsumer(&cfg); err != nil {
		return err
	}
	cons, err := w.bus.JS.CreateOrUpdateConsumer(ctx, StreamActivities, cfg)
	if err != nil {
		return fmt.Errorf("create consumer %s: %w", ConsumerName(w.Name), err)
	}
	w.cons = cons
	return nil
}

// Run delivers until ctx is done, then waits for in-flight deliveries.
func (w *Worker) Run(ctx context.Context) error {
	defer w.inflight.Wait()
	go w.watchState(ctx)
	if w.breaker != nil {
		w.breaker.load(ctx)
		done := make(chan struct{})
		go func() { defer close(done); w.breaker.run(ctx) }()
		defer func() { <-done }()
	}
	bo := backoff.NewExponentialBackOff(backoff.WithMaxInterval(10*time.Second), backoff.WithMaxElapsedTime(0))
	for ctx.Err() == nil {
		if !w.waitActive(ctx) {
			return nil
		}
		err := w.pull(ctx)
		if err == nil {
			bo.Reset()
			continue
		}
		delay := bo.NextBackOff()
		w.log.Warn("pulling activities failed; retrying", "error", err, "in", delay)
		select {
		case <-ctx.Done():
		case <-time.After(delay):
		}
	}
	return nil
}

func (w *Worker) watchState(ctx context.Context) {
	for ctx.Err() == nil {
		err := w.states.Watch(ctx, w.Name, func(state string) {
			w.opPaused.Store(state == StatePaused)
			w.log.Info("destination state", "state", state)
			w.updatePaused()
		})
		if err != nil && ctx.Err() == nil {
			w.log.Warn("watching destination state", "error", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
}

func (w *Worker) signal() {
	select {
	case w.changed <- struct{}{}:
	default:
	}
}
