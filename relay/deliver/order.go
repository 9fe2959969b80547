// Order per contact (order: contact, docs/ordering.md). One process at a
// time works an ordered destination: its consumer has a pinned priority
// group, so JetStream gives its activities, in stored order, to one pulling
// client and fails over to another when that one stops pulling. Inside that
// process each contact has a lane: the lane attempts its head only, waits
// out a failed attempt's retry delay itself (a NAK would send the activity
// behind the contact's later ones) and goes on to the next activity once
// the head is delivered or a dead letter. Lanes run in parallel up to
// max_in_flight; the pull loop never waits for them.

package deliver

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/relaydev/relay/config"
	"github.com/relaydev/relay/relay/held"
)

const (
	// orderGroup is the priority group of an ordered destination's consumer.
	orderGroup = "relay"
	// orderPinnedTTL is how long JetStream keeps a process pinned after its
	// last pull request: the fail-over time after a crash.
	orderPinnedTTL = 10 * time.Second
	// orderPullExpiry is how long one pull request lives; the pinned process
	// renews it well within orderPinnedTTL.
	orderPullExpiry = 3 * time.Second
	// orderMaxPending bounds what an ordered destination holds in its lanes.
	orderMaxPending = 20000
	// orderIdleGap is how long a process receives nothing before the next
	// activity is taken as the start of new work (perhaps a fail-over):
	// it then waits for older activities still out elsewhere.
	orderIdleGap = 2 * orderPullExpiry
)

// Ordered reports whether the destination has order: contact.
func (w *Worker) Ordered() bool { return w.Cfg.Order == config.OrderContact }

// initOrder sets an ordered destination's ack wait: its held activities
// are kept alive by heartbeats every third of it, so it does not need to
// cover an attempt, and short, it makes a dead process's activities come
// back soon.
func (w *Worker) initOrder() {
	if !w.Ordered() {
		return
	}
	w.ackWait = min(max(3*time.Duration(w.Cfg.Timeout), 6*time.Second), 30*time.Second)
}

// orderConsumer makes an ordered destination's consumer pin one client.
// A server before 2.11 would ignore the priority group, letting every
// process deliver: it is refused.
func (w *Worker) orderConsumer(cfg *jetstream.ConsumerConfig) error {
	if !w.Ordered() {
		return nil
	}
	if v := w.st.Bus.NC.ConnectedServerVersion(); !serverAtLeast(v, 2, 11) {
		return fmt.Errorf("destination %s has order: contact, which needs nats-server 2.11 or later (priority groups); the server is %s", w.Name, v)
	}
	cfg.PriorityPolicy = jetstream.PriorityPolicyPinned
	cfg.PriorityGroups = []string{orderGroup}
	cfg.PinnedTTL = orderPinnedTTL
	cfg.MaxAckPending = orderMaxPending
	return nil
}

// serverAtLeast compares a server version "2.11.3" (perhaps with a
// suffix, "2.12.0-beta") with major.minor.
func serverAtLeast(version string, major, minor int) bool {
	var ma, mi int
	if _, err := fmt.Sscanf(version, "%d.%d", &ma, &mi); err != nil {
		return false
	}
	return ma > major || (ma == major && mi >= minor)
}

// pullOrdered reads an ordered destination's consumer into lanes until ctx
// is done or the destination stops; then every activity held and not being
// attempted is handed back, in stored order.
func (w *Worker) pullOrdered(ctx context.Context) error {
	cons := w.consumer()
	if cons == nil { // unbound meanwhile (the probe's Ensure failed)
		return nil
	}
	// lost ends the pull when another process has been pinned meanwhile
	// (a nats-server restart forgets the pin): what this one holds is then
	// handed back, for that one to deliver in order.
	pctx, lost := context.WithCancel(ctx)
	defer lost()
	s := newOrderSession(ctx, w, lost)
	defer s.close()
	stopping := w.watchStop(pctx, nil)
	defer stopping.stop()
	for !stopping.on() {
		if !s.acct.HasRoom() && !s.resuming() {
			// engine.max_held_bytes is reached: no pull request until
			// some settle. (While resuming, what comes back must reach
			// the lanes for the gate to open: taken past the budget, as
			// handles without data.)
			w.log.Debug("the engine holds engine.max_held_bytes: taking no more until some settle", "held_bytes", s.acct.Used())
			if !s.acct.WaitRoom(pctx, func() bool { return !stopping.on() }) {
				return nil
			}
			continue
		}
		// A fetch of a bounded count, every activity of which is taken:
		// none waits unseen in the client past its ack wait, none is
		// handed back out of order. (Not bounded in bytes: a request a
		// redelivery does not fit in sends it behind the others waiting
		// for redelivery, out of stored order.)
		batch, err := cons.Fetch(s.fetchCount(), jetstream.FetchMaxWait(orderFetchWait), jetstream.FetchPriorityGroup(orderGroup))
		if err != nil {
			w.setConsumer(nil)
			return fmt.Errorf("consume: %w", err)
		}
		for msg := range batch.Messages() {
			if stopping.on() {
				w.nak(msg)
				continue
			}
			s.add(msg)
		}
		if err := batch.Error(); err != nil {
			w.setConsumer(nil)
			return fmt.Errorf("next activity: %w", err)
		}
	}
	return nil
}

// orderFetchWait is how long one pull request of an ordered destination
// waits for activities: a pause or a back-off ends the pull within it.
const orderFetchWait = time.Second

// fetchCount is how many activities one pull asks for: at most 500, at
// most an eighth of the budget (at most 8 MiB) of activities of the
// largest size in the client at once, and (unless resuming) what the
// budget has room for as handles.
func (s *orderSession) fetchCount() int {
	a := s.acct
	if a == nil {
		return orderBatch
	}
	b := a.Budget()
	n := min(orderBatch, int(min(b.Max()/8, 8<<20)/b.Reserve()))
	if !s.resuming() {
		n = min(n, int((b.Max()-a.Used())/(2*held.HandleOverhead)))
	}
	return max(n, 1)
}

// orderBatch is the most activities one pull of an ordered destination
// asks for.
const orderBatch = 500

// drainer drains an iterator on shutdown, pause or back-off (ordered and
// unordered pulls alike).
type drainer struct {
	done     chan struct{}
	draining chan struct{}
}

func (d *drainer) stop() { close(d.done) }

func (d *drainer) on() bool {
	select {
	case <-d.draining:
		return true
	default:
		return false
	}
}

func (w *Worker) drainOnStop(ctx context.Context, it jetstream.MessagesContext) *drainer {
	return w.watchStop(ctx, it)
}

// watchStop is on once ctx is done or the destination stops (a pause, a
// back-off); it then drains it, if not nil.
func (w *Worker) watchStop(ctx context.Context, it jetstream.MessagesContext) *drainer {
	d := &drainer{done: make(chan struct{}), draining: make(chan struct{})}
	go func() {
		for {
			select {
			case <-d.done:
				if it != nil {
					it.Stop()
				}
				return
			case <-ctx.Done():
			case <-w.changed:
				if w.Active() {
					continue
				}
				w.signal()
			}
			close(d.draining)
			if it != nil {
				it.Drain()
			}
			return
		}
	}()
	return d
}

// resumeAt is when a redelivered activity's next attempt is due: its
// retry delay runs from the last attempt recorded, so a crash or a
// fail-over neither hurries nor restarts the schedule.
func (w *Worker) resumeAt(d *delivery, md *jetstream.MsgMetadata) time.Time {
	if !d.historyRead || len(d.history) == 0 || d.Attempt < 2 || len(w.sched.Delays) == 0 {
		return time.Time{}
	}
	last := d.history[len(d.history)-1]
	if last.At.Before(md.Timestamp) { // attempts of the run a replay restarts
		return time.Time{}
	}
	delay, _ := w.sched.DelayAfter(d.Attempt - 1)
	return last.At.Add(delay)
}

// probeOrdered is the breaker's probe for an ordered destination: it must
// not deliver a contact's activity before an earlier one. Every activity
// handed back when the breaker opened is waiting for redelivery, so it
// fetches all that are there, probes with the oldest (no earlier activity
// of its contact can be unsettled) and hands back the others. A failed
// probe is handed back without delay: its retry timing is in the history.
func (w *Worker) probeOrdered(ctx context.Context) (probed, ok bool) {
	cons := w.consumer()
	if cons == nil {
		return false, false
	}
	batch, err := cons.Fetch(orderMaxPending, jetstream.FetchMaxWait(time.Second), jetstream.FetchPriorityGroup(orderGroup))
	if err != nil {
		return false, false
	}
	// Only the oldest keeps its data; the others, handed back, are kept
	// as handles (up to 20,000 of them could come).
	var others []jetstream.Msg
	var msg jetstream.Msg
	var oldest uint64
	for m := range batch.Messages() {
		md, err := m.Metadata()
		if err != nil {
			w.nak(m)
			continue
		}
		switch {
		case msg == nil:
			msg, oldest = m, md.Sequence.Stream
		case md.Sequence.Stream < oldest:
			prev, _ := msg.Metadata()
			others = append(others, held.NewMsg(w.st.Bus.NC, msg, prev))
			msg, oldest = m, md.Sequence.Stream
		default:
			others = append(others, held.NewMsg(w.st.Bus.NC, m, md))
		}
	}
	for _, m := range others {
		w.nak(m)
	}
	if msg == nil {
		return false, false
	}
	d, decoded := w.decode(ctx, msg)
	if !decoded {
		return false, false
	}
	return w.probeWith(ctx, msg, d, true)
}
