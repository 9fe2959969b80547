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
)

// Options are what the engine needs besides the config.
type Options struct {
	Logger *slog.Logger
	// Sinks holds each destination's connector by name: a Sink or a
	// BatchSink. cmd/relay builds them.
	Sinks map[string]any
}

// Relay runs ingest, the workers and the admin API.
type Relay struct {
	cfg      *config.Config
	compiled *Compiled
	log      *slog.Logger
	metrics  *Metrics
	workers  []*Worker

	bus      *Bus
	dls      *DeadLetters
	dlog     *DeliveryLog // nil when log.deliveries is off
	history  *History
	states   *States
	replayer *Replayer

	ingestLn, adminLn net.Listener
	ready             atomic.Bool
	started           chan struct{}
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
	r := &Relay{cfg: cfg, compiled: compiled, log: log, metrics: NewMetrics(), started: make(chan struct{})}
	r.metrics.Registry.MustRegister(newGauges(r))
	for _, d := range cfg.Destinations {
		w := &Worker{Name: d.Name, Cfg: d, Rules: compiled.Rules[d.Name], log: log, metrics: r.metrics}
		switch s := opts.Sinks[d.Name].(type) {
		case BatchSink:
			w.Batch = s
		case Sink:
			w.Sink = s
		default:
			return nil, fmt.Errorf("destination %s: no connector (got %T)", d.Name, s)
		}
		w.init()
		r.workers = append(r.workers, w)
	}
	return r, nil
}

// Listen binds the ingest and admin addresses, so callers (and tests using
// port 0) know them before Run.
func (r *Relay) Listen() error {
	var err error
	if r.ingestLn, err = net.Listen("tcp", r.cfg.Ingest.Listen); err != nil {
		return fmt.Errorf("ingest listen: %w", err)
	}
	if r.adminLn, err = net.Listen("tcp", r.cfg.Admin.Listen); err != nil {
		r.ingestLn.Close()
		return fmt.Errorf("admin listen: %w", err)
	}
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
	admin := &Admin{Relay: r, Token: newTokenSet(r.cfg.Admin.Token.Value()), ready: &r.ready}
	adminSrv := newServer(r.cfg.Admin.Listen, admin.Handler(), 10*time.Minute)
	go serve(adminSrv, r.adminLn, r.log)
	defer shutdown(adminSrv)

	bus, err := OpenBus(ctx, r.cfg.NATS, MaxMessage(r.cfg), r.log)
	if err != nil {
		r.ingestLn.Close()
		return err
	}
	defer bus.Close()
	if r.cfg.Log.DeliveriesOn() {
		dlog, err := openDeliveryLog(ctx, bus.NC, r.cfg.NATS.Replicas, time.Duration(r.cfg.Log.Retention), int64(r.cfg.Log.MaxBytes), r.log, r.metrics)
		if err != nil {
			r.ingestLn.Close()
			return err
		}
		r.dlog = dlog
		defer dlog.Close()
	}
	r.attach(bus)
	for _, w := range r.workers {
		if err := w.Ensure(ctx); err != nil {
			r.ingestLn.Close()
			return err
		}
	}
	ingestSrv := newServer(r.cfg.Ingest.Listen, r.ingestHandler(), time.Minute)
	go serve(ingestSrv, r.ingestLn, r.log)

	wctx, stopWorkers := context.WithCancel(ctx)
	defer stopWorkers()
	var wg sync.WaitGroup
	for _, w := range r.workers {
		wg.Add(1)
		go func() { defer wg.Done(); _ = w.Run(wctx) }()
	}
	r.ready.Store(true)
	close(r.started)
	r.log.Info("relay started", "ingest", r.IngestAddr(), "admin", r.AdminAddr(), "destinations", len(r.workers))
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
	stopWorkers()
	wg.Wait()
	r.log.Info("relay stopped")
	return fatal
}

// Healthy is false once the process can no longer work (its connection to
// NATS closed for good).
func (r *Relay) Healthy() bool { return !r.broken.Load() }

func (r *Relay) attach(bus *Bus) {
	r.bus = bus
	r.dls = &DeadLetters{JS: bus.JS, Stream: bus.DeadLetters}
	r.history = &History{KV: bus.Attempts}
	r.states = &States{KV: bus.State}
	r.replayer = &Replayer{JS: bus.JS, DLs: r.dls, History: r.history}
	for _, w := range r.workers {
		w.bus, w.dls, w.history, w.states, w.dlog = bus, r.dls, r.history, r.states, r.dlog
	}
}

func (r *Relay) ingestHandler() http.Handler {
	tokens := make([]string, len(r.cfg.Ingest.Tokens))
	for i, t := range r.cfg.Ingest.Tokens {
		tokens[i] = t.Value()
	}
	in := &Ingest{
		JS:             r.bus.JS,
		Catalog:        r.compiled.Catalog,
		Tokens:         newTokenSet(tokens...),
		AllowCustom:    r.cfg.Ingest.AllowCustom,
		MaxBody:        int64(r.cfg.Ingest.MaxBody),
		MaxBatch:       r.cfg.Ingest.MaxBatch,
		MaxActivity:    int(r.cfg.Ingest.MaxActivity),
		Inflight:       NewByteBudget(int64(r.cfg.Ingest.MaxInflightBytes)),
		Healthy:        r.Healthy,
		DLog:           r.dlog,
		Log:            r.log,
		Metrics:        r.metrics,
		PublishTimeout: 10 * time.Second,
		Ortto:          NewOrttoSource(r.cfg.Sources.Ortto),
	}
	return in.Handler()
}

func serve(srv *http.Server, ln net.Listener, log *slog.Logger) {
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("http server failed", "addr", ln.Addr().String(), "error", err)
	}
}

func shutdown(srv *http.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
}

func (r *Relay) worker(name string) *Worker {
	for _, w := range r.workers {
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
	return r.states.Set(ctx, dest, state)
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
		if len(r.compiled.Catalog.Match(req.Activity)) == 0 {
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
	res, err := r.replayer.Replay(ctx, req)
	if !req.DryRun {
		r.metrics.Replayed.WithLabelValues(req.Destination).Add(float64(res.Replayed))
	}
	return res, err
}
