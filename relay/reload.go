package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/relaydev/relay/config"
	"github.com/relaydev/relay/relay/activity"
	"github.com/relaydev/relay/relay/admin"
	"github.com/relaydev/relay/relay/api"
	"github.com/relaydev/relay/relay/consent"
	"github.com/relaydev/relay/relay/dashboard"
	"github.com/relaydev/relay/relay/deliver"
	"github.com/relaydev/relay/relay/web"
)

// errNotRunning is a reload asked for before Run started or after it ended.
var errNotRunning = errors.New("relay is not running")

// Reload reads the config file again and applies it without a restart. The
// file is validated first, as relay validate does; an invalid one changes
// nothing and the error is its config.Errors. A valid one applies at once:
// destinations added get a consumer and a worker; removed ones have their
// worker stopped (the consumer is kept: see docs/config.md); changed ones
// have the old worker stopped, letting attempts in flight finish under the
// old config, their consumer updated and a new worker started; the ingest
// and admin tokens, ingest limits and the TLS certificates are swapped.
func (r *Relay) Reload(ctx context.Context) (api.ReloadResult, error) {
	r.reloadMu.Lock()
	defer r.reloadMu.Unlock()
	if !r.engine.Running() {
		r.log.Warn("reload ignored: relay is starting or stopping")
		return api.ReloadResult{}, errNotRunning
	}
	res, err := r.reload(ctx)
	if err != nil {
		r.reloads.ok.Set(0)
		var errs config.Errors
		if errors.As(err, &errs) {
			r.log.Error("reload refused: the config is invalid; nothing changed", "file", r.cfg.File, "errors", len(errs))
			for _, e := range errs {
				r.log.Error("config error", "error", e.Error())
			}
		} else {
			r.log.Error("reload failed", "file", r.cfg.File, "error", err)
		}
		return res, err
	}
	r.reloads.ok.Set(1)
	r.reloads.at.SetToCurrentTime()
	r.log.Info("config reloaded", "file", r.cfg.File, "added", res.Added, "changed", res.Changed, "removed", res.Removed, "applied", res.Applied)
	for _, key := range res.RestartRequired {
		r.log.Warn("config changed where only a restart applies it", "key", key)
	}
	return res, nil
}

// reload prepares everything that can fail (config, connectors, TLS
// files) before it changes anything.
func (r *Relay) reload(ctx context.Context) (api.ReloadResult, error) {
	cfg, err := LoadConfig(r.cfg.File)
	if err != nil {
		return api.ReloadResult{}, err
	}
	compiled, errs := Compile(cfg)
	if len(errs) > 0 {
		return api.ReloadResult{}, errs
	}
	res, start := r.diff(cfg)
	cfg.Ingest.MaxActivity = r.cfg.Ingest.MaxActivity // see diff
	cfg.Alerts, cfg.Log = r.cfg.Alerts, r.cfg.Log
	ingestTLS, adminTLS, err := r.prepareTLS(cfg, &res)
	if err != nil {
		return api.ReloadResult{}, err
	}
	workers, closers, err := r.prepareWorkers(cfg, compiled, start)
	if err != nil {
		return api.ReloadResult{}, err
	}
	names := make([]string, len(cfg.Destinations))
	for i, d := range cfg.Destinations {
		names[i] = d.Name
	}
	r.engine.Apply(ctx, append(slices.Clone(res.Removed), res.Changed...), names, workers, closers)
	r.mu.Lock()
	r.cfg, r.compiled = cfg, compiled
	r.mu.Unlock()
	r.ingestTLS.swap(ingestTLS)
	r.adminTLS.swap(adminTLS)
	r.ingestH.set(r.ingestHandler())
	r.adminH.set(r.adminRoutes())
	return res, nil
}

// diff sorts the destinations and names the keys a reload cannot apply;
// start is the set of destinations that need a new worker.
func (r *Relay) diff(cfg *config.Config) (res api.ReloadResult, start map[string]bool) {
	res = api.ReloadResult{Added: []string{}, Changed: []string{}, Removed: []string{}, Applied: applied(r.cfg, cfg), RestartRequired: []string{}}
	start = map[string]bool{}
	old := map[string]config.Destination{}
	for _, d := range r.cfg.Destinations {
		old[d.Name] = d
	}
	catalogChanged := !reflect.DeepEqual(customs(r.cfg), customs(cfg))
	for _, d := range cfg.Destinations {
		prev, ok := old[d.Name]
		switch {
		case !ok:
			res.Added = append(res.Added, d.Name)
		case catalogChanged || !sameDestination(prev, d):
			res.Changed = append(res.Changed, d.Name)
		default:
			delete(old, d.Name)
			continue
		}
		start[d.Name] = true
		delete(old, d.Name)
	}
	for _, d := range r.cfg.Destinations {
		if _, gone := old[d.Name]; gone {
			res.Removed = append(res.Removed, d.Name)
		}
	}
	restart := []struct {
		key     string
		changed bool
	}{
		{"nats", !reflect.DeepEqual(r.cfg.NATS, cfg.NATS)},
		{"ingest.listen", r.cfg.Ingest.Listen != cfg.Ingest.Listen},
		{"admin.listen", r.cfg.Admin.Listen != cfg.Admin.Listen},
		{"ingest.tls", r.cfg.Ingest.TLS.Enabled() != cfg.Ingest.TLS.Enabled()},
		{"admin.tls", r.cfg.Admin.TLS.Enabled() != cfg.Admin.TLS.Enabled()},
		// The bus was sized for the largest activity at start.
		{"ingest.max_activity", r.cfg.Ingest.MaxActivity != cfg.Ingest.MaxActivity},
		{"alerts", !reflect.DeepEqual(r.cfg.Alerts, cfg.Alerts)},
		{"log", !reflect.DeepEqual(r.cfg.Log, cfg.Log)},
		// One budget, sized at start, serves every destination.
		{"engine.max_held_bytes", r.cfg.Engine.MaxHeldBytes != cfg.Engine.MaxHeldBytes},
		{"engine.max_in_flight", r.cfg.Engine.MaxInFlight != cfg.Engine.MaxInFlight},
	}
	for _, k := range restart {
		if k.changed {
			res.RestartRequired = append(res.RestartRequired, k.key)
		}
	}
	return res, start
}

// applied names the keys besides destinations that differ between two
// configs and that a reload applies at once.
func applied(old, cfg *config.Config) []string {
	keys := []struct {
		key     string
		changed bool
	}{
		{"activities", !reflect.DeepEqual(customs(old), customs(cfg))},
		{"sources.ortto", !reflect.DeepEqual(old.Sources.Ortto, cfg.Sources.Ortto)},
		{"ingest.tokens", !reflect.DeepEqual(old.Ingest.Tokens, cfg.Ingest.Tokens)},
		{"ingest.allow_custom", old.Ingest.AllowCustom != cfg.Ingest.AllowCustom},
		{"ingest.max_batch", old.Ingest.MaxBatch != cfg.Ingest.MaxBatch},
		{"ingest.max_body", old.Ingest.MaxBody != cfg.Ingest.MaxBody},
		{"ingest.tls", old.Ingest.TLS.Enabled() && cfg.Ingest.TLS.Enabled() && !reflect.DeepEqual(old.Ingest.TLS, cfg.Ingest.TLS)},
		{"admin.token", old.Admin.Token != cfg.Admin.Token},
		{"admin.tls", old.Admin.TLS.Enabled() && cfg.Admin.TLS.Enabled() && !reflect.DeepEqual(old.Admin.TLS, cfg.Admin.TLS)},
	}
	out := []string{}
	for _, k := range keys {
		if k.changed {
			out = append(out, k.key)
		}
	}
	return out
}

// sameDestination compares two destinations' settings, not where they
// were written.
func sameDestination(a, b config.Destination) bool {
	a.Pos, b.Pos, a.At, b.At = nil, nil, config.Pos{}, config.Pos{}
	return reflect.DeepEqual(a, b)
}

func customs(c *config.Config) []config.Custom {
	out := slices.Clone(c.Activities)
	for i := range out {
		out[i].Pos = config.Pos{}
	}
	return out
}

// prepareTLS reads the certificates an API keeps serving over TLS.
func (r *Relay) prepareTLS(cfg *config.Config, res *api.ReloadResult) (ingest, admin *tls.Config, err error) {
	if r.ingestTLS != nil && cfg.Ingest.TLS.Enabled() {
		if ingest, err = loadTLS(cfg.Ingest.TLS); err != nil {
			return nil, nil, fmt.Errorf("ingest.tls: %w", err)
		}
	}
	if r.adminTLS != nil && cfg.Admin.TLS.Enabled() {
		if admin, err = loadTLS(cfg.Admin.TLS); err != nil {
			return nil, nil, fmt.Errorf("admin.tls: %w", err)
		}
	}
	return ingest, admin, nil
}

// prepareWorkers makes the connector and worker of each destination to
// start; on an error it closes what it made.
func (r *Relay) prepareWorkers(cfg *config.Config, compiled *Compiled, start map[string]bool) (map[string]*deliver.Worker, map[string]func(), error) {
	workers, closers := map[string]*deliver.Worker{}, map[string]func(){}
	closeAll := func() {
		for _, c := range closers {
			c()
		}
	}
	for _, d := range cfg.Destinations {
		if !start[d.Name] {
			continue
		}
		if r.opts.NewSink == nil {
			closeAll()
			return nil, nil, fmt.Errorf("destination %s: this Relay cannot make connectors on reload (Options.NewSink is not set)", d.Name)
		}
		conn, err := r.opts.NewSink(d)
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("destination %s: %w", d.Name, err)
		}
		if conn.Close != nil {
			closers[d.Name] = conn.Close
		}
		w, err := deliver.New(d, compiled.Rules[d.Name], conn, r.log, r.metrics)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		r.engine.Connect(w)
		workers[d.Name] = w
	}
	return workers, closers, nil
}

// catalog is the activity catalog of the config loaded last.
func (r *Relay) catalog() *activity.Catalog {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.compiled.Catalog
}

// adminRoutes is the admin API with POST /v1/reload.
func (r *Relay) adminRoutes() http.Handler {
	r.adminToken.Store(new(r.cfg.Admin.Token.Value()))
	if r.dash == nil {
		r.dash = dashboard.New(dashboard.Options{
			Token:      func() string { return *r.adminToken.Load() },
			SessionTTL: time.Duration(r.cfg.Admin.SessionTTL),
			Logger:     r.log,
		})
	}
	// Before the bus is open the API only answers 503 (Started stays nil):
	// Run sets routes again once the stores are there.
	var started <-chan struct{}
	if r.bus != nil {
		started = r.started
	}
	a := &admin.Admin{
		Engine: r.engine, Replayer: r.replayer, DeadLetters: r.dls, Log: r.dlog, Metrics: r.metrics, Catalog: r.catalog,
		Token: web.NewTokenSet(r.cfg.Admin.Token.Value()), Dashboard: r.dash, Started: started,
		Ready:     r.ready.Load,
		Connected: func() bool { return r.bus != nil && r.bus.NC.IsConnected() },
		Healthy:   r.Healthy,
	}
	if r.consent != nil {
		a.Contacts = &admin.Contacts{States: r.consent, Eraser: &consent.Eraser{JS: r.bus.JS, LogOn: r.dlog != nil, Replicas: r.cfg.NATS.Replicas}, Engine: r.engine, Log: r.log}
	}
	return a.WithReload(r.serveReload)
}

func (r *Relay) serveReload(w http.ResponseWriter, req *http.Request) {
	res, err := r.Reload(req.Context())
	var errs config.Errors
	switch {
	case errors.As(err, &errs):
		details := make([]api.Detail, len(errs))
		for i, e := range errs {
			details[i] = api.Detail{Message: e.Error()}
		}
		web.WriteError(w, http.StatusUnprocessableEntity, fmt.Sprintf("invalid config: %d problems; nothing changed", len(errs)), details...)
	case errors.Is(err, errNotRunning):
		web.WriteError(w, http.StatusServiceUnavailable, err.Error())
	case err != nil:
		web.WriteError(w, http.StatusInternalServerError, "reload failed; nothing changed: "+err.Error())
	default:
		web.WriteJSON(w, http.StatusOK, res)
	}
}

// handlerSwap serves with the handler set last; a reload sets a new one
// while requests in flight finish with theirs.
type handlerSwap struct {
	h atomic.Pointer[http.Handler]
}

func (s *handlerSwap) set(h http.Handler) { s.h.Store(&h) }

func (s *handlerSwap) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	(*s.h.Load()).ServeHTTP(w, req)
}

// reloadGauges are relay_config_last_reload_successful and
// relay_config_last_reload_success_timestamp_seconds, as Prometheus names
// its own.
type reloadGauges struct {
	ok, at prometheus.Gauge
}

func newReloadGauges(reg prometheus.Registerer) *reloadGauges {
	g := &reloadGauges{
		ok: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "relay_config_last_reload_successful", Help: "Whether the last config reload succeeded (the config read at start counts).",
		}),
		at: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "relay_config_last_reload_success_timestamp_seconds", Help: "When the config was last loaded successfully, at start or by a reload.",
		}),
	}
	reg.MustRegister(g.ok, g.at)
	g.ok.Set(1)
	g.at.Set(float64(time.Now().UnixNano()) / 1e9)
	return g
}
