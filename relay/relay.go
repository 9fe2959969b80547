// Package relay is the engine: it ingests activities into JetStream and
// delivers each destination's share through its connector, with durable
// retries, dead letters and replay.
package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/relaydev/relay/config"
	"github.com/relaydev/relay/relay/admin"
	"github.com/relaydev/relay/relay/alert"
	"github.com/relaydev/relay/relay/breaker"
	"github.com/relaydev/relay/relay/consent"
	"github.com/relaydev/relay/relay/dashboard"
	"github.com/relaydev/relay/relay/deliver"
	"github.com/relaydev/relay/relay/engine"
	"github.com/relaydev/relay/relay/held"
	"github.com/relaydev/relay/relay/ingest"
	"github.com/relaydev/relay/relay/metrics"
	"github.com/relaydev/relay/relay/sink"
	"github.com/relaydev/relay/relay/store"
	"github.com/relaydev/relay/relay/telemetry"
	"github.com/relaydev/relay/relay/web"
)

// Options are what the engine needs besides the config.
type Options struct {
	Logger *slog.Logger
	// Sinks holds each destination's connector by name. The caller
	// closes them.
	Sinks map[string]sink.Connector
	// NewSink makes a destination's connector, for a destination not in
	// Sinks and for those a reload adds or changes. Relay closes what it
	// makes. cmd/relay builds connectors with it.
	NewSink func(config.Destination) (sink.Connector, error)
}

// Relay runs ingest, the workers and the admin API.
type Relay struct {
	cfg      *config.Config
	compiled *Compiled
	opts     Options
	log      *slog.Logger
	metrics  *metrics.Set

	mu       sync.RWMutex // guards cfg and compiled
	engine   *engine.Engine
	reloadMu sync.Mutex // one reload at a time, and none once Run ends
	reloads  *reloadGauges
	// adminToken is the admin token of the config loaded last, for the
	// dashboard, which lasts across reloads (dash).
	adminToken atomic.Pointer[string]
	dash       *dashboard.Dashboard
	alerts     *alert.Publisher // nil without alerts
	breakers   *breaker.Metrics
	// ingestH and adminH serve the APIs with the handlers of the config
	// loaded last.
	ingestH, adminH handlerSwap

	bus      *store.Bus
	dls      *store.DeadLetters
	dlog     *store.DeliveryLog // nil when log.deliveries is off
	history  *store.History
	states   *store.States
	consent  *consent.States
	replayer *admin.Replayer
	// held is engine.max_held_bytes, given to the bus and the engine.
	held *held.Budget
	// calls is engine.max_in_flight: the calls to receivers in flight at once.
	calls *held.Calls
	// tracing exports spans (telemetry:); nil when it is off.
	tracing *telemetry.Tracing

	ingestLn, adminLn   net.Listener
	ingestTLS, adminTLS *serverTLS // nil for plain HTTP
	ready               atomic.Bool
	started             chan struct{}
	// initial holds the close functions of connectors New made with
	// NewSink, until Run hands them to the workers.
	initial map[string]func()
	// broken is set once the connection to NATS is closed for good:
	// /healthz fails and Run returns an error, so the process exits.
	broken atomic.Bool
}

// New checks the config and the sinks; nothing is started yet.
func New(cfg *config.Config, opts Options) (*Relay, error) {
	compiled, errs := Compile(cfg)
	if len(errs) > 0 {
		return nil, errs
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	r := &Relay{cfg: cfg, compiled: compiled, opts: opts, log: log, metrics: metrics.New(), started: make(chan struct{})}
	r.reloads = newReloadGauges(r.metrics.Registry)
	r.breakers = breaker.NewMetrics(r.metrics.Registry)
	r.held = held.New(int64(cfg.Engine.MaxHeldBytes), int64(cfg.Ingest.MaxActivity))
	r.held.Register(r.metrics.Registry)
	r.calls = held.NewCalls(cfg.Engine.MaxInFlight)
	r.calls.Register(r.metrics.Registry)
	var err error
	if r.ingestTLS, err = newServerTLS(cfg.Ingest.TLS); err != nil {
		return nil, fmt.Errorf("ingest.tls: %w", err)
	}
	if r.adminTLS, err = newServerTLS(cfg.Admin.TLS); err != nil {
		return nil, fmt.Errorf("admin.tls: %w", err)
	}
	ts, err := telemetry.Resolve(cfg.Telemetry, os.Getenv)
	if err != nil {
		return nil, err
	}
	r.initial = map[string]func(){}
	var workers []*deliver.Worker
	for _, d := range cfg.Destinations {
		conn, ok := opts.Sinks[d.Name]
		if !ok && opts.NewSink != nil {
			if conn, err = opts.NewSink(d); err != nil {
				r.closeInitial()
				return nil, fmt.Errorf("destination %s: %w", d.Name, err)
			}
			r.initial[d.Name] = conn.Close
		}
		w, err := deliver.New(d, compiled.Rules[d.Name], conn, r.log, r.metrics)
		if err != nil {
			r.closeInitial()
			return nil, err
		}
		workers = append(workers, w)
	}
	aw, err := r.addAlerts()
	if err != nil {
		r.closeInitial()
		return nil, err
	}
	if aw != nil {
		workers = append(workers, aw)
	}
	if r.tracing, err = telemetry.New(context.Background(), ts, log); err != nil {
		r.closeInitial()
		return nil, err
	}
	r.engine = engine.New(log, r.metrics, r.held, r.alerts, workers)
	return r, nil
}

// closeInitial closes the connectors New made, when Run will not.
func (r *Relay) closeInitial() {
	for _, c := range r.initial {
		if c != nil {
			c()
		}
	}
	r.initial = nil
}

// Listen binds the ingest and admin addresses, so callers (and tests using
// port 0) know them before Run. An API with tls is served over TLS.
func (r *Relay) Listen() error {
	ingest, err := net.Listen("tcp", r.cfg.Ingest.Listen)
	if err != nil {
		return fmt.Errorf("ingest listen: %w", err)
	}
	admin, err := net.Listen("tcp", r.cfg.Admin.Listen)
	if err != nil {
		ingest.Close()
		return fmt.Errorf("admin listen: %w", err)
	}
	r.ingestLn, r.adminLn = r.ingestTLS.listener(ingest), r.adminTLS.listener(admin)
	return nil
}

// IngestAddr and AdminAddr are the bound addresses, after Listen.
func (r *Relay) IngestAddr() string { return r.ingestLn.Addr().String() }

// AdminAddr is the admin API's bound address, after Listen.
func (r *Relay) AdminAddr() string { return r.adminLn.Addr().String() }

// Started is closed once the bus, streams and consumers are ready and the
// APIs are serving.
func (r *Relay) Started() <-chan struct{} { return r.started }

// Run starts everything and blocks until ctx is done; it then stops taking
// activities, lets in-flight deliveries finish and closes the bus.
func (r *Relay) Run(ctx context.Context) error {
	defer r.flushSpans()
	if r.ingestLn == nil {
		if err := r.Listen(); err != nil {
			return err
		}
	}
	initial := r.initial
	r.initial = nil
	r.adminH.set(r.adminRoutes())
	adminSrv := web.NewServer(r.cfg.Admin.Listen, &r.adminH, 10*time.Minute)
	go serve(adminSrv, r.adminLn, r.log)
	defer shutdown(adminSrv)
	closeBus, err := r.open(ctx)
	if err != nil {
		r.ingestLn.Close()
		r.initial = initial
		r.closeInitial()
		return err
	}
	defer closeBus()
	r.adminH.set(r.adminRoutes()) // now with the stores
	r.ingestH.set(r.ingestHandler())
	ingestSrv := web.NewServer(r.cfg.Ingest.Listen, &r.ingestH, time.Minute)
	go serve(ingestSrv, r.ingestLn, r.log)

	wctx, stopWorkers := context.WithCancel(ctx)
	defer stopWorkers()
	r.reloadMu.Lock()
	r.engine.Start(wctx, initial)
	r.reloadMu.Unlock()
	swept := make(chan struct{})
	go func() { defer close(swept); r.sweepDeadLetters(wctx) }()
	waitSeries := r.runSeries(wctx)
	r.ready.Store(true)
	close(r.started)
	r.log.Info("relay started", "ingest", r.IngestAddr(), "admin", r.AdminAddr(), "destinations", len(r.engine.Workers()))
	fatal := r.waitForStop(ctx)
	r.ready.Store(false)
	shutdown(ingestSrv)
	r.reloadMu.Lock() // a reload under way finishes first; none starts after
	defer r.reloadMu.Unlock()
	stopWorkers()
	<-swept
	r.engine.Wait()
	waitSeries()
	r.log.Info("relay stopped")
	return fatal
}

// open opens the bus and the delivery log, gives them to the engine and
// binds the consumers; closeBus undoes it, in reverse order.
func (r *Relay) open(ctx context.Context) (closeBus func(), err error) {
	bus, err := store.OpenBus(ctx, r.cfg.NATS, store.MaxMessage(r.cfg), r.log)
	if err != nil {
		return nil, err
	}
	closers := []func(){bus.Close}
	closeBus = func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	if r.cfg.Log.DeliveriesOn() {
		dlog, err := store.OpenDeliveryLog(ctx, bus.NC, r.cfg.NATS.Replicas, time.Duration(r.cfg.Log.Retention), int64(r.cfg.Log.MaxBytes), r.log, r.metrics)
		if err != nil {
			closeBus()
			return nil, err
		}
		r.dlog = dlog
		closers = append(closers, dlog.Close)
	}
	if r.consent, err = consent.Open(ctx, bus.JS, r.cfg.NATS.Replicas, r.log); err != nil {
		closeBus()
		return nil, err
	}
	closers = append(closers, r.consent.Close)
	r.attach(bus)
	stopListening, err := r.engine.Prepare(ctx)
	if err != nil {
		closeBus()
		return nil, err
	}
	closers = append(closers, stopListening)
	return closeBus, nil
}

// waitForStop waits until ctx is done or the connection to NATS is closed
// for good, which is an error: the process exits.
func (r *Relay) waitForStop(ctx context.Context) error {
	select {
	case <-ctx.Done():
		r.log.Info("relay stopping: draining in-flight deliveries")
		return nil
	case <-r.bus.Closed():
		r.broken.Store(true)
		r.log.Error("relay stopping: the connection to NATS is closed for good and will not reconnect")
		return errors.New("the connection to NATS is closed for good")
	}
}

// flushSpans exports the spans still held and stops the tracer provider.
func (r *Relay) flushSpans() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.tracing.Shutdown(ctx); err != nil {
		r.log.Warn("telemetry: exporting the last spans failed", "error", err)
	}
}

// Healthy is false once the process can no longer work (its connection to
// NATS closed for good).
func (r *Relay) Healthy() bool { return !r.broken.Load() }

func (r *Relay) attach(bus *store.Bus) {
	r.bus = bus
	bus.HeldMax, bus.HeldReserve = r.held.Max(), r.held.Reserve()
	r.dls = &store.DeadLetters{JS: bus.JS, Stream: bus.DeadLetters}
	r.history = &store.History{KV: bus.Attempts}
	r.states = &store.States{KV: bus.State}
	r.replayer = &admin.Replayer{JS: bus.JS, DLs: r.dls, History: r.history, Queue: r.engine.QueueOf, Tracing: r.tracing}
	r.engine.Attach(deliver.Stores{Bus: bus, DeadLetters: r.dls, History: r.history, States: r.states, Log: r.dlog,
		Held: r.held, Calls: r.calls, Alerts: r.alerts, Breakers: r.breakers, Tracing: r.tracing, Consent: r.consent})
}

func (r *Relay) ingestHandler() http.Handler {
	tokens := make([]string, len(r.cfg.Ingest.Tokens))
	for i, t := range r.cfg.Ingest.Tokens {
		tokens[i] = t.Value()
	}
	in := &ingest.Ingest{
		JS:             r.bus.JS,
		Catalog:        r.compiled.Catalog,
		Tokens:         web.NewTokenSet(tokens...),
		AllowCustom:    r.cfg.Ingest.AllowCustom,
		MaxBody:        int64(r.cfg.Ingest.MaxBody),
		MaxBatch:       r.cfg.Ingest.MaxBatch,
		MaxActivity:    int(r.cfg.Ingest.MaxActivity),
		Inflight:       ingest.NewByteBudget(int64(r.cfg.Ingest.MaxInflightBytes)),
		Healthy:        r.Healthy,
		Ready:          r.ready.Load,
		Connected:      func() bool { return r.bus != nil && r.bus.NC.IsConnected() },
		DLog:           r.dlog,
		Log:            r.log,
		Metrics:        r.metrics,
		PublishTimeout: 10 * time.Second,
		Ortto:          ingest.NewOrttoSource(r.cfg.Sources.Ortto),
		Tracing:        r.tracing,
		Consent:        r.consent,
	}
	return in.Handler()
}

func serve(srv *http.Server, ln net.Listener, log *slog.Logger) {
	// The server's own messages (a failed TLS handshake) go to our log.
	srv.ErrorLog = slog.NewLogLogger(log.With("addr", ln.Addr().String()).Handler(), slog.LevelInfo)
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("http server failed", "addr", ln.Addr().String(), "error", err)
	}
}

func shutdown(srv *http.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
}

// sweepEvery is how often dead letters past deadletters.max_age or
// max_bytes are dropped.
const sweepEvery = time.Minute

// sweepDeadLetters drops, at start and every sweepEvery until ctx ends,
// the dead letters deadletters: {max_age, max_bytes} no longer keeps,
// counting each in relay_deadletters_dropped_total. Every process sweeps;
// a dead letter is dropped, and counted, once.
func (r *Relay) sweepDeadLetters(ctx context.Context) {
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	for {
		r.mu.Lock() // a reload swaps the config under it
		bound := r.cfg.DeadLetters
		r.mu.Unlock()
		dropped, err := r.dls.Sweep(ctx, time.Duration(bound.MaxAge), int64(bound.MaxBytes), time.Now())
		r.metrics.DeadLettersDropped.WithLabelValues("max_age").Add(float64(dropped.MaxAge))
		r.metrics.DeadLettersDropped.WithLabelValues("max_bytes").Add(float64(dropped.MaxBytes))
		switch {
		case err != nil && ctx.Err() == nil:
			r.log.Warn("dropping old dead letters", "error", err)
		case dropped.MaxAge+dropped.MaxBytes > 0:
			r.log.Warn("dead letters dropped", "past_max_age", dropped.MaxAge, "past_max_bytes", dropped.MaxBytes,
				"max_age", time.Duration(bound.MaxAge), "max_bytes", int64(bound.MaxBytes))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
