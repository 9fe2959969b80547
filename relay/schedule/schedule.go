// Package schedule decides what follows a failed attempt: a retry after
// a delay, a dead letter, a pause, and whether the whole destination backs
// off first. It only decides; the worker acts on what it returns.
package schedule

import (
	"time"

	"github.com/relaydev/relay/relay/sink"
)

// Action is what happens to an activity after an attempt.
type Action int

const (
	// Delivered: acked, its history forgotten.
	Delivered Action = iota
	// Retry: attempted again after the outcome's In.
	Retry
	// DeadLetter: stored as a dead letter and acked.
	DeadLetter
	// Pause: the receiver asked to stop (410); the destination is paused
	// and the activity retried after In, once it is resumed.
	Pause
)

func (a Action) String() string {
	switch a {
	case Retry:
		return "retry"
	case DeadLetter:
		return "dead_letter"
	case Pause:
		return "pause"
	default:
		return "delivered"
	}
}

// Outcome is the decision about one attempt.
type Outcome struct {
	Action Action
	// In is when a Retry or Pause is attempted again.
	In time.Duration
	// BackOff is how long the whole destination stops attempting first
	// (a 429 or 503, a Retry-After); 0 for none.
	BackOff time.Duration
}

// retryAfterCap bounds the delay a receiver's Retry-After adds to one
// activity's retry (the destination's own back-off is bounded by MaxHold).
const retryAfterCap = time.Hour

// gonePause is when an activity refused with a 410 is attempted again:
// once an operator resumes the destination.
const gonePause = time.Second

// Schedule is a destination's retry policy.
type Schedule struct {
	// Delays: attempt n (from 1) is followed by Delays[n-1]; there are
	// len(Delays)+1 attempts at most.
	Delays []time.Duration
	// MaxAge: an activity whose run of attempts began longer ago is a
	// dead letter at its next failure.
	MaxAge time.Duration
	// MaxHold is the longest back-off a receiver's Retry-After gives the
	// destination: an activity waiting in its slot must fit in the ack
	// wait.
	MaxHold time.Duration
}

// DelayAfter is the delay after attempt n (from 1): the last one past the
// end; false for an empty schedule.
func (s Schedule) DelayAfter(n int) (time.Duration, bool) {
	if len(s.Delays) == 0 {
		return 0, false
	}
	return s.Delays[min(max(n, 1), len(s.Delays))-1], true
}

// TooOld reports whether an activity whose run of attempts began age ago
// is past MaxAge.
func (s Schedule) TooOld(age time.Duration) bool { return age > s.MaxAge }

// AfterFailure decides what follows failed attempt n (from 1) of an
// activity whose run of attempts began age ago, classified as kind with
// the receiver's requested delay after (0 when none).
func (s Schedule) AfterFailure(kind sink.Kind, after time.Duration, n int, age time.Duration) Outcome {
	switch kind {
	case sink.Permanent:
		return Outcome{Action: DeadLetter}
	case sink.Gone:
		return Outcome{Action: Pause, In: gonePause}
	case sink.Throttle:
		return s.throttled(after, n, age)
	}
	var out Outcome
	if after > 0 { // the receiver asked for a pause (Retry-After)
		out.BackOff = min(after, s.MaxHold)
	}
	// Attempt n is followed by delay n, if the schedule has one: an empty
	// schedule, or one a reload shortened below the attempts already
	// made, makes a dead letter.
	if n > len(s.Delays) || s.TooOld(age) {
		out.Action = DeadLetter
		return out
	}
	next, _ := s.DelayAfter(n)
	out.Action, out.In = Retry, max(next, min(after, retryAfterCap))
	return out
}

// throttled backs the whole destination off: for as long as the receiver
// asked, else for the schedule's delay at this attempt (its last delay
// beyond its end: a throttled attempt is retried until MaxAge). An empty
// schedule is one attempt and no retry: the activity is a dead letter, and
// the destination still backs off for as long as the receiver asked.
func (s Schedule) throttled(after time.Duration, n int, age time.Duration) Outcome {
	if len(s.Delays) == 0 {
		return Outcome{Action: DeadLetter, BackOff: after}
	}
	if s.TooOld(age) {
		return Outcome{Action: DeadLetter}
	}
	next, _ := s.DelayAfter(n)
	delay := max(after, next)
	return Outcome{Action: Retry, In: delay, BackOff: delay}
}
