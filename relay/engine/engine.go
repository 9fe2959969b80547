// Package engine runs the destinations: one fan-out reads each stored
// activity once and offers it to the workers whose rules take it; the
// engine starts, stops and swaps those workers and reads their status.
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/relaydev/relay/config"
	"github.com/relaydev/relay/relay/alert"
	"github.com/relaydev/relay/relay/deliver"
	"github.com/relaydev/relay/relay/held"
	"github.com/relaydev/relay/relay/metrics"
	"github.com/relaydev/relay/relay/store"
)

// Engine holds the workers of this process and the fan-out that feeds them.
type Engine struct {
	log     *slog.Logger
	metrics *metrics.Set
	held    *held.Budget
	alerts  *alert.Publisher // nil without alerts

	mu      sync.RWMutex // guards workers and running
	workers []*deliver.Worker
	running map[string]*running
	// runCtx is Start's: workers started later (a reload) stop with it.
	runCtx context.Context
	runWG  sync.WaitGroup

	// Set by Attach.
	bus     *store.Bus
	dls     *store.DeadLetters
	dlog    *store.DeliveryLog // nil when log.deliveries is off
	history *store.History
	states  *store.States
	stores  deliver.Stores
	fanout  *Fanout
	started chan struct{}
	// first keeps status's lookups of the oldest waiting message a moment.
	first firstCache
	// last keeps what the delivery log says of each destination's last
	// outcomes a moment (lastCache).
	last lastCache
}

// running is a destination's worker as it runs.
type running struct {
	w         *deliver.Worker
	cancel    context.CancelFunc
	done      chan struct{}
	closeSink func() // set when Relay made the connector
}

// New is an engine for these workers; it registers the gauges read from
// the consumers on m. Nothing runs before Attach and Start.
func New(log *slog.Logger, m *metrics.Set, budget *held.Budget, alerts *alert.Publisher, workers []*deliver.Worker) *Engine {
	e := &Engine{log: log, metrics: m, held: budget, alerts: alerts, workers: workers,
		running: map[string]*running{}, started: make(chan struct{})}
	e.last.sem = make(chan struct{}, statusParallel)
	m.Registry.MustRegister(newGauges(e))
	return e
}

// Attach gives the engine and its workers the stores on the bus.
func (e *Engine) Attach(s deliver.Stores) {
	e.bus, e.dls, e.dlog, e.history, e.states = s.Bus, s.DeadLetters, s.Log, s.History, s.States
	e.stores = s
	e.alerts.Attach(s.Bus.JS)
	e.fanout = newFanout(s.Bus, e.held, e.log)
	for _, w := range e.Workers() {
		w.Connect(s)
	}
}

// Connect gives a worker made after Attach (a reload's) the stores.
func (e *Engine) Connect(w *deliver.Worker) {
	if e.bus != nil {
		w.Connect(e.stores)
	}
}

// Prepare makes or binds the fan-out's consumer and the destinations' own,
// and has the fan-out listen for what ingest stores. The fan-out's consumer
// comes first: made for the first time, it starts where the destinations'
// consumers of an earlier Relay stood. stop ends the listening.
func (e *Engine) Prepare(ctx context.Context) (stop func(), err error) {
	if err := e.fanout.Ensure(ctx, e.Workers()); err != nil {
		return nil, err
	}
	if err := deliver.EnsureAll(ctx, e.Workers()); err != nil {
		return nil, err
	}
	e.fanout.setWorkers(e.Workers())
	return e.fanout.listen(), nil
}

// Start runs the alerts, every worker (closers are the close functions of
// the connectors Relay made, by destination) and the fan-out until ctx is
// done or Stop.
func (e *Engine) Start(ctx context.Context, closers map[string]func()) {
	e.runWG.Add(1)
	go func() { defer e.runWG.Done(); e.alerts.Run(ctx) }()
	e.runCtx = ctx
	for _, w := range e.Workers() {
		e.startWorker(w, closers[w.Name])
	}
	e.runWG.Add(1)
	go func() { defer e.runWG.Done(); e.fanout.Run(ctx) }()
	close(e.started)
}

// Running reports whether Start ran and its context is not done.
func (e *Engine) Running() bool { return e.runCtx != nil && e.runCtx.Err() == nil }

// Wait waits, once Start's context is done, for every worker, the fan-out
// and the alerts to stop, then closes the connectors Relay made.
func (e *Engine) Wait() {
	e.runWG.Wait()
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, rn := range e.running {
		if rn.closeSink != nil {
			rn.closeSink()
		}
	}
}

// Apply swaps workers after a reload: it stops those of stop (removed and
// changed destinations), each letting its attempts in flight finish, then
// starts the new ones of list (all destinations in config order; a
// destination keeps its running worker unless start has one for it).
// The fan-out feeds the new workers before they start (until then it hands
// their activities to their own consumers), and a destination that became
// fanned notes where the fan-out stood then: its former consumer hands
// over the activities up to there (deliver: moveOver).
func (e *Engine) Apply(ctx context.Context, stop []string, names []string, start map[string]*deliver.Worker, closers map[string]func()) {
	replaced := map[string]*deliver.Worker{}
	for _, name := range stop {
		replaced[name] = e.Worker(name)
		e.stopWorker(name)
	}
	list := make([]*deliver.Worker, 0, len(names)+1)
	var started []*deliver.Worker
	for _, name := range names {
		w, ok := start[name]
		if !ok {
			list = append(list, e.Worker(name))
			continue
		}
		w.CarryBreaker(replaced[name]) // its attempts in flight have settled
		if err := w.Ensure(ctx); err != nil {
			// The worker keeps trying on its own.
			e.log.Warn("reload: the consumer is not ready yet; the worker retries", "destination", name, "error", err)
		}
		started = append(started, w)
		list = append(list, w)
	}
	if aw := e.Worker(config.AlertsDestination); aw != nil {
		list = append(list, aw)
	}
	e.mu.Lock()
	e.workers = list
	e.mu.Unlock()
	e.fanout.setWorkers(list)
	e.noteFanFrom(ctx, started)
	for _, w := range started {
		e.startWorker(w, closers[w.Name])
	}
}

// noteFanFrom records, for the new fanned workers, the fan-out's delivered
// stream sequence read now that it feeds them: every activity it reads
// later goes to them. Unread (an error), the worker reads it when it
// hands over (later: what the fan-out read in between is then delivered
// twice, rather than lost).
func (e *Engine) noteFanFrom(ctx context.Context, ws []*deliver.Worker) {
	if e.bus == nil {
		return
	}
	var fan *jetstream.ConsumerInfo
	for _, w := range ws {
		if !w.Fanned() {
			continue
		}
		if fan == nil {
			var err error
			if fan, err = e.fanoutInfo(ctx); err != nil {
				e.log.Warn("reload: reading the fan-out's consumer", "error", err)
				for _, w := range ws {
					w.UnsetFanFrom()
				}
				return
			}
		}
		w.SetFanFrom(fan.Delivered.Stream, true)
	}
}

// startWorker runs a worker until Start's context is done or stopWorker
// stops it.
func (e *Engine) startWorker(w *deliver.Worker, closeSink func()) {
	ctx, cancel := context.WithCancel(e.runCtx)
	rn := &running{w: w, cancel: cancel, done: make(chan struct{}), closeSink: closeSink}
	e.mu.Lock()
	e.running[w.Name] = rn
	e.mu.Unlock()
	w.TakeFrom(ctx)
	e.runWG.Add(1)
	go func() {
		defer e.runWG.Done()
		defer close(rn.done)
		_ = w.Run(ctx)
	}()
}

// stopWorker stops a destination's worker and waits for its attempts in
// flight; pulled activities not yet attempted are handed back at once.
func (e *Engine) stopWorker(name string) {
	e.mu.Lock()
	rn := e.running[name]
	delete(e.running, name)
	e.mu.Unlock()
	if rn == nil {
		return
	}
	rn.cancel()
	<-rn.done
	if rn.closeSink != nil {
		rn.closeSink()
	}
}

// Workers returns the destinations' workers, in config order.
func (e *Engine) Workers() []*deliver.Worker {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return slices.Clone(e.workers)
}

// Worker is a destination's worker, nil for a destination not configured.
func (e *Engine) Worker(name string) *deliver.Worker {
	for _, w := range e.Workers() {
		if w.Name == name {
			return w
		}
	}
	return nil
}

// QueueOf is the subject and stream a replay re-queues a destination's
// activities on: its own subject, which only its consumer reads.
func (e *Engine) QueueOf(dest string) (subject, stream string) {
	if w := e.Worker(dest); w != nil {
		return w.OwnSubject(), w.Stream()
	}
	return store.SubjectRedeliver + dest, store.StreamActivities
}

// ErrUnknownDestination is returned for a destination not in the config.
var ErrUnknownDestination = errors.New("unknown destination")

// SetState pauses or resumes a destination, for every Relay process.
func (e *Engine) SetState(ctx context.Context, dest, state string) error {
	if e.Worker(dest) == nil {
		return fmt.Errorf("%w %q", ErrUnknownDestination, dest)
	}
	if err := e.states.Set(ctx, dest, state); err != nil {
		return err
	}
	event := map[string]string{store.StatePaused: alert.Paused, store.StateActive: alert.Resumed}[state]
	e.alerts.Emit(ctx, event, dest, nil)
	return nil
}

// OnFanoutDispatch has fn told, from now on, how long the fan-out's reader
// took to give each activity to its destinations (benchmarks read it).
func (e *Engine) OnFanoutDispatch(fn func(time.Duration)) { e.fanout.onDispatch.Store(&fn) }
