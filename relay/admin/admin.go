package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/relaydev/relay/relay/activity"
	"github.com/relaydev/relay/relay/api"
	"github.com/relaydev/relay/relay/dashboard"
	"github.com/relaydev/relay/relay/engine"
	"github.com/relaydev/relay/relay/metrics"
	"github.com/relaydev/relay/relay/store"
	"github.com/relaydev/relay/relay/text"
	"github.com/relaydev/relay/relay/web"
)

// Admin is the operator's API: destinations, dead letters, replay, metrics.
// It reads the engine and the stores; a reload makes a new Admin.
type Admin struct {
	Engine      *engine.Engine
	Replayer    *Replayer
	DeadLetters *store.DeadLetters
	Log         *store.DeliveryLog // nil when log.deliveries is off
	Metrics     *metrics.Set
	// Catalog is the activity catalog of the config loaded last.
	Catalog func() *activity.Catalog
	Token   web.TokenSet
	// Dashboard outlives this Admin: a reload makes a new Admin with the
	// new token, and dashboard sign-ins last across it.
	Dashboard *dashboard.Dashboard
	// Started is closed once the bus is open; until then the API answers
	// 503 (it listens first, so /healthz and /readyz answer while Relay
	// starts).
	Started <-chan struct{}
	// Contacts serves a person's page and erasure; nil until the bus is open.
	Contacts *Contacts
	// Ready: bus, streams and consumers are ready; Connected: to NATS now;
	// Healthy: the process can still work.
	Ready, Connected, Healthy func() bool
}

// Handler returns the admin API's routes.
func (a *Admin) Handler() http.Handler {
	mux := http.NewServeMux()
	auth := func(h http.HandlerFunc) http.Handler { return web.RequireToken(a.Token, a.afterStart(h)) }
	mux.Handle("GET /v1/destinations", auth(a.destinations))
	mux.Handle("POST /v1/destinations/{name}/pause", auth(a.setState(store.StatePaused)))
	mux.Handle("POST /v1/destinations/{name}/resume", auth(a.setState(store.StateActive)))
	mux.Handle("GET /v1/deadletters", auth(a.deadLetters))
	mux.Handle("POST /v1/replay", auth(a.replay))
	mux.Handle("GET /v1/activities/{id}", auth(a.trace))
	mux.Handle("GET /v1/deliveries", auth(a.deliveries))
	mux.Handle("GET /v1/destinations/{name}/series", auth(a.series))
	mux.Handle("GET /v1/series", auth(a.allSeries))
	mux.Handle("GET /v1/contacts", auth(a.contacts(func(c *Contacts) http.HandlerFunc { return c.lookup })))
	mux.Handle("POST /v1/contacts/erase", auth(a.contacts(func(c *Contacts) http.HandlerFunc { return c.erase })))
	mux.Handle("GET /metrics", auth(promhttp.HandlerFor(a.Metrics.Registry, promhttp.HandlerOpts{}).ServeHTTP))
	mux.HandleFunc("GET /healthz", web.Healthz(a.Healthy))
	mux.HandleFunc("GET /readyz", web.Readyz(a.Ready, a.Connected))
	return a.Dashboard.Wrap(web.JSONErrors(mux))
}

// WithReload is the admin API with POST /v1/reload served by reload,
// outside the dashboard: only the token authorizes a reload.
func (a *Admin) WithReload(reload http.HandlerFunc) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST /v1/reload", web.RequireToken(a.Token, a.afterStart(reload)))
	mux.Handle("/", a.Handler())
	return mux
}

// afterStart answers 503 until the bus is open: the admin API listens
// first so /healthz and /readyz answer while Relay starts.
func (a *Admin) afterStart(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-a.Started:
			h(w, r)
		default:
			web.WriteError(w, http.StatusServiceUnavailable, "starting: the bus is not ready yet")
		}
	}
}

func (a *Admin) destinations(w http.ResponseWriter, r *http.Request) {
	out, err := a.Engine.Statuses(r.Context())
	if err != nil {
		web.WriteError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	web.WriteJSON(w, http.StatusOK, map[string]any{"destinations": out})
}

func (a *Admin) setState(state string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		err := a.Engine.SetState(r.Context(), name, state)
		switch {
		case errors.Is(err, engine.ErrUnknownDestination):
			web.WriteError(w, http.StatusNotFound, err.Error())
			return
		case err != nil:
			web.WriteError(w, http.StatusServiceUnavailable, err.Error())
			return
		}
		web.WriteJSON(w, http.StatusOK, map[string]string{"name": name, "state": state})
	}
}

func (a *Admin) deadLetters(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	dest := q.Get("destination")
	if dest != "" && a.Engine.Worker(dest) == nil {
		web.WriteError(w, http.StatusNotFound, fmt.Sprintf("unknown destination %s", text.Quote(dest)))
		return
	}
	limit, err := queryInt(q.Get("limit"), 100, 1, 1000)
	if err != nil {
		web.WriteError(w, http.StatusBadRequest, "limit: "+err.Error())
		return
	}
	cursor, err := strconv.ParseUint(defaultString(q.Get("cursor"), "0"), 10, 64)
	if err != nil {
		web.WriteError(w, http.StatusBadRequest, "cursor: not a cursor returned by this API")
		return
	}
	f, err := a.filter(q)
	if err != nil {
		web.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	match := f.match
	if f.empty() { // every dead letter: a page read from its cursor alone
		match = nil
	}
	list, next, total, err := a.DeadLetters.Filtered(r.Context(), dest, match, cursor, limit)
	if err != nil {
		web.WriteError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	if list == nil {
		list = []store.DeadLetter{}
	}
	nextCursor := ""
	if next > 0 {
		nextCursor = strconv.FormatUint(next, 10)
	}
	web.WriteJSON(w, http.StatusOK, map[string]any{"deadletters": list, "next_cursor": nextCursor, "total": total})
}

// queryFilter is since, until, activity and id of a query.
type queryFilter struct {
	since, until time.Time
	activity     string
	ids          map[string]bool
}

// empty reports whether the filter takes every dead letter.
func (f queryFilter) empty() bool {
	return f.since.IsZero() && f.until.IsZero() && f.activity == "" && f.ids == nil
}

func (f queryFilter) match(dl store.DeadLetter) bool {
	if f.ids != nil && !f.ids[dl.ID] {
		return false
	}
	if !f.since.IsZero() && dl.DeadAt.Before(f.since) || !f.until.IsZero() && dl.DeadAt.After(f.until) {
		return false
	}
	if f.activity != "" {
		var head struct {
			Name string `json:"name"`
		}
		_ = json.Unmarshal(dl.Activity, &head)
		return activity.Matches(f.activity, head.Name)
	}
	return true
}

// filter reads since, until, activity and id (repeatable) from a query,
// refusing values that are malformed or can match nothing.
func (a *Admin) filter(q url.Values) (queryFilter, error) {
	var f queryFilter
	now := time.Now()
	var err error
	if f.since, err = api.ParseTimeArg(q.Get("since"), now); err != nil {
		return f, fmt.Errorf("since: %v", err)
	}
	if f.until, err = api.ParseTimeArg(q.Get("until"), now); err != nil {
		return f, fmt.Errorf("until: %v", err)
	}
	if !f.since.IsZero() && !f.until.IsZero() && !f.since.Before(f.until) {
		return f, fmt.Errorf("the window is empty: since %s is not before until %s", f.since.UTC().Format(time.RFC3339), f.until.UTC().Format(time.RFC3339))
	}
	if p := q.Get("activity"); p != "" {
		if err := activity.ValidPattern(p); err != nil {
			return f, fmt.Errorf("activity: %v", err)
		}
		if len(a.Catalog().Match(p)) == 0 {
			return f, fmt.Errorf("activity: pattern %s matches no known activity (see relay activities)", text.Quote(p))
		}
		f.activity = p
	}
	if ids := q["id"]; len(ids) > 0 {
		f.ids = map[string]bool{}
		for _, id := range ids {
			f.ids[id] = true
		}
	}
	return f, nil
}

func (a *Admin) trace(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	t, err := a.Engine.Trace(r.Context(), id)
	switch {
	case errors.Is(err, engine.ErrNotRetained):
		web.WriteError(w, http.StatusNotFound, err.Error())
	case errors.Is(err, store.ErrLogOff):
		web.WriteError(w, http.StatusNotFound, "activity "+text.Quote(id)+" cannot be looked up: "+err.Error())
	case err != nil:
		web.WriteError(w, http.StatusServiceUnavailable, err.Error())
	default:
		if err := a.addRemoved(r.Context(), t); err != nil {
			web.WriteError(w, http.StatusServiceUnavailable, err.Error())
			return
		}
		web.WriteJSON(w, http.StatusOK, t)
	}
}

func (a *Admin) deliveries(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	lq := store.LogQuery{Destination: q.Get("destination"), Outcome: q.Get("outcome"), ID: q.Get("id")}
	if lq.Destination != "" {
		// One removed from the config keeps its log for log.retention.
		if known, err := a.knownDestination(r.Context(), lq.Destination); err != nil {
			web.WriteError(w, http.StatusServiceUnavailable, err.Error())
			return
		} else if !known {
			web.WriteError(w, http.StatusNotFound, fmt.Sprintf("unknown destination %s: not in the config, and the delivery log holds nothing of it", text.Quote(lq.Destination)))
			return
		}
	}
	switch lq.Outcome {
	case "", store.OutcomeDelivered, store.OutcomeFailed, store.OutcomeDeadLetter, store.OutcomeSuppressed:
	default:
		web.WriteError(w, http.StatusBadRequest, fmt.Sprintf("outcome: want delivered, failed, dead_letter or suppressed, got %s", text.Quote(lq.Outcome)))
		return
	}
	f, err := a.filter(q)
	if err != nil {
		web.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	lq.Since, lq.Until, lq.Activity = f.since, f.until, f.activity
	if lq.Limit, err = queryInt(q.Get("limit"), 100, 1, 1000); err != nil {
		web.WriteError(w, http.StatusBadRequest, "limit: "+err.Error())
		return
	}
	if c := q.Get("cursor"); c != "" {
		if lq.Before, err = strconv.ParseUint(c, 10, 64); err != nil || lq.Before == 0 {
			web.WriteError(w, http.StatusBadRequest, "cursor: not a cursor returned by this API")
			return
		}
	}
	list, next, err := a.Log.List(r.Context(), lq)
	switch {
	case errors.Is(err, store.ErrLogOff):
		web.WriteError(w, http.StatusNotFound, err.Error())
		return
	case err != nil:
		web.WriteError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	if list == nil {
		list = []store.LogEntry{}
	}
	web.WriteJSON(w, http.StatusOK, map[string]any{"deliveries": list, "next_cursor": store.Cursor(next)})
}

func (a *Admin) replay(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			web.WriteError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("replay request larger than %d bytes", tooLarge.Limit))
			return
		}
		web.WriteError(w, http.StatusBadRequest, "replay request: "+err.Error())
		return
	}
	req, msg := decodeReplayRequest(body)
	if msg != "" {
		web.WriteError(w, http.StatusBadRequest, "malformed replay request: "+msg)
		return
	}
	res, err := a.doReplay(r.Context(), req)
	switch {
	case errors.Is(err, engine.ErrUnknownDestination):
		web.WriteError(w, http.StatusNotFound, err.Error())
	case errors.Is(err, errBadRequest):
		web.WriteError(w, http.StatusBadRequest, err.Error())
	case err != nil:
		web.WriteJSON(w, http.StatusServiceUnavailable, map[string]any{"error": err.Error(), "replayed": res.Replayed})
	default:
		web.WriteJSON(w, http.StatusOK, res)
	}
}

// decodeReplayRequest decodes a replay body with the strict decoder ingest
// uses (duplicate names, invalid UTF-8 and lone surrogates are refused,
// not resolved or repaired), or says what is wrong in JSON's terms: the
// field, what it wants and the JSON type it got.
func decodeReplayRequest(body []byte) (api.ReplayRequest, string) {
	var req api.ReplayRequest
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return req, "the body is empty: want a JSON object"
	}
	if jsontext.Value(trimmed).IsValid() && jsonKind(trimmed) != "object" {
		return req, "want an object, got " + jsonKind(trimmed) // null too, which would decode as {}
	}
	if err := jsonv2.Unmarshal(trimmed, &req, web.DecodeOptions); err != nil {
		return req, replayFieldError(err)
	}
	// "ids": null is what a nil list marshals to: like [], it is refused
	// rather than read as "every dead letter".
	var raw struct {
		IDs jsontext.Value `json:"ids"`
	}
	if err := jsonv2.Unmarshal(trimmed, &raw); err == nil && raw.IDs.Kind() == 'n' {
		return req, "ids: null is not a list of ids; leave ids out to replay every dead letter"
	}
	var items []jsontext.Value
	if err := jsonv2.Unmarshal(raw.IDs, &items); err == nil {
		for i, v := range items {
			if v.Kind() == 'n' { // decoded as "", which would be a confusing message
				return req, fmt.Sprintf("ids[%d]: want a string, got null", i)
			}
		}
	}
	return req, ""
}

// replayWants is what each field of a replay request takes, for messages.
var replayWants = map[string]string{
	"destination": "a string",
	"activity":    "a string",
	"since":       "a string: " + api.TimeForms,
	"until":       "a string: " + api.TimeForms,
	"ids":         "an array of strings",
	"history":     "true or false",
	"dry_run":     "true or false",
}

// replayFieldError says what is wrong with a replay request's JSON,
// naming the field (ids[1] for an item) and JSON types, never Go's.
func replayFieldError(err error) string {
	var syn *jsontext.SyntacticError
	if errors.As(err, &syn) {
		msg := "malformed JSON: " + web.Describe(syn.Err)
		if f := replayField(string(syn.JSONPointer)); f != "" {
			msg = f + ": " + msg
		}
		return msg
	}
	var se *jsonv2.SemanticError
	if !errors.As(err, &se) {
		return "malformed JSON"
	}
	ptr := string(se.JSONPointer)
	field := replayField(ptr)
	if se.Err != nil && strings.Contains(se.Err.Error(), "unknown object member") {
		return field + ": unknown field"
	}
	top, _, _ := strings.Cut(strings.TrimPrefix(ptr, "/"), "/")
	if (top == "since" || top == "until") && se.Err != nil {
		return field + ": " + se.Err.Error() // TimeArg's own message
	}
	got := jsonKindName(se.JSONKind)
	want, ok := replayWants[top]
	switch {
	case top == "":
		return "want an object, got " + got
	case top == "ids" && field != "ids":
		want = "a string"
	case !ok:
		want = "another value"
	}
	if got == "" {
		return field + ": want " + want
	}
	return field + ": want " + want + ", got " + got
}

// replayField turns a JSON pointer (/ids/1) into a field name (ids[1]).
func replayField(ptr string) string {
	parts := strings.Split(strings.TrimPrefix(ptr, "/"), "/")
	out := ""
	for i, p := range parts {
		p = strings.NewReplacer("~1", "/", "~0", "~").Replace(p)
		if _, err := strconv.Atoi(p); err == nil && i > 0 {
			out += "[" + p + "]"
			continue
		}
		if out != "" {
			out += "."
		}
		out += p
	}
	return text.Clip(out, text.MaxQuote)
}

// jsonKindName names a JSON kind as JSON does.
func jsonKindName(k jsontext.Kind) string {
	switch k {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case '0':
		return "number"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	}
	return ""
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

// jsonKind names the JSON type of a value by its first byte: object,
// array, string, number, boolean or null.
func jsonKind(b []byte) string {
	b = bytes.TrimLeft(b, " \t\r\n")
	if len(b) == 0 {
		return "nothing"
	}
	k := jsontext.Kind(b[0])
	if b[0] == '-' || (b[0] >= '0' && b[0] <= '9') {
		k = '0'
	}
	if name := jsonKindName(k); name != "" {
		return name
	}
	return "invalid JSON"
}
