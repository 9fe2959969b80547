// Order per contact (order: contact, docs/ordering.md). One process at a
// time works an ordered destination: its consumer has a pinned priority
// group, so JetStream gives its activities, in stored order, to one pulling
// client and fails over to another when that one stops pulling. Inside that
// process each contact has a lane: the lane attempts its head only, waits
// out a failed attempt's retry delay itself (a NAK would send the activity
// behind the contact's later ones) and goes on to the next activity once
// the head is delivered or a dead letter. Lanes run in parallel up to
// max_in_flight; the pull loop never waits for them.

package relay

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/relaydev/relay/config"
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
	// orderBuffer is how many activities one pull asks for.
	orderBuffer = 500
)

func (w *Worker) ordered() bool { return w.Cfg.Order == config.OrderContact }

// initOrder sets an ordered destination's ack wait: its held activities
// are kept alive by heartbeats every third of it, so it does not need to
// cover an attempt, and short, it makes a dead process's activities come
// back soon.
func (w *Worker) initOrder() {
	if !w.ordered() {
		return
	}
	w.ackWait = min(max(3*time.Duration(w.Cfg.Timeout), 6*time.Second), 30*time.Second)
}

// orderConsumer makes an ordered destination's consumer pin one client.
// A server before 2.11 would ignore the priority group, letting every
// process deliver: it is refused.
func (w *Worker) orderConsumer(cfg *jetstream.ConsumerConfig) error {
	if !w.ordered() {
		return nil
	}
	if v := w.bus.NC.ConnectedServerVersion(); !serverAtLeast(v, 2, 11) {
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

// later has an activity attempted again after delay: a NAK with that delay,
// or, in a lane, the lane waits it out.
func (w *Worker) later(msg jetstream.Msg, d *Delivery, delay time.Duration) error {
	if d.inLane {
		d.retryIn = max(delay, time.Millisecond)
		return nil
	}
	return msg.NakWithDelay(delay)
}

// pullOrdered reads an ordered destination's consumer into lanes until ctx
// is done or the destination stops; then every activity held and not being
// attempted is handed back, in stored order.
func (w *Worker) pullOrdered(ctx context.Context) error {
	cons := w.consumer()
	if cons == nil { // unbound meanwhile (the probe's Ensure failed)
		return nil
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(orderBuffer), jetstream.PullExpiry(orderPullExpiry), jetstream.PullPriorityGroup(orderGroup))
	if err != nil {
		w.setConsumer(nil)
		return fmt.Errorf("consume: %w", err)
	}
	// lost ends the pull when another process has been pinned meanwhile
	// (a nats-server restart forgets the pin): what this one holds is then
	// handed back, for that one to deliver in order.
	pctx, lost := context.WithCancel(ctx)
	defer lost()
	s := newOrderSession(ctx, w, lost)
	defer s.close()
	draining := w.drainOnStop(pctx, it)
	defer draining.stop()
	return readMessages(it, nil, func(msg jetstream.Msg) {
		if draining.on() {
			w.nak(msg)
			return
		}
		s.add(msg)
	})
}

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
	d := &drainer{done: make(chan struct{}), draining: make(chan struct{})}
	go func() {
		for {
			select {
			case <-d.done:
				it.Stop()
				return
			case <-ctx.Done():
			case <-w.changed:
				if w.active() {
					continue
				}
				w.signal()
			}
			close(d.draining)
			it.Drain()
			return
		}
	}()
	return d
}

// resumeAt is when a redelivered activity's next attempt is due: its
// retry delay runs from the last attempt recorded, so a crash or a
// fail-over neither hurries nor restarts the schedule.
func (w *Worker) resumeAt(d *Delivery, md *jetstream.MsgMetadata) time.Time {
	if !d.historyRead || len(d.history) == 0 || d.Attempt < 2 || len(w.schedule) == 0 {
		return time.Time{}
	}
	last := d.history[len(d.history)-1]
	if last.At.Before(md.Timestamp) { // attempts of the run a replay restarts
		return time.Time{}
	}
	return last.At.Add(w.schedule[min(d.Attempt-1, len(w.schedule))-1])
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
	var msgs []jetstream.Msg
	for msg := range batch.Messages() {
		msgs = append(msgs, msg)
	}
	oldest, seqOf := -1, func(m jetstream.Msg) uint64 {
		md, err := m.Metadata()
		if err != nil {
			return 0
		}
		return md.Sequence.Stream
	}
	for i, m := range msgs {
		if oldest < 0 || seqOf(m) < seqOf(msgs[oldest]) {
			oldest = i
		}
	}
	for i, m := range msgs {
		if i != oldest {
			w.nak(m)
		}
	}
	if oldest < 0 {
		return false, false
	}
	msg := msgs[oldest]
	d, decoded := w.decode(ctx, msg)
	if !decoded {
		return false, false
	}
	d.inLane = true
	ok = w.probeWith(ctx, msg, d)
	if d.retryIn > 0 {
		w.nak(msg)
	}
	return true, ok
}
