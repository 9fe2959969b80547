package held

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Calls bounds the calls to receivers in flight at once across every
// destination (engine.max_in_flight): with each destination's own
// max_in_flight alone, what the process holds for them (connections,
// request and response buffers, the goroutines of attempts waiting their
// turn) would grow with the number of destinations times their receivers'
// latency. A room is taken before an attempt is started and given back
// while it waits (a back-off, a rate limit) and once its call returns, so
// a destination waiting on its own limits never holds one. A nil *Calls
// bounds nothing.
type Calls struct {
	slots chan struct{}
}

// NewCalls is a bound of n calls in flight (at least one).
func NewCalls(n int) *Calls {
	return &Calls{slots: make(chan struct{}, max(1, n))}
}

// TryTake takes room for one call if there is some now.
func (c *Calls) TryTake() bool {
	if c == nil {
		return true
	}
	select {
	case c.slots <- struct{}{}:
		return true
	default:
		return false
	}
}

// Take waits for room for one call; false when ctx ended or stop (nil:
// never) closed first.
func (c *Calls) Take(ctx context.Context, stop <-chan struct{}) bool {
	if c.TryTake() {
		return true
	}
	select {
	case c.slots <- struct{}{}:
		return true
	case <-ctx.Done():
	case <-stop:
	}
	return false
}

// TakeWithin waits up to d for room for one call.
func (c *Calls) TakeWithin(ctx context.Context, d time.Duration) bool {
	if c.TryTake() {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case c.slots <- struct{}{}:
		return true
	case <-ctx.Done():
	case <-t.C:
	}
	return false
}

// Release gives back what Take, TryTake or TakeWithin took.
func (c *Calls) Release() {
	if c != nil {
		<-c.slots
	}
}

// Register exposes the calls in flight and the bound as
// relay_engine_calls_in_flight and relay_engine_max_in_flight.
func (c *Calls) Register(reg prometheus.Registerer) {
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "relay_engine_calls_in_flight",
		Help: "Calls to receivers in flight (or about to start) across every destination; bounded by engine.max_in_flight.",
	}, func() float64 { return float64(len(c.slots)) }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "relay_engine_max_in_flight",
		Help: "engine.max_in_flight: calls to receivers in flight at once across every destination.",
	}, func() float64 { return float64(cap(c.slots)) }))
}

// Room is one attempt's hold on a Calls: taken before the attempt starts,
// given back while it waits and once its call returns.
type Room struct {
	c    *Calls
	held bool
}

// Held is a room already taken from c.
func Held(c *Calls) Room { return Room{c: c, held: true} }

// Release gives the room back, if held.
func (r *Room) Release() {
	if r.held {
		r.held = false
		r.c.Release()
	}
}

// Take takes the room again, if not held; false when ctx ended first.
func (r *Room) Take(ctx context.Context) bool {
	if !r.held {
		r.held = r.c.Take(ctx, nil)
	}
	return r.held
}
