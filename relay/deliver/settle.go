package deliver

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/relaydev/relay/relay/alert"
	"github.com/relaydev/relay/relay/expr"
	"github.com/relaydev/relay/relay/sink"
	"github.com/relaydev/relay/relay/store"
	"github.com/relaydev/relay/relay/web"
)

// settle acks, retries or dead-letters an activity after an attempt.
func (w *Worker) settle(ctx context.Context, msg jetstream.Msg, d *delivery, at sink.Attempt) {
	id := d.Activity.ID
	w.metrics.Latency.WithLabelValues(w.Name).Observe(at.Latency.Seconds())
	w.breaker.Observe(ctx, id, at)
	if at.Err == nil {
		w.delivered(ctx, msg, d, at)
		return
	}
	log := w.activityLog(d)
	history := w.recordFailure(ctx, log, d, &at)
	kind, after := sink.Classify(at.Err)
	log = log.With("status", at.Status, "error", at.Error, "kind", kind.String())
	d.outcome = store.OutcomeFailed
	defer func() { w.logAttempt(d, at, d.outcome) }()
	switch kind {
	case sink.Permanent:
		if errors.Is(at.Err, expr.ErrBudget) { // a body or field expression
			w.metrics.RuleErrors.WithLabelValues(w.Name, "budget").Inc()
		}
		w.deadLetter(ctx, log, msg, d, history)
	case sink.Gone:
		log.Warn("receiver asked to stop (410 Gone): pausing the destination")
		w.alerts.Emit(ctx, alert.Gone, w.Name, map[string]any{"activity_id": id})
		// Paused here first, then in the bucket: the watch then brings every
		// later change (a resume) after this one, never before it.
		w.opPaused.Store(true)
		w.updatePaused()
		if err := w.states.Set(ctx, w.Name, store.StatePaused); err != nil {
			log.Error("pausing destination", "error", err)
		}
		w.checkAck(opNak, w.later(msg, d, time.Second))
	case sink.Throttle:
		w.throttle(ctx, log, msg, d, history, after)
	default:
		if after > 0 { // the receiver asked for a pause (Retry-After)
			w.backOff(log, min(after, w.maxHold))
		}
		w.retry(ctx, log, msg, d, history, after)
	}
}

// throttle backs the whole destination off: for as long as the receiver
// asked, else for the schedule's delay at this attempt (its last delay
// beyond its end: a throttled attempt is retried until max_age). An empty
// schedule is one attempt and no retry: the activity is a dead letter, and
// the destination still backs off for as long as the receiver asked.
func (w *Worker) throttle(ctx context.Context, log *slog.Logger, msg jetstream.Msg, d *delivery, history []sink.Attempt, after time.Duration) {
	if len(w.schedule) == 0 {
		if after > 0 {
			w.backOff(log, after)
		}
		w.deadLetter(ctx, log, msg, d, history)
		return
	}
	if w.tooOld(msg, d) {
		w.deadLetter(ctx, log, msg, d, history)
		return
	}
	next, _ := w.delayAfter(d.Attempt)
	delay := max(after, next)
	w.backOff(log, delay)
	w.checkAck(opNak, w.later(msg, d, delay))
}

// activityLog is the worker's log naming an activity and its attempt.
func (w *Worker) activityLog(d *delivery) *slog.Logger {
	return w.log.With("activity_id", d.Activity.ID, "attempt", d.Attempt)
}

// delivered acks a delivered activity and forgets what was kept about
// its earlier attempts. The common case logs nothing and builds no logger.
func (w *Worker) delivered(ctx context.Context, msg jetstream.Msg, d *delivery, at sink.Attempt) {
	if err := w.ack(msg); err != nil {
		w.activityLog(d).Warn("ack failed; the activity may be delivered again", "error", err)
	}
	w.metrics.Delivered.WithLabelValues(w.Name).Inc()
	w.logAttempt(d, at, store.OutcomeDelivered)
	if w.debug {
		w.activityLog(d).Debug("delivered", "status", at.Status, "latency_ms", at.Latency.Milliseconds())
	}
	if replayed := msg.Headers().Get(store.HeaderReplay) != ""; d.Attempt > 1 || replayed {
		w.forget(ctx, w.activityLog(d), d.Activity.ID, replayed)
	}
}

// recordFailure counts a failed attempt (a probe too), clips its error and
// adds it to the activity's history, which it returns whole.
func (w *Worker) recordFailure(ctx context.Context, log *slog.Logger, d *delivery, at *sink.Attempt) []sink.Attempt {
	w.metrics.Failed.WithLabelValues(w.Name).Inc()
	at.Error = web.Clip(at.Err.Error(), store.MaxAttemptError)
	history, err := w.record(ctx, d, *at)
	if err != nil {
		log.Warn("recording attempt", "error", err)
	}
	return history
}

// delayAfter is the schedule's delay after attempt n (from 1): its last
// one past its end; false for an empty schedule.
func (w *Worker) delayAfter(n int) (time.Duration, bool) {
	if len(w.schedule) == 0 {
		return 0, false
	}
	return w.schedule[min(max(n, 1), len(w.schedule))-1], true
}

func (w *Worker) tooOld(msg jetstream.Msg, d *delivery) bool {
	age := time.Since(d.Activity.ReceivedAt)
	if md, err := msg.Metadata(); err == nil {
		age = time.Since(runStart(msg.Headers(), md))
	}
	return age > w.maxAge
}

func (w *Worker) retry(ctx context.Context, log *slog.Logger, msg jetstream.Msg, d *delivery, history []sink.Attempt, after time.Duration) {
	// Attempt n (from 1) is followed by the schedule's delay n, if it has
	// one: an empty schedule, or one a reload shortened below the
	// attempts already made, makes a dead letter.
	if d.Attempt > len(w.schedule) || w.tooOld(msg, d) {
		w.deadLetter(ctx, log, msg, d, history)
		return
	}
	next, _ := w.delayAfter(d.Attempt)
	delay := max(next, min(after, time.Hour))
	log.Info("delivery failed; will retry", "in", delay)
	w.checkAck(opNak, w.later(msg, d, delay))
}

func (w *Worker) deadLetter(ctx context.Context, log *slog.Logger, msg jetstream.Msg, d *delivery, history []sink.Attempt) {
	dl := store.DeadLetter{ID: d.Activity.ID, Destination: w.Name, Activity: d.Raw, Attempts: store.BoundAttempts(history), DeadAt: time.Now().UTC()}
	// The attempts are forgotten before the dead letter is visible: a
	// replay that follows at once writes them back for its run, and must
	// not have them deleted under it.
	if err := w.history.Delete(ctx, w.Name, d.Activity.ID); err != nil {
		log.Warn("forgetting attempts", "error", err)
	}
	if err := w.dls.Put(ctx, dl); err != nil {
		log.Error("storing dead letter failed; will try again", "error", err)
		if len(history) > 0 {
			if err := w.history.Put(ctx, w.Name, d.Activity.ID, history); err != nil {
				log.Warn("keeping the attempts", "error", err)
			}
		}
		w.checkAck(opNak, w.later(msg, d, 5*time.Second))
		return
	}
	if err := w.ack(msg); err != nil {
		log.Warn("ack of dead letter failed; it may be attempted again", "error", err)
	}
	w.metrics.DeadLettered.WithLabelValues(w.Name).Inc()
	w.alerts.DeadLetter(w.Name)
	d.outcome = store.OutcomeDeadLetter
	log.Warn("activity is a dead letter", "attempts", len(history))
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
