package deliver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/relaydev/relay/config"
	"github.com/relaydev/relay/relay/sink"
	"github.com/relaydev/relay/relay/store"
)

// Breaker states, as the APIs show them (nothing when a destination has
// breaker: off).
const (
	BreakerClosed   = "closed"
	BreakerOpen     = "open"
	BreakerHalfOpen = "half_open"
)

// rampStep is how often delivery doubles its concurrency after the breaker
// closes, from one attempt at a time up to max_in_flight.
const rampStep = time.Second

// breakerRecord is a destination's breaker as every Relay process sees it,
// in the state bucket beside the pause state.
type breakerRecord struct {
	State string    `json:"state"`
	Since time.Time `json:"since"`
	// ProbeAt is when the next probe may start, while not closed.
	ProbeAt time.Time `json:"probe_at"`
}

func breakerKey(dest string) string { return "breaker." + dest }

// breaker stops attempts to a receiver that fails every one. Failures are
// counted in each process; the state is shared through the bucket, so when
// one process opens the breaker every process stops, and only the process
// that wins the probe slot (a compare-and-set on the record) probes.
type breaker struct {
	w       *Worker
	cfg     config.Breaker
	kv      jetstream.KeyValue
	key     string
	metrics *BreakerMetrics

	rec     atomic.Pointer[breakerRecord] // as last seen
	changed chan struct{}

	mu sync.Mutex
	// fails are the latest failures, at most failMemory of them;
	// succeeded is when an attempt last succeeded. The breaker opens when
	// the window holds failures of cfg.Failures different activities and
	// no success.
	fails     []failure
	succeeded time.Time
	ramps     sync.WaitGroup
	ctx       context.Context // run's; a ramp-up ends with it
}

// failure is one failed attempt the breaker counts.
type failure struct {
	at time.Time
	id string // the activity's
}

// failMemory is how many failures the breaker keeps: enough to find
// cfg.Failures different activities among retries of a few.
func (b *breaker) failMemory() int { return 4 * b.cfg.Failures }

func newBreaker(w *Worker, kv jetstream.KeyValue, m *BreakerMetrics) *breaker {
	b := &breaker{w: w, cfg: w.Cfg.Breaker, kv: kv, key: breakerKey(w.Name), metrics: m, changed: make(chan struct{}, 1)}
	b.rec.Store(&breakerRecord{State: BreakerClosed})
	return b
}

// State is the breaker's state as this process last saw it; "" when off.
func (b *breaker) State() string {
	if b == nil {
		return ""
	}
	return b.rec.Load().State
}

// holding reports whether the breaker keeps the worker from pulling.
func (b *breaker) holding() bool { return b != nil && b.rec.Load().State != BreakerClosed }

// observe counts an attempt's outcome and opens the breaker when every
// attempt of the last cfg.Window failed and they were attempts of at least
// cfg.Failures different activities (DESIGN §12): one success in the
// window keeps it closed, since a receiver that refuses some payloads is
// not down, and the retries of a few activities it refuses do not add up
// to a receiver that is down. A 410 is not counted: it pauses the
// destination instead.
func (b *breaker) observe(ctx context.Context, id string, at sink.Attempt) {
	if b == nil {
		return
	}
	now := time.Now()
	b.mu.Lock()
	if at.Err == nil {
		b.succeeded = now
		b.mu.Unlock()
		return
	}
	if kind, _ := sink.Classify(at.Err); kind == sink.Gone {
		b.mu.Unlock()
		return
	}
	trip := b.failed(now, id)
	b.mu.Unlock()
	if trip && b.State() == BreakerClosed {
		b.open(ctx)
	}
}

// failed counts a failure at now and reports whether the breaker should
// open. Called with b.mu held.
func (b *breaker) failed(now time.Time, id string) bool {
	window := time.Duration(b.cfg.Window)
	b.fails = append(b.fails, failure{at: now, id: id})
	if len(b.fails) > b.failMemory() {
		b.fails = slices.Delete(b.fails, 0, len(b.fails)-b.failMemory())
	}
	if len(b.fails) < b.cfg.Failures || now.Sub(b.succeeded) <= window {
		return false // too few failures kept, or a success in the window
	}
	distinct := make(map[string]struct{}, b.cfg.Failures)
	for i := len(b.fails) - 1; i >= 0 && now.Sub(b.fails[i].at) <= window; i-- {
		distinct[b.fails[i].id] = struct{}{}
		if len(distinct) >= b.cfg.Failures {
			b.fails = b.fails[:0]
			return true
		}
	}
	return false
}

// open records the breaker open for every process, the first probe due
// probe_every from now.
func (b *breaker) open(ctx context.Context) {
	now := time.Now()
	rec := &breakerRecord{State: BreakerOpen, Since: now.UTC(), ProbeAt: now.Add(time.Duration(b.cfg.ProbeEvery)).UTC()}
	b.w.log.Warn("breaker opened: every attempt of the window failed, of enough different activities; only probes until one succeeds",
		"failures", b.cfg.Failures, "window", time.Duration(b.cfg.Window), "probe_every", time.Duration(b.cfg.ProbeEvery))
	b.apply(rec)
	opened, err := b.openShared(ctx, rec)
	if err != nil {
		b.w.log.Error("recording the open breaker", "error", err)
		return
	}
	if opened { // not already open by another process: one alert
		b.w.alerts.Emit(ctx, AlertBreakerOpened, b.w.Name, map[string]any{
			"failures": b.cfg.Failures, "window": b.cfg.Window.String(), "probe_every": b.cfg.ProbeEvery.String()})
	}
}

// openShared stores rec unless the shared record is already open or
// half_open, with a compare-and-set so that of several processes opening
// the breaker at once one does.
func (b *breaker) openShared(ctx context.Context, rec *breakerRecord) (bool, error) {
	data, _ := json.Marshal(rec)
	e, err := b.kv.Get(ctx, b.key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		_, err = b.kv.Create(ctx, b.key, data)
		return err == nil, ignoreConflict(err)
	}
	if err != nil {
		return false, err
	}
	var cur breakerRecord
	if json.Unmarshal(e.Value(), &cur) == nil && cur.State != BreakerClosed {
		return false, nil
	}
	_, err = b.kv.Update(ctx, b.key, data, e.Revision())
	return err == nil, ignoreConflict(err)
}

// ignoreConflict drops the error of a compare-and-set another process won.
func ignoreConflict(err error) error {
	if errors.Is(err, jetstream.ErrKeyExists) {
		return nil
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence {
		return nil
	}
	return err
}

func (b *breaker) put(ctx context.Context, rec *breakerRecord) error {
	data, _ := json.Marshal(rec)
	if _, err := b.kv.Put(ctx, b.key, data); err != nil {
		return fmt.Errorf("set breaker of %s: %w", b.w.Name, err)
	}
	return nil
}

// apply makes rec this process's view: the worker stops pulling while the
// breaker is not closed, and ramps back up when it closes.
func (b *breaker) apply(rec *breakerRecord) {
	prev := b.rec.Swap(rec)
	b.metrics.state.WithLabelValues(b.w.Name).Set(map[string]float64{BreakerClosed: 0, BreakerOpen: 1, BreakerHalfOpen: 2}[rec.State])
	if prev.State != BreakerClosed && rec.State == BreakerClosed {
		// A probe (here or in another process) succeeded: the window
		// starts again from it, so attempts that failed before it cannot
		// open the breaker again at once.
		b.mu.Lock()
		b.fails, b.succeeded = b.fails[:0], time.Now()
		b.mu.Unlock()
		b.w.log.Info("breaker closed: delivery ramps back up")
		b.rampUp()
	}
	b.w.updatePaused()
}

// Wake has the probe loop look at the record and the pause state again.
func (b *breaker) wake() {
	if b == nil {
		return
	}
	select {
	case b.changed <- struct{}{}:
	default:
	}
}

// rampUp takes all but one of the worker's attempt slots and gives them
// back doubling each rampStep, so a backlog is not sent at full
// concurrency the moment a receiver is back.
func (b *breaker) rampUp() {
	b.mu.Lock()
	ctx := b.ctx
	b.mu.Unlock()
	if ctx == nil {
		return
	}
	held := 0
	for held < cap(b.w.slots)-1 {
		select {
		case b.w.slots <- struct{}{}:
			held++
			continue
		default:
		}
		break
	}
	b.ramps.Add(1)
	go func() {
		defer b.ramps.Done()
		tick := time.NewTicker(rampStep)
		defer tick.Stop()
		for step := 1; held > 0; step *= 2 {
			select {
			case <-ctx.Done():
				step = held // give every slot back at once
			case <-tick.C:
			}
			for range min(step, held) {
				<-b.w.slots
				held--
			}
		}
	}()
}

// load reads the shared record before the worker starts pulling, so a
// worker started while the breaker is open (a restart, a reload) makes no
// attempt but the probes.
func (b *breaker) load(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	e, err := b.kv.Get(ctx, b.key)
	if err != nil {
		if !errors.Is(err, jetstream.ErrKeyNotFound) {
			b.w.log.Warn("reading the breaker", "error", err)
		}
		return
	}
	rec := &breakerRecord{}
	if json.Unmarshal(e.Value(), rec) == nil {
		b.apply(rec)
	}
}

// Run follows the shared record and probes while the breaker is open,
// until ctx is done.
func (b *breaker) run(ctx context.Context) {
	b.mu.Lock()
	b.ctx = ctx
	b.mu.Unlock()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); b.watch(ctx) }()
	b.probeLoop(ctx)
	wg.Wait()
	b.ramps.Wait()
}

func (b *breaker) watch(ctx context.Context) {
	for ctx.Err() == nil {
		err := b.watchOnce(ctx)
		if err != nil && ctx.Err() == nil {
			b.w.log.Warn("watching the breaker", "error", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
}

func (b *breaker) watchOnce(ctx context.Context) error {
	// Through the state bucket's shared watch: a watch of its own per
	// destination would cost the server a consumer each.
	return b.w.states.WatchKey(ctx, b.key, func(value []byte, ok bool) {
		rec := &breakerRecord{State: BreakerClosed}
		if ok && json.Unmarshal(value, rec) != nil {
			return
		}
		b.apply(rec)
	})
}

// probeLoop makes one probe each probe_every while the breaker is open and
// the destination not paused by an operator.
func (b *breaker) probeLoop(ctx context.Context) {
	for ctx.Err() == nil {
		rec := b.rec.Load()
		var due <-chan time.Time
		if rec.State != BreakerClosed && !b.w.opPaused.Load() {
			wait := time.Until(rec.ProbeAt)
			if wait <= 0 {
				b.tryProbe(ctx)
				continue
			}
			due = time.After(wait)
		}
		select {
		case <-ctx.Done():
		case <-b.changed:
		case <-due:
		}
	}
}

// tryProbe takes the probe slot, if no other process took it, and makes
// the probe.
func (b *breaker) tryProbe(ctx context.Context) {
	claimed, err := b.claim(ctx)
	if err != nil {
		b.w.log.Warn("claiming the breaker probe", "error", err)
	}
	if !claimed {
		// Another process probes, or the record moved on: wait for the
		// watch to bring the new one, at most a probe interval.
		select {
		case <-ctx.Done():
		case <-b.changed:
		case <-time.After(time.Duration(b.cfg.ProbeEvery)):
		}
		return
	}
	probed, ok := b.w.probe(ctx)
	outcome := map[bool]string{true: "success", false: "failure"}[ok]
	if !probed {
		outcome = "nothing_waiting"
	}
	b.metrics.probes.WithLabelValues(b.w.Name, outcome).Inc()
	next := &breakerRecord{State: BreakerOpen, Since: time.Now().UTC(), ProbeAt: b.rec.Load().ProbeAt}
	if !probed {
		// The activity probed last may be waiting out its hand-back: look
		// again in half an interval.
		next.ProbeAt = time.Now().Add(time.Duration(b.cfg.ProbeEvery) / 2).UTC()
	}
	if ok {
		next = &breakerRecord{State: BreakerClosed, Since: time.Now().UTC()}
	}
	b.apply(next)
	if err := b.put(context.WithoutCancel(ctx), next); err != nil {
		b.w.log.Error("recording the breaker after a probe", "error", err)
		return
	}
	if ok {
		b.w.alerts.Emit(ctx, AlertBreakerClosed, b.w.Name, nil)
	}
}

// claim sets the record half_open with the next probe due probe_every from
// now, if the current one is not closed and its probe is due; the
// compare-and-set makes one process the prober.
func (b *breaker) claim(ctx context.Context) (bool, error) {
	e, err := b.kv.Get(ctx, b.key)
	if err != nil {
		return false, err
	}
	var cur breakerRecord
	if err := json.Unmarshal(e.Value(), &cur); err != nil || cur.State == BreakerClosed || time.Now().Before(cur.ProbeAt) {
		return false, nil
	}
	now := time.Now()
	next := &breakerRecord{State: BreakerHalfOpen, Since: now.UTC(), ProbeAt: now.Add(time.Duration(b.cfg.ProbeEvery)).UTC()}
	data, _ := json.Marshal(next)
	if _, err := b.kv.Update(ctx, b.key, data, e.Revision()); err != nil {
		return false, ignoreConflict(err) // nil: another process claimed it first
	}
	b.apply(next)
	return true, nil
}

// probe attempts the next waiting activity: a real attempt. A success is
// settled as any other and closes the breaker. A failure is the breaker's
// attempt, not a step of the activity's schedule (DESIGN §12): it is kept
// in the activity's history marked as a probe, which numberAttempt does
// not count, and the activity is handed back to wait with the others
// (only max_age still applies), a while for an unordered destination so
// that the next probe takes another activity.
func (w *Worker) probe(ctx context.Context) (probed, ok bool) {
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
		return true, w.probeWith(ctx, msg, d)
	}
	return false, false
}

func (w *Worker) probeWith(ctx context.Context, msg jetstream.Msg, d *delivery) bool {
	w.inflight.Add(1)
	defer w.inflight.Done()
	ctx = context.WithoutCancel(ctx)
	var at sink.Attempt
	if w.Batch != nil {
		at = sink.Attempt{Err: errors.New("connector returned no result")}
		if ats := w.Batch.DeliverBatch(ctx, []*sink.Delivery{d.Delivery}); len(ats) == 1 {
			at = ats[0]
		}
	} else {
		at = w.Sink.Deliver(ctx, d.Delivery)
	}
	if kind, _ := sink.Classify(at.Err); at.Err == nil || kind == sink.Gone {
		w.settle(ctx, msg, d, at) // delivered, or the receiver asked to stop: as any attempt
		return at.Err == nil
	}
	w.probeFailed(ctx, msg, d, at)
	return false
}

// probeFailed keeps a failed probe in the activity's history and hands the
// activity back without using up any of its retries.
func (w *Worker) probeFailed(ctx context.Context, msg jetstream.Msg, d *delivery, at sink.Attempt) {
	log := w.activityLog(d)
	w.metrics.Latency.WithLabelValues(w.Name).Observe(at.Latency.Seconds())
	at.Probe = true
	history := w.recordFailure(ctx, log, d, &at)
	d.outcome = store.OutcomeFailed
	defer func() { w.logAttempt(d, at, d.outcome) }()
	if w.tooOld(msg, d) {
		w.deadLetter(ctx, log.With("status", at.Status, "error", at.Error), msg, d, history)
		return
	}
	var nakErr error
	if d.inLane {
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
	w.paused.Store(w.opPaused.Load() || w.breaker.holding())
	w.signal()
	// A resume must restart the probes the pause stopped.
	w.breaker.wake()
}

// BreakerMetrics are relay_breaker_state and relay_breaker_probes_total.
type BreakerMetrics struct {
	state  *prometheus.GaugeVec
	probes *prometheus.CounterVec
}

func NewBreakerMetrics(reg prometheus.Registerer) *BreakerMetrics {
	m := &BreakerMetrics{
		state: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "relay_breaker_state", Help: "Breaker of each destination: 0 closed, 1 open, 2 half_open.",
		}, []string{"destination"}),
		probes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relay_breaker_probes_total", Help: "Probes made while a breaker was open, by destination and outcome.",
		}, []string{"destination", "outcome"}),
	}
	reg.MustRegister(m.state, m.probes)
	return m
}
