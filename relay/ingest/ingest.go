// Package ingest takes activities in: POST /v1/activities, ODP's /v3/events
// and Ortto's webhooks. It decodes and checks them strictly, enforces the
// limits, and stores what it accepts in the activities stream.
package ingest

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/relaydev/relay/relay/activity"
	"github.com/relaydev/relay/relay/api"
	"github.com/relaydev/relay/relay/consent"
	"github.com/relaydev/relay/relay/metrics"
	"github.com/relaydev/relay/relay/store"
	"github.com/relaydev/relay/relay/telemetry"
	"github.com/relaydev/relay/relay/text"
	"github.com/relaydev/relay/relay/web"
)

// Ingest is the HTTP API producers post activities to. It answers 202 only
// once JetStream has acknowledged every activity of the request.
type Ingest struct {
	JS          jetstream.JetStream
	Catalog     *activity.Catalog
	Tokens      web.TokenSet
	AllowCustom bool
	MaxBody     int64
	MaxBatch    int
	// MaxActivity bounds one activity's stored JSON; 0 means no bound.
	MaxActivity int
	// Inflight bounds the bytes of request bodies read and decoded at
	// once; nil means no bound.
	Inflight *ByteBudget
	// DLog records where each accepted activity is stored; nil when the
	// delivery log is off.
	DLog *store.DeliveryLog
	// Healthy reports whether the process can still work; nil means yes.
	Healthy func() bool
	// Ready and Connected answer GET /readyz as the admin API does: the
	// bus, streams and consumers are ready, and NATS is connected.
	Ready, Connected func() bool

	Log     *slog.Logger
	Metrics *metrics.Set
	// PublishTimeout bounds the wait for JetStream's acknowledgements.
	PublishTimeout time.Duration
	// Ortto maps Ortto's activity ids for POST /v1/sources/ortto (sources.go).
	Ortto *OrttoSource
	// Tracing reads a producer's traceparent and makes the ingest and
	// store spans; nil is off (the traceparent is still kept).
	Tracing *telemetry.Tracing
	// Consent takes the consent activities' channel states before the
	// answer (consent.go); nil keeps none.
	Consent *consent.States
}

// accepted is the 202 answer. IDs lists every item's id in item order;
// Duplicates those not stored again: already stored within the duplicate
// window, or repeated inside the request (stored once). Accepted counts
// the activities this request stored.
type accepted struct {
	Accepted   int      `json:"accepted"`
	IDs        []string `json:"ids"`
	Duplicates []string `json:"duplicates"`
}

// Handler returns the ingest API's routes.
func (in *Ingest) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST /v1/activities", in.Tracing.Ingest("/v1/activities", web.RequireToken(in.Tokens, http.HandlerFunc(in.post))))
	mux.Handle("POST /v3/events", in.Tracing.Ingest("/v3/events", odpErrors(odpAuth(in.Tokens, http.HandlerFunc(in.odp)))))
	mux.Handle("POST /v1/sources/ortto", in.Tracing.Ingest("/v1/sources/ortto", orttoAuth(in.Tokens, http.HandlerFunc(in.ortto))))
	mux.HandleFunc("GET /healthz", web.Healthz(in.Healthy))
	mux.HandleFunc("GET /readyz", web.Readyz(in.Ready, in.Connected))
	return web.JSONErrors(mux)
}

func (in *Ingest) post(w http.ResponseWriter, r *http.Request) {
	body, ok := in.read(w, r)
	if body == nil {
		return
	}
	defer ok()
	acts, raws, bad := in.decode(body.Bytes())
	if bad != nil {
		in.reject(bad.reason)
		web.WriteError(w, bad.status, bad.msg, bad.details...)
		return
	}
	in.accept(w, r.Context(), acts, raws)
}

// accept publishes validated activities and answers: 202 once every one
// is stored, 503 with the ids already stored when the bus fails.
func (in *Ingest) accept(w http.ResponseWriter, ctx context.Context, acts []*activity.Activity, raws [][]byte) {
	res, err := in.Publish(ctx, acts, raws)
	in.Metrics.Ingested.Add(float64(res.Accepted))
	if err != nil {
		in.Log.ErrorContext(ctx, "ingest publish failed", "error", err, "persisted", len(res.IDs), "batch", len(acts))
		in.reject("bus")
		web.WriteJSON(w, http.StatusServiceUnavailable, api.Error{
			Error: "the bus did not persist every activity; retry with the same ids: " + err.Error(),
			IDs:   res.IDs,
		})
		return
	}
	web.WriteJSON(w, http.StatusAccepted, res)
}

func (in *Ingest) reject(reason string) {
	if in.Metrics != nil {
		in.Metrics.IngestRejected.WithLabelValues(reason).Inc()
	}
}

// read takes the request body within the size limit and the in-flight
// budget. On failure it has answered and returns nil; else the caller
// calls the returned release once done with the body.
func (in *Ingest) read(w http.ResponseWriter, r *http.Request) (*bytes.Buffer, func()) {
	gzipped, ref := in.checkHeaders(r)
	if ref != nil {
		in.refuse(w, ref)
		return nil, nil
	}
	weight := in.weight(r.ContentLength, gzipped)
	if !in.Inflight.Take(weight) {
		in.reject("busy")
		w.Header().Set("Retry-After", "1")
		web.WriteError(w, http.StatusServiceUnavailable, fmt.Sprintf("ingest is busy decoding %d bytes of other requests (ingest.max_inflight_bytes); retry after a second", in.Inflight.Limit()))
		return nil, nil
	}
	release := func() { in.Inflight.Give(weight) }
	body, ref := in.readBody(w, r, gzipped)
	if ref != nil {
		release()
		in.refuse(w, ref)
		return nil, nil
	}
	return body, release
}

// checkHeaders decides from its headers alone whether a request's body is
// read: its media type, its coding (whether it is gzipped) and its
// declared length.
func (in *Ingest) checkHeaders(r *http.Request) (gzipped bool, ref *refusal) {
	if msg := notJSON(r.Header.Get("Content-Type")); msg != "" {
		return false, &refusal{status: http.StatusUnsupportedMediaType, reason: "media_type", msg: msg}
	}
	gzipped, msg := bodyEncoding(r.Header.Values("Content-Encoding"))
	if msg != "" {
		return false, &refusal{status: http.StatusUnsupportedMediaType, reason: "media_type", msg: msg}
	}
	if r.ContentLength > in.MaxBody {
		return false, &refusal{status: http.StatusRequestEntityTooLarge, reason: "too_large", msg: fmt.Sprintf("body of %d bytes is larger than the limit of %d bytes (ingest.max_body)", r.ContentLength, in.MaxBody)}
	}
	return gzipped, nil
}

// weight is what a body of contentLength bytes (-1: unknown) counts
// against the in-flight budget.
func (in *Ingest) weight(contentLength int64, gzipped bool) int64 {
	weight := in.MaxBody
	if contentLength >= 0 && !gzipped { // gzip: as large as it may unpack
		weight = contentLength
	}
	// A body is held about three times while it is decoded: the bytes read,
	// the items' values and the activities encoded for the bus.
	return weight * decodeCopies
}

// readBody reads the body, unpacking it when it is gzipped, within
// ingest.max_body; a refusal says why it could not.
func (in *Ingest) readBody(w http.ResponseWriter, r *http.Request, gzipped bool) (*bytes.Buffer, *refusal) {
	src := http.MaxBytesReader(w, r.Body, in.MaxBody)
	if gzipped {
		return in.readGzip(src)
	}
	body := &bytes.Buffer{}
	if r.ContentLength > 0 {
		body.Grow(int(r.ContentLength) + bytes.MinRead)
	}
	if _, err := body.ReadFrom(src); err != nil {
		return nil, in.readFailure(err, false)
	}
	return body, nil
}

// readGzip unpacks a gzipped body. What it unpacks to is held to the
// same limit: a gzip bomb stops at ingest.max_body.
func (in *Ingest) readGzip(src io.Reader) (*bytes.Buffer, *refusal) {
	zr, err := gzip.NewReader(src)
	if err != nil {
		return nil, &refusal{status: http.StatusBadRequest, reason: "malformed", msg: "the body is not gzip, as its Content-Encoding says"}
	}
	body := &bytes.Buffer{}
	_, err = body.ReadFrom(io.LimitReader(zr, in.MaxBody+1))
	if err == nil {
		err = zr.Close()
	}
	if err == nil && int64(body.Len()) > in.MaxBody {
		err = &http.MaxBytesError{Limit: in.MaxBody}
	}
	if err != nil {
		return nil, in.readFailure(err, true)
	}
	return body, nil
}

// readFailure says why reading a body failed: a corrupt gzip body, a body
// over ingest.max_body, a timeout, or a body cut short.
func (in *Ingest) readFailure(err error, gzipped bool) *refusal {
	var tooLarge *http.MaxBytesError
	var ne net.Error
	switch {
	case gzipped && (errors.Is(err, gzip.ErrChecksum) || errors.Is(err, gzip.ErrHeader) || errors.Is(err, io.ErrUnexpectedEOF) || errors.As(err, new(flate.CorruptInputError))):
		return &refusal{status: http.StatusBadRequest, reason: "malformed", msg: "the gzip body is corrupt or cut short"}
	case errors.As(err, &tooLarge):
		return &refusal{status: http.StatusRequestEntityTooLarge, reason: "too_large", msg: fmt.Sprintf("body larger than the limit of %d bytes (ingest.max_body)", in.MaxBody)}
	case errors.As(err, &ne) && ne.Timeout():
		return &refusal{status: http.StatusRequestTimeout, reason: "read", msg: "reading the request body timed out"}
	}
	return &refusal{status: http.StatusBadRequest, reason: "read", msg: "reading the request body failed: the body was cut short or the connection broke"}
}

// notJSON says why a request's Content-Type is not one ingest reads
// ("" when it is): JSON (application/json or application/*+json) in
// UTF-8, or none at all.
func notJSON(contentType string) string {
	if strings.TrimSpace(contentType) == "" {
		return ""
	}
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return "Content-Type " + strconv.Quote(text.Clip(contentType, 64)) + " cannot be parsed; send application/json"
	}
	if mt != "application/json" && !(strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json")) {
		return "Content-Type " + mt + " is not JSON; send application/json"
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") && !strings.EqualFold(cs, "utf8") {
		return "charset " + strconv.Quote(text.Clip(cs, 32)) + " is not read; send JSON in UTF-8"
	}
	return ""
}

// bodyEncoding says whether a body is gzipped, or why its Content-Encoding
// is not read: identity and gzip are.
func bodyEncoding(values []string) (gzipped bool, msg string) {
	var codings []string
	for _, v := range values {
		for c := range strings.SplitSeq(v, ",") {
			if c = strings.ToLower(strings.TrimSpace(c)); c != "" && c != "identity" {
				codings = append(codings, c)
			}
		}
	}
	switch {
	case len(codings) == 0:
		return false, ""
	case len(codings) == 1 && (codings[0] == "gzip" || codings[0] == "x-gzip"):
		return true, ""
	case len(codings) == 1:
		return false, "Content-Encoding " + strconv.Quote(text.Clip(codings[0], 32)) + " is not read; send the body as it is or gzipped"
	}
	return false, "Content-Encoding " + strconv.Quote(text.Clip(strings.Join(codings, ", "), 64)) + " is not read: at most one coding, gzip"
}

// refusal is why a request is refused: its status, message and details,
// and the reason counted in relay_ingest_rejected_total.
type refusal struct {
	status  int
	msg     string
	reason  string
	details []api.Detail
}

// decode validates a whole request before anything is published, sizes
// included; a refusal says why it was refused, naming every bad item.
func (in *Ingest) decode(body []byte) ([]*activity.Activity, [][]byte, *refusal) {
	maxItems := in.MaxBatch
	if maxItems <= 0 {
		maxItems = 1000
	}
	items, _, err := splitItems(body, maxItems)
	var tooMany errTooMany
	var bad *badJSON
	switch {
	case errors.As(err, &tooMany):
		return nil, nil, &refusal{status: http.StatusRequestEntityTooLarge, reason: "too_large", msg: fmt.Sprintf("batch of more than %d activities exceeds the limit of %d (ingest.max_batch)", maxItems, maxItems)}
	case errors.As(err, &bad):
		ref := &refusal{status: http.StatusBadRequest, reason: "malformed", msg: bad.message}
		if bad.index >= 0 {
			idx := bad.index
			ref.details = []api.Detail{{Index: &idx, Field: bad.field, Message: bad.message}}
		}
		return nil, nil, ref
	case err != nil:
		return nil, nil, &refusal{status: http.StatusBadRequest, reason: "malformed", msg: "malformed JSON"}
	}
	if len(items) == 0 {
		return nil, nil, &refusal{status: http.StatusBadRequest, reason: "malformed", msg: "empty batch"}
	}
	now := time.Now().UTC()
	acts := make([]*activity.Activity, len(items))
	raws := make([][]byte, len(items))
	errs := make([][]itemError, len(items))
	for i, item := range items {
		acts[i], errs[i] = decodeItem(item, in.Catalog, in.AllowCustom, now)
		items[i] = nil // the raw item is no longer needed
		if len(errs[i]) > 0 {
			continue
		}
		raw, err := activity.EncodeDecoded(acts[i]) // decodeItem checked the JSON
		if err != nil {
			errs[i] = append(errs[i], itemError{Message: "cannot be stored: " + err.Error()})
			continue
		}
		raws[i] = raw
	}
	return in.finish(acts, raws, errs)
}

// finish returns the activities, or refuses the request naming every bad
// item: nothing of a batch with a bad item is accepted. Malformed items
// make it a 400, else items over ingest.max_activity a 413, else unknown
// activities a 422.
func (in *Ingest) finish(acts []*activity.Activity, raws [][]byte, errs [][]itemError) ([]*activity.Activity, [][]byte, *refusal) {
	var details []api.Detail
	malformed, large := false, false
	for i := range acts {
		idx := i
		for _, e := range errs[i] {
			details = append(details, api.Detail{Index: &idx, Field: e.Field, Message: e.Message})
			malformed = malformed || !e.Unknown
		}
		if len(errs[i]) == 0 && in.MaxActivity > 0 && len(raws[i]) > in.MaxActivity {
			details = append(details, api.Detail{Index: &idx, Message: fmt.Sprintf("activity of %d bytes is larger than the limit of %d bytes (ingest.max_activity)", len(raws[i]), in.MaxActivity)})
			large = true
		}
	}
	if len(details) == 0 {
		return acts, raws, nil
	}
	ref := &refusal{status: http.StatusUnprocessableEntity, reason: "unknown_activity", msg: "unknown activity", details: details}
	switch {
	case malformed:
		ref.status, ref.reason, ref.msg = http.StatusBadRequest, "invalid", "invalid activity"
	case large:
		ref.status, ref.reason, ref.msg = http.StatusRequestEntityTooLarge, "too_large", "activity too large"
	}
	if len(acts) > 1 {
		ref.msg += fmt.Sprintf("; nothing of the %d-item batch was accepted", len(acts))
	}
	return nil, nil, ref
}

// Publish sends every activity asynchronously, once per id, and waits for
// all the acks. Its result's IDs are the ids stored (or already stored),
// in item order.
func (in *Ingest) Publish(ctx context.Context, acts []*activity.Activity, raws [][]byte) (accepted, error) {
	ctx, cancel := context.WithTimeout(ctx, in.PublishTimeout)
	defer cancel()
	res := accepted{IDs: make([]string, 0, len(acts)), Duplicates: []string{}}
	futures := make([]jetstream.PubAckFuture, len(acts))
	first := make(map[string]int, len(acts)) // id -> index of its first item
	var firstErr error
	spans := in.Tracing.StartStores(ctx, len(acts))
	defer spans.EndAll()
	for i, a := range acts {
		if _, seen := first[a.ID]; seen {
			continue
		}
		first[a.ID] = i
		msg := &nats.Msg{Subject: activity.Subject(a.Name), Data: raws[i], Header: store.ActivityHeaders(a)}
		msg.Header.Set(jetstream.MsgIDHeader, a.ID)
		spans.Start(i, msg.Header, a)
		f, err := in.JS.PublishMsgAsync(msg, jetstream.WithExpectStream(store.StreamActivities))
		if err != nil {
			firstErr = fmt.Errorf("publish %s: %w", a.ID, err)
			break
		}
		futures[i] = f
	}
	stored := make([]bool, len(acts))
	for i, f := range futures {
		if f == nil {
			continue
		}
		select {
		case ack := <-f.Ok():
			stored[i] = true
			spans.End(i, nil, ack.Duplicate)
			if ack.Duplicate {
				res.Duplicates = append(res.Duplicates, acts[i].ID)
			} else {
				res.Accepted++
				in.DLog.Stored(acts[i], ack.Sequence)
			}
		case err := <-f.Err():
			spans.End(i, err, false)
			if firstErr == nil {
				firstErr = fmt.Errorf("publish %s: %w", acts[i].ID, err)
			}
		case <-ctx.Done():
			if firstErr == nil {
				firstErr = fmt.Errorf("publish %s: no acknowledgement: %w", acts[i].ID, ctx.Err())
			}
		}
	}
	for i, a := range acts {
		j := first[a.ID]
		if !stored[j] {
			continue
		}
		res.IDs = append(res.IDs, a.ID)
		if j != i {
			res.Duplicates = append(res.Duplicates, a.ID)
		}
	}
	return res, in.recordConsent(ctx, acts, stored, firstErr)
}

// decodeCopies is how many times a request's size counts against the
// in-flight budget.
const decodeCopies = 3

// ByteBudget bounds the bytes held at once by requests being decoded.
type ByteBudget struct {
	limit int64
	used  atomic.Int64
}

// NewByteBudget returns a budget of limit bytes; limit ≤ 0 means no bound.
func NewByteBudget(limit int64) *ByteBudget { return &ByteBudget{limit: limit} }

// Take reserves n bytes, or reports false when they don't fit. A request
// larger than the whole budget still runs when nothing else does.
func (b *ByteBudget) Take(n int64) bool {
	if b == nil || b.limit <= 0 {
		return true
	}
	for {
		used := b.used.Load()
		if used > 0 && used+n > b.limit {
			return false
		}
		if b.used.CompareAndSwap(used, used+n) {
			return true
		}
	}
}

// Give returns n bytes taken before.
func (b *ByteBudget) Give(n int64) {
	if b != nil && b.limit > 0 {
		b.used.Add(-n)
	}
}

// Limit is the budget's size in bytes.
func (b *ByteBudget) Limit() int64 {
	if b == nil {
		return 0
	}
	return b.limit
}
