package deliver

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/relaydev/relay/relay/store"
)

// Fanned reports whether the worker takes its first attempts from the
// fan-out rather than from its own consumer: destinations with order:
// contact (lanes over a pinned consumer), batch connectors (which gather
// from their consumer) and relay-alerts (its own subject) keep their own.
func (w *Worker) Fanned() bool {
	return w.Batch == nil && !w.Ordered() && !w.Rules.Own()
}

// Detached reports whether the fan-out hands the destination's
// activities to its own consumer for now, without waiting for a slot
// (takeSlot).
func (w *Worker) Detached() bool { return time.Now().UnixNano() < w.fan.detachedUntil.Load() }

// refMsg is a handed-back copy with the activity it stands for.
type refMsg struct {
	jetstream.Msg
	data []byte
}

func (m *refMsg) Data() []byte { return m.data }

// resolve reads the activity a handed-back copy stands for; other
// messages are returned as they are. false: the message was settled here
// (a dead letter when the activity is gone, handed back on a read error).
func (w *Worker) resolve(ctx context.Context, msg jetstream.Msg) (jetstream.Msg, bool) {
	ref := msg.Headers().Get(store.HeaderSeq)
	if ref == "" {
		return msg, true
	}
	seq, err := strconv.ParseUint(ref, 10, 64)
	if err != nil {
		w.Undecodable(ctx, msg, fmt.Errorf("%s header %q is not a sequence", store.HeaderSeq, ref))
		return nil, false
	}
	data, err := w.ReadActivity(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		w.Undecodable(ctx, msg, err)
		return nil, false
	}
	if err != nil {
		w.log.Warn("reading a stored activity; trying again", "sequence", seq, "error", err)
		if err := msg.NakWithDelay(5 * time.Second); err != nil {
			w.log.Warn("handing back an activity failed; it is attempted again after the ack wait", "sequence", seq, "wait", w.ackWait, "error", err)
		}
		return nil, false
	}
	return &refMsg{Msg: msg, data: data}, true
}
