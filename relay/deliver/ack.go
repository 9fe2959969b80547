package deliver

import (
	"errors"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/relaydev/relay/relay/store"
)

// ack acknowledges msg. An acknowledgement that cannot be sent because the
// connection to NATS is down is sent again once it is back, for up to half
// the ack wait, as JetStream still takes it then: a delivered activity is
// then not delivered again just because NATS restarted.
func (w *Worker) ack(msg jetstream.Msg) error {
	return store.Ack(w.st.Bus, msg, w.ackWait)
}

// What follows for an activity when a signal to JetStream about it could
// not be sent.
const (
	opAck        = "ack"
	opNak        = "nak"
	opInProgress = "in-progress"
)

// checkAck logs an ack, nak or in-progress signal that could not be sent,
// saying what follows for the activity; nil does nothing. A lost ack may
// deliver the activity again: a warning. A lost nak or in-progress only
// has JetStream hand it out after the ack wait (at least once, never a
// loss), and they fail together while NATS is away: a debug line.
func (w *Worker) checkAck(op string, err error) {
	if err == nil || (op == opInProgress && errors.Is(err, jetstream.ErrMsgAlreadyAckd)) {
		// An activity settled between a heartbeat's look and its signal
		// needs no keeping alive.
		return
	}
	if op == opAck {
		w.log.Warn("ack failed: the activity may be delivered again", "error", err)
		return
	}
	w.log.Debug(op+" failed: JetStream hands the activity out again after the ack wait", "error", err)
}

// nak hands a message back at once.
func (w *Worker) nak(msg jetstream.Msg) { w.checkAck(opNak, msg.Nak()) }

// inProgress tells JetStream an activity is still being worked on.
func (w *Worker) inProgress(msg jetstream.Msg) { w.checkAck(opInProgress, msg.InProgress()) }
