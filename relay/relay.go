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
	"sync"
	"sync/atomic"
	"time"

	"github.com/relaydev/relay/config"
	"github.com/relaydev/relay/relay/activity"
	"github.com/relaydev/relay/relay/dashboard"
	"github.com/relaydev/relay/relay/deliver"
	"github.com/relaydev/relay/relay/held"
	"github.com/relaydev/relay/relay/ingest"
	"github.com/relaydev/relay/relay/metrics"
	"github.com/relaydev/relay/relay/sink"
	"github.com/relaydev/relay/relay/store"
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

	mu      sync.RWMutex // guards workers and running
	workers []*deliver.Worker
	running map[string]*running
	// runCtx is Run's: workers started by a reload stop with it.
	runCtx   context.Context
	runWG    sync.WaitGroup
	reloadMu sync.Mutex // one reload at a time, and none once Run ends
	reloads  *reloadGauges
	// adminToken is the admin token of the config loaded last, for the
	// dashboard, which lasts across reloads (dash).
	adminToken atomic.Pointer[string]
	dash       *dashboard.Dashboard
	alerts     *deliver.Alerter // nil without alerts
	breakers   *deliver.BreakerMetrics
	// ingestH and adminH serve the APIs with the handlers of the config
	// loaded last.
	ingestH, adminH handlerSwap

	bus      *store.Bus
	dls      *store.DeadLetters
	dlog     *store.DeliveryLog // nil when log.deliveries is off
	history  *store.History
	states   *store.States
	replayer *Replayer
	fanout   *Fanout
	// held is engine.max_held_bytes (held.go), given to the bus.
	held *held.Budget

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

var errBadRequest = errors.New("bad request")

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
	r := &Relay{cfg: cfg, compiled: compiled, opts: opts, log: log, metrics: metrics.New(), started: make(chan struct{}), running: map[string]*running{}}
	r.metrics.Registry.MustRegister(newGauges(r))
	r.reloads = newReloadGauges(r.metrics.Registry)
	r.breakers = deliver.NewBreakerMetrics(r.metrics.Registry)
	r.held = held.New(int64(cfg.Engine.MaxHeldBytes), int64(cfg.Ingest.MaxActivity))
	r.held.Register(r.metrics.Registry)
	var err error
	if r.ingestTLS, err = newServerTLS(cfg.Ingest.TLS); err != nil {
		return nil, fmt.Errorf("ingest.tls: %w", err)
	}
	if r.adminTLS, err = newServerTLS(cfg.Admin.TLS); err != nil {
		return nil, fmt.Errorf("admin.tls: %w", err)
	}
	r.initial = map[string]func(){}
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
		r.workers = append(r.workers, w)
	}
	if err := r.addAlerts(); err != nil {
		r.closeInitial()
		return nil, err
	}
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

	bus, err := store.OpenBus(ctx, r.cfg.NATS, store.MaxMessage(r.cfg), r.log)
	if err != nil {
		r.ingestLn.Close()
		r.initial = initial
		r.closeInitial()
		return err
	}
	defer bus.Close()
	if r.cfg.Log.DeliveriesOn() {
		dlog, err := store.OpenDeliveryLog(ctx, bus.NC, r.cfg.NATS.Replicas, time.Duration(r.cfg.Log.Retention), int64(r.cfg.Log.MaxBytes), r.log, r.metrics)
		if err != nil {
			r.ingestLn.Close()
			r.initial = initial
			r.closeInitial()
			return err
		}
		r.dlog = dlog
		defer dlog.Close()
	}
	r.attach(bus)
	// The fan-out's consumer first: made for the first time, it starts
	// where the destinations' consumers of an earlier Relay stood.
	if err := r.fanout.Ensure(ctx, r.Workers()); err != nil {
		r.ingestLn.Close()
		r.initial = initial
		r.closeInitial()
		return err
	}
	if err := deliver.EnsureAll(ctx, r.Workers()); err != nil {
		r.ingestLn.Close()
		r.initial = initial
		r.closeInitial()
		return err
	}
	r.fanout.setWorkers(r.Workers())
	defer r.fanout.listen()()
	r.ingestH.set(r.ingestHandler())
	ingestSrv := web.NewServer(r.cfg.Ingest.Listen, &r.ingestH, time.Minute)
	go serve(ingestSrv, r.ingestLn, r.log)

	wctx, stopWorkers := context.WithCancel(ctx)
	defer stopWorkers()
	r.runWG.Add(1)
	go func() { defer r.runWG.Done(); r.alerts.Run(wctx) }()
	r.reloadMu.Lock()
	r.runCtx = wctx
	for _, w := range r.Workers() {
		r.startWorker(w, initial[w.Name])
	}
	r.runWG.Add(1)
	go func() { defer r.runWG.Done(); r.fanout.Run(wctx) }()
	r.reloadMu.Unlock()
	r.ready.Store(true)
	close(r.started)
	r.log.Info("relay started", "ingest", r.IngestAddr(), "admin", r.AdminAddr(), "destinations", len(r.Workers()))
	var fatal error
	select {
	case <-ctx.Done():
		r.log.Info("relay stopping: draining in-flight deliveries")
	case <-bus.Closed():
		fatal = errors.New("the connection to NATS is closed for good")
		r.broken.Store(true)
		r.log.Error("relay stopping: the connection to NATS is closed for good and will not reconnect")
	}
	r.ready.Store(false)
	shutdown(ingestSrv)
	r.reloadMu.Lock() // a reload under way finishes first; none starts after
	defer r.reloadMu.Unlock()
	stopWorkers()
	r.runWG.Wait()
	r.closeSinks()
	r.log.Info("relay stopped")
	return fatal
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
	r.replayer = &Replayer{JS: bus.JS, DLs: r.dls, History: r.history, Queue: func(dest string) (string, string) {
		if w := r.worker(dest); w != nil {
			return w.OwnSubject(), w.Stream()
		}
		return store.SubjectRedeliver + dest, store.StreamActivities
	}}
	r.fanout = newFanout(bus, r.held, r.log)
	for _, w := range r.Workers() {
		r.connect(w)
	}
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
		DLog:           r.dlog,
		Log:            r.log,
		Metrics:        r.metrics,
		PublishTimeout: 10 * time.Second,
		Ortto:          ingest.NewOrttoSource(r.cfg.Sources.Ortto),
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

func (r *Relay) worker(name string) *deliver.Worker {
	for _, w := range r.Workers() {
		if w.Name == name {
			return w
		}
	}
	return nil
}

// SetState pauses or resumes a destination, for every Relay process.
func (r *Relay) SetState(ctx context.Context, dest, state string) error {
	if r.worker(dest) == nil {
		return fmt.Errorf("%w %q", ErrUnknownDestination, dest)
	}
	if err := r.states.Set(ctx, dest, state); err != nil {
		return err
	}
	event := map[string]string{store.StatePaused: deliver.AlertPaused, store.StateActive: deliver.AlertResumed}[state]
	r.alerts.Emit(ctx, event, dest, nil)
	return nil
}

// Replay re-queues dead letters, or retained activities, for one
// destination; a filter that can match nothing is a bad request naming why.
func (r *Relay) Replay(ctx context.Context, req ReplayRequest) (ReplayResult, error) {
	if req.Destination == "" {
		return ReplayResult{}, fmt.Errorf("%w: destination is required", errBadRequest)
	}
	if r.worker(req.Destination) == nil {
		return ReplayResult{}, fmt.Errorf("%w %q", ErrUnknownDestination, req.Destination)
	}
	if req.Activity != "" {
		if err := activity.ValidPattern(req.Activity); err != nil {
			return ReplayResult{}, fmt.Errorf("%w: activity: %v", errBadRequest, err)
		}
		if len(r.catalog().Match(req.Activity)) == 0 {
			return ReplayResult{}, fmt.Errorf("%w: activity: pattern %q matches no known activity (see relay activities)", errBadRequest, req.Activity)
		}
	}
	if req.Since != nil && req.Until != nil && !req.Since.Before(req.Until.Time) {
		return ReplayResult{}, fmt.Errorf("%w: the window is empty: since %s is not before until %s", errBadRequest,
			req.Since.UTC().Format(time.RFC3339), req.Until.UTC().Format(time.RFC3339))
	}
	if req.Since != nil && req.Since.After(time.Now()) {
		return ReplayResult{}, fmt.Errorf("%w: the window is empty: since %s is in the future", errBadRequest, req.Since.UTC().Format(time.RFC3339))
	}
	if w := r.worker(req.Destination); w.Fanned() && !req.DryRun {
		if err := w.MakeQueue(ctx); err != nil {
			return ReplayResult{}, err
		}
	}
	res, err := r.replayer.Replay(ctx, req)
	if !req.DryRun {
		r.metrics.Replayed.WithLabelValues(req.Destination).Add(float64(res.Replayed))
	}
	return res, err
}
