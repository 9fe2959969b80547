package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/relaydev/relay/relay/activity"
)

// Headers Relay puts on every stored activity, so a worker that needs no
// more than id, name and time (a webhook without a `when` rule: the body
// embeds the stored JSON as is) never decodes the JSON.
const (
	HeaderID         = "Relay-Id"
	HeaderName       = "Relay-Name"
	HeaderOccurredAt = "Relay-Occurred-At"
	// HeaderReplay marks a replayed copy with what it was replayed from:
	// "deadletter" or "history".
	HeaderReplay = "Relay-Replay"
	// HeaderTraceParent and HeaderTraceState are the W3C trace context an
	// activity's attempts continue: the producer's, or with telemetry on
	// the span that stored it. They are written the way http.Header
	// spells them, so either kind of header reads them.
	HeaderTraceParent = "Traceparent"
	HeaderTraceState  = "Tracestate"
)

// CopyTrace copies the trace context headers of a stored activity to a
// copy of it (a hand-over, a kind change's move, a replay), so every
// attempt of the copy continues the activity's trace.
func CopyTrace(dst, src nats.Header) {
	if v := src.Get(HeaderTraceParent); v != "" {
		dst.Set(HeaderTraceParent, v)
		if v := src.Get(HeaderTraceState); v != "" {
			dst.Set(HeaderTraceState, v)
		}
	}
}

// ActivityHeaders are the headers of a stored activity. Ingest also sets
// Nats-Msg-Id (the dedup key); replays must not, or the dedup window
// would drop them.
func ActivityHeaders(a *activity.Activity) nats.Header {
	h := nats.Header{}
	h.Set(HeaderID, a.ID)
	h.Set(HeaderName, a.Name)
	h.Set(HeaderOccurredAt, a.OccurredAt.UTC().Format(time.RFC3339Nano))
	return h
}

// HeadActivity rebuilds id, name and time from the headers; false when
// they are not all there (activities stored by an older Relay).
func HeadActivity(h nats.Header) (*activity.Activity, bool) {
	id, name := h.Get(HeaderID), h.Get(HeaderName)
	if id == "" {
		id = h.Get(jetstream.MsgIDHeader)
	}
	at, err := time.Parse(time.RFC3339Nano, h.Get(HeaderOccurredAt))
	if id == "" || name == "" || err != nil {
		return nil, false
	}
	typ, action, err := activity.ParseName(name)
	if err != nil {
		return nil, false
	}
	return &activity.Activity{ID: id, Name: name, Type: typ, Action: action, OccurredAt: at}, true
}

// The headers of a copy the fan-out hands to a destination's own
// consumer.
const (
	// HeaderSince is when the run of attempts a handed-back copy continues
	// began (the activity's stored time): attempts, max_age and the
	// schedule count from there, not from the copy's own time.
	HeaderSince = "Relay-Since"
	// HeaderNotBefore is when a handed-back copy's next attempt is due
	// (a retry's delay).
	HeaderNotBefore = "Relay-Not-Before"
	// HeaderSeq is the stream sequence of the activity a handed-back copy
	// stands for: the copy holds headers only, the worker reads the
	// activity when it attempts it, so a backlog is not stored twice.
	HeaderSeq = "Relay-Seq"
)

// DecodeActivity decodes a stored activity's JSON.
func DecodeActivity(data []byte) (*activity.Activity, error) {
	a := &activity.Activity{}
	if err := json.Unmarshal(data, a); err != nil {
		return nil, fmt.Errorf("stored activity is not valid JSON: %w", err)
	}
	if a.ID == "" || a.Name == "" {
		return nil, errors.New("stored activity has no id or name")
	}
	return a, nil
}

// ReadActivity reads a stored activity: from its headers when no more than
// id, name and time is needed (full false) and they are there, else
// decoding its JSON.
func ReadActivity(msg jetstream.Msg, full bool) (*activity.Activity, error) {
	if !full {
		if a, ok := HeadActivity(msg.Headers()); ok {
			return a, nil
		}
	}
	return DecodeActivity(msg.Data())
}

// RunStart is when the run of attempts a message carries began: its
// stored time, or for a copy the fan-out handed over, the original's.
func RunStart(h nats.Header, md *jetstream.MsgMetadata) time.Time {
	if since, err := time.Parse(time.RFC3339Nano, h.Get(HeaderSince)); err == nil {
		return since
	}
	return md.Timestamp
}

// NotBefore is when a handed-over retry is due (zero for any other
// message).
func NotBefore(h nats.Header) time.Time {
	if v := h.Get(HeaderNotBefore); v != "" {
		if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
			return t
		}
	}
	return time.Time{}
}
