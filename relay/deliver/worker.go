// The worker's stages, one a file: pull.go takes activities from the
// destination's consumer (pauses, back-offs, rate limit), attempt.go decodes
// and matches one and makes the attempt, settle.go acks, retries or
// dead-letters it after the attempt.

package deliver

import (
	"context"
	"errors"
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
	"github.com/relaydev/relay/relay/activity"
	"github.com/relaydev/relay/relay/alert"
	"github.com/relaydev/relay/relay/breaker"
	"github.com/relaydev/relay/relay/consent"
	"github.com/relaydev/relay/relay/held"
	"github.com/relaydev/relay/relay/kindchange"
	"github.com/relaydev/relay/relay/metrics"
	"github.com/relaydev/relay/relay/recent"
	"github.com/relaydev/relay/relay/rules"
	"github.com/relaydev/relay/relay/schedule"
	"github.com/relaydev/relay/relay/sink"
	"github.com/relaydev/relay/relay/store"
	"github.com/relaydev/relay/relay/telemetry"
)

// Worker delivers one destination's activities. A fanned destination's
// first attempts come from the fan-out (fanout.go), which offers each
// activity it takes; its own consumer, on QUEUES, carries only what leaves
// that fast path (retries, hand-overs, replays). An ordered or batch
// destination reads everything from its own consumer on ACTIVITIES.
type Worker struct {
	Name  string
	Cfg   config.Destination
	Rules *rules.Rules
	Sink  sink.Sink      // one of Sink or Batch is set
	Batch sink.BatchSink // nil for sinks that take one activity at a time

	st      Stores // the bus and what Relay keeps there (Connect)
	metrics *metrics.Set
	log     *slog.Logger
	debug   bool // the process logs at debug level
	limiter *rate.Limiter
	sched   schedule.Schedule // retry.schedule, retry.max_age and the longest back-off
	ackWait time.Duration
	breaker *breaker.Breaker // nil with breaker: off
	mover   *kindchange.Mover
	queue   ownQueue
	fan     fannedState

	paused    atomic.Bool  // opPaused, or the breaker holds (see updatePaused)
	opPaused  atomic.Bool  // paused by an operator, or by a 410
	throttled atomic.Int64 // unix nanos until which the destination backs off
	// succeeded is when an attempt last succeeded here (unix nanos),
	// breaker or not: a reload that turns the breaker on carries it.
	succeeded atomic.Int64
	changed   chan struct{}
	// slots holds one token per attempt in flight. It outlives a pull: the
	// iterator drained on a pause or back-off leaves attempts in flight,
	// and the next iterator's activities wait for them (max_in_flight).
	slots    chan struct{}
	inflight sync.WaitGroup
	// ruleLogged is when a `when` error was last logged (unix nanos).
	ruleLogged atomic.Int64
	session    atomic.Pointer[orderSession] // the lanes of order: contact, while pulling
	// pinned is the pin id JetStream last gave this process's pulls of an
	// ordered destination ("" before any).
	pinned atomic.Value
	stats  recent.Stats
	// heldBy is why the connector holds the destination ("" when not).
	heldBy atomic.Value
}

// ownQueue is the destination's own consumer.
type ownQueue struct {
	// cons is the consumer, once bound: written by the run loop (pull,
	// ensure) and by the breaker's probe (Ensure), so read and written
	// through consumer and setConsumer only.
	cons atomic.Pointer[jetstream.Consumer]
	// made: the consumer exists (made by MakeQueue or ensure); mu makes
	// one at a time.
	made atomic.Bool
	mu   sync.Mutex
}

// fannedState is what a fanned worker keeps for the fan-out's offers and
// for sleeping while its own consumer is empty.
type fannedState struct {
	// runCtx is Run's: the fan-out offers activities only while it is
	// not done. offerMu orders offers before Run's wait for the attempts
	// in flight.
	offerMu sync.RWMutex
	runCtx  context.Context
	// detachedUntil (unix nanos) is until when the fan-out hands this
	// destination's activities to its own consumer without waiting for a
	// slot; detachFor is the length of the last such period.
	detachedUntil atomic.Int64
	detachFor     atomic.Int64
	// work is signalled when something is stored on the destination's
	// own subject.
	work chan struct{}
	// checked: Ensure ran (its consumer bound if it existed, when it was
	// added recorded); an idle worker then only looks whether something
	// was stored for it.
	checked atomic.Bool
	// wokeAt (unix nanos) is when the sleeping worker was last woken.
	wokeAt atomic.Int64
}

// consumer is the destination's own consumer, nil until bound.
func (w *Worker) consumer() jetstream.Consumer {
	if p := w.queue.cons.Load(); p != nil {
		return *p
	}
	return nil
}

// setConsumer binds the destination's own consumer (nil unbinds it, to be
// bound again).
func (w *Worker) setConsumer(c jetstream.Consumer) {
	if c == nil {
		w.queue.cons.Store(nil)
	} else {
		w.queue.cons.Store(&c)
	}
}

// New makes a destination's worker around its connector; Connect gives
// it the stores before it runs.
func New(d config.Destination, r *rules.Rules, conn sink.Connector, log *slog.Logger, m *metrics.Set) (*Worker, error) {
	if (conn.Sink == nil) == (conn.Batch == nil) {
		return nil, fmt.Errorf("destination %s: a connector needs one of Sink and Batch", d.Name)
	}
	w := &Worker{Name: d.Name, Cfg: d, Rules: r, log: log, metrics: m, Sink: conn.Sink, Batch: conn.Batch}
	w.init()
	return w, nil
}

// Stores are what the workers of a process share: the bus and what Relay
// keeps there, the held-bytes budget, the alerts and the breakers' series.
type Stores struct {
	Bus         *store.Bus
	DeadLetters *store.DeadLetters
	History     *store.History
	States      *store.States
	Log         *store.DeliveryLog // nil when log.deliveries is off
	Held        *held.Budget
	Calls       *held.Calls      // engine.max_in_flight; nil bounds nothing
	Alerts      *alert.Publisher // nil without alerts
	Breakers    *breaker.Metrics
	Tracing     *telemetry.Tracing // nil when telemetry is off
	Consent     *consent.States    // the channel states; nil checks nothing
}

// Connect gives the worker the stores, and its breaker unless it is off.
func (w *Worker) Connect(s Stores) {
	w.st = s
	w.mover.Bus, w.mover.History, w.mover.States = s.Bus, s.History, s.States
	if !w.Cfg.Breaker.Off {
		w.breaker = breaker.New(w, breaker.Options{Name: w.Name, Config: w.Cfg.Breaker, KV: s.Bus.State, States: s.States,
			Slots: w.slots, Log: w.log, Alerts: s.Alerts, Metrics: s.Breakers})
	}
}

func (w *Worker) init() {
	w.sched = schedule.Schedule{Delays: w.Cfg.Retry.Durations(), MaxAge: time.Duration(w.Cfg.Retry.MaxAge)}
	timeout := time.Duration(w.Cfg.Timeout)
	w.ackWait = 2*timeout + 30*time.Second
	if w.Batch != nil {
		_, wait := w.Batch.Batch()
		w.ackWait += wait
	}
	// An activity waiting in its slot through a back-off, then attempted,
	// must fit in the ack wait: longer back-offs hand it back instead.
	w.sched.MaxHold = (w.ackWait - 2*timeout) / 2
	if ps := w.Cfg.RateLimit.PerSecond(); ps > 0 {
		w.limiter = rate.NewLimiter(rate.Limit(ps), max(1, int(math.Ceil(ps))))
	}
	w.changed = make(chan struct{}, 1)
	w.fan.work = make(chan struct{}, 1)
	w.slots = make(chan struct{}, max(1, w.Cfg.MaxInFlight))
	w.log = w.log.With("destination", w.Name)
	w.mover = kindchange.New(kindchange.Options{Name: w.Name, Schedule: w.sched, Rules: w.Rules, AckWait: w.ackWait, Log: w.log,
		Fanned: w.Fanned, Resolve: w.resolve, MakeQueue: w.MakeQueue})
	w.debug = w.log.Enabled(context.Background(), slog.LevelDebug)
	w.initOrder()
}

// Ensure creates or updates the destination's durable consumer. Filters
// follow the include patterns; a new consumer starts with new activities
// (replay --history backfills older ones).
//
// A fanned destination's consumer is made only once something is stored
// for it (ensureQueue): until then Ensure binds to it if it exists, and
// records when the destination was added (for traces).
//
// A consumer the destination had as another kind (fanned, or ordered or
// batch) is left for the worker to move what it holds (kindchange).
func (w *Worker) Ensure(ctx context.Context) error {
	if w.Fanned() {
		return w.ensureQueue(ctx, false)
	}
	if err := w.ensure(ctx); err != nil {
		return err
	}
	// What it had on QUEUES as a fanned destination is moved over.
	_, err := w.st.Bus.JS.Consumer(ctx, store.StreamQueues, store.ConsumerName(w.Name))
	switch {
	case err == nil:
		w.mover.Request()
	case !errors.Is(err, jetstream.ErrConsumerNotFound):
		return fmt.Errorf("consumer %s on %s: %w", store.ConsumerName(w.Name), store.StreamQueues, err)
	}
	return nil
}

// ensureQueue binds a fanned destination's consumer, making or updating
// it when it exists or create is set.
func (w *Worker) ensureQueue(ctx context.Context, create bool) error {
	old, _ := w.st.Bus.JS.Consumer(ctx, store.StreamActivities, store.ConsumerName(w.Name))
	if err := w.st.States.RecordAdded(ctx, w.Name, old); err != nil {
		return err
	}
	_, err := w.st.Bus.JS.Consumer(ctx, store.StreamQueues, store.ConsumerName(w.Name))
	switch {
	case err == nil || create:
		if err := w.ensure(ctx); err != nil {
			return err
		}
	case !errors.Is(err, jetstream.ErrConsumerNotFound):
		return fmt.Errorf("consumer %s: %w", store.ConsumerName(w.Name), err)
	}
	if old != nil {
		// Its consumer as an ordered or batch destination (or an earlier
		// Relay's): what it has not settled is handed over (kindchange),
		// up to where the fan-out stood when the destination joined it.
		if !w.mover.FanFromSet() {
			if fan, err := w.st.Bus.JS.Consumer(ctx, store.StreamActivities, store.FanoutConsumer); err == nil {
				w.SetFanFrom(fan.CachedInfo().Delivered.Stream, false)
			}
		}
		w.mover.Request()
	}
	w.fan.checked.Store(true)
	return nil
}

// SetFanFrom records the fan-out's delivered stream sequence when the
// destination joined it (kindchange.Mover.SetFanFrom).
func (w *Worker) SetFanFrom(seq uint64, force bool) { w.mover.SetFanFrom(seq, force) }

// SetAckWait sets the ack wait of the destination's consumer, and the
// longest back-off an activity waits through in its slot (half of it),
// before the worker runs: a test sees what a wait longer than the ack wait
// does without waiting half a minute.
func (w *Worker) SetAckWait(d time.Duration) { w.ackWait, w.sched.MaxHold, w.mover.AckWait = d, d/2, d }

// UnsetFanFrom forgets the fan-out's sequence noted for the worker: it is
// read again when the worker hands over (a reload that could not read it).
func (w *Worker) UnsetFanFrom() { w.mover.UnsetFanFrom() }

// Moving reports whether the worker is moving what the destination held as
// another kind (kindchange).
func (w *Worker) Moving() bool { return w.mover.Moving() }

// BreakerState is the breaker's state: closed, open, half_open, or "" with
// breaker: off.
func (w *Worker) BreakerState() string { return w.breaker.State() }

// CarryBreaker gives the worker's breaker what old's observed: a reload
// replaces a destination's worker, not the window its breaker judges.
// The last success is carried even when old had breaker: off (it kept
// no window): a breaker a reload turns on must not open on failures
// within a window in which the receiver took an activity.
func (w *Worker) CarryBreaker(old *Worker) {
	if old == nil {
		return
	}
	w.breaker.Carry(old.breaker)
	if t := old.succeeded.Load(); t > w.succeeded.Load() {
		w.succeeded.Store(t) // kept through reloads with the breaker off
	}
	if t := w.succeeded.Load(); t != 0 {
		w.breaker.SucceededAt(time.Unix(0, t))
	}
}

// Recent is what this process delivered and failed in the minute before
// now, and the p99 latency of it in milliseconds (-1 when none).
func (w *Worker) Recent(now time.Time) (delivered, failed int, p99 float64) {
	return w.stats.LastMinute(now)
}

// LastOutcomes is when this process last delivered to the destination and
// last failed to (zero when never).
func (w *Worker) LastOutcomes() (success, failure time.Time) { return w.stats.Last() }

// queued reports whether anything was ever stored on a fanned
// destination's own subject (still retained).
func (w *Worker) queued(ctx context.Context) (bool, error) {
	_, err := w.st.Bus.Queues.GetLastMsgForSubject(ctx, w.OwnSubject())
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return false, nil
	}
	return err == nil, err
}

func (w *Worker) ensure(ctx context.Context) error {
	cfg := w.queueConfig()
	if err := w.orderConsumer(&cfg); err != nil {
		return err
	}
	if !w.Fanned() {
		if err := w.mover.StartWhereFannedLeft(ctx, &cfg); err != nil {
			return err
		}
	}
	cons, err := w.st.Bus.JS.CreateOrUpdateConsumer(ctx, w.Stream(), cfg)
	if err != nil {
		return fmt.Errorf("create consumer %s: %w", store.ConsumerName(w.Name), err)
	}
	w.setConsumer(cons)
	w.queue.made.Store(true)
	return nil
}

// queueConfig is the destination's own consumer.
func (w *Worker) queueConfig() jetstream.ConsumerConfig {
	filters := []string{w.OwnSubject()}
	if !w.Fanned() { // it reads the activities itself
		filters = append(w.Rules.FilterSubjects(), filters...)
	}
	cfg := jetstream.ConsumerConfig{
		Durable:        store.ConsumerName(w.Name),
		Description:    "Relay destination " + w.Name,
		FilterSubjects: filters,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        w.ackWait,
		MaxDeliver:     -1,
		MaxAckPending:  max(1000, 4*w.Cfg.MaxInFlight, 2*w.maxBatch()),
		DeliverPolicy:  jetstream.DeliverNewPolicy,
		Replicas:       0,
	}
	if w.Fanned() {
		// Made once something is stored for it: all of it is.
		cfg.DeliverPolicy = jetstream.DeliverAllPolicy
	}
	return cfg
}

// MakeQueue makes a fanned destination's consumer, if it is not made yet,
// before anything is stored for it (a hand-over, a replay): the consumer
// exists whenever the destination has something of its own, so its
// pending counts it. The worker binds to it when it next pulls.
func (w *Worker) MakeQueue(ctx context.Context) error {
	if w.queue.made.Load() {
		return nil
	}
	w.queue.mu.Lock()
	defer w.queue.mu.Unlock()
	if w.queue.made.Load() {
		return nil
	}
	cfg := w.queueConfig()
	if _, err := w.st.Bus.JS.CreateOrUpdateConsumer(ctx, store.StreamQueues, cfg); err != nil {
		return fmt.Errorf("create consumer %s: %w", store.ConsumerName(w.Name), err)
	}
	w.queue.made.Store(true)
	return nil
}

// Stream is the stream of the destination's own consumer: QUEUES for a
// Fanned destination, whose hand-overs are kept apart from the activities
// (interleaved, they would keep JetStream from dropping the cache of a
// block it has read through), ACTIVITIES for the others.
func (w *Worker) Stream() string {
	if w.Fanned() {
		return store.StreamQueues
	}
	return store.StreamActivities
}

// OwnSubject is where retries, hand-overs and replays for the destination
// are stored.
func (w *Worker) OwnSubject() string {
	if w.Fanned() {
		return store.SubjectQueue + w.Name
	}
	return store.SubjectRedeliver + w.Name
}

// Run delivers until ctx is done, then waits for in-flight deliveries.
func (w *Worker) Run(ctx context.Context) error {
	defer w.inflight.Wait()
	// A worker starts as the destination is: paused (by an operator or a
	// 410) or held by an open breaker, before it pulls or the fan-out
	// offers it anything. A reload or a restart must not deliver what a
	// pause holds back.
	w.loadState(ctx)
	go w.watchState(ctx)
	moved := make(chan struct{})
	go func() { defer close(moved); w.mover.Run(ctx) }()
	defer func() { <-moved }()
	if w.breaker != nil {
		w.breaker.Load(ctx)
		done := make(chan struct{})
		go func() { defer close(done); w.breaker.Run(ctx) }()
		defer func() { <-done }()
	}
	w.TakeFrom(ctx)
	defer func() {
		// Run returns once ctx is done: an offer that saw it not done
		// has added its attempt by the time this lock is taken.
		w.fan.offerMu.Lock()
		w.fan.offerMu.Unlock()
	}()
	defer w.unpin(context.WithoutCancel(ctx))
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

// unpin frees an ordered destination's consumer from this process when
// the worker stops (a reload, a shutdown), if this process is the one
// pinned: the next worker, here or in another process, is pinned at once
// rather than after the pin's TTL, in which nothing is delivered.
func (w *Worker) unpin(ctx context.Context) {
	pin, _ := w.pinned.Load().(string)
	cons := w.consumer()
	if !w.Ordered() || pin == "" || cons == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	info, err := cons.Info(ctx)
	if err != nil {
		return
	}
	for _, g := range info.PriorityGroups {
		if g.Group == orderGroup && g.PinnedClientID == pin {
			if err := w.st.Bus.Activities.UnpinConsumer(ctx, store.ConsumerName(w.Name), orderGroup); err != nil {
				w.log.Debug("unpinning the destination's consumer", "error", err)
			}
		}
	}
}

// loadState reads whether the destination is paused before the worker
// takes anything. When the state cannot be read it starts paused, and the
// watch brings the state when it can.
func (w *Worker) loadState(ctx context.Context) {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	state, err := w.st.States.Get(rctx, w.Name)
	if err != nil {
		w.log.Warn("reading the destination's state; holding it until the watch brings it", "error", err)
		state = store.StatePaused
	}
	w.opPaused.Store(state == store.StatePaused)
	w.updatePaused()
}

func (w *Worker) watchState(ctx context.Context) {
	for ctx.Err() == nil {
		err := w.st.States.Watch(ctx, w.Name, func(state string) {
			w.opPaused.Store(state == store.StatePaused)
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

// TakeFrom has the worker take the fan-out's activities until ctx is done.
func (w *Worker) TakeFrom(ctx context.Context) {
	w.fan.offerMu.Lock()
	w.fan.runCtx = ctx
	w.fan.offerMu.Unlock()
}

// Offer starts an attempt of an activity the fan-out read, if the
// destination is taking activities and one of its attempt slots is free
// (or frees up soon, with wait); false: no slot was taken.
func (w *Worker) Offer(msg jetstream.Msg, a *activity.Activity, wait bool) bool {
	w.fan.offerMu.RLock()
	defer w.fan.offerMu.RUnlock()
	ctx := w.fan.runCtx
	var start time.Time
	if wait { // the fan-out's slow way: the wait shows in the attempt's trace
		start = time.Now()
	}
	if ctx == nil || ctx.Err() != nil || !w.Active() || !w.takeSlot(ctx, wait) {
		return false
	}
	w.inflight.Add(1)
	d := &delivery{Delivery: sink.Delivery{Activity: a, Raw: msg.Data(), Attempt: 1}}
	if wait {
		d.fanoutWait = time.Since(start)
	}
	go func() {
		room := held.Held(w.st.Calls)
		defer func() { room.Release(); <-w.slots; w.inflight.Done() }()
		w.numberIfAgain(ctx, msg, d)
		w.attempt(ctx, msg, d, &room)
	}()
	return true
}

// takeSlot takes an attempt slot, waiting up to FanoutSlotWait. A
// destination that had none free for that long is detached: for a while
// (doubling while it lasts) the fan-out does not wait on it, and its
// activities go to its own consumer, which works through them as slots
// free up. Without wait it only takes a free one.
func (w *Worker) takeSlot(ctx context.Context, wait bool) bool {
	if !w.takeOwnSlot(ctx, wait) {
		return false
	}
	// Then the process's room for the call: one held by others makes the
	// fan-out wait up to FanoutSlotWait and then hand the activity to the
	// destination's own consumer, without detaching the destination (the
	// others are busy, not it).
	var took bool
	if wait {
		took = w.st.Calls.TakeWithin(ctx, FanoutSlotWait) // tries at once first
	} else {
		took = w.st.Calls.TryTake()
	}
	if took {
		return true
	}
	<-w.slots
	return false
}

// takeOwnSlot takes one of the destination's attempt slots (max_in_flight),
// as takeSlot says.
func (w *Worker) takeOwnSlot(ctx context.Context, wait bool) bool {
	select {
	case w.slots <- struct{}{}:
		return true
	default:
	}
	if !wait || time.Now().UnixNano() < w.fan.detachedUntil.Load() {
		return false
	}
	t := time.NewTimer(FanoutSlotWait)
	defer t.Stop()
	select {
	case w.slots <- struct{}{}:
		w.fan.detachFor.Store(0)
		return true
	case <-ctx.Done():
		return false
	case <-t.C:
	}
	d := min(max(2*time.Duration(w.fan.detachFor.Load()), detachMin), detachMax)
	w.fan.detachFor.Store(int64(d))
	w.fan.detachedUntil.Store(time.Now().Add(d).UnixNano())
	if d == detachMin {
		w.log.Info("destination is slower than the others: its activities wait in its own consumer", "for", d)
	}
	return false
}

const (
	// FanoutSlotWait is how long the fan-out waits for a destination's
	// free attempt slot before it hands the activity to the destination's
	// own consumer and stops waiting on it for a while (detachMin, doubling
	// up to detachMax while that goes on): one slow destination must not
	// hold the others back.
	FanoutSlotWait = 250 * time.Millisecond
	detachMin      = time.Second
	detachMax      = 30 * time.Second
)
