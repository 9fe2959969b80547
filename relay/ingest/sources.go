package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/relaydev/relay/config"
	"github.com/relaydev/relay/relay/activity"
	"github.com/relaydev/relay/relay/api"
	"github.com/relaydev/relay/relay/text"
	"github.com/relaydev/relay/relay/web"
)

// Sources take other systems' payloads as those systems send them and
// turn them into Relay activities, checked (catalog, ids, sizes) and
// published as ingest does its own API's:
//
//	POST /v3/events          ODP's event API (x-api-key), ODP's answers
//	POST /v1/sources/ortto   Ortto's activity webhooks (Basic auth or bearer)

// --- Reading a source's body ----------------------------------------------

// A source's body is read as strictly as /v1/activities': splitItems
// refuses invalid UTF-8 (lone surrogates included) and duplicate names at
// any depth; the source's own names match exactly, so a name differing
// from one only in case is refused, not taken for it. Values are kept as
// the raw text the sender wrote: contact and attributes are stored byte
// for byte.

// sourceItems returns the items of a source's body: one object or an
// array of them. what names one item in messages ("an event").
func sourceItems(body []byte, maxItems int, what, plural string) ([]jsontext.Value, *refusal) {
	items, batch, err := splitItems(body, maxItems)
	var tooMany errTooMany
	var bad *badJSON
	switch {
	case errors.As(err, &tooMany):
		return nil, &refusal{status: http.StatusRequestEntityTooLarge, reason: "too_large", msg: fmt.Sprintf("batch of more than %d %s exceeds the limit of %d (ingest.max_batch)", maxItems, plural, maxItems)}
	case errors.As(err, &bad):
		msg := bad.message
		if bad.index < 0 {
			trimmed := bytes.TrimSpace(body)
			switch k := jsontext.Value(trimmed).Kind(); {
			case len(trimmed) == 0:
				msg = fmt.Sprintf("empty body: expected %s or an array of them", what)
			case k != '{' && k != '[' && strings.HasPrefix(msg, "malformed JSON: expected an object"):
				msg = fmt.Sprintf("expected %s or an array of them, got %s", what, kindOf(jsontext.Value(trimmed)))
			}
			return nil, &refusal{status: http.StatusBadRequest, reason: "malformed", msg: msg}
		}
		field := bad.field
		if !batch { // name the field by its whole path within the one object
			if f := syntaxField(body); f != "" {
				field = f
			}
		}
		idx := bad.index
		return nil, &refusal{status: http.StatusBadRequest, reason: "malformed", msg: msg, details: []api.Detail{{Index: &idx, Field: field, Message: msg}}}
	case err != nil:
		return nil, &refusal{status: http.StatusBadRequest, reason: "malformed", msg: "malformed JSON"}
	}
	return items, nil
}

// syntaxField reads body token by token and names the field of its first
// syntax error (duplicate name, invalid UTF-8), "" when there is none.
func syntaxField(body []byte) string {
	dec := jsontext.NewDecoder(bytes.NewReader(body), jsontext.AllowDuplicateNames(false), jsontext.AllowInvalidUTF8(false))
	for {
		if _, err := dec.ReadToken(); err != nil {
			var se *jsontext.SyntacticError
			if errors.As(err, &se) {
				return pointerField(string(se.JSONPointer))
			}
			return ""
		}
	}
}

// member is one member of a JSON object, its value as sent.
type member struct {
	name  string
	value jsontext.Value
}

// members returns the members of an object already checked by splitItems,
// in order, each value the exact text it was sent as.
func members(obj jsontext.Value) []member {
	dec := jsontext.NewDecoder(bytes.NewReader(obj))
	if _, err := dec.ReadToken(); err != nil {
		return nil
	}
	var out []member
	for dec.PeekKind() == '"' {
		tok, err := dec.ReadToken()
		if err != nil {
			return out
		}
		name := tok.String() // before the next read voids the token
		v, err := dec.ReadValue()
		if err != nil {
			return out
		}
		out = append(out, member{name: name, value: bytes.Clone(v)})
	}
	return out
}

// kindOf names a value's JSON type for messages.
func kindOf(v jsontext.Value) string {
	switch v.Kind() {
	case '"':
		return "a string"
	case '0':
		return "a number"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 'n':
		return "null"
	case 't':
		return "true"
	case 'f':
		return "false"
	}
	return "nothing"
}

// stringValue reads a JSON string.
func stringValue(v jsontext.Value) (string, error) {
	if v.Kind() != '"' {
		return "", fmt.Errorf("expected a string, got %s", kindOf(v))
	}
	s, err := jsontext.AppendUnquote(nil, v)
	if err != nil {
		return "", errors.New("expected a string")
	}
	return string(s), nil
}

// objectValue checks that v is an object.
func objectValue(v jsontext.Value) error {
	if v.Kind() != '{' {
		return fmt.Errorf("expected an object, got %s", kindOf(v))
	}
	return nil
}

// caseVariant returns the name of known that name differs from only in
// case, if any.
func caseVariant(name string, known ...string) (string, bool) {
	for _, k := range known {
		if name != k && strings.EqualFold(name, k) {
			return k, true
		}
	}
	return "", false
}

// sourceItem is one item of a source translated into Relay's terms.
type sourceItem struct {
	in inbound
	// at is the item's time when the source gave one (in.OccurredAt is
	// then empty).
	at time.Time
	// fields names the source's field for each of Relay's (id, type,
	// occurred_at, contact, attributes), for messages.
	fields map[string]string
	// test marks Ortto's test delivery: answered, never stored.
	test bool
}

func (it *sourceItem) field(relayField string) string {
	if f, ok := it.fields[relayField]; ok {
		return f
	}
	return relayField
}

// build checks translated items as ingest checks its own (catalog, ids,
// sizes) and encodes them for the bus. An item with errors from its
// translation is not built; a nil item (a test delivery) is left nil.
// The refusal names every bad item by its index in the request.
func (in *Ingest) build(items []*sourceItem, errs [][]itemError) ([]*activity.Activity, [][]byte, *refusal) {
	now := time.Now().UTC()
	acts := make([]*activity.Activity, len(items))
	raws := make([][]byte, len(items))
	for i, it := range items {
		if it == nil || it.test || len(errs[i]) > 0 {
			continue
		}
		a, bad := buildActivity(&it.in, in.Catalog, in.AllowCustom, now)
		for _, e := range bad {
			e.Field = it.field(e.Field)
			errs[i] = append(errs[i], e)
		}
		if len(bad) > 0 {
			continue
		}
		if !it.at.IsZero() {
			a.OccurredAt = it.at
		}
		raw, err := activity.EncodeDecoded(a)
		if err != nil {
			errs[i] = append(errs[i], itemError{Message: "cannot be stored: " + err.Error()})
			continue
		}
		acts[i], raws[i] = a, raw
	}
	return in.finish(acts, raws, errs)
}

// store publishes built activities (nil ones skipped) and answers: ok once
// every one is stored, 503 with the ids already stored when the bus fails.
func (in *Ingest) store(w http.ResponseWriter, r *http.Request, acts []*activity.Activity, raws [][]byte, ok func(accepted)) {
	var keep []*activity.Activity
	var keepRaw [][]byte
	for i, a := range acts {
		if a != nil {
			keep, keepRaw = append(keep, a), append(keepRaw, raws[i])
		}
	}
	res, err := in.Publish(r.Context(), keep, keepRaw)
	in.Metrics.Ingested.Add(float64(res.Accepted))
	if err != nil {
		in.Log.Error("ingest publish failed", "error", err, "persisted", len(res.IDs), "batch", len(keep))
		in.reject("bus")
		web.WriteJSON(w, http.StatusServiceUnavailable, api.Error{
			Error: "the bus did not persist every activity; retry with the same ids: " + err.Error(),
			IDs:   res.IDs,
		})
		return
	}
	ok(res)
}

func (in *Ingest) maxBatch() int {
	if in.MaxBatch <= 0 {
		return 1000
	}
	return in.MaxBatch
}

// refuse answers a refusal.
func (in *Ingest) refuse(w http.ResponseWriter, ref *refusal) {
	in.reject(ref.reason)
	web.WriteError(w, ref.status, ref.msg, ref.details...)
}

// batchNote is what a refusal of a batch adds to its message.
func batchNote(n int, what string) string {
	if n < 2 {
		return ""
	}
	return fmt.Sprintf("; nothing of the %d-%s batch was accepted", n, what)
}

// --- ODP: POST /v3/events -------------------------------------------------

// odpAuth accepts an ingest token in x-api-key, as ODP takes its API key.
func odpAuth(ts web.TokenSet, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if web.TooManyWrongTokens(w, r) {
			return
		}
		if !ts.Has(r.Header.Get("x-api-key")) {
			web.WrongToken(r)
			web.WriteError(w, http.StatusUnauthorized, "missing or invalid x-api-key")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// readItems reads a source's body and splits it into its items (one, or
// an array of them), strictly; when it answered a refusal it returns nil.
// The caller calls release once done with the items.
func (in *Ingest) readItems(w http.ResponseWriter, r *http.Request, what, plural, empty string) ([]jsontext.Value, func()) {
	body, release := in.read(w, r)
	if body == nil {
		return nil, nil
	}
	raw, bad := sourceItems(body.Bytes(), in.maxBatch(), what, plural)
	if bad == nil && len(raw) == 0 {
		bad = &refusal{status: http.StatusBadRequest, reason: "malformed", msg: empty}
	}
	if bad != nil {
		release()
		in.refuse(w, bad)
		return nil, nil
	}
	return raw, release
}

// odp takes ODP's event body (one event or an array) and answers as ODP
// does, 202 {"title": "Accepted", "status": 202, "timestamp"}, once every
// event is stored; the answer adds Relay's accepted, ids and duplicates.
func (in *Ingest) odp(w http.ResponseWriter, r *http.Request) {
	raw, release := in.readItems(w, r, "an event (an object)", "events", "no events: the array is empty")
	if raw == nil {
		return
	}
	defer release()
	items := make([]*sourceItem, len(raw))
	errs := make([][]itemError, len(raw))
	for i, ev := range raw {
		items[i], errs[i] = odpItem(ev)
		raw[i] = nil
	}
	acts, raws, ref := in.build(items, errs)
	if ref != nil {
		switch ref.status {
		case http.StatusBadRequest:
			ref.msg = "invalid event"
		case http.StatusRequestEntityTooLarge:
			ref.msg = "event too large"
		default:
			ref.msg = "unknown activity"
		}
		ref.msg += batchNote(len(items), "event")
		in.refuse(w, ref)
		return
	}
	in.store(w, r, acts, raws, func(res accepted) {
		out := odpAnswer(http.StatusAccepted)
		out["accepted"], out["ids"], out["duplicates"] = res.Accepted, res.IDs, res.Duplicates
		web.WriteJSON(w, http.StatusAccepted, out)
	})
}

// odpFields name ODP's fields for Relay's in messages.
var odpFields = map[string]string{"id": "data.idempotence_id", "occurred_at": "data.ts", "contact": "identifiers", "attributes": "data"}

// odpItem translates one event, naming every field at fault: identifiers
// become contact and data attributes, each the text sent; idempotence_id
// is the id and ts the time, read from data and kept in it.
func odpItem(raw jsontext.Value) (*sourceItem, []itemError) {
	if raw.Kind() != '{' {
		return nil, []itemError{{Message: "expected an event (an object), got " + kindOf(raw)}}
	}
	it := &sourceItem{fields: odpFields}
	ev, errs := odpMembers(raw)
	var bad []itemError
	it.in.Type, bad = odpType(ev.typ)
	errs = append(errs, bad...)
	it.in.Action, bad = odpAction(ev.action)
	errs = append(errs, bad...)
	it.in.Contact, bad = odpIdentifiers(ev.ids)
	errs = append(errs, bad...)
	if ev.data == nil || ev.data.Kind() == 'n' {
		return it, errs
	}
	if err := objectValue(ev.data); err != nil {
		return it, append(errs, itemError{Field: "data", Message: err.Error()})
	}
	it.in.ID, it.at, bad = odpData(ev.data)
	it.in.Attributes = ev.data // kept whole, idempotence_id and ts included
	return it, append(errs, bad...)
}

// odpEvent is an event's members, each the text sent; nil when absent.
type odpEvent struct {
	typ, action, ids, data jsontext.Value
}

// odpMembers sorts an event's members into ODP's four. Any other member
// is an error.
func odpMembers(raw jsontext.Value) (ev odpEvent, errs []itemError) {
	unknown := false // one unknown field is named per event
	for _, m := range members(raw) {
		switch m.name {
		case "type":
			ev.typ = m.value
		case "action":
			ev.action = m.value
		case "identifiers":
			ev.ids = m.value
		case "data":
			ev.data = m.value
		default:
			if unknown {
				continue
			}
			unknown = true
			msg := "unknown field: an event has type, action, identifiers and data"
			if k, ok := caseVariant(m.name, "type", "action", "identifiers", "data"); ok {
				msg = fmt.Sprintf("unknown field: names are case-sensitive; ODP's is %q", k)
			}
			errs = append(errs, itemError{Field: text.Clip(m.name, text.MaxQuote), Message: msg})
		}
	}
	return ev, errs
}

// odpType reads an event's type, which is required.
func odpType(typ jsontext.Value) (string, []itemError) {
	switch s, err := stringValue(typ); {
	case typ == nil:
		return "", []itemError{{Field: "type", Message: "type is required"}}
	case err != nil:
		return "", []itemError{{Field: "type", Message: err.Error()}}
	case s == "":
		return "", []itemError{{Field: "type", Message: "type is required"}}
	default:
		return s, nil
	}
}

// odpAction reads an event's action, if it has one.
func odpAction(action jsontext.Value) (string, []itemError) {
	if action == nil {
		return "", nil
	}
	s, err := stringValue(action)
	if err != nil {
		return s, []itemError{{Field: "action", Message: err.Error()}}
	}
	return s, nil
}

// odpIdentifiers returns an event's identifiers as its contact: an object
// of at least one.
func odpIdentifiers(ids jsontext.Value) (jsontext.Value, []itemError) {
	switch {
	case ids == nil || ids.Kind() == 'n':
		return nil, []itemError{{Field: "identifiers", Message: "at least one identifier is required, e.g. {\"email\": \"ann@example.com\"}"}}
	case ids.Kind() != '{':
		return nil, []itemError{{Field: "identifiers", Message: fmt.Sprintf("expected an object, got %s", kindOf(ids))}}
	case len(members(ids)) == 0:
		return nil, []itemError{{Field: "identifiers", Message: "at least one identifier is required, e.g. {\"email\": \"ann@example.com\"}"}}
	default:
		return ids, nil
	}
}

// odpData reads the id (idempotence_id) and the time (ts) from an
// event's data, an object.
func odpData(data jsontext.Value) (id string, at time.Time, errs []itemError) {
	for _, m := range members(data) {
		switch m.name {
		case "idempotence_id":
			s, err := stringValue(m.value)
			if err != nil {
				errs = append(errs, itemError{Field: "data.idempotence_id", Message: err.Error()})
			}
			id = s
		case "ts":
			t, err := sourceTime(m.value)
			if err != nil {
				errs = append(errs, itemError{Field: "data.ts", Message: err.Error()})
			}
			at = t
		default:
			if k, ok := caseVariant(m.name, "idempotence_id", "ts"); ok {
				errs = append(errs, itemError{Field: "data." + m.name, Message: fmt.Sprintf("differs from %q only in case: ODP's field names are lower case", k)})
			}
		}
	}
	return id, at, errs
}

// secondsText is Unix seconds written as a string: digits, a fraction
// allowed.
var secondsText = regexp.MustCompile(`^-?[0-9]+(\.[0-9]+)?$`)

// sourceTime reads ODP's ts and Ortto's times: Unix seconds (a number, or
// a string of digits; fractions allowed; 10^12 and more are read as
// milliseconds) or an RFC 3339 time in a string.
func sourceTime(v jsontext.Value) (time.Time, error) {
	var s string
	switch v.Kind() {
	case '0':
		s = string(v)
	case '"':
		u, err := stringValue(v)
		if err != nil {
			return time.Time{}, err
		}
		s = u
		if !secondsText.MatchString(s) {
			t, err := text.ParseTime(s)
			if err != nil && strings.HasPrefix(err.Error(), "expected") {
				return time.Time{}, fmt.Errorf("expected Unix seconds or an ISO 8601 (RFC 3339) time like 2026-11-22T10:00:00Z, got %s", text.Quote(s))
			}
			return t, err
		}
	default:
		return time.Time{}, fmt.Errorf("expected Unix seconds (a number) or an ISO 8601 (RFC 3339) time (a string), got %s", kindOf(v))
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return time.Time{}, fmt.Errorf("%s is too large for a time", text.Quote(s))
	}
	if math.Abs(f) >= 1e12 { // milliseconds: as seconds it would be past year 33000
		f /= 1000
	}
	sec, frac := math.Modf(f)
	t := time.Unix(int64(sec), int64(math.Round(frac*1e6))*1e3).UTC()
	if y := t.Year(); y < 1 || y > 9999 || math.Abs(sec) > 1e15 {
		return time.Time{}, fmt.Errorf("%s is outside years 0001-9999", text.Quote(s))
	}
	return t, nil
}

// odpAnswer is ODP's answer body: {"title", "status", "timestamp"}.
func odpAnswer(status int) map[string]any {
	return map[string]any{"title": http.StatusText(status), "status": status, "timestamp": time.Now().UTC().Format("2006-01-02T15:04:05.000Z")}
}

// odpErrors rewrites Relay's error bodies on the ODP route into ODP's
// shape, keeping Relay's own fields alongside: {"title", "status",
// "timestamp", "message", "detail": {"invalids": [{"event", "message"}]},
// "error", "details"}.
func odpErrors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &odpWriter{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		rec.finish()
	})
}

// odpWriter holds back an error answer to rewrite it; a success passes.
type odpWriter struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (o *odpWriter) WriteHeader(status int) {
	o.status = status
	if status < 400 {
		o.ResponseWriter.WriteHeader(status)
	}
}

func (o *odpWriter) Write(b []byte) (int, error) {
	if o.status == 0 {
		o.WriteHeader(http.StatusOK)
	}
	if o.status < 400 {
		return o.ResponseWriter.Write(b)
	}
	return o.body.Write(b)
}

func (o *odpWriter) finish() {
	if o.status < 400 {
		return
	}
	var e api.Error
	_ = json.Unmarshal(o.body.Bytes(), &e)
	out := odpAnswer(o.status)
	out["message"], out["error"] = e.Error, e.Error
	if len(e.Details) > 0 {
		invalids := make([]map[string]any, len(e.Details))
		for i, d := range e.Details {
			inv := map[string]any{"message": d.Message}
			if d.Index != nil {
				inv["event"] = *d.Index
			}
			if d.Field != "" {
				inv["field"] = d.Field
			}
			invalids[i] = inv
		}
		out["detail"] = map[string]any{"invalids": invalids}
		out["details"] = e.Details
	}
	if len(e.IDs) > 0 {
		out["ids"] = e.IDs
	}
	h := o.ResponseWriter.Header()
	h.Del("Content-Length")
	web.WriteJSON(o.ResponseWriter, o.status, out)
}

// --- Ortto: POST /v1/sources/ortto ----------------------------------------

// OrttoTestID is the field id of the delivery Ortto sends to test a
// webhook: answered 200, never stored.
const OrttoTestID = "act::test_webhook"

// orttoBuiltin maps the Ortto activity field ids public material
// establishes (docs/sources.md says where each comes from) to catalog
// activities.
var orttoBuiltin = map[string]string{
	"act::s":  "email.sent",
	"act::r":  "email.received",
	"act::o":  "email.open",
	"act::c":  "email.click",
	"act::b":  "email.bounce",
	"act::ds": "sms.delivered",
	"act::us": "user_session.started",
}

// OrttoBuiltin returns a copy of the built-in table of Ortto field ids.
func OrttoBuiltin() map[string]string {
	out := make(map[string]string, len(orttoBuiltin))
	for k, v := range orttoBuiltin {
		out[k] = v
	}
	return out
}

// OrttoSource maps Ortto's activity field ids to catalog activities.
type OrttoSource struct {
	ids      map[string]string
	unmapped string // "" refuses an unmapped id
}

// NewOrttoSource is the built-in table with sources.ortto applied.
func NewOrttoSource(cfg config.Ortto) *OrttoSource {
	ids := OrttoBuiltin()
	for k, v := range cfg.ActivityIDs {
		ids[k] = v
	}
	return &OrttoSource{ids: ids, unmapped: cfg.Unmapped}
}

// CheckSources checks sources.ortto against the catalog: every mapped
// activity, and the one unmapped ids are kept as, must exist.
func CheckSources(cfg *config.Config, cat *activity.Catalog) config.Errors {
	var errs config.Errors
	o := cfg.Sources.Ortto
	at := func(key string) config.Pos {
		if p, ok := o.Pos[key]; ok {
			return p
		}
		return config.Pos{Line: 1, Col: 1}
	}
	ids := make([]string, 0, len(o.ActivityIDs))
	for id := range o.ActivityIDs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		if name := o.ActivityIDs[id]; !knownName(cat, name) {
			key := "activity_ids." + id
			errs = append(errs, cfg.Errorf(at(key), "sources.ortto."+key, "activity %q is not in the catalog (see `relay activities`, or declare it under activities:)", name))
		}
	}
	if o.Unmapped != "" && !knownName(cat, o.Unmapped) {
		errs = append(errs, cfg.Errorf(at("unmapped"), "sources.ortto.unmapped", "activity %q is not in the catalog (declare it under activities:, e.g. name: ortto.activity)", o.Unmapped))
	}
	return errs
}

func knownName(cat *activity.Catalog, name string) bool {
	e, ok := cat.Lookup(name)
	return ok && e.Name == name
}

// orttoAuth accepts HTTP Basic auth whose password is an ingest token (the
// user name is not checked), or a bearer token.
func orttoAuth(ts web.TokenSet, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if web.TooManyWrongTokens(w, r) {
			return
		}
		_, password, basic := r.BasicAuth()
		if (basic && ts.Has(password)) || (!basic && ts.Allows(r)) {
			next.ServeHTTP(w, r)
			return
		}
		web.WrongToken(r)
		w.Header().Set("WWW-Authenticate", `Basic realm="relay", charset="UTF-8"`)
		web.WriteError(w, http.StatusUnauthorized, "missing or invalid credentials: use HTTP Basic auth with an ingest token as the password, or a bearer token")
	})
}

// orttoIDForm is the form of an Ortto activity field id, as
// sources.ortto.activity_ids is validated (config): act:<namespace>:<name>,
// the namespace empty for Ortto's own activities.
var orttoIDForm = regexp.MustCompile(`^act:[a-z0-9_-]*:[A-Za-z0-9_.-]+$`)

// maxIgnored bounds the names an Ortto answer lists as not read.
const maxIgnored = 100

// orttoFieldIDKey is where an unmapped activity's field id is kept in its
// attributes (sources.ortto.unmapped).
const orttoFieldIDKey = "ortto_field_id"

// ortto takes Ortto webhook deliveries (one payload, or an array of them).
// Ortto's test delivery is answered 200 and not stored. Members Relay does
// not read are accepted (Ortto sends what a webhook is set up to send) and
// named in the answer's "ignored".
func (in *Ingest) ortto(w http.ResponseWriter, r *http.Request) {
	raw, release := in.readItems(w, r, "Ortto's webhook payload (an object)", "payloads",
		"an empty array: expected Ortto's webhook payload (an object), or an array of one or more")
	if raw == nil {
		return
	}
	defer release()
	src := in.Ortto
	if src == nil {
		src = NewOrttoSource(config.Ortto{})
	}
	items := make([]*sourceItem, len(raw))
	errs := make([][]itemError, len(raw))
	ignored := []string{}
	tests := 0
	for i, p := range raw {
		var skip []string
		items[i], skip, errs[i] = src.item(p)
		raw[i] = nil
		if items[i] != nil && items[i].test && len(errs[i]) == 0 {
			tests++
		}
		for _, s := range skip {
			if len(ignored) < maxIgnored && !slices.Contains(ignored, s) {
				ignored = append(ignored, s)
			}
		}
	}
	acts, raws, ref := in.build(items, errs)
	if ref != nil {
		if len(ref.details) > 0 {
			ref.msg = ref.details[0].Message + batchNote(len(items), "payload")
		}
		in.refuse(w, ref)
		return
	}
	if tests == len(items) {
		web.WriteJSON(w, http.StatusOK, map[string]any{"test": true, "stored": false})
		return
	}
	slices.Sort(ignored)
	in.store(w, r, acts, raws, func(res accepted) {
		web.WriteJSON(w, http.StatusAccepted, map[string]any{"accepted": res.Accepted, "ids": res.IDs, "duplicates": res.Duplicates, "ignored": ignored})
	})
}

// item translates one payload, naming every field at fault; ignored lists
// the members it does not read. An unmapped field id is an error marked
// Unknown (422: Ortto retries it until a mapping exists).
func (o *OrttoSource) item(raw jsontext.Value) (it *sourceItem, ignored []string, errs []itemError) {
	if raw.Kind() != '{' {
		return nil, nil, []itemError{{Message: "expected Ortto's webhook payload (an object), got " + kindOf(raw)}}
	}
	it = &sourceItem{fields: map[string]string{"name": "activity.field_id", "contact": "contact", "attributes": "activity.attr"}}
	payload, ignored, errs := orttoMembers(raw, "", "activity", "contact", "id", "time", "webhook_id")
	if bad := orttoActivity(payload["activity"]); bad != nil {
		return it, ignored, append(errs, bad...)
	}
	act, skipped, caseErrs := orttoMembers(payload["activity"], "activity.", "field_id", "id", "created", "attr")
	ignored = append(ignored, skipped...)
	if len(errs) == 0 { // one name differing only in case is named per payload
		errs = caseErrs
	}
	fieldID, bad := orttoFieldID(act["field_id"])
	errs = append(errs, bad...)
	if fieldID == OrttoTestID && len(errs) == 0 {
		it.test = true
		return it, ignored, nil
	}
	it.in.Contact, bad = optionalObject("contact", payload["contact"])
	errs = append(errs, bad...)
	it.in.Attributes, bad = optionalObject("activity.attr", act["attr"])
	errs = append(errs, bad...)
	id, idField, bad := orttoID(namedValue{"id", payload["id"]}, namedValue{"activity.id", act["id"]})
	errs = append(errs, bad...)
	if id != "" {
		it.in.ID, it.fields["id"] = id, idField
	}
	it.at, bad = orttoTime(namedValue{"activity.created", act["created"]}, namedValue{"time", payload["time"]})
	errs = append(errs, bad...)
	if fieldID == "" {
		return it, ignored, errs
	}
	it.in.Name, it.in.Attributes, bad = o.activityName(fieldID, it.in.Attributes)
	return it, ignored, append(errs, bad...)
}

// orttoMembers sorts the members of one of Ortto's objects: those named
// in names by name, the rest listed as ignored (prefix says where the
// object is). A name differing from one of names only in case is an
// error; one such name is named per object.
func orttoMembers(obj jsontext.Value, prefix string, names ...string) (known map[string]jsontext.Value, ignored []string, errs []itemError) {
	known = make(map[string]jsontext.Value, len(names))
	for _, m := range members(obj) {
		if slices.Contains(names, m.name) {
			known[m.name] = m.value
			continue
		}
		k, ok := caseVariant(m.name, names...)
		switch {
		case !ok:
			ignored = append(ignored, text.Clip(prefix+m.name, text.MaxQuote))
		case len(errs) == 0:
			errs = append(errs, itemError{Field: text.Clip(prefix+m.name, text.MaxQuote), Message: fmt.Sprintf("unknown field: names are case-sensitive; Ortto's is %q", k)})
		}
	}
	return known, ignored, errs
}

// orttoActivity checks a payload's activity: an object, which Ortto
// sends only when the webhook is set up to.
func orttoActivity(act jsontext.Value) []itemError {
	if act == nil || act.Kind() == 'n' {
		return []itemError{{Field: "activity", Message: "missing: Ortto sends the activity only when the webhook's \"Send activity payload if relevant\" option is on"}}
	}
	if err := objectValue(act); err != nil {
		return []itemError{{Field: "activity", Message: err.Error()}}
	}
	return nil
}

// orttoFieldID reads the activity's field id, which says which activity
// it is.
func orttoFieldID(fid jsontext.Value) (string, []itemError) {
	switch s, err := stringValue(fid); {
	case fid == nil || fid.Kind() == 'n':
		return "", []itemError{{Field: "activity.field_id", Message: "missing: the activity's field id (act::o, act:cm:<name>) tells which activity it is"}}
	case err != nil:
		return "", []itemError{{Field: "activity.field_id", Message: err.Error()}}
	case !orttoIDForm.MatchString(s):
		return "", []itemError{{Field: "activity.field_id", Message: fmt.Sprintf("%s is not an Ortto activity field id: want act::<name> or act:<namespace>:<name>, e.g. act::o or act:cm:placed-order", text.Quote(s))}}
	default:
		return s, nil
	}
}

// optionalObject returns v when it is an object and nil when it is
// absent or null; anything else is an error.
func optionalObject(field string, v jsontext.Value) (jsontext.Value, []itemError) {
	if v == nil || v.Kind() == 'n' {
		return nil, nil
	}
	if err := objectValue(v); err != nil {
		return nil, []itemError{{Field: field, Message: err.Error()}}
	}
	return v, nil
}

// namedValue is a member's value and the field that names it in messages.
type namedValue struct {
	field string
	v     jsontext.Value
}

// orttoID reads the ids of a payload: the first given and not empty is
// the item's, field naming where it came from. Each must be a string.
func orttoID(ids ...namedValue) (id, field string, errs []itemError) {
	for _, f := range ids {
		if f.v == nil || f.v.Kind() == 'n' {
			continue
		}
		s, err := stringValue(f.v)
		if err != nil {
			errs = append(errs, itemError{Field: f.field, Message: err.Error()})
			continue
		}
		if id == "" && s != "" {
			id, field = s, f.field
		}
	}
	return id, field, errs
}

// orttoTime reads the item's time from the first of times given; the
// others are not read.
func orttoTime(times ...namedValue) (time.Time, []itemError) {
	for _, f := range times {
		if f.v == nil || f.v.Kind() == 'n' {
			continue
		}
		t, err := sourceTime(f.v)
		if err != nil {
			return t, []itemError{{Field: f.field, Message: err.Error()}}
		}
		return t, nil
	}
	return time.Time{}, nil
}

// activityName decides the activity a field id is stored as, and its
// attributes: the mapped one; else sources.ortto.unmapped, the field id
// added to the attributes; else none, an Unknown error.
func (o *OrttoSource) activityName(fieldID string, attrs jsontext.Value) (string, jsontext.Value, []itemError) {
	if name, mapped := o.ids[fieldID]; mapped {
		return name, attrs, nil
	}
	if o.unmapped == "" {
		return "", attrs, []itemError{{Field: "activity.field_id", Unknown: true, Message: fmt.Sprintf("unmapped Ortto activity %s: map it to a catalog activity under sources.ortto.activity_ids in relay.yaml and run `relay reload` (or set sources.ortto.unmapped to keep such activities)", text.Quote(fieldID))}}
	}
	var errs []itemError
	if attrs != nil && slices.ContainsFunc(members(attrs), func(m member) bool { return m.name == orttoFieldIDKey }) {
		errs = []itemError{{Field: "activity.attr." + orttoFieldIDKey, Message: "reserved: with sources.ortto.unmapped Relay keeps the field id of an unmapped activity under this name"}}
	}
	return o.unmapped, withMember(attrs, orttoFieldIDKey, fieldID), errs
}

// withMember adds "key": value first in an object's text, the rest of the
// text as it was sent; no object makes one.
func withMember(obj jsontext.Value, key, value string) jsontext.Value {
	out := append([]byte{'{'}, activity.AppendString(nil, key)...)
	out = append(out, ':')
	out = activity.AppendString(out, value)
	if len(obj) == 0 {
		return append(out, '}')
	}
	rest := obj[1:] // obj is an object's text, starting with its brace
	if t := bytes.TrimSpace(rest); len(t) > 0 && t[0] != '}' {
		out = append(out, ',')
	}
	return append(out, rest...)
}
