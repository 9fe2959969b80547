package relay

import (
	"context"
	"encoding/json"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/relaydev/relay/relay/activity"
)

// handle runs one activity through decode, match, deliver and settle.
func (w *Worker) handle(ctx context.Context, msg jetstream.Msg) {
	d, ok := w.decode(ctx, msg)
	if !ok {
		return
	}
	if !w.holdOff(ctx, msg) || !w.wait(ctx, msg) {
		_ = msg.Nak()
		return
	}
	ctx = context.WithoutCancel(ctx) // an attempt in flight finishes on shutdown
	at := w.Sink.Deliver(ctx, d)
	w.settle(ctx, msg, d, at)
}

// decode reads the activity and applies the destination's rules. Activities
// the destination doesn't take are acked here.
func (w *Worker) decode(ctx context.Context, msg jetstream.Msg) (*Delivery, bool) {
	name, fromSubject := activity.NameFromSubject(msg.Subject())
	if fromSubject && !w.Rules.MatchName(name) {
		_ = msg.Ack()
		return nil, false
	}
	a, err := w.decodeActivity(msg)
	if err != nil {
		w.log.Error("undecodable activity skipped", "subject", msg.Subject(), "error", err)
		_ = msg.Term()
		return nil, false
	}
	if (!fromSubject && !w.Rules.MatchName(a.Name)) || !w.Rules.MatchWhen(a) {
		_ = msg.Ack()
		return nil, false
	}
	d := &Delivery{Activity: a, Raw: msg.Data(), Attempt: 1}
	if md, err := msg.Metadata(); err == nil && md.NumDelivered > 1 {
		w.numberAttempt(ctx, d, md)
	}
	return d, true
}

// numberAttempt sets the number of the attempt about to be made of a
// message JetStream has delivered before, and keeps the history it read
// for settle. Its delivery count also counts the times
// the activity was handed back unattempted (on a pause, a back-off or a
// shutdown), so the recorded failed attempts decide; those made before the
// message was stored belong to the run that ended in a dead letter this
// message replays. An attempt made but not recorded (a crash in between)
// is counted as not made: an extra attempt, never a premature dead letter.
func (w *Worker) numberAttempt(ctx context.Context, d *Delivery, md *jetstream.MsgMetadata) {
	delivered := int(md.NumDelivered)
	history, err := w.history.Get(ctx, w.Name, d.Activity.ID)
	if err != nil {
		w.log.Warn("reading attempts; counting deliveries instead", "activity_id", d.Activity.ID, "error", err)
		d.Attempt = delivered
		return
	}
	n := 1
	for _, at := range history {
		if !at.At.Before(md.Timestamp) {
			n++
		}
	}
	d.Attempt, d.history, d.historyRead = min(n, delivered), history, true
}

// record adds a failed attempt to the activity's history and returns the
// whole of it, reusing what numberAttempt read.
func (w *Worker) record(ctx context.Context, d *Delivery, at Attempt) ([]Attempt, error) {
	if !d.historyRead {
		return w.history.Append(ctx, w.Name, d.Activity.ID, at)
	}
	all := append(d.history, at)
	return all, w.history.Put(ctx, w.Name, d.Activity.ID, all)
}

// decodeActivity decodes the JSON only when a `when` rule or a batch
// connector (which maps fields) reads more than id, name and time; those
// come from the headers.
func (w *Worker) decodeActivity(msg jetstream.Msg) (*activity.Activity, error) {
	if w.Batch == nil && w.Rules.when == nil {
		if a, ok := headActivity(msg.Headers()); ok {
			return a, nil
		}
	}
	a := &activity.Activity{}
	return a, json.Unmarshal(msg.Data(), a)
}
