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
	"errors"
	"fmt"
	"slices"
	"sync"
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
func (w *Worker) orderConsumer(cfg *jetstream.ConsumerConfig) {
	if !w.ordered() {
		return
	}
	cfg.PriorityPolicy = jetstream.PriorityPolicyPinned
	cfg.PriorityGroups = []string{orderGroup}
	cfg.PinnedTTL = orderPinnedTTL
	cfg.MaxAckPending = orderMaxPending
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
	it, err := w.cons.Messages(jetstream.PullMaxMessages(orderBuffer), jetstream.PullExpiry(orderPullExpiry), jetstream.PullPriorityGroup(orderGroup))
	if err != nil {
		w.cons = nil
		return fmt.Errorf("consume: %w", err)
	}
	s := newOrderSession(ctx, w)
	defer s.close()
	draining := w.drainOnStop(ctx, it)
	defer draining.stop()
	for {
		msg, err := it.Next()
		if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
			return nil
		}
		if err != nil {
			it.Stop()
			return fmt.Errorf("next activity: %w", err)
		}
		if draining.on() {
			_ = msg.Nak()
			continue
		}
		s.add(msg)
	}
}

// drainer drains an iterator on shutdown, pause or back-off.
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

// orderSession is one pull of an ordered destination: its lanes and what
// they hold.
type orderSession struct {
	w      *Worker
	ctx    context.Context
	cancel context.CancelFunc
	lanes  sync.WaitGroup
	beats  sync.WaitGroup

	mu      sync.Mutex
	byKey   map[string]*lane
	held    map[uint64]*held
	gate    *gate
	lastMsg time.Time
}

// held is an activity in a lane.
type held struct {
	msg jetstream.Msg
	seq uint64
	d   *Delivery
	key string    // its lane
	due time.Time // its next attempt, when a retry delay runs
}

// lane is one contact's activities, by stream sequence; the head is the
// one being attempted.
type lane struct {
	key   string
	queue []*held
}

// gate holds every lane until the activities another process still held
// when this one started work have come back (or a bound passed).
type gate struct {
	open   chan struct{}
	needed int
	upTo   uint64
	timer  *time.Timer
}

func newOrderSession(ctx context.Context, w *Worker) *orderSession {
	s := &orderSession{w: w, byKey: map[string]*lane{}, held: map[uint64]*held{}}
	s.ctx, s.cancel = context.WithCancel(ctx)
	w.session.Store(s)
	s.beats.Add(1)
	go s.heartbeat()
	return s
}

// close stops the lanes, waits for attempts in flight and hands back
// everything still held, in stored order.
func (s *orderSession) close() {
	s.w.session.CompareAndSwap(s, nil)
	s.cancel()
	s.lanes.Wait()
	s.beats.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gate != nil {
		s.gate.timer.Stop()
	}
	seqs := make([]uint64, 0, len(s.held))
	for seq := range s.held {
		seqs = append(seqs, seq)
	}
	slices.Sort(seqs)
	for _, seq := range seqs {
		_ = s.held[seq].msg.Nak()
	}
	s.held = map[uint64]*held{}
}

// heartbeat keeps every held activity from being redelivered.
func (s *orderSession) heartbeat() {
	defer s.beats.Done()
	tick := time.NewTicker(s.w.ackWait / 3)
	defer tick.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-tick.C:
		}
		s.mu.Lock()
		msgs := make([]jetstream.Msg, 0, len(s.held))
		for _, h := range s.held {
			msgs = append(msgs, h.msg)
		}
		s.mu.Unlock()
		for _, m := range msgs {
			_ = m.InProgress()
		}
	}
}

// add puts an activity into its contact's lane.
func (s *orderSession) add(msg jetstream.Msg) {
	md, err := msg.Metadata()
	if err != nil {
		_ = msg.Nak()
		return
	}
	seq := md.Sequence.Stream
	s.startGate(seq)
	s.mu.Lock()
	s.lastMsg = time.Now()
	_, dup := s.held[seq]
	s.mu.Unlock()
	if dup { // redelivered while held: the copy in the lane stands
		return
	}
	d, ok := s.w.decode(s.ctx, msg)
	s.mu.Lock()
	defer s.mu.Unlock()
	// Counted once in its lane: the gate may open now, and the lanes must
	// then see it.
	defer s.countArrival(seq)
	if !ok {
		return
	}
	key := s.w.orderKey(msg.Data())
	if key == "" {
		key = fmt.Sprintf("\x00%d", seq) // no key: a lane of its own
	}
	h := &held{msg: msg, seq: seq, d: d, key: key, due: s.w.resumeAt(d, md)}
	s.held[seq] = h
	l := s.byKey[key]
	if l == nil {
		l = &lane{key: key}
		s.byKey[key] = l
		s.lanes.Add(1)
		go s.run(l)
	}
	i, _ := slices.BinarySearchFunc(l.queue, seq, func(h *held, seq uint64) int { return compareSeq(h.seq, seq) })
	l.queue = slices.Insert(l.queue, i, h)
}

func compareSeq(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// resumeAt is when a redelivered activity's next attempt is due: its
// retry delay runs from the last attempt recorded, so a crash or a
// fail-over neither hurries nor restarts the schedule.
func (w *Worker) resumeAt(d *Delivery, md *jetstream.MsgMetadata) time.Time {
	if !d.historyRead || len(d.history) == 0 || d.Attempt < 2 {
		return time.Time{}
	}
	last := d.history[len(d.history)-1]
	if last.At.Before(md.Timestamp) { // attempts of the run a replay restarts
		return time.Time{}
	}
	return last.At.Add(w.schedule[min(d.Attempt-1, len(w.schedule))-1])
}

// startGate closes the gate when an activity arrives after the process has
// held nothing for a while (its start, or a fail-over to it): activities
// another process held may still come back, and a contact's later ones
// must wait for them. It reads how many are out (NumAckPending) and up to
// which sequence JetStream has delivered.
func (s *orderSession) startGate(seq uint64) {
	s.mu.Lock()
	start := s.gate == nil && len(s.held) == 0 && time.Since(s.lastMsg) > orderIdleGap
	s.mu.Unlock()
	if !start {
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
	defer cancel()
	info, err := s.w.cons.Info(ctx)
	if err != nil {
		s.w.log.Warn("reading the consumer to resume in order; waiting the ack wait instead", "error", err)
		info = &jetstream.ConsumerInfo{NumAckPending: orderMaxPending, Delivered: jetstream.SequenceInfo{Stream: seq}}
	}
	if info.NumAckPending == 0 {
		return
	}
	bound := s.w.ackWait + 5*time.Second
	g := &gate{open: make(chan struct{}), needed: info.NumAckPending, upTo: info.Delivered.Stream}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gate = g
	g.timer = time.AfterFunc(bound, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.gate == g {
			s.w.log.Warn("resuming in order: not every activity out elsewhere came back within the bound", "missing", g.needed, "bound", bound)
			s.openGate()
		}
	})
	s.w.log.Debug("resuming in order: waiting for activities out elsewhere", "out", info.NumAckPending, "up_to_seq", g.upTo)
}

// countArrival counts an activity (not one already held) toward the gate.
// Each arrival up to the delivered sequence read is one of those that were
// out.
func (s *orderSession) countArrival(seq uint64) {
	g := s.gate
	if g == nil || seq > g.upTo {
		return
	}
	g.needed--
	if g.needed <= 0 {
		g.timer.Stop()
		s.openGate()
	}
}

func (s *orderSession) openGate() {
	close(s.gate.open)
	s.gate = nil
}

// run attempts a lane's activities one at a time until it is empty or the
// session ends.
func (s *orderSession) run(l *lane) {
	defer s.lanes.Done()
	for {
		s.mu.Lock()
		if len(l.queue) == 0 {
			delete(s.byKey, l.key)
			s.mu.Unlock()
			return
		}
		h, g := l.queue[0], s.gate
		s.mu.Unlock()
		if g != nil { // the head may change once older activities are back
			select {
			case <-g.open:
				continue
			case <-s.ctx.Done():
				return
			}
		}
		if !s.sleepUntil(h.due) {
			return
		}
		if !s.attempt(h) {
			if s.ctx.Err() != nil {
				return
			}
			continue
		}
		s.mu.Lock()
		// Not always the head now: an older activity that came back
		// meanwhile (its acknowledgement lost) was put in front.
		if i := slices.Index(l.queue, h); i >= 0 {
			l.queue = slices.Delete(l.queue, i, i+1)
		}
		delete(s.held, h.seq)
		s.mu.Unlock()
	}
}

func (s *orderSession) sleepUntil(t time.Time) bool {
	wait := time.Until(t)
	if wait <= 0 {
		return s.ctx.Err() == nil
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-s.ctx.Done():
		return false
	}
}

// attempt makes one attempt of a lane's head and settles it; true when the
// activity is done with (delivered or a dead letter).
func (s *orderSession) attempt(h *held) bool {
	w := s.w
	select {
	case w.slots <- struct{}{}:
	case <-s.ctx.Done():
		return false
	}
	defer func() { <-w.slots }()
	if !w.active() { // the session is ending: the activity will be handed back
		wait := time.Until(time.Unix(0, w.throttled.Load()))
		if w.paused.Load() {
			wait = time.Second
		}
		s.sleepUntil(time.Now().Add(max(wait, 100*time.Millisecond)))
		return false
	}
	if !w.wait(s.ctx, h.msg) {
		return false
	}
	w.inflight.Add(1)
	defer w.inflight.Done()
	ctx := context.WithoutCancel(s.ctx) // an attempt in flight finishes on shutdown
	d := h.d
	d.inLane, d.retryIn = true, 0
	at := w.Sink.Deliver(ctx, d)
	w.settle(ctx, h.msg, d, at)
	if d.retryIn == 0 {
		return true
	}
	h.due = time.Now().Add(d.retryIn)
	d.Attempt++
	d.history, d.historyRead, d.outcome = nil, false, ""
	return false
}
