package relay

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/relaydev/relay/relay/deliver"
)

// CloseBus closes the connection to NATS for good, as a broken server or
// a revoked credential would.
func (r *Relay) CloseBus() { r.bus.NC.Close() }

// BusConn is the relay's connection to NATS.
func (r *Relay) BusConn() *nats.Conn { return r.bus.NC }

// ConsumerDelivered is how many messages a consumer of the activities
// Stream has delivered: the fan-out's, or a destination's own.
func (r *Relay) ConsumerDelivered(ctx context.Context, stream, name string) (uint64, error) {
	cons, err := r.bus.JS.Consumer(ctx, stream, name)
	if err != nil {
		return 0, err
	}
	return cons.CachedInfo().Delivered.Consumer, nil
}

// FanoutSlotWait is how long the fan-out waits for a destination's free
// attempt slot.
const FanoutSlotWait = deliver.FanoutSlotWait

// OnFanoutDispatch has fn told, from now on, how long the fan-out's reader
// took to give each activity to its destinations.
func (r *Relay) OnFanoutDispatch(fn func(time.Duration)) { r.engine.OnFanoutDispatch(fn) }

// SetAckWait sets a destination's ack wait (and the longest back-off an
// activity waits through in its slot, half of it) before Run makes its
// consumer: a test sees what a wait longer than the ack wait does without
// waiting half a minute.
func (r *Relay) SetAckWait(dest string, d time.Duration) {
	if w := r.engine.Worker(dest); w != nil {
		w.SetAckWait(d)
	}
}

// HeldBytes is what the engine holds now against engine.max_held_bytes
// (relay_engine_held_bytes), and the most it has held since it started.
func (r *Relay) HeldBytes() (now, peak int64) {
	return r.held.Held()
}
