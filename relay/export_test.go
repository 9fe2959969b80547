package relay

import "github.com/nats-io/nats.go"

// CloseBus closes the connection to NATS for good, as a broken server or
// a revoked credential would.
func (r *Relay) CloseBus() { r.bus.NC.Close() }

// BusConn is the relay's connection to NATS.
func (r *Relay) BusConn() *nats.Conn { return r.bus.NC }
