package deliver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/relaydev/relay/relay/activity"
	"github.com/relaydev/relay/relay/expr"
	"github.com/relaydev/relay/relay/held"
	"github.com/relaydev/relay/relay/sink"
	"github.com/relaydev/relay/relay/store"
	"github.com/relaydev/relay/relay/text"
)

// handle runs one activity through decode, match, deliver and settle,
// in a room of the process's calls in flight (given back by the caller
// when handle returns it still held).
func (w *Worker) handle(ctx context.Context, msg jetstream.Msg, room *held.Room) {
	msg, ok := w.resolve(ctx, msg)
	if !ok {
		return
	}
	d, ok := w.decode(ctx, msg)
	if !ok {
		return
	}
	if due := store.NotBefore(msg.Headers()); time.Until(due) > 0 {
		// A retry handed over by the fan-out: its delay is not over yet.
		w.checkAck(opNak, msg.NakWithDelay(time.Until(due)))
		return
	}
	w.attempt(ctx, msg, d, room)
}

// attempt makes one attempt of an activity the worker takes, waiting out
// a back-off and the rate limit first (the room given back meanwhile), and
// settles it once the room is given back.
func (w *Worker) attempt(ctx context.Context, msg jetstream.Msg, d *delivery, room *held.Room) {
	// Checked before any wait, so an activity that will not be sent takes
	// no rate-limit token; again after a wait, for an opt-out meanwhile.
	if w.suppressed(context.WithoutCancel(ctx), msg, d) {
		return
	}
	if w.mayWait() {
		room.Release()
		if !w.holdOff(ctx, msg) || !w.wait(ctx, msg) || !room.Take(ctx) {
			w.checkAck(opNak, msg.Nak())
			return
		}
		if w.suppressed(context.WithoutCancel(ctx), msg, d) {
			return
		}
	}
	ctx = context.WithoutCancel(ctx) // an attempt in flight finishes on shutdown
	span := w.st.Tracing.StartAttempt(ctx, &w.Cfg, msg.Headers(), &d.Delivery)
	span.FanoutWait(d.fanoutWait)
	at := w.Sink.Deliver(ctx, &d.Delivery)
	room.Release()
	out := w.settle(ctx, msg, d, at)
	span.End(at, out)
	w.waitOut(msg, out)
}

// decode reads the activity and applies the destination's rules. Activities
// the destination doesn't take are acked here.
func (w *Worker) decode(ctx context.Context, msg jetstream.Msg) (*delivery, bool) {
	name, fromSubject := activity.NameFromSubject(msg.Subject())
	if fromSubject && !w.Rules.MatchName(name) {
		w.checkAck(opAck, msg.Ack())
		return nil, false
	}
	a, err := w.decodeActivity(msg)
	if err != nil {
		w.Undecodable(ctx, msg, err)
		return nil, false
	}
	if !fromSubject && !w.Rules.MatchName(a.Name) {
		w.checkAck(opAck, msg.Ack())
		return nil, false
	}
	if ok, err := w.Rules.MatchWhen(a); !ok {
		if err != nil {
			w.RuleError(a, err)
			if errors.Is(err, expr.ErrBudget) {
				w.OverBudget(ctx, msg, a, err)
				return nil, false
			}
		}
		w.checkAck(opAck, msg.Ack())
		return nil, false
	}
	d := &delivery{Delivery: sink.Delivery{Activity: a, Raw: msg.Data(), Attempt: 1}}
	w.numberIfAgain(ctx, msg, d)
	return d, true
}

// numberIfAgain numbers the attempt of an activity that may have been
// attempted before: delivered again by JetStream, or a copy the fan-out
// handed over.
func (w *Worker) numberIfAgain(ctx context.Context, msg jetstream.Msg, d *delivery) {
	if md, err := msg.Metadata(); err == nil && (md.NumDelivered > 1 || msg.Headers().Get(store.HeaderSince) != "") {
		w.numberAttempt(ctx, d, msg.Headers(), md)
	}
}

// numberAttempt sets the number of the attempt about to be made of a
// message JetStream has delivered before (or a copy the fan-out handed
// over), and keeps the history it read
// for settle. Its delivery count also counts the times
// the activity was handed back unattempted (on a pause, a back-off or a
// shutdown), so the recorded failed attempts decide; those made before the
// message was stored belong to the run that ended in a dead letter this
// message replays. An attempt made but not recorded (a crash in between)
// is counted as not made: an extra attempt, never a premature dead letter.
func (w *Worker) numberAttempt(ctx context.Context, d *delivery, h nats.Header, md *jetstream.MsgMetadata) {
	delivered := int(md.NumDelivered)
	since := store.RunStart(h, md)
	history, err := w.st.History.Get(ctx, w.Name, d.Activity.ID)
	if err != nil {
		w.log.Warn("reading attempts; counting deliveries instead", "activity_id", d.Activity.ID, "error", err)
		d.Attempt = delivered
		return
	}
	if h.Get(store.HeaderSince) != "" || w.Ordered() {
		// A copy the fan-out handed over: its own deliveries are not the
		// run's, the history alone counts. So for an ordered destination,
		// whose lanes retry without a redelivery: a lane handed back (a
		// pause, a back-off, a reload) must not start its count again.
		delivered = math.MaxInt
	}
	n := 1
	for _, at := range history {
		if !at.At.Before(since) && !at.Probe { // a failed probe is the breaker's attempt
			n++
		}
	}
	d.Attempt, d.history, d.historyRead = min(n, delivered), history, true
}

// record adds a failed attempt to the activity's history and returns the
// whole of it, reusing what numberAttempt read.
func (w *Worker) record(ctx context.Context, d *delivery, at sink.Attempt) ([]sink.Attempt, error) {
	if !d.historyRead {
		return w.st.History.Append(ctx, w.Name, d.Activity.ID, at)
	}
	all := append(d.history, at)
	return all, w.st.History.Put(ctx, w.Name, d.Activity.ID, all)
}

// decodeActivity decodes the JSON only when a `when` rule or a batch
// connector (which maps fields) reads more than id, name and time; those
// come from the headers.
func (w *Worker) decodeActivity(msg jetstream.Msg) (*activity.Activity, error) {
	return store.ReadActivity(msg, w.Batch != nil || w.Rules.HasWhen())
}

// RuleError counts a `when` rule that failed to evaluate (counted as
// false) and logs it at most once a minute for the destination.
func (w *Worker) RuleError(a *activity.Activity, err error) {
	w.metrics.RuleErrors.WithLabelValues(w.Name, ruleErrorReason(err)).Inc()
	now := time.Now().UnixNano()
	last := w.ruleLogged.Load()
	if now-last < int64(time.Minute) || !w.ruleLogged.CompareAndSwap(last, now) {
		return
	}
	w.log.Warn("when rule failed to evaluate; counted as false (relay_rule_errors_total counts every one)", "activity_id", a.ID, "error", err)
}

// ruleErrorReason is the reason label of relay_rule_errors_total: budget
// for an expression stopped at its budget, error for any other failure.
func ruleErrorReason(err error) string {
	if errors.Is(err, expr.ErrBudget) {
		return "budget"
	}
	return "error"
}

// OverBudget makes an activity whose `when` rule went past its budget a
// dead letter for the destination, saying so: it is neither delivered nor
// silently left out.
func (w *Worker) OverBudget(ctx context.Context, msg jetstream.Msg, a *activity.Activity, cause error) {
	log := w.log.With("activity_id", a.ID)
	log.Warn("when rule over its budget: the activity becomes a dead letter", "error", cause)
	at := sink.Attempt{At: time.Now().UTC(), Error: text.Clip("when: "+cause.Error(), store.MaxAttemptError)}
	d := &delivery{Delivery: sink.Delivery{Activity: a, Raw: msg.Data(), Attempt: 1}}
	w.deadLetterOr(ctx, log, msg, d, at)
}

// Undecodable makes a stored message the worker cannot read a dead letter
// with the reason: it is never skipped with a log line alone.
func (w *Worker) Undecodable(ctx context.Context, msg jetstream.Msg, cause error) {
	id := msg.Headers().Get(store.HeaderID)
	if id == "" {
		id = msg.Headers().Get(jetstream.MsgIDHeader)
	}
	if md, err := msg.Metadata(); err == nil && id == "" {
		id = fmt.Sprintf("seq-%d", md.Sequence.Stream)
	}
	data := msg.Data()
	if !json.Valid(data) {
		data, _ = json.Marshal(strings.ToValidUTF8(string(data), "\ufffd"))
	}
	log := w.log.With("activity_id", id)
	log.Error("stored activity cannot be read: it becomes a dead letter", "subject", msg.Subject(), "error", cause)
	at := sink.Attempt{At: time.Now().UTC(), Error: "undecodable activity: " + cause.Error()}
	d := &delivery{Delivery: sink.Delivery{Activity: &activity.Activity{ID: id}, Raw: data, Attempt: 1}}
	w.deadLetterOr(ctx, log, msg, d, at)
}

// deadLetterOr makes an activity that is never attempted a dead letter with
// at as its one attempt, or, when that cannot be stored now, has it read
// again in deadLetterRetry.
func (w *Worker) deadLetterOr(ctx context.Context, log *slog.Logger, msg jetstream.Msg, d *delivery, at sink.Attempt) {
	outcome := store.OutcomeDeadLetter
	if !w.deadLetter(ctx, log, msg, d, []sink.Attempt{at}) {
		outcome = store.OutcomeFailed
		w.checkAck(opNak, msg.NakWithDelay(deadLetterRetry))
	}
	w.logAttempt(d, at, outcome)
}
