package deliver

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/relaydev/relay/relay/held"
	"github.com/relaydev/relay/relay/store"
)

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

// Active reports whether the worker attempts now: not paused (by an
// operator, a 410 or the breaker) and not backing off.
func (w *Worker) Active() bool {
	return !w.paused.Load() && time.Now().UnixNano() >= w.throttled.Load()
}

// pull reads the consumer until ctx is done or the destination stops.
func (w *Worker) pull(ctx context.Context) error {
	// A wake can come before JetStream has stored what woke it (the
	// stream stores in its own loop): for a while after one the worker
	// binds and pulls rather than trusting an empty look.
	woken := time.Since(time.Unix(0, w.fan.wokeAt.Load())) < wakeGrace
	if bound, err := w.bind(ctx, woken); err != nil || !bound {
		return err
	}
	if w.Batch != nil {
		return w.pullBatches(ctx)
	}
	if w.Ordered() {
		return w.pullOrdered(ctx)
	}
	if w.Fanned() && !woken && w.idle(ctx) {
		// Nothing waits: no pull is kept open (a thousand idle
		// destinations would cost the server a thousand waiting pulls).
		w.sleepUntilWork(ctx)
		return nil
	}
	return w.pullEach(ctx)
}

// bind binds the destination's own consumer when it is not bound: a
// fanned destination's is made only once something was stored for it;
// until then the worker sleeps until woken (bound false).
func (w *Worker) bind(ctx context.Context, woken bool) (bound bool, err error) {
	if w.consumer() == nil && (!w.Fanned() || !w.fan.checked.Load() || woken) {
		if err := w.Ensure(ctx); err != nil { // binds a consumer the sender made
			return false, err
		}
	}
	if w.consumer() != nil {
		return true, nil
	}
	// Fanned, its consumer not made yet.
	queued, err := w.queued(ctx)
	if err != nil {
		return false, err
	}
	if !queued {
		w.sleepUntilWork(ctx)
		return false, nil
	}
	return true, w.ensureQueue(ctx, true)
}

// pullEach reads the consumer and attempts each activity in a slot of its
// own (max_in_flight) until the pull ends: on shutdown, a pause or a
// back-off what was pulled and not started is handed back at once.
func (w *Worker) pullEach(ctx context.Context) error {
	buffer := w.Cfg.MaxInFlight
	if ps := w.Cfg.RateLimit.PerSecond(); ps > 0 {
		buffer = max(1, min(buffer, int(ps*5)))
	}
	// A waiting pull costs the server a request per expiry and a heartbeat
	// per heartbeat interval, for every destination even when idle; a lost
	// pull (a consumer leader moved) is noticed after two missed heartbeats.
	expiry, heartbeat := PullExpiry, PullHeartbeat
	if w.Fanned() { // its consumer has retries and hand-overs only: mostly idle
		expiry, heartbeat = fannedPullExpiry, fannedPullHeartbeat
	}
	cons := w.consumer()
	if cons == nil { // unbound meanwhile (the probe's Ensure failed)
		return nil
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(buffer), jetstream.PullExpiry(expiry), jetstream.PullHeartbeat(heartbeat))
	if err != nil {
		w.setConsumer(nil)
		return fmt.Errorf("consume: %w", err)
	}
	draining := w.drainOnStop(ctx, it) // on shutdown, pause or back-off
	defer draining.stop()
	var next []jetstream.NextOpt
	var onIdle func() bool
	if w.Fanned() { // stops pulling once its consumer is empty
		next = append(next, jetstream.NextMaxWait(fannedIdleAfter))
		onIdle = func() bool { return w.idleOn(ctx, cons) }
	}
	return store.ReadMessages(it, onIdle, func(msg jetstream.Msg) {
		if draining.on() {
			// Pulled but not started: hand it back now rather than after
			// the ack wait, so a restart or resume takes it at once.
			w.nak(msg)
			return
		}
		w.slots <- struct{}{}
		// The process's room for the call is taken before the attempt's
		// goroutine starts: however many destinations wait, only
		// engine.max_in_flight attempts are under way.
		if !w.st.Calls.Take(ctx, draining.draining) {
			<-w.slots
			w.nak(msg)
			return
		}
		w.inflight.Add(1)
		go func() {
			room := held.Held(w.st.Calls)
			defer func() { room.Release(); <-w.slots; w.inflight.Done() }()
			w.handle(ctx, msg, &room)
		}()
	}, next...)
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
		w.inProgress(msg)
	}
	select {
	case <-time.After(delay):
		return true
	case <-ctx.Done():
		r.Cancel()
		return false
	}
}

// mayWait reports whether an attempt may have to wait before its call:
// the destination backs off, or has a rate limit.
func (w *Worker) mayWait() bool {
	return w.limiter != nil || w.throttled.Load() > time.Now().UnixNano()
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
		case wait > w.sched.MaxHold || w.paused.Load():
			return false
		}
		w.inProgress(msg) // the wait restarts the ack wait, not eats into it
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

// idle reports whether a fanned destination's own consumer has nothing
// to deliver and nothing out (a retry waiting out its delay is out).
func (w *Worker) idle(ctx context.Context) bool {
	cons := w.consumer()
	return cons != nil && w.idleOn(ctx, cons)
}

func (w *Worker) idleOn(ctx context.Context, cons jetstream.Consumer) bool {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ci, err := cons.Info(ctx)
	return err == nil && ci.NumPending == 0 && ci.NumAckPending == 0
}

// sleepUntilWork waits until something is stored on the destination's
// own subject (by any process: a hand-over, a retry, a replay), the
// destination's state changes, or fannedRecheck passes.
func (w *Worker) sleepUntilWork(ctx context.Context) {
	t := time.NewTimer(fannedRecheck)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-w.fan.work:
		w.fan.wokeAt.Store(time.Now().UnixNano())
	case <-t.C:
	}
}

// Wake tells a sleeping fanned worker something was stored for it.
func (w *Worker) Wake() {
	select {
	case w.fan.work <- struct{}{}:
	default:
	}
}
