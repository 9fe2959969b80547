package deliver

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/relaydev/relay/relay/alert"
	"github.com/relaydev/relay/relay/expr"
	"github.com/relaydev/relay/relay/schedule"
	"github.com/relaydev/relay/relay/sink"
	"github.com/relaydev/relay/relay/store"
	"github.com/relaydev/relay/relay/telemetry"
	"github.com/relaydev/relay/relay/text"
)

// settle records an attempt and acts on what follows it (schedule): an
// ack, a dead letter, a pause, the destination's back-off. It returns the
// outcome; the wait before a retry is the caller's (waitOut: a NAK with
// the delay; a lane waits it out).
func (w *Worker) settle(ctx context.Context, msg jetstream.Msg, d *delivery, at sink.Attempt) schedule.Outcome {
	id := d.Activity.ID
	w.metrics.Latency.WithLabelValues(w.Name).Observe(at.Latency.Seconds())
	w.breaker.Observe(ctx, id, at)
	if at.Err == nil {
		w.succeeded.Store(time.Now().UnixNano())
		w.delivered(ctx, msg, d, at)
		return schedule.Outcome{Action: schedule.Delivered}
	}
	log := w.activityLog(d)
	history := w.recordFailure(ctx, log, d, &at)
	kind, after := sink.Classify(at.Err)
	log = log.With("status", at.Status, "error", at.Error, "kind", kind.String())
	outcome := store.OutcomeFailed
	defer func() { w.logAttempt(d, at, outcome) }()
	if kind == sink.Permanent && errors.Is(at.Err, expr.ErrBudget) { // a body or field expression
		w.metrics.RuleErrors.WithLabelValues(w.Name, "budget").Inc()
	}
	out := w.sched.AfterFailure(kind, after, d.Attempt, w.age(msg, d))
	if out.BackOff > 0 {
		w.backOff(log, out.BackOff)
	}
	switch out.Action {
	case schedule.DeadLetter:
		if !w.deadLetter(ctx, log, msg, d, history) {
			return schedule.Outcome{Action: schedule.Retry, In: deadLetterRetry}
		}
		outcome = store.OutcomeDeadLetter
	case schedule.Pause:
		w.pause(ctx, log, id)
	case schedule.Retry:
		if kind == sink.Retry {
			log.Info("delivery failed; will retry", "in", out.In)
		}
	}
	return out
}

// waitOut has an activity attempted again as out says: a NAK with its
// delay. (An ordered destination's lane waits instead.)
func (w *Worker) waitOut(msg jetstream.Msg, out schedule.Outcome) {
	if out.Action == schedule.Retry || out.Action == schedule.Pause {
		w.checkAck(opNak, msg.NakWithDelay(out.In))
	}
}

// pause stops the destination for every process: its receiver asked to
// stop (410 Gone). Paused here first, then in the bucket: the watch then
// brings every later change (a resume) after this one, never before it.
func (w *Worker) pause(ctx context.Context, log *slog.Logger, id string) {
	log.Warn("receiver asked to stop (410 Gone): pausing the destination")
	w.st.Alerts.Emit(ctx, alert.Gone, w.Name, map[string]any{"activity_id": id})
	w.opPaused.Store(true)
	w.updatePaused()
	if err := w.st.States.Set(ctx, w.Name, store.StatePaused); err != nil {
		log.Error("pausing destination", "error", err)
	}
}

// activityLog is the worker's log naming an activity and its attempt.
func (w *Worker) activityLog(d *delivery) *slog.Logger {
	return w.log.With(append([]any{"activity_id", d.Activity.ID, "attempt", d.Attempt}, telemetry.LogAttrs(d.TraceParent)...)...)
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
		w.forget(ctx, d, replayed)
	}
}

// recordFailure counts a failed attempt (a probe too), clips its error and
// adds it to the activity's history, which it returns whole.
func (w *Worker) recordFailure(ctx context.Context, log *slog.Logger, d *delivery, at *sink.Attempt) []sink.Attempt {
	w.metrics.Failed.WithLabelValues(w.Name).Inc()
	at.Error = text.Clip(at.Err.Error(), store.MaxAttemptError)
	history, err := w.record(ctx, d, *at)
	if err != nil {
		log.Warn("recording attempt", "error", err)
	}
	return history
}

// age is how long ago the activity's run of attempts began (a copy
// handed over continues its original's run).
func (w *Worker) age(msg jetstream.Msg, d *delivery) time.Duration {
	if md, err := msg.Metadata(); err == nil {
		return time.Since(store.RunStart(msg.Headers(), md))
	}
	return time.Since(d.Activity.ReceivedAt)
}

// deadLetterRetry is when an activity whose dead letter could not be
// stored is attempted again.
const deadLetterRetry = 5 * time.Second

// deadLetter stores the activity as a dead letter and acks it; false when
// the dead letter could not be stored: its attempts are kept, and the
// caller has it attempted again in deadLetterRetry.
func (w *Worker) deadLetter(ctx context.Context, log *slog.Logger, msg jetstream.Msg, d *delivery, history []sink.Attempt) bool {
	dl := store.DeadLetter{ID: d.Activity.ID, Destination: w.Name, Activity: d.Raw, Attempts: store.BoundAttempts(history), DeadAt: time.Now().UTC(),
		TraceParent: msg.Headers().Get(store.HeaderTraceParent), TraceState: msg.Headers().Get(store.HeaderTraceState)}
	// The attempts are forgotten before the dead letter is visible: a
	// replay that follows at once writes them back for its run, and must
	// not have them deleted under it.
	if err := w.st.History.Delete(ctx, w.Name, d.Activity.ID); err != nil {
		log.Warn("forgetting attempts", "error", err)
	}
	if err := w.st.DeadLetters.Put(ctx, dl); err != nil {
		log.Error("storing dead letter failed; will try again", "error", err)
		if len(history) > 0 {
			if err := w.st.History.Put(ctx, w.Name, d.Activity.ID, history); err != nil {
				log.Warn("keeping the attempts", "error", err)
			}
		}
		return false
	}
	if err := w.ack(msg); err != nil {
		log.Warn("ack of dead letter failed; it may be attempted again", "error", err)
	}
	w.metrics.DeadLettered.WithLabelValues(w.Name).Inc()
	w.st.Alerts.DeadLetter(w.Name)
	log.Warn("activity is a dead letter", "attempts", len(history))
	return true
}

// forget drops what was kept about an activity that has now been settled
// for good (delivered, suppressed); its logger is made only to say what
// failed.
func (w *Worker) forget(ctx context.Context, d *delivery, replayed bool) {
	id := d.Activity.ID
	if err := w.st.History.Delete(ctx, w.Name, id); err != nil {
		w.activityLog(d).Warn("forgetting attempts", "error", err)
	}
	if replayed {
		if err := w.st.DeadLetters.Remove(ctx, w.Name, id); err != nil {
			w.activityLog(d).Warn("removing dead letter", "error", err)
		}
	}
}
