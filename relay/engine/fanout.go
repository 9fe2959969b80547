// The fan-out reads every stored activity once, for all the destinations
// that take activities one at a time without order (webhooks, most of
// them), matches it against each one's rules and hands it to their workers
// in this process. Each destination's durable consumer then carries only
// what leaves that fast path: retries, activities handed back (a pause, an
// open breaker, a shutdown, a destination slower than the rest) and
// replays, on relay.queue.<destination> (stream QUEUES).
//
// Why: JetStream writes a durable consumer's state to disk up to ten times
// a second while it is busy, so with a consumer per destination a busy
// relay of a thousand destinations wrote ten thousand state files a
// second (half its CPU in a profile). One consumer for the first attempt
// makes that cost flat in the number of destinations.
//
// What is never lost: a stored activity is acked on the fan-out consumer
// only once each destination that takes it has settled its share:
// delivered, a dead letter, or a copy stored on the destination's own
// subject (the publish acked). A crash before that redelivers the activity
// to every destination that takes it (at least once, as before).

package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/relaydev/relay/relay/activity"
	"github.com/relaydev/relay/relay/deliver"
	"github.com/relaydev/relay/relay/expr"
	"github.com/relaydev/relay/relay/held"
	"github.com/relaydev/relay/relay/store"
)

const (
	// fanoutBuffer is how many activities one pull of the fan-out asks
	// for (and at most PullBytes of them).
	fanoutBuffer = 256
	// fanoutMaxAckPending bounds the activities out at once on the fan-out
	// consumer, in all processes.
	fanoutMaxAckPending = 20000
	// fanoutKeepAlive: an activity held longer than the fan-out
	// consumer's ack wait (its shares still being attempted) is kept alive
	// this often by this process.
	fanoutKeepAlive = store.FanoutAckWait / 4
	// fanoutHandoffs bounds the copies being stored at once.
	fanoutHandoffs = 256
	// maxRoutes bounds the cache of which destinations take which name.
	maxRoutes = 10000
)

// Fanout is the one reader of the stored activities for the fanned
// destinations of this process.
type Fanout struct {
	bus *store.Bus
	log *slog.Logger

	cons    jetstream.Consumer
	workers atomic.Pointer[fanSet]

	handoffs chan struct{} // one token per copy being stored
	wg       sync.WaitGroup

	mu   sync.Mutex
	held map[*fanMsg]time.Time // activities with shares still out, since when
	// acct is the fan-out's share of engine.max_held_bytes: the
	// activities in held count until settled.
	acct *held.Account

	// lastRead is the stream sequence of the last activity read: a
	// consumer deleted under the fan-out is made again from the next one.
	lastRead atomic.Uint64

	// onDispatch, when set (by tests), is told how long the reader took
	// to give each activity to its destinations.
	onDispatch atomic.Pointer[func(time.Duration)]
}

// fanSet is the fanned workers and, per activity name, those whose
// include and exclude take it.
type fanSet struct {
	workers []*deliver.Worker
	byName  map[string]*deliver.Worker
	mu      sync.RWMutex
	routes  map[string][]*deliver.Worker
}

func newFanout(bus *store.Bus, held *held.Budget, log *slog.Logger) *Fanout {
	f := &Fanout{bus: bus, log: log.With("consumer", store.FanoutConsumer),
		handoffs: make(chan struct{}, fanoutHandoffs), held: map[*fanMsg]time.Time{}, acct: held.Account()}
	f.workers.Store(&fanSet{routes: map[string][]*deliver.Worker{}, byName: map[string]*deliver.Worker{}})
	return f
}

// setWorkers replaces the destinations the fan-out feeds (at start and on
// every reload).
func (f *Fanout) setWorkers(all []*deliver.Worker) {
	if f == nil {
		return
	}
	set := &fanSet{routes: map[string][]*deliver.Worker{}, byName: map[string]*deliver.Worker{}}
	for _, w := range all {
		if w.Fanned() {
			set.workers = append(set.workers, w)
			set.byName[w.Name] = w
		}
	}
	f.workers.Store(set)
}

// route returns the workers whose include and exclude take name.
func (s *fanSet) route(name string) []*deliver.Worker {
	s.mu.RLock()
	ws, ok := s.routes[name]
	s.mu.RUnlock()
	if ok {
		return ws
	}
	for _, w := range s.workers {
		if w.Rules.MatchName(name) {
			ws = append(ws, w)
		}
	}
	s.mu.Lock()
	if len(s.routes) >= maxRoutes {
		clear(s.routes)
	}
	s.routes[name] = ws
	s.mu.Unlock()
	return ws
}

// Ensure creates the fan-out consumer, or updates it. Created for the
// first time over destinations' consumers of an earlier Relay (which read
// activities themselves), it starts after the oldest activity one of them
// had not settled, so nothing they held is skipped. An existing one keeps
// the deliver policy (and start) it was made with: JetStream refuses to
// change it.
func (f *Fanout) Ensure(ctx context.Context, workers []*deliver.Worker) error {
	return f.ensure(ctx, true, func() uint64 { return f.unsettledFrom(ctx, workers) })
}

// rebind binds the fan-out consumer again after its pull failed, as it
// is. One that is gone (deleted) is made again, starting after the last
// activity this process read, so what was stored meanwhile is read.
func (f *Fanout) rebind(ctx context.Context) error {
	return f.ensure(ctx, false, func() uint64 {
		if seq := f.lastRead.Load(); seq > 0 {
			return seq + 1
		}
		return f.unsettledFrom(ctx, f.workers.Load().workers)
	})
}

// ensure binds the fan-out consumer, updated to this Relay's settings
// when update is set, made when it does not exist: starting at from()'s
// Stream sequence, or with new activities when that is 0.
func (f *Fanout) ensure(ctx context.Context, update bool, from func() uint64) error {
	cfg := jetstream.ConsumerConfig{
		Durable:       store.FanoutConsumer,
		Description:   "Relay: every stored activity, read once and fanned out to the destinations",
		FilterSubject: "activities.>",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       store.FanoutAckWait,
		MaxDeliver:    -1,
		MaxAckPending: fanoutMaxAckPending,
		DeliverPolicy: jetstream.DeliverNewPolicy,
	}
	// Two rounds: another process may make or delete the consumer between
	// the look-up and the create or update.
	for round := 0; ; round++ {
		cons, err := f.bus.JS.Consumer(ctx, store.StreamActivities, store.FanoutConsumer)
		switch {
		case err == nil && !update:
		case err == nil:
			// Where a consumer starts is fixed when it is made.
			cur := cons.CachedInfo().Config
			cfg.DeliverPolicy, cfg.OptStartSeq, cfg.OptStartTime = cur.DeliverPolicy, cur.OptStartSeq, cur.OptStartTime
			cons, err = f.bus.JS.UpdateConsumer(ctx, store.StreamActivities, cfg)
			if errors.Is(err, jetstream.ErrConsumerDoesNotExist) && round == 0 {
				continue
			}
		case errors.Is(err, jetstream.ErrConsumerNotFound):
			if seq := from(); seq > 0 {
				cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, seq
			}
			cons, err = f.bus.JS.CreateConsumer(ctx, store.StreamActivities, cfg)
			if errors.Is(err, jetstream.ErrConsumerExists) && round == 0 {
				cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverNewPolicy, 0
				continue
			}
			if err == nil {
				f.log.Info("made the fan-out's consumer", "deliver_policy", cfg.DeliverPolicy.String(), "start_sequence", cfg.OptStartSeq)
			}
		}
		if err != nil {
			return fmt.Errorf("consumer %s: %w", store.FanoutConsumer, err)
		}
		f.cons = cons
		return nil
	}
}

// unsettledFrom is the first stream sequence a fanned destination's
// existing consumer still reads activities from and has not settled; 0
// when there is none.
func (f *Fanout) unsettledFrom(ctx context.Context, workers []*deliver.Worker) uint64 {
	var from uint64
	for _, w := range workers {
		if !w.Fanned() {
			continue
		}
		cons, err := f.bus.JS.Consumer(ctx, store.StreamActivities, store.ConsumerName(w.Name))
		if err != nil {
			continue
		}
		ci := cons.CachedInfo()
		reads := ci.Config.FilterSubject != "" && ci.Config.FilterSubject != store.SubjectRedeliver+w.Name
		for _, s := range ci.Config.FilterSubjects {
			reads = reads || s != store.SubjectRedeliver+w.Name
		}
		// (A fanned destination's own consumer is on QUEUES: one on
		// ACTIVITIES is an earlier Relay's, which read activities itself.)
		if !reads || ci.NumPending+uint64(ci.NumAckPending) == 0 {
			continue
		}
		if seq := ci.AckFloor.Stream + 1; from == 0 || seq < from {
			from = seq
		}
	}
	return from
}

// listen wakes a fanned destination's sleeping worker whenever anything
// is stored on its own subject, by any process; call the returned
// function to stop.
func (f *Fanout) listen() (stop func()) {
	sub, err := f.bus.NC.Subscribe(store.SubjectQueue+">", func(m *nats.Msg) {
		if w := f.workers.Load().byName[strings.TrimPrefix(m.Subject, store.SubjectQueue)]; w != nil {
			w.Wake()
		}
	})
	if err != nil {
		f.log.Warn("subscribing to the destinations' queues; idle destinations look again every few minutes", "error", err)
		return func() {}
	}
	return func() { _ = sub.Unsubscribe() }
}

// Run reads and fans out activities until ctx is done, then waits for the
// copies it is storing.
func (f *Fanout) Run(ctx context.Context) {
	defer f.wg.Wait()
	f.wg.Add(1)
	go func() { defer f.wg.Done(); f.keepAlive(ctx) }()
	bo := backoff.NewExponentialBackOff(backoff.WithMaxInterval(10*time.Second), backoff.WithMaxElapsedTime(0))
	for ctx.Err() == nil {
		err := f.pull(ctx)
		if err == nil {
			bo.Reset()
			continue
		}
		delay := bo.NextBackOff()
		f.log.Warn("reading activities failed; retrying", "error", err, "in", delay)
		select {
		case <-ctx.Done():
		case <-time.After(delay):
		}
	}
}

// pull reads activities until ctx is done or the read fails. After a
// failure the consumer is looked up again (rebind): it may be gone (a
// deleted consumer leaves the iterator waiting on nothing).
func (f *Fanout) pull(ctx context.Context) error {
	if f.cons == nil {
		if err := f.rebind(ctx); err != nil {
			return err
		}
	}
	// Past engine.max_held_bytes no pull is open: wait for shares to settle.
	if !f.acct.WaitRoom(ctx, func() bool { return true }) {
		return nil
	}
	// At most fanoutBuffer activities, and PullBytes a request (256 of
	// the largest were 128 MiB).
	it, err := f.cons.Messages(jetstream.PullMaxMessagesWithBytesLimit(fanoutBuffer, f.bus.PullBytes()), jetstream.PullExpiry(deliver.PullExpiry), jetstream.PullHeartbeat(deliver.PullHeartbeat))
	if err != nil {
		f.cons = nil
		return fmt.Errorf("consume: %w", err)
	}
	stop := context.AfterFunc(ctx, it.Drain)
	defer stop()
	full := false
	err = store.ReadMessages(it, nil, func(msg jetstream.Msg) {
		if full {
			// Buffered when the fan-out reached engine.max_held_bytes:
			// handed back now rather than left to pass the ack wait.
			if err := msg.Nak(); err != nil {
				f.log.Warn("handing back an activity read past the held-bytes bound failed; it is read again after the ack wait", "wait", store.FanoutAckWait, "error", err)
			}
			return
		}
		if ctx.Err() != nil {
			// Pulled on the way out: another process takes it now.
			if err := msg.Nak(); err != nil {
				f.log.Warn("handing back an activity read on the way out failed; it is read again after the ack wait", "wait", store.FanoutAckWait, "error", err)
			}
			return
		}
		if hook := f.onDispatch.Load(); hook != nil {
			start := time.Now()
			f.dispatch(ctx, msg)
			(*hook)(time.Since(start))
			return
		}
		f.dispatch(ctx, msg)
		if !f.acct.HasRoom() {
			full = true
			it.Drain()
		}
	})
	if err != nil {
		f.cons = nil
	}
	return err
}

// dispatch matches one activity against every fanned destination and
// gives each that takes it its share: first to every destination with a
// free attempt slot, then, all at once, to those that need to wait for
// one (so one activity holds the reader at most one FanoutSlotWait
// however many destinations are slow, and no destination waits behind
// another), and hands the rest over to their own subjects.
func (f *Fanout) dispatch(ctx context.Context, msg jetstream.Msg) {
	md, mdErr := msg.Metadata()
	if mdErr != nil {
		md = &jetstream.MsgMetadata{NumDelivered: 1, Timestamp: time.Now()}
	} else if seq := md.Sequence.Stream; seq > f.lastRead.Load() {
		f.lastRead.Store(seq) // (only the reader stores it)
	}
	set := f.workers.Load()
	name, fromSubject := activity.NameFromSubject(msg.Subject())
	candidates := set.workers
	if fromSubject {
		candidates = set.route(name)
	}
	var shares []share
	var readErr error
	if len(candidates) > 0 {
		shares, readErr = match(msg, candidates, fromSubject)
	}
	if len(shares) == 0 {
		f.ack(msg)
		return
	}
	m := &fanMsg{f: f, msg: msg, md: md}
	m.left.Store(int32(len(shares)))
	f.hold(m)
	f.give(ctx, m, shares, readErr)
}

// share is what one destination gets of an activity: the activity to
// offer, or a dead letter saying why (over: its `when` went past its
// budget; no activity: the stored one cannot be read).
type share struct {
	w    *deliver.Worker
	a    *activity.Activity
	over error
}

// match decides which of the candidates take the activity msg holds, each
// a share. One that cannot be read is a dead letter for every destination
// its name selects (readErr says why).
func match(msg jetstream.Msg, candidates []*deliver.Worker, fromSubject bool) (shares []share, readErr error) {
	full := !fromSubject
	for _, w := range candidates {
		full = full || w.Rules.HasWhen()
	}
	a, err := store.ReadActivity(msg, full)
	if err != nil {
		for _, w := range candidates {
			shares = append(shares, share{w: w})
		}
		return shares, err
	}
	// The `when` rules' input is made once, for all of them: it decodes
	// contact and attributes.
	var in *expr.Input
	var inErr error
	for _, w := range candidates {
		if !fromSubject && !w.Rules.MatchName(a.Name) {
			continue
		}
		if w.Rules.HasWhen() && in == nil && inErr == nil {
			in, inErr = expr.NewInput(a)
		}
		if ok, err := w.Rules.MatchInput(in, inErr); !ok {
			if err != nil {
				w.RuleError(a, err)
				if errors.Is(err, expr.ErrBudget) {
					shares = append(shares, share{w: w, a: a, over: err})
				}
			}
			continue
		}
		shares = append(shares, share{w: w, a: a})
	}
	return shares, nil
}

// give gives each share to its destination: first to every one with a
// free attempt slot, then, all at once, to those that need to wait for one;
// the rest are handed over to their own subjects.
func (f *Fanout) give(ctx context.Context, m *fanMsg, shares []share, readErr error) {
	var waits []offered // no free slot: waited on together
	var back []*shareMsg
	for _, s := range shares {
		sm := &shareMsg{m: m, w: s.w}
		switch {
		case s.a == nil:
			f.wg.Add(1)
			go func() { defer f.wg.Done(); s.w.Undecodable(context.WithoutCancel(ctx), sm, readErr) }()
		case s.over != nil:
			f.wg.Add(1)
			go func() { defer f.wg.Done(); s.w.OverBudget(context.WithoutCancel(ctx), sm, s.a, s.over) }()
		case s.w.Offer(sm, s.a, false):
		case s.w.Detached() || !s.w.Active(): // no wait would take it
			back = append(back, sm)
		default:
			waits = append(waits, offered{sm: sm, a: s.a})
		}
	}
	back = append(back, f.waitSlots(waits)...)
	for _, sm := range back {
		f.handBack(ctx, sm)
	}
}

// offered is a share offered to its destination's worker while it had no
// free attempt slot.
type offered struct {
	sm *shareMsg
	a  *activity.Activity
}

// waitSlots offers each share again, waiting up to FanoutSlotWait for a
// free slot, all at once, and returns those not taken.
func (f *Fanout) waitSlots(waits []offered) (notTaken []*shareMsg) {
	if len(waits) == 0 {
		return nil
	}
	taken := make([]bool, len(waits))
	var wg sync.WaitGroup
	for i, o := range waits[1:] {
		wg.Add(1)
		go func() { defer wg.Done(); taken[i+1] = o.sm.w.Offer(o.sm, o.a, true) }()
	}
	taken[0] = waits[0].sm.w.Offer(waits[0].sm, waits[0].a, true)
	wg.Wait()
	for i, o := range waits {
		if !taken[i] {
			notTaken = append(notTaken, o.sm)
		}
	}
	return notTaken
}

// ack acks an activity no destination takes.
func (f *Fanout) ack(msg jetstream.Msg) {
	if err := msg.Ack(); err != nil {
		f.log.Warn("ack failed; the activity may be delivered again (no destination takes it)", "error", err)
	}
}

// handBack stores a share on its destination's own subject, in the
// background, a bounded number at a time.
func (f *Fanout) handBack(ctx context.Context, s *shareMsg) {
	select {
	case f.handoffs <- struct{}{}:
	case <-ctx.Done():
		// Shutting down: store it from here, the activity stays unacked
		// until it is stored.
		_ = s.Nak() // a failure is logged there, and has the activity read again
		return
	}
	f.wg.Add(1)
	go func() {
		defer func() { <-f.handoffs; f.wg.Done() }()
		_ = s.Nak() // a failure is logged there, and has the activity read again
	}()
}

func (f *Fanout) hold(m *fanMsg) {
	m.size = held.MsgBytes(m.msg)
	f.acct.Charge(m.size)
	f.mu.Lock()
	f.held[m] = time.Now()
	f.mu.Unlock()
}

// settled is called once every share of m is settled: m is acked, or
// handed back to be read again when a share could not be stored.
func (f *Fanout) settled(m *fanMsg) {
	f.mu.Lock()
	delete(f.held, m)
	f.mu.Unlock()
	f.acct.Release(m.size)
	if m.failed.Load() {
		if err := m.msg.NakWithDelay(time.Second); err != nil {
			f.log.Warn("handing back an activity a share of which could not be stored failed; it is read again after the ack wait",
				"wait", store.FanoutAckWait, "error", err)
		}
		return
	}
	if err := store.Ack(f.bus, m.msg, store.FanoutAckWait); err != nil {
		f.log.Warn("ack failed; the activity may be delivered again", "error", err)
	}
}

// keepAlive tells JetStream the activities held longer than
// fanoutKeepAlive are still being worked on.
func (f *Fanout) keepAlive(ctx context.Context) {
	tick := time.NewTicker(fanoutKeepAlive)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		var old []*fanMsg
		f.mu.Lock()
		for m, since := range f.held {
			if time.Since(since) >= fanoutKeepAlive {
				old = append(old, m)
			}
		}
		f.mu.Unlock()
		var failed int
		var last error
		for _, m := range old {
			if err := m.msg.InProgress(); err != nil && !errors.Is(err, jetstream.ErrMsgAlreadyAckd) {
				failed, last = failed+1, err
			}
		}
		if failed > 0 {
			f.log.Warn("telling JetStream activities are still being worked on failed; past the ack wait they may be delivered again",
				"activities", failed, "wait", store.FanoutAckWait, "error", last)
		}
	}
}

// fanMsg is one activity read by the fan-out and the count of its shares
// not yet settled.
type fanMsg struct {
	f      *Fanout
	msg    jetstream.Msg
	md     *jetstream.MsgMetadata
	left   atomic.Int32
	failed atomic.Bool // a share could not be stored: read it again
	size   int64       // bytes charged to engine.max_held_bytes
}

// shareMsg is one destination's share of an activity. It stands for the
// message in the worker's stages (attempt, settle): acking it settles the
// share, a NAK (with its delay) stores a copy on the destination's own
// subject, for its consumer to attempt again.
type shareMsg struct {
	m    *fanMsg
	w    *deliver.Worker
	done atomic.Bool
}

var _ jetstream.Msg = (*shareMsg)(nil)

func (s *shareMsg) settle(ok bool) error {
	if !s.done.CompareAndSwap(false, true) {
		return nil
	}
	if !ok {
		s.m.failed.Store(true)
	}
	if s.m.left.Add(-1) == 0 {
		s.m.f.settled(s.m)
	}
	return nil
}

func (s *shareMsg) Metadata() (*jetstream.MsgMetadata, error) { return s.m.md, nil }
func (s *shareMsg) Data() []byte                              { return s.m.msg.Data() }
func (s *shareMsg) Headers() nats.Header                      { return s.m.msg.Headers() }
func (s *shareMsg) Subject() string                           { return s.m.msg.Subject() }
func (s *shareMsg) Reply() string                             { return s.m.msg.Reply() }
func (s *shareMsg) Ack() error                                { return s.settle(true) }
func (s *shareMsg) DoubleAck(context.Context) error           { return s.settle(true) }
func (s *shareMsg) Term() error                               { return s.settle(true) }
func (s *shareMsg) TermWithReason(string) error               { return s.settle(true) }
func (s *shareMsg) InProgress() error                         { return s.m.msg.InProgress() }
func (s *shareMsg) Nak() error                                { return s.NakWithDelay(0) }

// NakWithDelay stores a copy of the activity on the destination's own
// subject, due after delay, and settles the share once the copy is
// stored; a copy that cannot be stored has the whole activity read again.
func (s *shareMsg) NakWithDelay(delay time.Duration) error {
	if s.done.Load() {
		return nil
	}
	err := s.m.f.storeCopy(s, delay)
	if err != nil {
		s.m.f.log.Warn("storing an activity for its destination failed; it is read again", "destination", s.w.Name, "error", err)
	}
	_ = s.settle(err == nil)
	return err
}

// storeCopy publishes the share on relay.queue.<destination>, as
// headers naming the stored activity (store.HeaderSeq). Its
// Nats-Msg-Id (with a space, which no activity id has) makes a second
// copy of the same share, after a crash, a duplicate JetStream drops.
func (f *Fanout) storeCopy(s *shareMsg, delay time.Duration) error {
	mctx, mcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer mcancel()
	if err := s.w.MakeQueue(mctx); err != nil {
		return err
	}
	src := s.m.msg.Headers()
	h := nats.Header{}
	for _, k := range []string{store.HeaderID, store.HeaderName, store.HeaderOccurredAt} {
		if v := src.Get(k); v != "" {
			h.Set(k, v)
		}
	}
	if h.Get(store.HeaderID) == "" {
		h.Set(store.HeaderID, src.Get(jetstream.MsgIDHeader))
	}
	store.CopyTrace(h, src)
	h.Set(store.HeaderSince, s.m.md.Timestamp.UTC().Format(time.RFC3339Nano))
	if delay > 0 {
		h.Set(store.HeaderNotBefore, time.Now().Add(delay).UTC().Format(time.RFC3339Nano))
	}
	seq := strconv.FormatUint(s.m.md.Sequence.Stream, 10)
	h.Set(store.HeaderSeq, seq)
	h.Set(jetstream.MsgIDHeader, "fanout "+s.w.Name+" "+seq)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	msg := &nats.Msg{Subject: s.w.OwnSubject(), Header: h}
	_, err := f.bus.JS.PublishMsg(ctx, msg, jetstream.WithExpectStream(store.StreamQueues), jetstream.WithRetryAttempts(20), jetstream.WithRetryWait(250*time.Millisecond))
	return err
}
