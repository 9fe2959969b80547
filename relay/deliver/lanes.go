package deliver

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/relaydev/relay/relay/held"
	"github.com/relaydev/relay/relay/schedule"
	"github.com/relaydev/relay/relay/store"
)

// orderSession is one pull of an ordered destination: its lanes, what they
// hold, and max_in_flight workers attempting the heads that are due.
type orderSession struct {
	w       *Worker
	ctx     context.Context
	cancel  context.CancelFunc
	workers sync.WaitGroup

	mu    sync.Mutex
	ready *sync.Cond // signalled when a lane joins runnable, or at the end
	byKey map[string]*lane
	held  map[uint64]*waiting
	// runnable are the lanes whose head is due, in the order they became so.
	runnable []*lane
	gate     *gate
	lastMsg  time.Time
	// pin is the pin id JetStream gave the last activity received; lost
	// ends the pull when the consumer says another client is pinned.
	pin       string
	lost      func()
	pinMisses int // consecutive checks that saw another client pinned
	// acct is the session's share of engine.max_held_bytes: every held
	// activity's handle, and the data of those kept warm (held.go).
	acct *held.Account
}

// waiting is an activity in a lane: a handle on its delivery (held.Msg, no
// data), its attempt numbering and, when half the budget had room for
// it, its data ("warm"); otherwise the data is read again by sequence
// when the activity is attempted.
type waiting struct {
	msg  jetstream.Msg // a held.Msg
	seq  uint64
	id   string
	d    *delivery // Activity and Raw set only while warm or attempted
	data []byte    // warm: kept since it was received
	full bool      // the activity was decoded from its JSON, not its headers
	size int64     // bytes charged to the budget
	key  string    // its lane
	due  time.Time // its next attempt, when a retry delay runs
}

// rest drops what an attempt decoded of a held activity: its data stays
// only when warm.
func (h *waiting) rest() {
	h.d.Activity = nil
	if h.data == nil {
		h.d.Raw = nil
	}
}

// lane is one contact's activities, by stream sequence; only the head is
// attempted. A busy lane is runnable, being attempted or waiting for its
// head's retry delay (timer).
type lane struct {
	key   string
	queue []*waiting
	busy  bool
	timer *time.Timer
}

func newOrderSession(ctx context.Context, w *Worker, lost func()) *orderSession {
	s := &orderSession{w: w, byKey: map[string]*lane{}, held: map[uint64]*waiting{}, lost: lost, acct: w.st.Held.Account()}
	s.ready = sync.NewCond(&s.mu)
	s.ctx, s.cancel = context.WithCancel(ctx)
	w.session.Store(s)
	for range max(1, w.Cfg.MaxInFlight) {
		s.workers.Add(1)
		go s.work()
	}
	s.workers.Add(1)
	go s.heartbeat()
	return s
}

// close stops the workers, waits for attempts in flight and hands back
// everything still held, in stored order.
func (s *orderSession) close() {
	s.w.session.CompareAndSwap(s, nil)
	s.cancel()
	s.mu.Lock()
	s.ready.Broadcast()
	s.mu.Unlock()
	s.workers.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gate != nil {
		s.gate.timer.Stop()
	}
	for _, l := range s.byKey {
		if l.timer != nil {
			l.timer.Stop()
		}
	}
	seqs := make([]uint64, 0, len(s.held))
	for seq := range s.held {
		seqs = append(seqs, seq)
	}
	slices.Sort(seqs)
	var size int64
	for _, seq := range seqs {
		s.w.checkAck(opNak, s.held[seq].msg.Nak())
		size += s.held[seq].size
	}
	s.acct.Release(size)
	s.held, s.byKey, s.runnable = map[uint64]*waiting{}, map[string]*lane{}, nil
}

// heartbeat keeps every held activity from being redelivered, and checks
// that this process is still the one pinned.
func (s *orderSession) heartbeat() {
	defer s.workers.Done()
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
			s.w.checkAck(opInProgress, m.InProgress())
		}
		if len(msgs) > 0 {
			s.checkPinned()
		}
	}
}

// checkPinned ends the pull when the consumer has pinned another client
// than the one this process's activities came to, at two checks in a row
// with nothing received in between (a process pinned again after a
// nats-server restart gets a new id, seen on its next activity).
func (s *orderSession) checkPinned() {
	ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
	defer cancel()
	cons := s.w.consumer()
	if cons == nil {
		return
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return
	}
	var pinned string
	for _, g := range info.PriorityGroups {
		if g.Group == orderGroup {
			pinned = g.PinnedClientID
		}
	}
	s.mu.Lock()
	other := pinned != "" && s.pin != "" && pinned != s.pin
	if !other {
		s.pinMisses = 0
	} else {
		s.pinMisses++
	}
	misses := s.pinMisses
	s.mu.Unlock()
	if misses >= 2 {
		s.w.log.Warn("another process works the destination now; handing back what this one holds")
		s.lost()
	}
}

// add puts an activity into its contact's lane.
func (s *orderSession) add(msg jetstream.Msg) {
	md, err := msg.Metadata()
	if err != nil {
		s.w.checkAck(opNak, msg.Nak())
		return
	}
	seq := md.Sequence.Stream
	s.startGate(seq)
	s.mu.Lock()
	s.lastMsg = time.Now()
	if pin := msg.Headers().Get(headerPinID); pin != "" && pin != s.pin {
		s.pin, s.pinMisses = pin, 0
		s.w.pinned.Store(pin)
	}
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
	h := &waiting{msg: held.NewMsg(s.w.st.Bus.NC, msg, md), seq: seq, id: d.Activity.ID, d: d, key: key, due: s.w.resumeAt(d, md),
		full: s.w.Batch != nil || s.w.Rules.HasWhen(), size: held.HandleBytes(msg)}
	s.acct.Charge(h.size)
	s.held[seq] = h
	l := s.byKey[key]
	if l == nil {
		l = &lane{key: key}
		s.byKey[key] = l
	}
	i, _ := slices.BinarySearchFunc(l.queue, seq, func(h *waiting, seq uint64) int { return compareSeq(h.seq, seq) })
	l.queue = slices.Insert(l.queue, i, h)
	s.keepData(h, msg.Data(), md.Stream)
	s.schedule(l)
}

// keepData keeps a held activity's data while it fits in half the budget;
// beyond that it is read again when the activity's turn comes (and then
// kept, if it fits, for its retries). (The ACTIVITIES stream is where an
// ordered destination's consumer reads; any other keeps its data.)
func (s *orderSession) keepData(h *waiting, data []byte, stream string) {
	d, n := h.d, int64(len(data))
	switch {
	case stream != store.StreamActivities:
		h.data = data
		h.size += n
		s.acct.Charge(n)
	case s.acct.TryWarm(n):
		h.data = data
		h.size += n
	default:
		d.Activity, d.Raw = nil, nil
	}
	if h.full { // decoded from its JSON: as large again as its data
		d.Activity = nil
	}
}

// headerPinID names the pinned client an activity was delivered to.
const headerPinID = "Nats-Pin-Id"

func compareSeq(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// schedule makes a lane runnable when its head is due, or sets a timer for
// when it will be. Called with s.mu held.
func (s *orderSession) schedule(l *lane) {
	if l.busy || len(l.queue) == 0 || s.gate != nil || s.ctx.Err() != nil {
		return
	}
	l.busy = true
	if wait := time.Until(l.queue[0].due); wait > 0 {
		l.timer = time.AfterFunc(wait, func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			l.busy, l.timer = false, nil
			s.schedule(l)
		})
		return
	}
	s.runnable = append(s.runnable, l)
	s.ready.Signal()
}

// work attempts runnable lanes' heads until the session ends.
func (s *orderSession) work() {
	defer s.workers.Done()
	for {
		s.mu.Lock()
		for len(s.runnable) == 0 && s.ctx.Err() == nil {
			s.ready.Wait()
		}
		if s.ctx.Err() != nil {
			s.mu.Unlock()
			return
		}
		l := s.runnable[0]
		s.runnable[0] = nil
		s.runnable = s.runnable[1:]
		h := l.queue[0]
		s.mu.Unlock()
		done := s.attempt(h)
		s.mu.Lock()
		l.busy = false
		if done {
			// Not always the head now: an older activity that came back
			// meanwhile (its acknowledgement lost) was put in front.
			if i := slices.Index(l.queue, h); i >= 0 {
				l.queue = slices.Delete(l.queue, i, i+1)
			}
			if s.held[h.seq] == h {
				delete(s.held, h.seq)
				s.acct.Release(h.size)
			}
		} else {
			h.rest()
		}
		if len(l.queue) == 0 {
			delete(s.byKey, l.key)
		} else {
			s.schedule(l)
		}
		s.mu.Unlock()
	}
}

// attempt makes one attempt of a lane's head and settles it; true when the
// activity is done with (delivered or a dead letter).
func (s *orderSession) attempt(h *waiting) bool {
	w := s.w
	if !w.Active() { // the session is ending: the activity will be handed back
		wait := time.Until(time.Unix(0, w.throttled.Load()))
		if w.paused.Load() {
			wait = time.Second
		}
		timer := time.NewTimer(min(max(wait, 100*time.Millisecond), time.Second))
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-s.ctx.Done():
		}
		return false
	}
	select { // the breaker's ramp-up may hold some of the slots
	case w.slots <- struct{}{}:
	case <-s.ctx.Done():
		return false
	}
	defer func() { <-w.slots }()
	msg, ok := s.load(h)
	if !ok {
		return msg == nil
	}
	// Checked before the wait, so an activity that will not be sent takes
	// no rate-limit token; again after it, for an opt-out meanwhile.
	if w.suppressed(context.WithoutCancel(s.ctx), msg, h.d) {
		return true
	}
	if !w.wait(s.ctx, msg) {
		return false
	}
	if !w.st.Calls.Take(s.ctx, nil) {
		return false
	}
	w.inflight.Add(1)
	defer w.inflight.Done()
	ctx := context.WithoutCancel(s.ctx) // an attempt in flight finishes on shutdown
	d := h.d
	if w.suppressed(ctx, msg, d) {
		w.st.Calls.Release()
		return true
	}
	span := w.st.Tracing.StartAttempt(ctx, &w.Cfg, msg.Headers(), &d.Delivery)
	at := w.Sink.Deliver(ctx, &d.Delivery)
	w.st.Calls.Release()
	out := w.settle(ctx, msg, d, at)
	span.End(at, out)
	if out.Action != schedule.Retry && out.Action != schedule.Pause {
		return true
	}
	h.due = time.Now().Add(max(out.In, time.Millisecond))
	d.Attempt++
	d.history, d.historyRead = nil, false
	return false
}

// load gives a held activity its data and decoded form for an attempt:
// the warm data, or the stored activity read again by sequence. Not ok:
// with a nil message it was settled here (a dead letter: the activity is
// gone from the stream), else it could not be read now and waits a while.
func (s *orderSession) load(h *waiting) (jetstream.Msg, bool) {
	w := s.w
	data := h.data
	if data == nil {
		var err error
		data, err = w.ReadActivity(s.ctx, h.seq)
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
			w.Undecodable(context.WithoutCancel(s.ctx), h.msg, err)
			return nil, false
		case err != nil:
			if s.ctx.Err() == nil {
				w.log.Warn("reading a held activity; trying again", "sequence", h.seq, "error", err)
			}
			h.due = time.Now().Add(heldReadRetry)
			return h.msg, false
		}
		// Kept for its retries when it fits: each read of a stored
		// activity has the server load its whole block.
		if s.acct.TryWarm(int64(len(data))) {
			h.data = data
			h.size += int64(len(data))
		}
	}
	msg := &refMsg{Msg: h.msg, data: data}
	if h.d.Activity == nil {
		a, err := store.ReadActivity(msg, h.full)
		if err != nil { // it was read when it arrived: not the same bytes
			w.Undecodable(context.WithoutCancel(s.ctx), msg, err)
			return nil, false
		}
		h.d.Activity = a
	}
	h.d.Raw = data
	return msg, true
}

// resuming reports whether the lanes wait for activities out elsewhere
// (the gate).
func (s *orderSession) resuming() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gate != nil
}

// heldReadRetry is how long a lane waits when its head's data could not
// be read from the stream.
const heldReadRetry = 2 * time.Second
