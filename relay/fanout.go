// The fan-out reads every stored activity once, for all the destinations
// that take activities one at a time without order (webhooks, most of
// them), matches it against each one's rules and hands it to their workers
// in this process. Each destination's durable consumer then carries only
// what leaves that fast path: retries, activities handed back (a pause, an
// open breaker, a shutdown, a destination slower than the rest) and
// replays, on relay.redeliver.<destination>.
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

package relay

import (
	"context"
	"encoding/json"
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
	"github.com/relaydev/relay/relay/expr"
)

const (
	// FanoutConsumer is the durable consumer every process reads the
	// stored activities from once; a destination's own consumer is
	// "relay_" + its name, so no destination name can take this one.
	FanoutConsumer = "relay-fanout"

	// headerSince is when the run of attempts a handed-back copy continues
	// began (the activity's stored time): attempts, max_age and the
	// schedule count from there, not from the copy's own time.
	headerSince = "Relay-Since"
	// headerNotBefore is when a handed-back copy's next attempt is due
	// (a retry's delay).
	headerNotBefore = "Relay-Not-Before"
	// headerSeq is the stream sequence of the activity a handed-back copy
	// stands for: the copy holds headers only, the worker reads the
	// activity when it attempts it, so a backlog is not stored twice.
	headerSeq = "Relay-Seq"

	// fanoutBuffer is how many activities one pull of the fan-out asks for.
	fanoutBuffer = 256
	// fanoutMaxAckPending bounds the activities out at once on the fan-out
	// consumer, in all processes.
	fanoutMaxAckPending = 20000
	// fanoutAckWait is the fan-out consumer's ack wait: an activity held
	// longer (its shares still being attempted) is kept alive every
	// fanoutKeepAlive by this process.
	fanoutAckWait   = time.Minute
	fanoutKeepAlive = fanoutAckWait / 4
	// fanoutSlotWait is how long the fan-out waits for a destination's
	// free attempt slot before it hands the activity to the destination's
	// own consumer and stops waiting on it for a while (detachMin, doubling
	// up to detachMax while that goes on): one slow destination must not
	// hold the others back.
	fanoutSlotWait = 250 * time.Millisecond
	detachMin      = time.Second
	detachMax      = 30 * time.Second
	// fanoutHandoffs bounds the copies being stored at once.
	fanoutHandoffs = 256
	// maxRoutes bounds the cache of which destinations take which name.
	maxRoutes = 10000
)

// fanned reports whether the worker takes its first attempts from the
// fan-out rather than from its own consumer: destinations with order:
// contact (lanes over a pinned consumer), batch connectors (which gather
// from their consumer) and relay-alerts (its own subject) keep their own.
func (w *Worker) fanned() bool {
	return w.Batch == nil && !w.ordered() && !w.Rules.own
}

// Fanout is the one reader of the stored activities for the fanned
// destinations of this process.
type Fanout struct {
	bus *Bus
	log *slog.Logger

	cons    jetstream.Consumer
	workers atomic.Pointer[fanSet]

	handoffs chan struct{} // one token per copy being stored
	wg       sync.WaitGroup

	mu   sync.Mutex
	held map[*fanMsg]time.Time // activities with shares still out, since when
}

// fanSet is the fanned workers and, per activity name, those whose
// include and exclude take it.
type fanSet struct {
	workers []*Worker
	byName  map[string]*Worker
	mu      sync.RWMutex
	routes  map[string][]*Worker
}

func newFanout(bus *Bus, log *slog.Logger) *Fanout {
	f := &Fanout{bus: bus, log: log.With("consumer", FanoutConsumer),
		handoffs: make(chan struct{}, fanoutHandoffs), held: map[*fanMsg]time.Time{}}
	f.workers.Store(&fanSet{routes: map[string][]*Worker{}, byName: map[string]*Worker{}})
	return f
}

// setWorkers replaces the destinations the fan-out feeds (at start and on
// every reload).
func (f *Fanout) setWorkers(all []*Worker) {
	if f == nil {
		return
	}
	set := &fanSet{routes: map[string][]*Worker{}, byName: map[string]*Worker{}}
	for _, w := range all {
		if w.fanned() {
			set.workers = append(set.workers, w)
			set.byName[w.Name] = w
		}
	}
	f.workers.Store(set)
}

// route returns the workers whose include and exclude take name.
func (s *fanSet) route(name string) []*Worker {
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
// had not settled, so nothing they held is skipped.
func (f *Fanout) Ensure(ctx context.Context, workers []*Worker) error {
	cfg := jetstream.ConsumerConfig{
		Durable:       FanoutConsumer,
		Description:   "Relay: every stored activity, read once and fanned out to the destinations",
		FilterSubject: "activities.>",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       fanoutAckWait,
		MaxDeliver:    -1,
		MaxAckPending: fanoutMaxAckPending,
		DeliverPolicy: jetstream.DeliverNewPolicy,
	}
	if _, err := f.bus.JS.Consumer(ctx, StreamActivities, FanoutConsumer); errors.Is(err, jetstream.ErrConsumerNotFound) {
		if seq := f.unsettledFrom(ctx, workers); seq > 0 {
			cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, seq
		}
	}
	cons, err := f.bus.JS.CreateOrUpdateConsumer(ctx, StreamActivities, cfg)
	if err != nil {
		return fmt.Errorf("create consumer %s: %w", FanoutConsumer, err)
	}
	f.cons = cons
	return nil
}

// unsettledFrom is the first stream sequence a fanned destination's
// existing consumer still reads activities from and has not settled; 0
// when there is none.
func (f *Fanout) unsettledFrom(ctx context.Context, workers []*Worker) uint64 {
	var from uint64
	for _, w := range workers {
		if !w.fanned() {
			continue
		}
		cons, err := f.bus.JS.Consumer(ctx, StreamActivities, ConsumerName(w.Name))
		if err != nil {
			continue
		}
		ci := cons.CachedInfo()
		reads := ci.Config.FilterSubject != "" && ci.Config.FilterSubject != subjectRedeliver+w.Name
		for _, s := range ci.Config.FilterSubjects {
			reads = reads || s != subjectRedeliver+w.Name
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
	sub, err := f.bus.NC.Subscribe(subjectQueue+">", func(m *nats.Msg) {
		if w := f.workers.Load().byName[strings.TrimPrefix(m.Subject, subjectQueue)]; w != nil {
			w.wake()
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

func (f *Fanout) pull(ctx context.Context) error {
	if f.cons == nil {
		if err := f.Ensure(ctx, f.workers.Load().workers); err != nil {
			return err
		}
	}
	it, err := f.cons.Messages(jetstream.PullMaxMessages(fanoutBuffer), jetstream.PullExpiry(pullExpiry), jetstream.PullHeartbeat(pullHeartbeat))
	if err != nil {
		f.cons = nil
		return fmt.Errorf("consume: %w", err)
	}
	stop := context.AfterFunc(ctx, it.Drain)
	defer stop()
	return readMessages(it, nil, func(msg jetstream.Msg) {
		if ctx.Err() != nil {
			_ = msg.Nak() // pulled on the way out: another process takes it now
			return
		}
		f.dispatch(ctx, msg)
	})
}

// dispatch matches one activity against every fanned destination and
// gives each that takes it its share.
func (f *Fanout) dispatch(ctx context.Context, msg jetstream.Msg) {
	set := f.workers.Load()
	name, fromSubject := activity.NameFromSubject(msg.Subject())
	candidates := set.workers
	if fromSubject {
		candidates = set.route(name)
	}
	if len(candidates) == 0 {
		_ = msg.Ack()
		return
	}
	full := !fromSubject
	for _, w := range candidates {
		full = full || w.Rules.when != nil
	}
	a, err := readStored(msg, full)
	md, mdErr := msg.Metadata()
	if mdErr != nil {
		md = &jetstream.MsgMetadata{NumDelivered: 1, Timestamp: time.Now()}
	}
	m := &fanMsg{f: f, msg: msg, md: md}
	type share struct {
		w *Worker
		d *Delivery
	}
	var shares []share
	if err != nil { // every destination its name selects gets a dead letter saying why
		for _, w := range candidates {
			shares = append(shares, share{w: w})
		}
	} else {
		// The `when` rules' input is made once, for all of them: it
		// decodes contact and attributes.
		var in *expr.Input
		var inErr error
		for _, w := range candidates {
			if !fromSubject && !w.Rules.MatchName(a.Name) {
				continue
			}
			if w.Rules.when != nil && in == nil && inErr == nil {
				in, inErr = expr.NewInput(a)
			}
			if ok, err := w.Rules.matchInput(in, inErr); !ok {
				if err != nil {
					w.ruleError(a, err)
				}
				continue
			}
			shares = append(shares, share{w: w, d: &Delivery{Activity: a, Raw: msg.Data(), Attempt: 1}})
		}
	}
	if len(shares) == 0 {
		_ = msg.Ack()
		return
	}
	m.left.Store(int32(len(shares)))
	f.hold(m)
	for _, s := range shares {
		sm := &shareMsg{m: m, w: s.w}
		if s.d == nil {
			f.wg.Add(1)
			go func() { defer f.wg.Done(); s.w.undecodable(context.WithoutCancel(ctx), sm, err) }()
			continue
		}
		if !s.w.offer(sm, s.d) {
			f.handBack(ctx, sm)
		}
	}
}

// decodeStored decodes a stored activity's JSON.
func decodeStored(data []byte) (*activity.Activity, error) {
	a := &activity.Activity{}
	if err := json.Unmarshal(data, a); err != nil {
		return nil, fmt.Errorf("stored activity is not valid JSON: %w", err)
	}
	if a.ID == "" || a.Name == "" {
		return nil, errors.New("stored activity has no id or name")
	}
	return a, nil
}

// handBack stores a share on its destination's own subject, in the
// background, a bounded number at a time.
func (f *Fanout) handBack(ctx context.Context, s *shareMsg) {
	select {
	case f.handoffs <- struct{}{}:
	case <-ctx.Done():
		// Shutting down: store it from here, the activity stays unacked
		// until it is stored.
		_ = s.Nak()
		return
	}
	f.wg.Add(1)
	go func() {
		defer func() { <-f.handoffs; f.wg.Done() }()
		_ = s.Nak()
	}()
}

func (f *Fanout) hold(m *fanMsg) {
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
	if m.failed.Load() {
		_ = m.msg.NakWithDelay(time.Second)
		return
	}
	if err := ackWithRetry(f.bus, m.msg, fanoutAckWait); err != nil {
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
		for _, m := range old {
			_ = m.msg.InProgress()
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
}

// shareMsg is one destination's share of an activity. It stands for the
// message in the worker's stages (attempt, settle): acking it settles the
// share, a NAK (with its delay) stores a copy on the destination's own
// subject, for its consumer to attempt again.
type shareMsg struct {
	m    *fanMsg
	w    *Worker
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
// headers naming the stored activity (headerSeq). Its
// Nats-Msg-Id (with a space, which no activity id has) makes a second
// copy of the same share, after a crash, a duplicate JetStream drops.
func (f *Fanout) storeCopy(s *shareMsg, delay time.Duration) error {
	mctx, mcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer mcancel()
	if err := s.w.makeQueue(mctx); err != nil {
		return err
	}
	src := s.m.msg.Headers()
	h := nats.Header{}
	for _, k := range []string{headerID, headerName, headerOccurredAt} {
		if v := src.Get(k); v != "" {
			h.Set(k, v)
		}
	}
	if h.Get(headerID) == "" {
		h.Set(headerID, src.Get(jetstream.MsgIDHeader))
	}
	h.Set(headerSince, s.m.md.Timestamp.UTC().Format(time.RFC3339Nano))
	if delay > 0 {
		h.Set(headerNotBefore, time.Now().Add(delay).UTC().Format(time.RFC3339Nano))
	}
	seq := strconv.FormatUint(s.m.md.Sequence.Stream, 10)
	h.Set(headerSeq, seq)
	h.Set(jetstream.MsgIDHeader, "fanout "+s.w.Name+" "+seq)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	msg := &nats.Msg{Subject: s.w.ownSubject(), Header: h}
	_, err := f.bus.JS.PublishMsg(ctx, msg, jetstream.WithExpectStream(StreamQueues), jetstream.WithRetryAttempts(20), jetstream.WithRetryWait(250*time.Millisecond))
	return err
}

// refMsg is a handed-back copy with the activity it stands for.
type refMsg struct {
	jetstream.Msg
	data []byte
}

func (m *refMsg) Data() []byte { return m.data }

// resolve reads the activity a handed-back copy stands for; other
// messages are returned as they are. false: the message was settled here
// (a dead letter when the activity is gone, handed back on a read error).
func (w *Worker) resolve(ctx context.Context, msg jetstream.Msg) (jetstream.Msg, bool) {
	ref := msg.Headers().Get(headerSeq)
	if ref == "" {
		return msg, true
	}
	seq, err := strconv.ParseUint(ref, 10, 64)
	if err != nil {
		w.undecodable(ctx, msg, fmt.Errorf("%s header %q is not a sequence", headerSeq, ref))
		return nil, false
	}
	stored, err := w.bus.Activities.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		w.undecodable(ctx, msg, fmt.Errorf("the stored activity (sequence %d) is gone: older than nats.retention", seq))
		return nil, false
	}
	if err != nil {
		w.log.Warn("reading a stored activity; trying again", "sequence", seq, "error", err)
		_ = msg.NakWithDelay(5 * time.Second)
		return nil, false
	}
	return &refMsg{Msg: msg, data: stored.Data}, true
}
