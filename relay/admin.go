package relay

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Admin is the operator's API: destinations, dead letters, replay, metrics.
type Admin struct {
	Relay *Relay
	Token tokenSet
	ready *atomic.Bool
}

// DestinationStatus is one row of GET /v1/destinations.
type DestinationStatus struct {
	Name           string `json:"name"`
	Type           string `json:"type"`
	State          string `json:"state"`
	Pending        uint64 `json:"pending"`
	Delivered      uint64 `json:"delivered"`
	FailedAttempts uint64 `json:"failed_attempts"`
	DeadLettered   int    `json:"dead_lettered"`
	Breaker        string `json:"breaker"` // closed, open, half_open, or off
}

// Handler returns the admin API's routes.
func (a *Admin) Handler() http.Handler {
	mux := http.NewServeMux()
	auth := func(h http.HandlerFunc) http.Handler { return requireToken(a.Token, a.afterStart(h)) }
	mux.Handle("GET /v1/destinations", auth(a.destinations))
	mux.Handle("POST /v1/destinations/{name}/pause", auth(a.setState(StatePaused)))
	mux.Handle("POST /v1/destinations/{name}/resume", auth(a.setState(StateActive)))
	mux.Handle("GET /v1/deadletters", auth(a.deadLetters))
	mux.Handle("POST /v1/replay", auth(a.replay))
	mux.Handle("GET /metrics", auth(promhttp.HandlerFor(a.Relay.metrics.Registry, promhttp.HandlerOpts{}).ServeHTTP))
	mux.HandleFunc("GET /healthz", healthz(a.Relay.Healthy))
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if !a.ready.Load() {
			writeError(w, http.StatusServiceUnavailable, "not ready: bus, streams or consumers are still starting")
			return
		}
		if !a.Relay.bus.NC.IsConnected() {
			writeError(w, http.StatusServiceUnavailable, "not ready: disconnected from NATS, reconnecting")
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
	return jsonErrors(mux)
}

// afterStart answers 503 until the bus is open: the admin API listens
// first so /healthz and /readyz answer while Relay starts.
func (a *Admin) afterStart(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-a.Relay.started:
			h(w, r)
		default:
			writeError(w, http.StatusServiceUnavailable, "starting: the bus is not ready yet")
		}
	}
}

func (a *Admin) destinations(w http.ResponseWriter, r *http.Request) {
	out := []DestinationStatus{}
	for _, wk := range a.Relay.Workers() {
		st, err := a.Relay.Status(r.Context(), wk)
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, err.Error())
			return
		}
		out = append(out, st)
	}
	writeJSON(w, http.StatusOK, map[string]any{"destinations": out})
}

func (a *Admin) setState(state string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		err := a.Relay.SetState(r.Context(), name, state)
		switch {
		case errors.Is(err, ErrUnknownDestination):
			writeError(w, http.StatusNotFound, err.Error())
			return
		case err != nil:
			writeError(w, http.StatusServiceUnavailable, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"name": name, "state": state})
	}
}

func (a *Admin) deadLetters(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	dest := q.Get("destination")
	if dest != "" && a.Relay.worker(dest) == nil {
		writeError(w, http.StatusNotFound, fmt.Sprintf("unknown destination %q", dest))
		return
	}
	limit, err := queryInt(q.Get("limit"), 100, 1, 1000)
	if err != nil {
		writeError(w, http.StatusBadRequest, "limit: "+err.Error())
		return
	}
	cursor, err := strconv.ParseUint(defaultString(q.Get("cursor"), "0"), 10, 64)
	if err != nil {
		writeError(w, http.StatusBadRequest, "cursor: not a cursor returned by this API")
		return
	}
	list, next, err := a.Relay.dls.List(r.Context(), dest, cursor, limit)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	if list == nil {
		list = []DeadLetter{}
	}
	nextCursor := ""
	if next > 0 {
		nextCursor = strconv.FormatUint(next, 10)
	}
	writeJSON(w, http.StatusOK, map[string]any{"deadletters": list, "next_cursor": nextCursor})
}

func (a *Admin) replay(w http.ResponseWriter, r *http.Request) {
	var req ReplayRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("replay request larger than %d bytes", tooLarge.Limit))
			return
		}
		writeError(w, http.StatusBadRequest, "malformed replay request: "+err.Error())
		return
	}
	n, err := a.Relay.Replay(r.Context(), req)
	switch {
	case errors.Is(err, ErrUnknownDestination):
		writeError(w, http.StatusNotFound, err.Error())
	case errors.Is(err, errBadRequest):
		writeError(w, http.StatusBadRequest, err.Error())
	case err != nil:
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": err.Error(), "replayed": n})
	default:
		writeJSON(w, http.StatusOK, map[string]int{"replayed": n})
	}
}

func queryInt(s string, def, lo, hi int) (int, error) {
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("want a number from %d to %d, got %q", lo, hi, s)
	}
	return n, nil
}

func defaultString(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
