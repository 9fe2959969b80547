package relay

import (
	"context"

	"github.com/nats-io/nats.go"
)

// CloseBus closes the connection to NATS for good, as a broken server or
// a revoked credential would.
func (r *Relay) CloseBus() { r.bus.NC.Close() }

// BusConn is the relay's connection to NATS.
func (r *Relay) BusConn() *nats.Conn { return r.bus.NC }

// ConsumerDelivered is how many messages a consumer of the activities
// stream has delivered: the fan-out's, or a destination's own.
func (r *Relay) ConsumerDelivered(ctx context.Context, stream, name string) (uint64, error) {
	cons, err := r.bus.JS.Consumer(ctx, stream, name)
	if err != nil {
		return 0, err
	}
	return cons.CachedInfo().Delivered.Consumer, nil
}
