package relay

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/relaydev/relay/config"
	"github.com/relaydev/relay/relay/activity"
)

// Sources take other systems' payloads as those systems send them and
// turn them into Relay's own activity items, which ingest then validates
// and publishes as it does its own API's:
//
//	POST /v3/events          ODP's event API (x-api-key), ODP's answers
//	POST /v1/sources/ortto   Ortto's activity webhooks (Basic auth or bearer)

// has reports whether token is one of the set, in constant time.
func (ts tokenSet) has(token string) bool {
	if token == "" {
		return false
	}
	sum := sha256.Sum256([]byte(token))
	found := 0
	for _, t := range ts {
		found |= subtle.ConstantTimeCompare(sum[:], t[:])
	}
	return found == 1
}

// --- ODP: POST /v3/events -------------------------------------------------

// odpEvent is one event of ODP's event API.
type odpEvent struct {
	Type        *string         `json:"type"`
	Action      *string         `json:"action"`
	Identifiers json.RawMessage `json:"identifiers"`
	Data        json.RawMessage `json:"data"`
}

// relayItem is an activity in Relay's own ingest shape; contact and
// attributes carry the producer's JSON text unchanged.
type relayItem struct {
	ID         string          `json:"id,omitempty"`
	Type       string          `json:"type,omitempty"`
	Action     string          `json:"action,omitempty"`
	Name       string          `json:"name,omitempty"`
	OccurredAt string          `json:"occurred_at,omitempty"`
	Contact    json.RawMessage `json:"contact,omitempty"`
	Attributes json.RawMessage `json:"attributes,omitempty"`
}

// odpAuth accepts an ingest token in x-api-key, as ODP takes its API key.
func odpAuth(ts tokenSet, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !ts.has(r.Header.Get("x-api-key")) {
			writeError(w, http.StatusUnauthorized, "missing or invalid x-api-key")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// odp takes ODP's event body (one event or an array) and answers as ODP
// does: 202 {"title": "Accepted", "status": 202, "timestamp"} once every
// event is stored.
func (in *Ingest) odp(w http.ResponseWriter, r *http.Request) {
	body, release := in.read(w, r)
	if body == nil {
		return
	}
	defer release()
	items, bad := odpItems(body.Bytes(), in.maxBatch())
	if bad != nil {
		in.reject(bad.reason)
		writeError(w, bad.status, bad.msg, bad.details...)
		return
	}
	in.publishItems(w, r, items, func() {
		writeJSON(w, http.StatusAccepted, odpAnswer(http.StatusAccepted))
	})
}

func (in *Ingest) maxBatch() int {
	if in.MaxBatch <= 0 {
		return 1000
	}
	return in.MaxBatch
}

// publishItems validates Relay items with ingest's own decoder and
// publishes them; ok answers success.
func (in *Ingest) publishItems(w http.ResponseWriter, r *http.Request, items [][]byte, ok func()) {
	acts, raws, bad := in.decode(joinItems(items))
	if bad != nil {
		in.reject(bad.reason)
		writeError(w, bad.status, bad.msg, bad.details...)
		return
	}
	res, err := in.publish(r.Context(), acts, raws)
	in.Metrics.Ingested.Add(float64(res.Accepted))
	if err != nil {
		in.Log.Error("ingest publish failed", "error", err, "persisted", len(res.IDs), "batch", len(acts))
		in.reject("bus")
		writeJSON(w, http.StatusServiceUnavailable, errorBody{
			Error: "the bus did not persist every activity; retry with the same ids: " + err.Error(),
			IDs:   res.IDs,
		})
		return
	}
	ok()
}

func joinItems(items [][]byte) []byte {
	return append(append([]byte{'['}, bytes.Join(items, []byte{','})...), ']')
}

// odpItems translates ODP events into Relay items, naming every bad event.
func odpItems(body []byte, maxItems int) ([][]byte, *refusal) {
	events, err := splitBody(body)
	if err != nil {
		return nil, &refusal{status: http.StatusBadRequest, reason: "malformed", msg: "malformed JSON: " + err.Error()}
	}
	if len(events) == 0 {
		return nil, &refusal{status: http.StatusBadRequest, reason: "malformed", msg: "no events"}
	}
	if len(events) > maxItems {
		return nil, &refusal{status: http.StatusRequestEntityTooLarge, reason: "too_large", msg: fmt.Sprintf("batch of %d events exceeds the limit of %d (ingest.max_batch)", len(events), maxItems)}
	}
	items := make([][]byte, len(events))
	var details []Detail
	for i, ev := range events {
		item, field, err := odpItem(ev)
		if err != nil {
			idx := i
			details = append(details, Detail{Index: &idx, Field: field, Message: err.Error()})
			continue
		}
		items[i] = item
	}
	if len(details) > 0 {
		msg := "invalid event"
		if len(events) > 1 {
			msg += fmt.Sprintf("; nothing of the %d-event batch was accepted", len(events))
		}
		return nil, &refusal{status: http.StatusBadRequest, reason: "invalid", msg: msg, details: details}
	}
	return items, nil
}

// splitBody returns the items of a body holding one JSON object or an
// array of them.
func splitBody(body []byte) ([]json.RawMessage, error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) > 0 && trimmed[0] == '[' {
		var items []json.RawMessage
		if err := json.Unmarshal(trimmed, &items); err != nil {
			return nil, jsonError(err)
		}
		return items, nil
	}
	var one json.RawMessage
	if err := json.Unmarshal(trimmed, &one); err != nil {
		return nil, jsonError(err)
	}
	return []json.RawMessage{one}, nil
}

// jsonError says what is wrong without repeating the input.
func jsonError(err error) error {
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		return fmt.Errorf("%s (at byte %d)", strings.TrimPrefix(syn.Error(), "json: "), syn.Offset)
	}
	var typ *json.UnmarshalTypeError
	if errors.As(err, &typ) {
		return fmt.Errorf("expected a JSON object or array of objects, got %s", typ.Value)
	}
	return errors.New("invalid JSON")
}

// odpItem translates one event; the error names the field at fault.
func odpItem(raw json.RawMessage) ([]byte, string, error) {
	var ev odpEvent
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ev); err != nil {
		var typ *json.UnmarshalTypeError
		if errors.As(err, &typ) {
			return nil, typ.Field, fmt.Errorf("expected %s, got %s", typ.Type.Kind(), typ.Value)
		}
		if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			return nil, strings.Trim(f, `"`), errors.New("unknown field: an event has type, action, identifiers and data")
		}
		return nil, "", jsonError(err)
	}
	if ev.Type == nil || *ev.Type == "" {
		return nil, "type", errors.New("type is required")
	}
	if n, err := objectSize(ev.Identifiers); err != nil || n == 0 {
		return nil, "identifiers", errors.New("at least one identifier is required, e.g. {\"email\": \"ann@example.com\"}")
	}
	item := relayItem{Type: *ev.Type, Contact: ev.Identifiers}
	if ev.Action != nil {
		item.Action = *ev.Action
	}
	if len(ev.Data) > 0 && string(ev.Data) != "null" {
		var data map[string]json.RawMessage
		if err := json.Unmarshal(ev.Data, &data); err != nil {
			return nil, "data", errors.New("expected an object")
		}
		if v, ok := data["idempotence_id"]; ok && string(v) != "null" {
			if err := json.Unmarshal(v, &item.ID); err != nil {
				return nil, "data.idempotence_id", errors.New("expected a string")
			}
		}
		if v, ok := data["ts"]; ok && string(v) != "null" {
			t, err := odpTime(v)
			if err != nil {
				return nil, "data.ts", err
			}
			item.OccurredAt = t.Format(time.RFC3339Nano)
		}
		item.Attributes = ev.Data // kept whole, values exactly as sent
	}
	b, err := json.Marshal(item)
	return b, "", err
}

// objectSize counts the members of a JSON object.
func objectSize(raw json.RawMessage) (int, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return 0, errors.New("not an object")
	}
	return len(m), nil
}

// odpTime reads ODP's ts (and Ortto's times): Unix seconds (a number or a
// string of digits, fractions allowed; 10^12 and more are read as
// milliseconds) or an ISO 8601 / RFC 3339 time.
func odpTime(v json.RawMessage) (time.Time, error) {
	s := string(v)
	if unq, err := strconv.Unquote(s); err == nil {
		s = unq
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
		if math.Abs(f) >= 1e12 { // milliseconds: as seconds it would be past year 33000
			f /= 1000
		}
		sec, frac := math.Modf(f)
		t := time.Unix(int64(sec), int64(math.Round(frac*1e6))*1e3).UTC()
		if y := t.Year(); y < 1 || y > 9999 {
			return time.Time{}, fmt.Errorf("%s is outside years 0001-9999", s)
		}
		return t, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	return time.Time{}, fmt.Errorf("expected Unix seconds or an ISO 8601 time like 2026-11-22T10:00:00Z, got %s", clip(s, maxQuote))
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
	var e errorBody
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
	writeJSON(o.ResponseWriter, o.status, out)
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

// orttoPayload is what an Ortto webhook sends for an activity.
type orttoPayload struct {
	Activity *struct {
		ID      string          `json:"id"`
		FieldID string          `json:"field_id"`
		Created json.RawMessage `json:"created"`
		Attr    json.RawMessage `json:"attr"`
	} `json:"activity"`
	Contact   json.RawMessage `json:"contact"`
	ID        string          `json:"id"`
	Time      json.RawMessage `json:"time"`
	WebhookID string          `json:"webhook_id"`
}

// orttoAuth accepts HTTP Basic auth whose password is an ingest token (the
// user name is not checked), or a bearer token.
func orttoAuth(ts tokenSet, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, password, basic := r.BasicAuth()
		if (basic && ts.has(password)) || (!basic && ts.allows(r)) {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="relay", charset="UTF-8"`)
		writeError(w, http.StatusUnauthorized, "missing or invalid credentials: use HTTP Basic auth with an ingest token as the password, or a bearer token")
	})
}

// ortto takes Ortto webhook deliveries (one payload, or an array of them).
// Ortto's test delivery is answered 200 and not stored.
func (in *Ingest) ortto(w http.ResponseWriter, r *http.Request) {
	body, release := in.read(w, r)
	if body == nil {
		return
	}
	defer release()
	payloads, err := splitBody(body.Bytes())
	if err != nil || len(payloads) == 0 {
		in.reject("malformed")
		writeError(w, http.StatusBadRequest, "malformed JSON: want Ortto's webhook payload")
		return
	}
	if len(payloads) > in.maxBatch() {
		in.reject("too_large")
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("batch of %d payloads exceeds the limit of %d (ingest.max_batch)", len(payloads), in.maxBatch()))
		return
	}
	src := in.Ortto
	if src == nil {
		src = NewOrttoSource(config.Ortto{})
	}
	items, bad := src.items(payloads)
	if bad != nil {
		in.reject(bad.reason)
		writeError(w, bad.status, bad.msg, bad.details...)
		return
	}
	if len(items) == 0 {
		writeJSON(w, http.StatusOK, map[string]any{"test": true, "stored": false})
		return
	}
	in.publishItems(w, r, items, func() { writeJSON(w, http.StatusAccepted, map[string]any{"accepted": len(items)}) })
}

// items translates payloads, leaving out test deliveries; an unmapped id
// refuses the whole request with 422 naming it.
func (o *OrttoSource) items(payloads []json.RawMessage) ([][]byte, *refusal) {
	var items [][]byte
	var details []Detail
	unknown := false
	for i, raw := range payloads {
		item, test, d := o.item(raw)
		if d != nil {
			idx := i
			d.Index = &idx
			details = append(details, *d)
			unknown = unknown || d.Field == "activity.field_id"
			continue
		}
		if !test {
			items = append(items, item)
		}
	}
	if len(details) == 0 {
		return items, nil
	}
	ref := &refusal{status: http.StatusBadRequest, reason: "invalid", msg: details[0].Message, details: details}
	if unknown {
		ref.status, ref.reason = http.StatusUnprocessableEntity, "unknown_activity"
	}
	return nil, ref
}

// item translates one payload; test reports Ortto's test delivery.
func (o *OrttoSource) item(raw json.RawMessage) (item []byte, test bool, bad *Detail) {
	var p orttoPayload
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, false, &Detail{Message: "not Ortto's webhook payload: " + jsonError(err).Error()}
	}
	if p.Activity == nil || p.Activity.FieldID == "" {
		return nil, false, &Detail{Field: "activity.field_id", Message: "activity.field_id is missing: is the webhook's \"Send activity payload\" option on?"}
	}
	fid := p.Activity.FieldID
	if fid == OrttoTestID {
		return nil, true, nil
	}
	it := relayItem{ID: p.ID, Contact: nonNull(p.Contact), Attributes: nonNull(p.Activity.Attr)}
	if it.ID == "" {
		it.ID = p.Activity.ID
	}
	name, mapped := o.ids[fid]
	switch {
	case mapped:
		it.Name = name
	case o.unmapped != "":
		it.Name = o.unmapped
		it.Attributes = withMember(it.Attributes, "ortto_field_id", fid)
	default:
		return nil, false, &Detail{Field: "activity.field_id", Message: fmt.Sprintf("unmapped Ortto activity %s: map it to a catalog activity under sources.ortto.activity_ids in relay.yaml (or set sources.ortto.unmapped to keep such activities)", quote(fid))}
	}
	for _, v := range []json.RawMessage{p.Activity.Created, p.Time} {
		if len(nonNull(v)) == 0 {
			continue
		}
		t, err := odpTime(v)
		if err != nil {
			return nil, false, &Detail{Field: "activity.created", Message: err.Error()}
		}
		it.OccurredAt = t.Format(time.RFC3339Nano)
		break
	}
	b, err := json.Marshal(it)
	if err != nil {
		return nil, false, &Detail{Message: "not Ortto's webhook payload: " + err.Error()}
	}
	return b, false, nil
}

func nonNull(v json.RawMessage) json.RawMessage {
	if t := bytes.TrimSpace(v); len(t) == 0 || string(t) == "null" {
		return nil
	}
	return v
}

// withMember adds "key": value first in a JSON object's text, leaving the
// rest of it as it was; anything but an object is left as it is.
func withMember(obj json.RawMessage, key, value string) json.RawMessage {
	k, _ := json.Marshal(key)
	v, _ := json.Marshal(value)
	member := append(append(k, ':'), v...)
	t := bytes.TrimSpace(obj)
	switch {
	case len(t) == 0:
		return append(append([]byte{'{'}, member...), '}')
	case t[0] != '{':
		return obj
	}
	rest := bytes.TrimSpace(t[1:])
	out := append([]byte{'{'}, member...)
	if len(rest) > 0 && rest[0] != '}' {
		out = append(out, ',')
	}
	return append(out, rest...)
}
