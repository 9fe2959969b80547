package deliver

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/relaydev/relay/relay/consent"
	"github.com/relaydev/relay/relay/sink"
	"github.com/relaydev/relay/relay/store"
)

// suppressed checks, just before an attempt, whether the person of the
// activity may still be reached on the destination's `consent:` channel
// (docs/consent.md). When not, the activity is settled here: acked, logged
// with outcome suppressed and the reason, counted, and what was kept of
// earlier attempts (its history, a replayed dead letter) is dropped; true
// then, and the connector is not called.
func (w *Worker) suppressed(ctx context.Context, msg jetstream.Msg, d *delivery) bool {
	why := w.suppression(d)
	if why == nil {
		return false
	}
	if err := w.ack(msg); err != nil {
		w.activityLog(d).Warn("ack of a suppressed activity failed; it is checked again when redelivered", "error", err)
	}
	w.metrics.Suppressed.WithLabelValues(w.Name, string(why.Channel)).Inc()
	w.logAttempt(d, sink.Attempt{At: time.Now().UTC(), Error: why.String()}, store.OutcomeSuppressed)
	if replayed := msg.Headers().Get(store.HeaderReplay) != ""; d.Attempt > 1 || replayed {
		w.forget(ctx, d, replayed)
	}
	if w.debug {
		w.activityLog(d).Debug("suppressed", "reason", why.String())
	}
	return true
}

// suppression is why d must not reach the destination, nil when it may
// (or the destination declares no consent channel).
func (w *Worker) suppression(d *delivery) *consent.Suppression {
	if w.Cfg.Consent == "" || w.st.Consent == nil {
		return nil
	}
	a := d.Activity
	if consent.Passes(a.Name) {
		return nil
	}
	contact := a.Contact
	if contact == nil { // read from the headers: the contact is in the stored JSON
		contact = consent.ContactOf(d.Raw)
	}
	return w.st.Consent.CheckContact(consent.Channel(w.Cfg.Consent), a.Name, contact)
}

// unsuppressed settles the suppressed activities of a batch and returns
// the others.
func (w *Worker) unsuppressed(ctx context.Context, msgs []jetstream.Msg, ds []*delivery) ([]jetstream.Msg, []*delivery) {
	if w.Cfg.Consent == "" {
		return msgs, ds
	}
	keptMsgs, kept := msgs[:0:0], ds[:0:0]
	for i, d := range ds {
		if !w.suppressed(ctx, msgs[i], d) {
			keptMsgs, kept = append(keptMsgs, msgs[i]), append(kept, d)
		}
	}
	return keptMsgs, kept
}
