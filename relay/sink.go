package relay

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/relaydev/relay/relay/activity"
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

	// history is the activity's recorded attempts, when numbering this
	// attempt read them (historyRead).
	history     []Attempt
	historyRead bool
	// outcome is what settling made of a failed attempt: failed or
	// dead_letter.
	outcome string
	// inLane: the activity waits in its contact's lane (order: contact);
	// settling sets retryIn to the retry delay instead of a NAK.
	inLane  bool
	retryIn time.Duration
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
)

func (k Kind) String() string {
	switch k {
	case Permanent:
		return "permanent"
	case Gone:
		return "gone"
	case Throttle:
		return "throttle"
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
