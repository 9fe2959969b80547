package relay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/relaydev/relay/relay/activity"
)

// Ingest is the HTTP API producers post activities to. It answers 202 only
// once JetStream has acknowledged every activity of the request.
type Ingest struct {
	JS          jetstream.JetStream
	Catalog     *activity.Catalog
	Tokens      tokenSet
	AllowCustom bool
	MaxBody     int64
	MaxBatch    int
	Log         *slog.Logger
	Metrics     *Metrics
	// PublishTimeout bounds the wait for JetStream's acknowledgements.
	PublishTimeout time.Duration
}

type accepted struct {
	Accepted int      `json:"accepted"`
	IDs      []string `json:"ids"`
}

// Handler returns the ingest API's routes.
func (in *Ingest) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST /v1/activities", requireToken(in.Tokens, http.HandlerFunc(in.post)))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	return mux
}

func (in *Ingest) post(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, in.MaxBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", in.MaxBody))
			return
		}
		writeError(w, http.StatusBadRequest, "reading body: "+err.Error())
		return
	}
	acts, raws, bad := in.decode(body)
	if bad != nil {
		writeError(w, bad.status, bad.msg, bad.details...)
		return
	}
	ids, err := in.publish(r.Context(), acts, raws)
	in.Metrics.Ingested.Add(float64(len(ids)))
	if err != nil {
		in.Log.Error("ingest publish failed", "error", err, "persisted", len(ids), "batch", len(acts))
		writeJSON(w, http.StatusServiceUnavailable, errorBody{
			Error: "the bus did not persist every activity; retry with the same ids: " + err.Error(),
			IDs:   ids,
		})
		return
	}
	writeJSON(w, http.StatusAccepted, accepted{Accepted: len(ids), IDs: ids})
}

// refusal is why a request is refused: its status, message and details.
type refusal struct {
	status  int
	msg     string
	details []Detail
}

// decode validates a whole request before anything is published; a
// refusal says why it was refused.
func (in *Ingest) decode(body []byte) ([]*activity.Activity, [][]byte, *refusal) {
	items, err := decodeAll(body)
	if err != nil { // find out which item, and what
		return in.decodeEach(body)
	}
	if len(items) == 0 {
		return nil, nil, &refusal{status: http.StatusBadRequest, msg: "empty batch"}
	}
	if len(items) > in.MaxBatch {
		return nil, nil, in.tooMany(len(items))
	}
	now := time.Now().UTC()
	var errs [][]itemError
	acts := make([]*activity.Activity, len(items))
	for i := range items {
		a, e := buildActivity(&items[i], in.Catalog, in.AllowCustom, now)
		acts[i] = a
		errs = append(errs, e)
	}
	return in.finish(acts, errs)
}

// decodeEach decodes item by item, so JSON errors name their item.
func (in *Ingest) decodeEach(body []byte) ([]*activity.Activity, [][]byte, *refusal) {
	items, err := splitItems(body)
	if err != nil {
		return nil, nil, &refusal{status: http.StatusBadRequest, msg: err.Error()}
	}
	if len(items) > in.MaxBatch {
		return nil, nil, in.tooMany(len(items))
	}
	now := time.Now().UTC()
	var errs [][]itemError
	acts := make([]*activity.Activity, len(items))
	for i, item := range items {
		a, e := decodeItem(item, in.Catalog, in.AllowCustom, now)
		acts[i] = a
		errs = append(errs, e)
	}
	return in.finish(acts, errs)
}

// finish encodes the activities, or refuses the request naming every bad
// item: nothing of a batch with a bad item is accepted.
func (in *Ingest) finish(acts []*activity.Activity, errs [][]itemError) ([]*activity.Activity, [][]byte, *refusal) {
	var details []Detail
	malformed := false
	for i, es := range errs {
		for _, e := range es {
			idx := i
			details = append(details, Detail{Index: &idx, Field: e.Field, Message: e.Message})
			malformed = malformed || !e.Unknown
		}
	}
	if len(details) == 0 {
		raws := make([][]byte, len(acts))
		for i, a := range acts {
			raws[i], _ = json.Marshal(a)
		}
		return acts, raws, nil
	}
	status, msg := http.StatusUnprocessableEntity, "unknown activity"
	if malformed {
		status, msg = http.StatusBadRequest, "invalid activity"
	}
	if len(acts) > 1 {
		msg += fmt.Sprintf("; nothing of the %d-item batch was accepted", len(acts))
	}
	return nil, nil, &refusal{status: status, msg: msg, details: details}
}

func (in *Ingest) tooMany(n int) *refusal {
	return &refusal{status: http.StatusRequestEntityTooLarge, msg: fmt.Sprintf("batch of %d activities exceeds the limit of %d", n, in.MaxBatch)}
}

// publish sends every activity asynchronously and waits for all the acks.
// It returns the ids JetStream acknowledged, in item order.
func (in *Ingest) publish(ctx context.Context, acts []*activity.Activity, raws [][]byte) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, in.PublishTimeout)
	defer cancel()
	futures := make([]jetstream.PubAckFuture, len(acts))
	var firstErr error
	for i, a := range acts {
		msg := &nats.Msg{Subject: activity.Subject(a.Name), Data: raws[i], Header: activityHeaders(a)}
		msg.Header.Set(jetstream.MsgIDHeader, a.ID)
		f, err := in.JS.PublishMsgAsync(msg, jetstream.WithExpectStream(StreamActivities))
		if err != nil {
			firstErr = fmt.Errorf("publish %s: %w", a.ID, err)
			break
		}
		futures[i] = f
	}
	ids := make([]string, 0, len(acts))
	for i, f := range futures {
		if f == nil {
			continue
		}
		select {
		case <-f.Ok():
			ids = append(ids, acts[i].ID)
		case err := <-f.Err():
			if firstErr == nil {
				firstErr = fmt.Errorf("publish %s: %w", acts[i].ID, err)
			}
		case <-ctx.Done():
			if firstErr == nil {
				firstErr = fmt.Errorf("publish %s: no acknowledgement: %w", acts[i].ID, ctx.Err())
			}
		}
	}
	return ids, firstErr
}
