package deliver

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/relaydev/relay/relay/alert"
	"github.com/relaydev/relay/relay/sink"
)

// holdRecheck is how often a held destination asks its connector again.
const holdRecheck = time.Second

// waitHold waits while the connector holds the destination (sink.Holder:
// Salesforce's API budget), taking nothing from the queue meanwhile; false
// when ctx ends or the destination stops first. The reason is the
// destination's state while it lasts (HeldBy).
func (w *Worker) waitHold(ctx context.Context) bool {
	h, ok := w.Batch.(sink.Holder)
	if !ok {
		return true
	}
	for ctx.Err() == nil && w.Active() {
		until, reason := h.Hold(ctx)
		wait := time.Until(until)
		if wait <= 0 {
			w.setHeld(ctx, "", until)
			return true
		}
		w.setHeld(ctx, reason, until)
		t := time.NewTimer(min(wait, holdRecheck))
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
	return false
}

// setHeld records why the connector holds the destination ("" when it
// does not), logging and alerting when a hold begins.
func (w *Worker) setHeld(ctx context.Context, reason string, until time.Time) {
	prev, _ := w.heldBy.Swap(reason).(string)
	switch {
	case prev == "" && reason != "":
		w.log.Warn("connector holds the destination", "reason", reason, "until", until.UTC())
		w.st.Alerts.Emit(ctx, alert.Held, w.Name, map[string]any{"reason": reason, "until": until.UTC()})
	case prev != "" && reason == "":
		w.log.Info("connector no longer holds the destination", "reason", prev)
	}
}

// HeldBy is why the connector holds the destination now ("budget"), ""
// when it does not.
func (w *Worker) HeldBy() string {
	r, _ := w.heldBy.Load().(string)
	return r
}

// batchFor is how many activities to gather: the sink's batch size, or
// for a sink.Backlog as many as it wants for what waits now (the
// consumer's pending: retries waiting out their delay are not counted,
// they cannot be fetched yet).
func (w *Worker) batchFor(ctx context.Context, cons jetstream.Consumer, size int) int {
	b, ok := w.Batch.(sink.Backlog)
	if !ok {
		return size
	}
	ci, err := cons.Info(ctx)
	if err != nil {
		return size
	}
	return max(1, b.BatchFor(int(ci.NumPending)))
}

// maxBatch is the most activities a batch gathers: the consumer lets at
// least twice as many be out at once.
func (w *Worker) maxBatch() int {
	if b, ok := w.Batch.(sink.Backlog); ok {
		return b.BatchFor(1 << 30)
	}
	return 0
}

// unattempted hands back the activities the connector did not attempt
// (sink.Hold) and returns the others' indexes; a hold with a delay backs
// the destination off for it, once for the batch.
func (w *Worker) unattempted(msgs []jetstream.Msg, ats []sink.Attempt) []int {
	var rest []int
	var hold time.Duration
	for i := range msgs {
		if i >= len(ats) {
			rest = append(rest, i)
			continue
		}
		kind, after := sink.Classify(ats[i].Err) // nil: Retry
		if kind != sink.Hold {
			rest = append(rest, i)
			continue
		}
		hold = max(hold, after)
		w.nak(msgs[i])
	}
	if hold > 0 {
		w.backOff(w.log, min(hold, w.sched.MaxHold))
	}
	return rest
}
