package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/relaydev/relay/relay/activity"
	"github.com/relaydev/relay/relay/api"
	"github.com/relaydev/relay/relay/deliver"
	"github.com/relaydev/relay/relay/store"
	"github.com/relaydev/relay/relay/telemetry"
	"github.com/relaydev/relay/relay/text"
)

// Trace statuses of an activity at a destination.
const (
	TraceDelivered   = "delivered"
	TracePending     = "pending"
	TraceRetrying    = "retrying"
	TraceDeadLetter  = "dead_letter"
	TraceNotSelected = "not_selected"
	TracePaused      = "paused"
	TraceSuppressed  = "suppressed" // the person's consent state forbade it
)

// ErrNotRetained is returned for an id Relay no longer has (or never had).
var ErrNotRetained = errors.New("not retained")

// Trace finds an activity by id and says, for every destination, whether
// its rules select it and why, its status and every attempt.
func (e *Engine) Trace(ctx context.Context, id string) (*api.Trace, error) {
	st, err := e.dlog.FindStored(ctx, id)
	if err != nil {
		return nil, err
	}
	if st == nil {
		return nil, fmt.Errorf("activity %s: %w", text.Quote(id), ErrNotRetained)
	}
	msg, err := e.bus.Activities.GetMsg(ctx, st.Seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, fmt.Errorf("activity %s is past nats.retention: %w", text.Quote(id), ErrNotRetained)
	}
	if err != nil {
		return nil, fmt.Errorf("read activity %s: %w", text.Quote(id), err)
	}
	a := &activity.Activity{}
	if err := json.Unmarshal(msg.Data, a); err != nil || a.ID != id {
		return nil, fmt.Errorf("activity %s: %w", text.Quote(id), ErrNotRetained)
	}
	entries, err := e.dlog.ForActivity(ctx, id, a.ReceivedAt)
	if err != nil {
		return nil, err
	}
	byDest := map[string][]api.TraceEntry{}
	for _, e := range entries {
		byDest[e.Destination] = append(byDest[e.Destination], api.TraceEntry{Attempt: e.Attempt, At: e.At, Status: e.Status, Error: e.Error, LatencyMS: e.LatencyMS, Outcome: e.Outcome})
	}
	t := &api.Trace{ID: a.ID, Name: a.Name, ReceivedAt: a.ReceivedAt, Activity: msg.Data, Destinations: []api.DestinationTrace{},
		TraceID: telemetry.TraceID(msg.Header.Get(store.HeaderTraceParent), a.ID)}
	for _, w := range e.Workers() {
		dt := api.DestinationTrace{Name: w.Name, Attempts: byDest[w.Name]}
		if dt.Attempts == nil {
			dt.Attempts = []api.TraceEntry{}
		}
		dt.Selected, dt.Reason = w.Rules.Explain(a)
		if dt.Selected {
			if dt.Status, err = e.traceStatus(ctx, w, a, msg.Sequence, dt.Attempts); err != nil {
				return nil, err
			}
			if dt.Status == TracePending && w.Ordered() {
				dt.HeldBehind = w.HeldBehind(a.ID)
			}
			if dt.Status == TraceNotSelected {
				dt.Selected = false
				dt.Reason = "the destination was added after this activity was stored (replay --history backfills it)"
			}
		} else {
			dt.Status = TraceNotSelected
		}
		t.Destinations = append(t.Destinations, dt)
	}
	return t, nil
}

// traceStatus works out where a selected activity stands at a destination.
func (e *Engine) traceStatus(ctx context.Context, w *deliver.Worker, a *activity.Activity, seq uint64, attempts []api.TraceEntry) (string, error) {
	dead, err := e.dls.Has(ctx, w.Name, a.ID)
	if err != nil {
		return "", err
	}
	if dead {
		return TraceDeadLetter, nil
	}
	var last *api.TraceEntry
	if len(attempts) > 0 {
		last = &attempts[len(attempts)-1]
	}
	if last != nil && last.Outcome == store.OutcomeDelivered {
		return TraceDelivered, nil
	}
	if last != nil && last.Outcome == store.OutcomeSuppressed {
		return TraceSuppressed, nil
	}
	state, err := e.states.Get(ctx, w.Name)
	if err != nil {
		return "", err
	}
	if state == store.StatePaused {
		return TracePaused, nil
	}
	if last != nil && last.Outcome == store.OutcomeFailed {
		return TraceRetrying, nil
	}
	if last != nil { // a dead letter since replayed, waiting for its attempt
		return TracePending, nil
	}
	if w.Fanned() {
		if added := e.states.AddedAt(ctx, w.Name); a.ReceivedAt.Before(added) {
			return TraceNotSelected, nil
		}
		ci := &jetstream.ConsumerInfo{} // its consumer not made yet: nothing of its own
		cons, err := e.bus.JS.Consumer(ctx, store.StreamQueues, store.ConsumerName(w.Name))
		switch {
		case err == nil:
			ci = cons.CachedInfo()
		case !errors.Is(err, jetstream.ErrConsumerNotFound):
			return "", fmt.Errorf("consumer of %s: %w", w.Name, err)
		}
		return e.fannedStatus(ctx, w, ci, a.ID, seq)
	}
	cons, err := e.bus.JS.Consumer(ctx, w.Stream(), store.ConsumerName(w.Name))
	if err != nil {
		return "", fmt.Errorf("consumer of %s: %w", w.Name, err)
	}
	ci := cons.CachedInfo()
	if a.ReceivedAt.Before(ci.Created) {
		return TraceNotSelected, nil
	}
	if seq <= ci.AckFloor.Stream { // settled, its attempt not in the log (it was off or behind)
		return TraceDelivered, nil
	}
	return TracePending, nil
}

// traceScan bounds how many of a destination's waiting copies a trace
// reads looking for one activity.
const traceScan = 1000

// fannedStatus is where an activity with no attempt in the log stands at
// a fanned destination: pending while the fan-out has not settled it, or
// while a copy of it waits in the destination's own consumer; else
// settled (its attempt not in the log: it was off or behind).
func (e *Engine) fannedStatus(ctx context.Context, w *deliver.Worker, ci *jetstream.ConsumerInfo, id string, seq uint64) (string, error) {
	fan, err := e.fanoutInfo(ctx)
	if err != nil {
		return "", err
	}
	if seq > fan.AckFloor.Stream {
		return TracePending, nil
	}
	if ci.NumPending+uint64(ci.NumAckPending) == 0 {
		return TraceDelivered, nil
	}
	from := ci.AckFloor.Stream + 1
	for range traceScan {
		msg, err := e.bus.Queues.GetMsg(ctx, from, jetstream.WithGetMsgSubject(w.OwnSubject()))
		if err != nil {
			break
		}
		if msg.Header.Get(store.HeaderID) == id {
			return TracePending, nil
		}
		from = msg.Sequence + 1
	}
	return TraceDelivered, nil
}
