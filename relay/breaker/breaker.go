// Package breaker stops attempts to a receiver that fails every one, for
// every process at once, and probes it until it answers again (DESIGN §12).
package breaker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/relaydev/relay/config"
	"github.com/relaydev/relay/relay/alert"
	"github.com/relaydev/relay/relay/sink"
	"github.com/relaydev/relay/relay/store"
)

// States, as the APIs show them (nothing when a destination has breaker:
// off).
const (
	Closed   = "closed"
	Open     = "open"
	HalfOpen = "half_open"
)

// Destination is the worker a breaker guards.
type Destination interface {
	// Probe attempts the next waiting activity; probed is false when none
	// was waiting, ok when the receiver took it.
	Probe(ctx context.Context) (probed, ok bool)
	// BreakerChanged tells the worker the breaker's state changed: it
	// stops or resumes pulling (Holding).
	BreakerChanged()
	// OperatorPaused reports whether an operator paused the destination:
	// no probes then.
	OperatorPaused() bool
}

// rampStep is how often delivery doubles its concurrency after the breaker
// closes, from one attempt at a time up to max_in_flight.
const rampStep = time.Second

// record is a destination's breaker as every Relay process sees it,
// in the state bucket beside the pause state.
type record struct {
	State string    `json:"state"`
	Since time.Time `json:"since"`
	// ProbeAt is when the next probe may start, while not closed.
	ProbeAt time.Time `json:"probe_at"`
}

func breakerKey(dest string) string { return "breaker." + dest }

// Breaker stops attempts to a receiver that fails every one. Failures are
// counted in each process; the state is shared through the bucket, so when
// one process opens the breaker every process stops, and only the process
// that wins the probe slot (a compare-and-set on the record) probes.
type Breaker struct {
	name    string
	d       Destination
	slots   chan struct{} // the worker's attempt slots (rampUp)
	states  *store.States
	log     *slog.Logger
	alerts  *alert.Publisher
	cfg     config.Breaker
	kv      jetstream.KeyValue
	key     string
	metrics *Metrics

	rec     atomic.Pointer[record] // as last seen
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
func (b *Breaker) failMemory() int { return 4 * b.cfg.Failures }

// Options are what a breaker needs besides its destination.
type Options struct {
	Name    string // the destination's
	Config  config.Breaker
	KV      jetstream.KeyValue // the state bucket
	States  *store.States      // its shared watch
	Slots   chan struct{}      // the worker's attempt slots
	Log     *slog.Logger
	Alerts  *alert.Publisher // nil without alerts
	Metrics *Metrics
}

// New is the breaker of one destination, closed until its record says
// otherwise.
func New(d Destination, o Options) *Breaker {
	b := &Breaker{name: o.Name, d: d, slots: o.Slots, states: o.States, log: o.Log, alerts: o.Alerts,
		cfg: o.Config, kv: o.KV, key: breakerKey(o.Name), metrics: o.Metrics, changed: make(chan struct{}, 1)}
	b.rec.Store(&record{State: Closed})
	return b
}

// State is the breaker's state as this process last saw it; "" when off.
func (b *Breaker) State() string {
	if b == nil {
		return ""
	}
	return b.rec.Load().State
}

// Holding reports whether the breaker keeps the worker from pulling.
func (b *Breaker) Holding() bool { return b != nil && b.rec.Load().State != Closed }

// Observe counts an attempt's outcome and opens the breaker when every
// attempt of the last cfg.Window failed and they were attempts of at least
// cfg.Failures different activities (DESIGN §12): one success in the
// window keeps it closed, since a receiver that refuses some payloads is
// not down, and the retries of a few activities it refuses do not add up
// to a receiver that is down. A 410 is not counted: it pauses the
// destination instead.
func (b *Breaker) Observe(ctx context.Context, id string, at sink.Attempt) {
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
	if trip && b.State() == Closed {
		b.open(ctx)
	}
}

// Carry gives b what old observed — its last success and the failures it
// keeps — so a reload's new worker judges the same window as the one it
// replaces: a success just before the reload still keeps the breaker
// closed, and failures just before it still count. Either may be nil.
func (b *Breaker) Carry(old *Breaker) {
	if b == nil || old == nil {
		return
	}
	old.mu.Lock()
	succeeded, fails := old.succeeded, slices.Clone(old.fails)
	old.mu.Unlock()
	b.mu.Lock()
	defer b.mu.Unlock()
	if succeeded.After(b.succeeded) {
		b.succeeded = succeeded
	}
	b.fails = append(fails, b.fails...)
	if len(b.fails) > b.failMemory() {
		b.fails = slices.Delete(b.fails, 0, len(b.fails)-b.failMemory())
	}
}

// SucceededAt tells b an attempt succeeded at t (one its destination's
// worker saw before b existed); a later success b saw stands.
func (b *Breaker) SucceededAt(t time.Time) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if t.After(b.succeeded) {
		b.succeeded = t
	}
}

// failed counts a failure at now and reports whether the breaker should
// open. Called with b.mu held.
func (b *Breaker) failed(now time.Time, id string) bool {
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
func (b *Breaker) open(ctx context.Context) {
	now := time.Now()
	rec := &record{State: Open, Since: now.UTC(), ProbeAt: now.Add(time.Duration(b.cfg.ProbeEvery)).UTC()}
	b.log.Warn("breaker opened: every attempt of the window failed, of enough different activities; only probes until one succeeds",
		"failures", b.cfg.Failures, "window", time.Duration(b.cfg.Window), "probe_every", time.Duration(b.cfg.ProbeEvery))
	b.apply(rec)
	opened, err := b.openShared(ctx, rec)
	if err != nil {
		b.log.Error("recording the open breaker", "error", err)
		return
	}
	if opened { // not already open by another process: one alert
		b.alerts.Emit(ctx, alert.BreakerOpened, b.name, map[string]any{
			"failures": b.cfg.Failures, "window": b.cfg.Window.String(), "probe_every": b.cfg.ProbeEvery.String()})
	}
}

// openShared stores rec unless the shared record is already open or
// half_open, with a compare-and-set so that of several processes opening
// the breaker at once one does.
func (b *Breaker) openShared(ctx context.Context, rec *record) (bool, error) {
	data, _ := json.Marshal(rec)
	e, err := b.kv.Get(ctx, b.key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		_, err = b.kv.Create(ctx, b.key, data)
		return err == nil, ignoreConflict(err)
	}
	if err != nil {
		return false, err
	}
	var cur record
	if json.Unmarshal(e.Value(), &cur) == nil && cur.State != Closed {
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

func (b *Breaker) put(ctx context.Context, rec *record) error {
	data, _ := json.Marshal(rec)
	if _, err := b.kv.Put(ctx, b.key, data); err != nil {
		return fmt.Errorf("set breaker of %s: %w", b.name, err)
	}
	return nil
}

// apply makes rec this process's view: the worker stops pulling while the
// breaker is not closed, and ramps back up when it closes.
func (b *Breaker) apply(rec *record) {
	prev := b.rec.Swap(rec)
	b.metrics.state.WithLabelValues(b.name).Set(map[string]float64{Closed: 0, Open: 1, HalfOpen: 2}[rec.State])
	if prev.State != Closed && rec.State == Closed {
		// A probe (here or in another process) succeeded: the window
		// starts again from it, so attempts that failed before it cannot
		// open the breaker again at once.
		b.mu.Lock()
		b.fails, b.succeeded = b.fails[:0], time.Now()
		b.mu.Unlock()
		b.log.Info("breaker closed: delivery ramps back up")
		b.rampUp()
	}
	b.d.BreakerChanged()
}

// Wake has the probe loop look at the record and the pause state again.
func (b *Breaker) Wake() {
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
func (b *Breaker) rampUp() {
	b.mu.Lock()
	ctx := b.ctx
	b.mu.Unlock()
	if ctx == nil {
		return
	}
	held := 0
	for held < cap(b.slots)-1 {
		select {
		case b.slots <- struct{}{}:
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
				<-b.slots
				held--
			}
		}
	}()
}

// Load reads the shared record before the worker starts pulling, so a
// worker started while the breaker is open (a restart, a reload) makes no
// attempt but the probes.
func (b *Breaker) Load(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	e, err := b.kv.Get(ctx, b.key)
	if err != nil {
		if !errors.Is(err, jetstream.ErrKeyNotFound) {
			b.log.Warn("reading the breaker", "error", err)
		}
		return
	}
	rec := &record{}
	if json.Unmarshal(e.Value(), rec) == nil {
		b.apply(rec)
	}
}

// Run follows the shared record and probes while the breaker is open,
// until ctx is done.
func (b *Breaker) Run(ctx context.Context) {
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

func (b *Breaker) watch(ctx context.Context) {
	for ctx.Err() == nil {
		err := b.watchOnce(ctx)
		if err != nil && ctx.Err() == nil {
			b.log.Warn("watching the breaker", "error", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
}

func (b *Breaker) watchOnce(ctx context.Context) error {
	// Through the state bucket's shared watch: a watch of its own per
	// destination would cost the server a consumer each.
	return b.states.WatchKey(ctx, b.key, func(value []byte, ok bool) {
		rec := &record{State: Closed}
		if ok && json.Unmarshal(value, rec) != nil {
			return
		}
		b.apply(rec)
	})
}

// probeLoop makes one probe each probe_every while the breaker is open and
// the destination not paused by an operator.
func (b *Breaker) probeLoop(ctx context.Context) {
	for ctx.Err() == nil {
		rec := b.rec.Load()
		var due <-chan time.Time
		if rec.State != Closed && !b.d.OperatorPaused() {
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
func (b *Breaker) tryProbe(ctx context.Context) {
	claimed, err := b.claim(ctx)
	if err != nil {
		b.log.Warn("claiming the breaker probe", "error", err)
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
	probed, ok := b.d.Probe(ctx)
	outcome := map[bool]string{true: "success", false: "failure"}[ok]
	if !probed {
		outcome = "nothing_waiting"
	}
	b.metrics.probes.WithLabelValues(b.name, outcome).Inc()
	next := &record{State: Open, Since: time.Now().UTC(), ProbeAt: b.rec.Load().ProbeAt}
	if !probed {
		// The activity probed last may be waiting out its hand-back: look
		// again in half an interval.
		next.ProbeAt = time.Now().Add(time.Duration(b.cfg.ProbeEvery) / 2).UTC()
	}
	if ok {
		next = &record{State: Closed, Since: time.Now().UTC()}
	}
	b.apply(next)
	if err := b.put(context.WithoutCancel(ctx), next); err != nil {
		b.log.Error("recording the breaker after a probe", "error", err)
		return
	}
	if ok {
		b.alerts.Emit(ctx, alert.BreakerClosed, b.name, nil)
	}
}

// claim sets the record half_open with the next probe due probe_every from
// now, if the current one is not closed and its probe is due; the
// compare-and-set makes one process the prober.
func (b *Breaker) claim(ctx context.Context) (bool, error) {
	e, err := b.kv.Get(ctx, b.key)
	if err != nil {
		return false, err
	}
	var cur record
	if err := json.Unmarshal(e.Value(), &cur); err != nil || cur.State == Closed || time.Now().Before(cur.ProbeAt) {
		return false, nil
	}
	now := time.Now()
	next := &record{State: HalfOpen, Since: now.UTC(), ProbeAt: now.Add(time.Duration(b.cfg.ProbeEvery)).UTC()}
	data, _ := json.Marshal(next)
	if _, err := b.kv.Update(ctx, b.key, data, e.Revision()); err != nil {
		return false, ignoreConflict(err) // nil: another process claimed it first
	}
	b.apply(next)
	return true, nil
}

// Metrics are relay_breaker_state and relay_breaker_probes_total.
type Metrics struct {
	state  *prometheus.GaugeVec
	probes *prometheus.CounterVec
}

// NewMetrics registers the series on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
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
