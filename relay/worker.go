package relay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/time/rate"

	"github.com/relaydev/relay/config"
	"github.com/relaydev/relay/relay/activity"
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
	paused    atomic.Bool
	throttled atomic.Int64 // unix nanos until which the destination backs off
	changed   chan struct{}
	// slots holds one token per attempt in flight. It outlives a pull: the
	// iterator drained on a pause or back-off leaves attempts in flight,
	// and the next iterator's activities wait for them (max_in_flight).
	slots    chan struct{}
	inflight sync.WaitGroup
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
}

// Ensure creates or updates the destination's durable consumer. Filters
// follow the include patterns; a new consumer starts with new activities
// (replay --history backfills older ones).
func (w *Worker) Ensure(ctx context.Context) error {
	filters := append(w.Rules.FilterSubjects(), subjectRedeliver+w.Name)
	cons, err := w.bus.JS.CreateOrUpdateConsumer(ctx, StreamActivities, jetstream.ConsumerConfig{
		Durable:        ConsumerName(w.Name),
		Description:    "Relay destination " + w.Name,
		FilterSubjects: filters,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        w.ackWait,
		MaxDeliver:     -1,
		MaxAckPending:  max(1000, 4*w.Cfg.MaxInFlight),
		DeliverPolicy:  jetstream.DeliverNewPolicy,
		Replicas:       0,
	})
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
			w.paused.Store(state == StatePaused)
			w.log.Info("destination state", "state", state)
			w.signal()
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

// waitActive blocks while the destination is paused or backing off.
func (w *Worker) waitActive(ctx context.Context) bool {
	for {
		if ctx.Err() != nil {
			return false
		}
		wait := time.Until(time.Unix(0, w.throttled.Load()))
		if !w.paused.Load() && wait <= 0 {
			return true
		}
		var timer <-chan time.Time
		if wait > 0 {
			timer = time.After(wait)
		}
		select {
		case <-ctx.Done():
			return false
		case <-w.changed:
		case <-timer:
		}
	}
}

func (w *Worker) active() bool {
	return !w.paused.Load() && time.Now().UnixNano() >= w.throttled.Load()
}

// pull reads the consumer until ctx is done or the destination stops.
func (w *Worker) pull(ctx context.Context) error {
	if w.cons == nil {
		if err := w.Ensure(ctx); err != nil {
			return err
		}
	}
	if w.Batch != nil {
		return w.pullBatches(ctx)
	}
	buffer := w.Cfg.MaxInFlight
	if ps := w.Cfg.RateLimit.PerSecond(); ps > 0 {
		buffer = max(1, min(buffer, int(ps*5)))
	}
	it, err := w.cons.Messages(jetstream.PullMaxMessages(buffer), jetstream.PullExpiry(5*time.Second))
	if err != nil {
		w.cons = nil
		return fmt.Errorf("consume: %w", err)
	}
	var draining atomic.Bool
	stop := make(chan struct{})
	defer close(stop)
	go func() { // drain the iterator on shutdown, pause or back-off
		for {
			select {
			case <-stop:
				it.Stop()
				return
			case <-ctx.Done():
			case <-w.changed:
				if w.active() {
					continue
				}
				w.signal()
			}
			draining.Store(true)
			it.Drain()
			return
		}
	}()
	for {
		msg, err := it.Next()
		if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
			return nil
		}
		if err != nil {
			it.Stop()
			return fmt.Errorf("next activity: %w", err)
		}
		if draining.Load() {
			// Pulled but not started: hand it back now rather than after
			// the ack wait, so a restart or resume takes it at once.
			_ = msg.Nak()
			continue
		}
		w.slots <- struct{}{}
		w.inflight.Add(1)
		go func() {
			defer func() { <-w.slots; w.inflight.Done() }()
			w.handle(ctx, msg)
		}()
	}
}

// handle runs one activity through decode, match, deliver and settle.
func (w *Worker) handle(ctx context.Context, msg jetstream.Msg) {
	d, ok := w.decode(ctx, msg)
	if !ok {
		return
	}
	if !w.holdOff(ctx, msg) || !w.wait(ctx, msg) {
		_ = msg.Nak()
		return
	}
	ctx = context.WithoutCancel(ctx) // an attempt in flight finishes on shutdown
	at := w.Sink.Deliver(ctx, d)
	w.settle(ctx, msg, d, at)
}

// wait applies the rate limit, telling JetStream the activity is still being
// worked on when the wait is long.
func (w *Worker) wait(ctx context.Context, msg jetstream.Msg) bool {
	if w.limiter == nil {
		return true
	}
	r := w.limiter.Reserve()
	delay := r.Delay()
	if delay <= 0 {
		return true
	}
	if delay > w.ackWait/3 {
		_ = msg.InProgress()
	}
	select {
	case <-time.After(delay):
		return true
	case <-ctx.Done():
		r.Cancel()
		return false
	}
}

// holdOff keeps an activity that was pulled before the destination began
// backing off from going out during the back-off: it waits in its slot
// through a short one, and is handed back (false) when the back-off is
// long or the destination is paused meanwhile. Handing back costs no
// attempt: attemptNumber counts real ones.
func (w *Worker) holdOff(ctx context.Context, msg jetstream.Msg) bool {
	for {
		wait := time.Until(time.Unix(0, w.throttled.Load()))
		switch {
		case wait <= 0:
			return true
		case wait > w.maxHold || w.paused.Load():
			return false
		}
		_ = msg.InProgress() // the wait restarts the ack wait, not eats into it
		select {
		case <-ctx.Done():
			return false
		case <-time.After(wait):
		}
	}
}

// backOff makes the whole destination wait for d: nothing is pulled, and
// nothing already pulled is attempted, until then.
func (w *Worker) backOff(log *slog.Logger, d time.Duration) {
	until := time.Now().Add(d).UnixNano()
	for prev := w.throttled.Load(); prev < until; prev = w.throttled.Load() {
		if w.throttled.CompareAndSwap(prev, until) {
			if prev < time.Now().UnixNano() {
				log.Warn("destination backs off", "for", d)
			}
			w.signal()
			return
		}
	}
}

// decode reads the activity and applies the destination's rules. Activities
// the destination doesn't take are acked here.
func (w *Worker) decode(ctx context.Context, msg jetstream.Msg) (*Delivery, bool) {
	name, fromSubject := activity.NameFromSubject(msg.Subject())
	if fromSubject && !w.Rules.MatchName(name) {
		_ = msg.Ack()
		return nil, false
	}
	a, err := w.decodeActivity(msg)
	if err != nil {
		w.log.Error("undecodable activity skipped", "subject", msg.Subject(), "error", err)
		_ = msg.Term()
		return nil, false
	}
	if (!fromSubject && !w.Rules.MatchName(a.Name)) || !w.Rules.MatchWhen(a) {
		_ = msg.Ack()
		return nil, false
	}
	d := &Delivery{Activity: a, Raw: msg.Data(), Attempt: 1}
	if md, err := msg.Metadata(); err == nil && md.NumDelivered > 1 {
		w.numberAttempt(ctx, d, md)
	}
	return d, true
}

// numberAttempt sets the number of the attempt about to be made of a
// message JetStream has delivered before, and keeps the history it read
// for settle. Its delivery count also counts the times
// the activity was handed back unattempted (on a pause, a back-off or a
// shutdown), so the recorded failed attempts decide; those made before the
// message was stored belong to the run that ended in a dead letter this
// message replays. An attempt made but not recorded (a crash in between)
// is counted as not made: an extra attempt, never a premature dead letter.
func (w *Worker) numberAttempt(ctx context.Context, d *Delivery, md *jetstream.MsgMetadata) {
	delivered := int(md.NumDelivered)
	history, err := w.history.Get(ctx, w.Name, d.Activity.ID)
	if err != nil {
		w.log.Warn("reading attempts; counting deliveries instead", "activity_id", d.Activity.ID, "error", err)
		d.Attempt = delivered
		return
	}
	n := 1
	for _, at := range history {
		if !at.At.Before(md.Timestamp) {
			n++
		}
	}
	d.Attempt, d.history, d.historyRead = min(n, delivered), history, true
}

// record adds a failed attempt to the activity's history and returns the
// whole of it, reusing what numberAttempt read.
func (w *Worker) record(ctx context.Context, d *Delivery, at Attempt) ([]Attempt, error) {
	if !d.historyRead {
		return w.history.Append(ctx, w.Name, d.Activity.ID, at)
	}
	all := append(d.history, at)
	return all, w.history.Put(ctx, w.Name, d.Activity.ID, all)
}

// decodeActivity decodes the JSON only when a `when` rule or a batch
// connector (which maps fields) reads more than id, name and time; those
// come from the headers.
func (w *Worker) decodeActivity(msg jetstream.Msg) (*activity.Activity, error) {
	if w.Batch == nil && w.Rules.when == nil {
		if a, ok := headActivity(msg.Headers()); ok {
			return a, nil
		}
	}
	a := &activity.Activity{}
	return a, json.Unmarshal(msg.Data(), a)
}

// settle acks, retries or dead-letters an activity after an attempt.
func (w *Worker) settle(ctx context.Context, msg jetstream.Msg, d *Delivery, at Attempt) {
	id := d.Activity.ID
	log := w.log.With("activity_id", id, "attempt", d.Attempt)
	w.metrics.Latency.WithLabelValues(w.Name).Observe(at.Latency.Seconds())
	replayed := strings.HasPrefix(msg.Subject(), subjectRedeliver)
	if at.Err == nil {
		if err := w.ack(msg); err != nil {
			log.Warn("ack failed; the activity may be delivered again", "error", err)
		}
		w.metrics.Delivered.WithLabelValues(w.Name).Inc()
		if d.Attempt > 1 || replayed {
			w.forget(ctx, log, id, replayed)
		}
		return
	}
	w.metrics.Failed.WithLabelValues(w.Name).Inc()
	at.Error = at.Err.Error()
	history, err := w.record(ctx, d, at)
	if err != nil {
		log.Warn("recording attempt", "error", err)
	}
	kind, after := Classify(at.Err)
	log = log.With("status", at.Status, "error", at.Error, "kind", kind.String())
	switch kind {
	case Permanent:
		w.deadLetter(ctx, log, msg, d, history)
	case Gone:
		log.Warn("receiver asked to stop (410 Gone): pausing the destination")
		if err := w.states.Set(ctx, w.Name, StatePaused); err != nil {
			log.Error("pausing destination", "error", err)
		}
		w.paused.Store(true)
		w.signal()
		_ = msg.NakWithDelay(time.Second)
	case Throttle:
		w.throttle(ctx, log, msg, d, history, after)
	default:
		if after > 0 { // the receiver asked for a pause (Retry-After)
			w.backOff(log, min(after, w.maxHold))
		}
		w.retry(ctx, log, msg, d, history, after)
	}
}

// throttle backs the whole destination off: for as long as the receiver
// asked, else for the schedule's delay at this attempt.
func (w *Worker) throttle(ctx context.Context, log *slog.Logger, msg jetstream.Msg, d *Delivery, history []Attempt, after time.Duration) {
	if w.tooOld(msg, d) {
		w.deadLetter(ctx, log, msg, d, history)
		return
	}
	delay := max(after, w.schedule[min(d.Attempt, len(w.schedule))-1])
	w.backOff(log, delay)
	_ = msg.NakWithDelay(delay)
}

func (w *Worker) tooOld(msg jetstream.Msg, d *Delivery) bool {
	age := time.Since(d.Activity.ReceivedAt)
	if md, err := msg.Metadata(); err == nil {
		age = time.Since(md.Timestamp)
	}
	return age > w.maxAge
}

func (w *Worker) retry(ctx context.Context, log *slog.Logger, msg jetstream.Msg, d *Delivery, history []Attempt, after time.Duration) {
	if d.Attempt > len(w.schedule) || w.tooOld(msg, d) {
		w.deadLetter(ctx, log, msg, d, history)
		return
	}
	delay := max(w.schedule[d.Attempt-1], min(after, time.Hour))
	log.Info("delivery failed; will retry", "in", delay)
	if err := msg.NakWithDelay(delay); err != nil {
		log.Warn("nak failed; JetStream redelivers after the ack wait", "error", err)
	}
}

func (w *Worker) deadLetter(ctx context.Context, log *slog.Logger, msg jetstream.Msg, d *Delivery, history []Attempt) {
	dl := DeadLetter{ID: d.Activity.ID, Destination: w.Name, Activity: d.Raw, Attempts: history, DeadAt: time.Now().UTC()}
	if err := w.dls.Put(ctx, dl); err != nil {
		log.Error("storing dead letter failed; will try again", "error", err)
		_ = msg.NakWithDelay(5 * time.Second)
		return
	}
	if err := w.ack(msg); err != nil {
		log.Warn("ack of dead letter failed; it may be attempted again", "error", err)
	}
	w.metrics.DeadLettered.WithLabelValues(w.Name).Inc()
	log.Warn("activity is a dead letter", "attempts", len(history))
	if err := w.history.Delete(ctx, w.Name, d.Activity.ID); err != nil {
		log.Warn("forgetting attempts", "error", err)
	}
}

// forget drops what was kept about an activity that has now been delivered.
func (w *Worker) forget(ctx context.Context, log *slog.Logger, id string, replayed bool) {
	if err := w.history.Delete(ctx, w.Name, id); err != nil {
		log.Warn("forgetting attempts", "error", err)
	}
	if replayed {
		if err := w.dls.Remove(ctx, w.Name, id); err != nil {
			log.Warn("removing dead letter", "error", err)
		}
	}
}
