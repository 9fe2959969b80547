// Package sink is the seam between the engine and its connectors: what a
// connector is given (Delivery), what it reports (Attempt) and how a
// failure is classified (DeliveryError). It knows nothing of NATS.
package sink

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/relaydev/relay/relay/activity"
	"github.com/relaydev/relay/relay/expr"
)

// Delivery is one activity on its way to one destination.
type Delivery struct {
	// Activity is the decoded activity. For a Sink (one at a time) whose
	// destination has no `when` rule, Contact and Attributes are left nil:
	// Raw holds them.
	Activity *activity.Activity
	// Raw is the activity's JSON exactly as stored: connectors embed it
	// instead of encoding the activity again.
	Raw []byte
	// Attempt counts from 1 and survives restarts.
	Attempt int
	// TraceParent and TraceState are the W3C trace context this attempt
	// sends (traceparent, tracestate): every attempt has a TraceParent,
	// sampled or not; TraceState is often empty.
	TraceParent string
	TraceState  string
}

// TraceHeaders sets traceparent and tracestate on an outgoing request's
// headers from d (nothing when d has none).
func TraceHeaders(h http.Header, d *Delivery) {
	if d.TraceParent == "" {
		return
	}
	h["Traceparent"] = []string{d.TraceParent}
	if d.TraceState != "" {
		h["Tracestate"] = []string{d.TraceState}
	}
}

// Sink delivers one activity at a time. An Attempt whose Err is nil means
// delivered; errors are classified with *DeliveryError, and any other error
// is retried on the destination's schedule.
type Sink interface {
	Deliver(ctx context.Context, d *Delivery) Attempt
}

// BatchSink delivers many activities in one call and reports each one's
// fate in the same order.
type BatchSink interface {
	DeliverBatch(ctx context.Context, ds []*Delivery) []Attempt
	// Batch says how many activities to gather at most, and how long to wait
	// for a batch to fill.
	Batch() (size int, wait time.Duration)
}

// Holder is a connector that can ask the worker to give it nothing for a
// while (Salesforce's API budget). The worker asks before each batch; while
// until is ahead it takes nothing from the queue and shows reason as the
// destination's state.
type Holder interface {
	Hold(ctx context.Context) (until time.Time, reason string)
}

// Backlog is a BatchSink whose batches grow with what waits (Salesforce's
// Bulk API takes a backlog in a few large jobs): the worker gathers
// BatchFor(n) activities when n wait, and BatchFor of a very large n is
// the most it ever gathers.
type Backlog interface {
	BatchFor(waiting int) int
}

// Connector is what a destination delivers through: exactly one of Sink
// and Batch is set. Close, when set, releases what the connector holds.
type Connector struct {
	Sink  Sink
	Batch BatchSink
	Close func()
}

// One is a connector that takes one activity at a time.
func One(s Sink) Connector { return Connector{Sink: s} }

// Batched is a connector that takes activities in batches.
func Batched(b BatchSink) Connector { return Connector{Batch: b} }

// Attempt is the result of trying to deliver one activity once.
type Attempt struct {
	At      time.Time     `json:"at"`
	Status  int           `json:"status"` // HTTP status, 0 when there was no response
	Error   string        `json:"error,omitempty"`
	Latency time.Duration `json:"-"`
	// LatencyMS is Latency in milliseconds, as stored and shown.
	LatencyMS float64 `json:"latency_ms"`
	// Probe marks a failed attempt the breaker made while open: it is
	// kept in the history and the trace but is no step of the activity's
	// schedule.
	Probe bool `json:"probe,omitempty"`
	// Err classifies a failure; nil means delivered. Not stored.
	Err error `json:"-"`
}

// Kind says what the worker does with a failed attempt.
type Kind int

const (
	// Retry on the destination's schedule (the default for any error).
	Retry Kind = iota
	// Permanent failures become dead letters at once.
	Permanent
	// Gone pauses the destination until an operator resumes it (HTTP 410).
	Gone
	// Throttle backs off the whole destination for RetryAfter, then retries
	// this activity (rate limits, 503).
	Throttle
	// Hold: the activity was not attempted (the connector held it back, or
	// the receiver left it unprocessed). The worker hands it back to the
	// queue without counting an attempt. Batch sinks only.
	Hold
)

func (k Kind) String() string {
	switch k {
	case Permanent:
		return "permanent"
	case Gone:
		return "gone"
	case Throttle:
		return "throttle"
	case Hold:
		return "hold"
	default:
		return "retry"
	}
}

// DeliveryError is a classified delivery failure.
type DeliveryError struct {
	Kind       Kind
	Status     int           // HTTP status, 0 when none
	Code       string        // the receiver's own error code, e.g. Salesforce's errorCode
	RetryAfter time.Duration // the receiver's requested delay, 0 when none
	Err        error
}

func (e *DeliveryError) Error() string {
	msg := ""
	if e.Err != nil {
		msg = e.Err.Error()
	}
	switch {
	case e.Code != "" && e.Status != 0:
		return fmt.Sprintf("status %d %s: %s", e.Status, e.Code, msg)
	case e.Code != "":
		return fmt.Sprintf("%s: %s", e.Code, msg)
	case e.Status != 0:
		return fmt.Sprintf("status %d: %s", e.Status, msg)
	}
	return msg
}

func (e *DeliveryError) Unwrap() error { return e.Err }

// Classify returns the kind of a failed attempt's error and the delay the
// receiver asked for.
func Classify(err error) (Kind, time.Duration) {
	var de *DeliveryError
	if errors.As(err, &de) {
		return de.Kind, de.RetryAfter
	}
	return Retry, 0
}

// WithoutURL is the cause of a *url.Error, whose message repeats the URL
// and with it any credentials or token it carries; other errors are
// returned as they are. Connectors pass transport errors through it before
// they reach an attempt, a dead letter or a log line.
func WithoutURL(err error) error {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		return uerr.Err
	}
	return err
}

// FullActivity is a delivery's activity with its contact and attributes:
// decoded from the stored JSON (the worker leaves them out for a sink
// without a `when` rule), or the decoded one when there is no JSON.
func FullActivity(d *Delivery) (*activity.Activity, error) {
	if len(d.Raw) == 0 {
		if d.Activity == nil {
			return nil, errors.New("delivery has no activity")
		}
		return d.Activity, nil
	}
	a := &activity.Activity{}
	if err := json.Unmarshal(d.Raw, a); err != nil {
		return nil, fmt.Errorf("decode activity: %w", err)
	}
	return a, nil
}

// EvalBody evaluates a webhook body expression over a delivery and encodes
// the map or list it returns; integers are written exactly as the producer
// wrote them (never through a float64). A body over maxBytes (when above
// zero) fails with expr.ErrBudget.
func EvalBody(p *expr.Program, d *Delivery, maxBytes int) ([]byte, error) {
	a, err := FullActivity(d)
	if err != nil {
		return nil, err
	}
	in, err := expr.NewInput(a)
	if err != nil {
		return nil, err
	}
	v, err := p.Value(in)
	if err != nil {
		return nil, fmt.Errorf("body: %w", err)
	}
	switch v.(type) {
	case map[string]any, []any:
	default:
		return nil, fmt.Errorf("body must be a map or a list, it is %T", v)
	}
	body, err := MarshalJSON(v)
	if err == nil && maxBytes > 0 && len(body) > maxBytes {
		return nil, fmt.Errorf("body: %w: %d bytes, more than max_body (%d)", expr.ErrBudget, len(body), maxBytes)
	}
	return body, err
}

// MarshalJSON encodes an expression's value: no HTML escaping, no trailing
// newline.
func MarshalJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
