package relay

import (
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ack acknowledges msg. An acknowledgement that cannot be sent because the
// connection to NATS is down is sent again once it is back, for up to half
// the ack wait, as JetStream still takes it then: a delivered activity is
// then not delivered again just because NATS restarted.
func (w *Worker) ack(msg jetstream.Msg) error {
	return ackWithRetry(w.bus, msg, w.ackWait)
}

// ackWithRetry acks msg, sending the ack again once the connection is
// back for up to half of ackWait.
func ackWithRetry(bus *Bus, msg jetstream.Msg, ackWait time.Duration) error {
	err := msg.Ack()
	if err == nil || bus == nil || bus.NC == nil {
		return err
	}
	nc := bus.NC
	changed := nc.StatusChanged(nats.CONNECTED, nats.CLOSED)
	defer nc.RemoveStatusListener(changed)
	giveUp := time.After(ackWait / 2)
	for !nc.IsClosed() {
		if nc.IsConnected() {
			if err = msg.Ack(); err == nil {
				return nil
			}
		}
		select {
		case <-changed:
		case <-giveUp:
			return err
		}
	}
	return err
}

// What follows for an activity when a signal to JetStream about it could
// not be sent.
const (
	opAck        = "ack"
	opNak        = "nak"
	opInProgress = "in-progress"
)

// checkAck logs an ack, nak or in-progress signal that could not be sent,
// saying what follows for the activity; nil does nothing.
func (w *Worker) checkAck(op string, err error) {
	if err == nil || (op == opInProgress && errors.Is(err, jetstream.ErrMsgAlreadyAckd)) {
		// An activity settled between a heartbeat's look and its signal
		// needs no keeping alive.
		return
	}
	var follows string
	switch op {
	case opAck:
		follows = "the activity may be delivered again"
	case opNak:
		follows = "JetStream hands the activity out again after the ack wait"
	default:
		follows = "the activity may be handed out again after the ack wait"
	}
	w.log.Warn(op+" failed: "+follows, "error", err)
}
