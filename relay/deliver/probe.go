package deliver

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/relaydev/relay/relay/schedule"
	"github.com/relaydev/relay/relay/sink"
	"github.com/relaydev/relay/relay/store"
)

// Probe attempts the next waiting activity: a real attempt. A success is
// settled as any other and closes the breaker; so is a refusal of that
// activity (a 4xx other than 408 and 429: the receiver is up), which
// then goes on through its schedule. Any other failure is the breaker's
// attempt, not a step of the activity's schedule (DESIGN §12): it is kept
// in the activity's history marked as a probe, which numberAttempt does
// not count, and the activity is handed back to wait with the others
// (only max_age still applies), a while for an unordered destination so
// that the next probe takes another activity.
func (w *Worker) Probe(ctx context.Context) (probed, ok bool) {
	if w.consumer() == nil {
		if err := w.Ensure(ctx); err != nil {
			return false, false
		}
		if w.consumer() == nil && w.ensureQueue(ctx, true) != nil {
			return false, false
		}
	}
	cons := w.consumer()
	if cons == nil {
		return false, false
	}
	if w.Ordered() {
		return w.probeOrdered(ctx)
	}
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(time.Second))
	if err != nil {
		return false, false
	}
	defer func() {
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			w.log.Warn("the probe's fetch failed; the consumer is bound again", "error", err)
			w.setConsumer(nil)
		}
	}()
	for msg := range batch.Messages() {
		msg, ok := w.resolve(ctx, msg)
		if !ok {
			return false, false
		}
		d, ok := w.decode(ctx, msg)
		if !ok {
			return false, false
		}
		return w.probeWith(ctx, msg, d, false)
	}
	return false, false
}

// probeWith attempts d as the probe and settles it (probed false: it was
// suppressed or not attempted, so the next probe comes soon). A failed
// probe of an ordered destination is handed back at once (its next probe
// must take the oldest activity again), others after probeRotation.
func (w *Worker) probeWith(ctx context.Context, msg jetstream.Msg, d *delivery, ordered bool) (probed, ok bool) {
	if w.suppressed(ctx, msg, d) { // settled: the next probe takes another
		return false, false
	}
	if !w.st.Calls.Take(ctx, nil) { // stopping: the probe is handed back unattempted
		w.nak(msg)
		return false, false
	}
	w.inflight.Add(1)
	defer w.inflight.Done()
	ctx = context.WithoutCancel(ctx)
	span := w.st.Tracing.StartAttempt(ctx, &w.Cfg, msg.Headers(), &d.Delivery)
	var at sink.Attempt
	if w.Batch != nil {
		at = sink.Attempt{Err: errors.New("connector returned no result")}
		if ats := w.Batch.DeliverBatch(ctx, []*sink.Delivery{&d.Delivery}); len(ats) == 1 {
			at = ats[0]
		}
	} else {
		at = w.Sink.Deliver(ctx, &d.Delivery)
	}
	w.st.Calls.Release()
	kind, _ := sink.Classify(at.Err)
	answered := answeredAbout(at)
	if at.Err == nil || kind == sink.Gone || kind == sink.Permanent || answered {
		// Delivered; the receiver asked to stop; the activity is refused
		// for good (a dead letter whenever it is attempted); or the
		// receiver answered about this activity: as any attempt. Handed
		// back as a failed probe, an activity the receiver refuses would
		// be an ordered destination's probe every time (it takes the
		// oldest), and the breaker would never close on a receiver that
		// takes the rest.
		out := w.settle(ctx, msg, d, at)
		span.End(at, out)
		if ordered && out.Action != schedule.Delivered && out.Action != schedule.DeadLetter {
			w.nak(msg)
		} else {
			w.waitOut(msg, out)
		}
		return true, at.Err == nil || answered && kind != sink.Gone
	}
	span.End(at, schedule.Outcome{Action: schedule.Retry})
	w.probeFailed(ctx, msg, d, at, ordered)
	return true, false
}

// answeredAbout reports whether a failed attempt's answer came from a
// receiver that is up and refused this activity: a 4xx other than 408
// (its own timeout) and 429 (it is overloaded). A probe answered so closes
// the breaker: the receiver is not down, it judged the payload.
func answeredAbout(at sink.Attempt) bool {
	return at.Err != nil && at.Status >= 400 && at.Status < 500 &&
		at.Status != http.StatusRequestTimeout && at.Status != http.StatusTooManyRequests
}

// probeFailed keeps a failed probe in the activity's history and hands the
// activity back without using up any of its retries.
func (w *Worker) probeFailed(ctx context.Context, msg jetstream.Msg, d *delivery, at sink.Attempt, ordered bool) {
	log := w.activityLog(d)
	w.metrics.Latency.WithLabelValues(w.Name).Observe(at.Latency.Seconds())
	at.Probe = true
	history := w.recordFailure(ctx, log, d, &at)
	outcome := store.OutcomeFailed
	defer func() { w.logAttempt(d, at, outcome) }()
	if w.sched.TooOld(w.age(msg, d)) {
		switch {
		case w.deadLetter(ctx, log.With("status", at.Status, "error", at.Error), msg, d, history):
			outcome = store.OutcomeDeadLetter
		case ordered:
			w.nak(msg)
		default:
			w.checkAck(opNak, msg.NakWithDelay(deadLetterRetry))
		}
		return
	}
	var nakErr error
	if ordered {
		// An ordered destination's next probe must take the oldest
		// activity again: no delay.
		nakErr = msg.Nak()
	} else {
		// Past the next probe, so that one takes another activity.
		nakErr = msg.NakWithDelay(probeRotation * time.Duration(w.Cfg.Breaker.ProbeEvery) / 2)
	}
	if nakErr != nil {
		log.Warn("handing back the probed activity failed; JetStream redelivers it after the ack wait", "error", nakErr)
	}
}

// probeRotation (in halves of probe_every) is how long an activity whose
// probe failed waits before it can be probed again: past the next probe.
// A probe that finds nothing waiting is followed by another half an
// interval later, so a single waiting activity is probed every one and a
// half intervals.
const probeRotation = 3

// updatePaused stops the pulling while an operator paused the destination
// or the breaker is not closed.
func (w *Worker) updatePaused() {
	w.paused.Store(w.opPaused.Load() || w.breaker.Holding())
	w.signal()
	// A resume must restart the probes the pause stopped.
	w.breaker.Wake()
}

// BreakerChanged has the worker stop or resume pulling as the breaker now
// holds it or not.
func (w *Worker) BreakerChanged() { w.updatePaused() }

// OperatorPaused reports whether an operator paused the destination (or a
// 410 did): the breaker does not probe then.
func (w *Worker) OperatorPaused() bool { return w.opPaused.Load() }
