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
	history  *History
	states   *States
	replayer *Replayer

	ingestLn, adminLn   net.Listener
	ingestTLS, adminTLS *serverTLS // nil for plain HTTP
	ready               atomic.Bool
	started             chan struct{}
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
	var err error
	if r.ingestTLS, err = newServerTLS(cfg.Ingest.TLS); err != nil {
		return nil, fmt.Errorf("ingest.tls: %w", err)
	}
	if r.adminTLS, err = newServerTLS(cfg.Admin.TLS); err != nil {
		return nil, fmt.Errorf("admin.tls: %w", err)
	}
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
	admin := &Admin{Relay: r, Token: newTokenSet(r.cfg.Admin.Token.Value()), ready: &r.ready}
	adminSrv := newServer(r.cfg.Admin.Listen, admin.Handler(), 10*time.Minute)
	go serve(adminSrv, r.adminLn, r.log)
	defer shutdown(adminSrv)

	bus, err := OpenBus(ctx, r.cfg.NATS, r.log)
	if err != nil {
		r.ingestLn.Close()
		return err
	}
	defer bus.Close()
	r.attach(bus)
	for _, w := range r.workers {
		if err := w.Ensure(ctx); err != nil {
			r.ingestLn.Close()
			return err
		}
	}
	ingestSrv := newServer(r.cfg.Ingest.Listen, r.ingestHandler(), time.Minute)
	go serve(ingestSrv, r.ingestLn, r.log)

	var wg sync.WaitGroup
	for _, w := range r.workers {
		wg.Add(1)
		go func() { defer wg.Done(); _ = w.Run(ctx) }()
	}
	r.ready.Store(true)
	close(r.started)
	r.log.Info("relay started", "ingest", r.IngestAddr(), "admin", r.AdminAddr(), "destinations", len(r.workers))
	<-ctx.Done()
	r.log.Info("relay stopping: draining in-flight deliveries")
	r.ready.Store(false)
	shutdown(ingestSrv)
	wg.Wait()
	r.log.Info("relay stopped")
	return nil
}

func (r *Relay) attach(bus *Bus) {
	r.bus = bus
	r.dls = &DeadLetters{JS: bus.JS, Stream: bus.DeadLetters}
	r.history = &History{KV: bus.Attempts}
	r.states = &States{KV: bus.State}
	r.replayer = &Replayer{JS: bus.JS, DLs: r.dls, History: r.history}
	for _, w := range r.workers {
		w.bus, w.dls, w.history, w.states = bus, r.dls, r.history, r.states
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
		Log:            r.log,
		Metrics:        r.metrics,
		PublishTimeout: 10 * time.Second,
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

// Replay re-queues dead letters, or retained activities, for one destination.
func (r *Relay) Replay(ctx context.Context, req ReplayRequest) (int, error) {
	if req.Destination == "" {
		return 0, fmt.Errorf("%w: destination is required", errBadRequest)
	}
	if r.worker(req.Destination) == nil {
		return 0, fmt.Errorf("%w %q", ErrUnknownDestination, req.Destination)
	}
	n, err := r.replayer.Replay(ctx, req)
	if err != nil && n == 0 && req.Activity != "" {
		return 0, fmt.Errorf("%w: %v", errBadRequest, err)
	}
	return n, err
}

// Status reports a destination's state and counters.
func (r *Relay) Status(ctx context.Context, w *Worker) (DestinationStatus, error) {
	st := DestinationStatus{Name: w.Name, Type: w.Cfg.Type}
	state, err := r.states.Get(ctx, w.Name)
	if err != nil {
		return st, err
	}
	st.State = state
	info, err := r.bus.JS.Consumer(ctx, StreamActivities, ConsumerName(w.Name))
	if err != nil {
		return st, fmt.Errorf("consumer of %s: %w", w.Name, err)
	}
	ci, err := info.Info(ctx)
	if err != nil {
		return st, fmt.Errorf("consumer of %s: %w", w.Name, err)
	}
	st.Pending = ci.NumPending + uint64(ci.NumAckPending)
	st.Delivered = counterValue(r.metrics.Delivered, w.Name)
	st.FailedAttempts = counterValue(r.metrics.Failed, w.Name)
	if st.DeadLettered, err = r.dls.Count(ctx, w.Name); err != nil {
		return st, err
	}
	return st, nil
}
