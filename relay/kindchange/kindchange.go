// Package kindchange moves what a destination's consumer of its former
// kind holds when a reload or a restart changes the kind: fanned (its
// retries on QUEUES) or not (ordered and batch: its own consumer of
// ACTIVITIES), and where the consumer of a destination that stops being
// fanned starts.
package kindchange

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/relaydev/relay/relay/activity"
	"github.com/relaydev/relay/relay/rules"
	"github.com/relaydev/relay/relay/schedule"
	"github.com/relaydev/relay/relay/store"
)

// Options are what a Mover works with.
type Options struct {
	Name     string
	Bus      *store.Bus
	History  *store.History
	States   *store.States
	Schedule schedule.Schedule
	Rules    *rules.Rules
	AckWait  time.Duration
	Log      *slog.Logger
	// Fanned reports the destination's kind now.
	Fanned func() bool
	// Resolve reads the activity a handed-back copy stands for (false: it
	// was settled instead: a dead letter when the activity is gone).
	Resolve func(ctx context.Context, msg jetstream.Msg) (jetstream.Msg, bool)
	// MakeQueue makes the fanned destination's consumer on QUEUES.
	MakeQueue func(ctx context.Context) error
}

// Mover moves one destination's activities between the consumers of its
// kinds. The worker makes it, asks it to move (Request) when Ensure finds
// the former kind's consumer, and runs it.
type Mover struct {
	Options
	moveReq chan struct{}
	// moving is set until what the former consumer held is moved, so
	// status counts it; fanFrom is the fan-out's delivered stream sequence
	// when the destination became fanned (fanSet: it is set).
	moving  atomic.Bool
	fanFrom atomic.Uint64
	fanSet  atomic.Bool
}

// New is a mover with nothing to move yet; the worker sets Bus, States and
// History once connected, before Run.
func New(o Options) *Mover { return &Mover{Options: o, moveReq: make(chan struct{}, 1)} }

// Request has the mover move what the consumer of the former kind holds.
func (m *Mover) Request() {
	m.moving.Store(true)
	select {
	case m.moveReq <- struct{}{}:
	default:
	}
}

// Moving reports whether the mover is moving (or about to).
func (m *Mover) Moving() bool { return m.moving.Load() }

// SetFanFrom records the fan-out's delivered stream sequence when the
// destination joined it: it was given every activity the fan-out read
// after it, the old consumer's hand over the others. At a start the
// fan-out has read nothing yet in this process, so Ensure's reading
// holds; a reload reads it again once the fan-out feeds the new worker
// (force).
func (m *Mover) SetFanFrom(seq uint64, force bool) {
	if force || !m.fanSet.Load() {
		m.fanFrom.Store(seq)
		m.fanSet.Store(true)
	}
}

// UnsetFanFrom forgets the sequence noted: it is read again when the
// mover hands over.
func (m *Mover) UnsetFanFrom() { m.fanSet.Store(false) }

// FanFromSet reports whether SetFanFrom ran.
func (m *Mover) FanFromSet() bool { return m.fanSet.Load() }

// StartWhereFannedLeft starts the consumer a destination that was fanned
// gets when it no longer is (a reload made it ordered or batch) where the
// fan-out may not have given it every activity: after the fan-out's ack
// floor, but not before the destination was added. An activity the
// fan-out was still holding (one this or another process read but had not
// settled, which comes back only after its ack wait, and then no longer
// for this destination) is then delivered by the new consumer; one the
// fan-out had given it already may be delivered twice, never lost. A
// destination never fanned takes new activities; a consumer that exists
// keeps its start.
func (m *Mover) StartWhereFannedLeft(ctx context.Context, cfg *jetstream.ConsumerConfig) error {
	js := m.Bus.JS
	cons, err := js.Consumer(ctx, store.StreamActivities, store.ConsumerName(m.Name))
	if err == nil { // it keeps its start, which JetStream does not let change
		was := cons.CachedInfo().Config
		cfg.DeliverPolicy, cfg.OptStartSeq, cfg.OptStartTime = was.DeliverPolicy, was.OptStartSeq, was.OptStartTime
		return nil
	}
	if !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil // cannot be read: CreateOrUpdate says why
	}
	added := m.States.AddedAt(ctx, m.Name)
	if added.IsZero() {
		return nil // never fanned: a new destination takes new activities
	}
	fan, err := js.Consumer(ctx, store.StreamActivities, store.FanoutConsumer)
	if err != nil {
		return fmt.Errorf("consumer %s: %w", store.FanoutConsumer, err)
	}
	from := fan.CachedInfo().AckFloor.Stream + 1
	first, err := m.Bus.Activities.GetMsg(ctx, from)
	switch {
	case err == nil && first.Time.Before(added):
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &added
	case err == nil || errors.Is(err, jetstream.ErrMsgNotFound):
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, from
	default:
		return fmt.Errorf("reading where the fan-out stands: %w", err)
	}
	return nil
}

// nak hands msg back for now; a failure only means JetStream redelivers
// it after the ack wait.
func (m *Mover) nak(msg jetstream.Msg) {
	if err := msg.Nak(); err != nil {
		m.Log.Debug("nak failed: JetStream hands the activity out again after the ack wait", "error", err)
	}
}

// A destination's kind decides where what it has yet to deliver waits: a
// Fanned destination's retries, hand-overs and replays on QUEUES
// (relay.queue.<destination>), read by its consumer there; an ordered or
// batch destination's activities and redeliveries in its own consumer of
// ACTIVITIES. When a reload or a restart changes the kind, the worker
// moves what the former kind's consumer holds to the new kind, then
// deletes that consumer:
//
//   - no longer fanned: each message of its QUEUES consumer, once due, is
//     stored again on relay.redeliver.<destination> with the activity's
//     data and the headers its attempts are counted by (Relay-Since), and
//     acked;
//   - now fanned: each activity its ACTIVITIES consumer had not settled, up
//     to where the fan-out stood when the destination joined it (the
//     fan-out gives it the later ones), and every redelivery, is handed
//     over to QUEUES as the fan-out hands over (Relay-Seq), and acked.
//
// The messages are taken through the former consumer, so one waiting out
// a retry delay is moved once due, and JetStream keeps counting it there
// meanwhile: status adds that consumer while the worker moves (moving).
// Every copy has a Nats-Msg-Id naming its source, so a crash between the
// copy and the ack stores no second copy within the stream's duplicate
// window.
const (
	// moveBatch is how many messages one fetch of the former consumer
	// asks for.
	moveBatch = 256
	// moveWait is how long a fetch waits: the messages left are waiting
	// out retry delays.
	moveWait = 5 * time.Second
)

// Run moves what the destination's consumer of its former kind holds
// each time Ensure finds one, until ctx is done.
func (m *Mover) Run(ctx context.Context) {
	move := func() error {
		if m.Fanned() {
			return m.handOverActivities(ctx)
		}
		return m.moveQueue(ctx)
	}
	retrying := func(err error, delay time.Duration) {
		m.Log.Warn("moving what the destination held as another kind failed; retrying", "error", err, "in", delay)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.moveReq:
		}
		bo := backoff.NewExponentialBackOff(backoff.WithMaxInterval(10*time.Second), backoff.WithMaxElapsedTime(0))
		_ = backoff.RetryNotify(move, backoff.WithContext(bo, ctx), retrying) // ends once moved or ctx is done
	}
}

// moveQueue moves a no longer fanned destination's retries, hand-overs
// and replays from its QUEUES consumer to relay.redeliver.<destination>,
// which its consumer of ACTIVITIES reads, and deletes the QUEUES consumer
// once it holds nothing.
func (m *Mover) moveQueue(ctx context.Context) error {
	name := store.ConsumerName(m.Name)
	cons, err := m.Bus.JS.Consumer(ctx, store.StreamQueues, name)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		m.moving.Store(false)
		return nil
	}
	if err != nil {
		return fmt.Errorf("consumer %s on %s: %w", name, store.StreamQueues, err)
	}
	m.moving.Store(true)
	moved := 0
	for ctx.Err() == nil {
		ci, err := cons.Info(ctx)
		if err != nil {
			return fmt.Errorf("consumer %s on %s: %w", name, store.StreamQueues, err)
		}
		if ci.NumPending == 0 && ci.NumAckPending == 0 {
			next, err := m.deleteQueue(ctx, ci)
			if err != nil {
				return err
			}
			if next == nil {
				m.moving.Store(false)
				if moved > 0 {
					m.Log.Info("the destination is no longer fanned: moved its retries to its own consumer", "moved", moved)
				}
				return nil
			}
			cons = next
			continue
		}
		n, err := m.moveFetched(ctx, cons, nil, m.moveQueued)
		moved += n
		if err != nil {
			return err
		}
	}
	return nil
}

// deleteQueue deletes a no longer fanned destination's QUEUES consumer,
// found empty (ci). A copy stored after that look (a hand-over the former
// worker was finishing) gets a consumer again, returned, to be moved too.
func (m *Mover) deleteQueue(ctx context.Context, ci *jetstream.ConsumerInfo) (jetstream.Consumer, error) {
	name := store.ConsumerName(m.Name)
	if err := m.Bus.JS.DeleteConsumer(ctx, store.StreamQueues, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, fmt.Errorf("deleting consumer %s on %s: %w", name, store.StreamQueues, err)
	}
	subject := store.SubjectQueue + m.Name
	first, err := m.Bus.Queues.GetMsg(ctx, ci.Delivered.Stream+1, jetstream.WithGetMsgSubject(subject))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("looking for copies stored on %s: %w", subject, err)
	}
	cfg := jetstream.ConsumerConfig{
		Durable:       name,
		Description:   "Relay destination " + m.Name + ": copies left from when it was fanned",
		FilterSubject: subject,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       m.AckWait,
		MaxDeliver:    -1,
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:   first.Sequence,
	}
	cons, err := m.Bus.JS.CreateOrUpdateConsumer(ctx, store.StreamQueues, cfg)
	if err != nil {
		return nil, fmt.Errorf("create consumer %s on %s: %w", name, store.StreamQueues, err)
	}
	return cons, nil
}

// moveFetched fetches a batch from the former consumer and moves each
// message with move; on an error the rest of the batch is handed back.
func (m *Mover) moveFetched(ctx context.Context, cons jetstream.Consumer, opts []jetstream.FetchOpt, move func(context.Context, jetstream.Msg) error) (int, error) {
	batch, err := cons.Fetch(moveBatch, append([]jetstream.FetchOpt{jetstream.FetchMaxWait(moveWait)}, opts...)...)
	if err != nil {
		return 0, fmt.Errorf("fetch: %w", err)
	}
	n := 0
	var failed error
	for msg := range batch.Messages() {
		if failed != nil {
			m.nak(msg)
			continue
		}
		if failed = move(ctx, msg); failed == nil {
			n++
		}
	}
	return n, failed
}

// moveQueued stores one message of a no longer fanned destination's QUEUES
// consumer on relay.redeliver.<destination> once it is due, with the
// activity's data, and acks it.
func (m *Mover) moveQueued(ctx context.Context, msg jetstream.Msg) error {
	md, err := msg.Metadata()
	if err != nil {
		m.nak(msg)
		return fmt.Errorf("message metadata: %w", err)
	}
	if due := store.NotBefore(msg.Headers()); time.Until(due) > 0 {
		// Moved when its retry is due (the attempts of an ordered or
		// batch destination do not read Relay-Not-Before).
		if err := msg.NakWithDelay(time.Until(due)); err != nil {
			m.Log.Warn("handing back a retry not due yet failed; JetStream redelivers it after the ack wait", "error", err)
		}
		return nil
	}
	full, ok := m.Resolve(ctx, msg)
	if !ok { // settled there: a dead letter when the activity is gone, or handed back
		return nil
	}
	h := nats.Header{}
	for k, v := range msg.Headers() {
		if strings.HasPrefix(k, "Nats-") || k == store.HeaderSeq || k == store.HeaderNotBefore {
			continue
		}
		h[k] = slices.Clone(v)
	}
	if h.Get(store.HeaderSince) == "" { // a replay: its run of attempts began when it was stored
		h.Set(store.HeaderSince, md.Timestamp.UTC().Format(time.RFC3339Nano))
	}
	// A space, which no activity id has, keeps it from matching one.
	h.Set(jetstream.MsgIDHeader, "moved "+m.Name+" "+strconv.FormatUint(md.Sequence.Stream, 10))
	out := &nats.Msg{Subject: store.SubjectRedeliver + m.Name, Data: full.Data(), Header: h}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := m.Bus.JS.PublishMsg(pctx, out, jetstream.WithExpectStream(store.StreamActivities)); err != nil {
		m.nak(msg)
		return fmt.Errorf("storing on %s: %w", out.Subject, err)
	}
	if err := store.Ack(m.Bus, msg, m.AckWait); err != nil {
		m.Log.Warn("ack of a moved retry failed; moving it again stores no second copy", "error", err)
	}
	return nil
}

// handOverActivities hands a now fanned destination's unsettled
// activities and redeliveries over from its consumer of ACTIVITIES (as an
// Ordered or batch destination, or an earlier Relay's) to QUEUES, and
// deletes that consumer once nothing it must hand over is left.
func (m *Mover) handOverActivities(ctx context.Context) error {
	name := store.ConsumerName(m.Name)
	cons, err := m.Bus.JS.Consumer(ctx, store.StreamActivities, name)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		m.moving.Store(false)
		return nil
	}
	if err != nil {
		return fmt.Errorf("consumer %s on %s: %w", name, store.StreamActivities, err)
	}
	m.moving.Store(true)
	cfg := cons.CachedInfo().Config
	var opts []jetstream.FetchOpt
	if len(cfg.PriorityGroups) > 0 {
		// Pinned to the ordered worker it had: unpinned, this fetch is.
		g := cfg.PriorityGroups[0]
		if err := m.Bus.Activities.UnpinConsumer(ctx, name, g); err != nil {
			m.Log.Debug("unpinning the former consumer", "error", err)
		}
		opts = append(opts, jetstream.FetchPriorityGroup(g))
	}
	redeliveries := slices.Contains(cfg.FilterSubjects, store.SubjectRedeliver+m.Name) || cfg.FilterSubject == store.SubjectRedeliver+m.Name
	upTo, err := m.fanOutFrom(ctx)
	if err != nil {
		return err
	}
	moved := 0
	for ctx.Err() == nil {
		ci, err := cons.Info(ctx)
		if err != nil {
			return fmt.Errorf("consumer %s on %s: %w", name, store.StreamActivities, err)
		}
		done := ci.NumAckPending == 0 && ci.NumPending == 0
		if !done && ci.NumAckPending == 0 && ci.Delivered.Stream >= upTo {
			// The rest is the fan-out's, unless a redelivery follows.
			done = !redeliveries || !m.storedAfter(ctx, m.Bus.Activities, ci.Delivered.Stream, store.SubjectRedeliver+m.Name)
		}
		if done {
			if err := m.Bus.JS.DeleteConsumer(ctx, store.StreamActivities, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
				return fmt.Errorf("deleting consumer %s on %s: %w", name, store.StreamActivities, err)
			}
			m.moving.Store(false)
			if moved > 0 {
				m.Log.Info("the destination takes activities from the fan-out now: handed over what its former consumer had not settled", "handed_over", moved)
			}
			return nil
		}
		n, err := m.moveFetched(ctx, cons, opts, func(ctx context.Context, msg jetstream.Msg) error {
			return m.handOverOne(ctx, msg, upTo)
		})
		moved += n
		if err != nil {
			return err
		}
	}
	return nil
}

// fanOutFrom is the fan-out's delivered stream sequence when the
// destination joined it, read now if no one noted it.
func (m *Mover) fanOutFrom(ctx context.Context) (uint64, error) {
	if !m.fanSet.Load() {
		fan, err := m.Bus.JS.Consumer(ctx, store.StreamActivities, store.FanoutConsumer)
		if err != nil {
			return 0, fmt.Errorf("consumer %s: %w", store.FanoutConsumer, err)
		}
		m.SetFanFrom(fan.CachedInfo().Delivered.Stream, false)
	}
	return m.fanFrom.Load(), nil
}

// storedAfter reports whether a message on subject is stored after seq.
func (m *Mover) storedAfter(ctx context.Context, st jetstream.Stream, seq uint64, subject string) bool {
	_, err := st.GetMsg(ctx, seq+1, jetstream.WithGetMsgSubject(subject))
	return !errors.Is(err, jetstream.ErrMsgNotFound)
}

// handOverOne hands one message of a now fanned destination's former
// consumer over to QUEUES, as the fan-out hands over (the same
// Nats-Msg-Id), and acks it: an activity the fan-out gives the destination
// (stored after upTo) or that it no longer takes is only acked.
func (m *Mover) handOverOne(ctx context.Context, msg jetstream.Msg, upTo uint64) error {
	md, err := msg.Metadata()
	if err != nil {
		m.nak(msg)
		return fmt.Errorf("message metadata: %w", err)
	}
	src := msg.Headers()
	if msg.Subject() != store.SubjectRedeliver+m.Name {
		name, fromSubject := activity.NameFromSubject(msg.Subject())
		if md.Sequence.Stream > upTo || (fromSubject && !m.Rules.MatchName(name)) {
			if err := store.Ack(m.Bus, msg, m.AckWait); err != nil {
				m.Log.Warn("ack on the former consumer failed", "error", err)
			}
			return nil
		}
	}
	h := nats.Header{}
	for _, k := range []string{store.HeaderID, store.HeaderName, store.HeaderOccurredAt, store.HeaderReplay} {
		if v := src.Get(k); v != "" {
			h.Set(k, v)
		}
	}
	if h.Get(store.HeaderID) == "" {
		h.Set(store.HeaderID, src.Get(jetstream.MsgIDHeader))
	}
	store.CopyTrace(h, src)
	since := store.RunStart(src, md)
	h.Set(store.HeaderSince, since.UTC().Format(time.RFC3339Nano))
	if md.NumDelivered > 1 || src.Get(store.HeaderSince) != "" {
		// A retry handed back by the lanes is due a delay after its last
		// attempt, as the history says.
		if due := m.retryDue(ctx, h.Get(store.HeaderID), since); time.Until(due) > 0 {
			h.Set(store.HeaderNotBefore, due.UTC().Format(time.RFC3339Nano))
		}
	}
	seq := strconv.FormatUint(md.Sequence.Stream, 10)
	h.Set(store.HeaderSeq, seq)
	h.Set(jetstream.MsgIDHeader, "fanout "+m.Name+" "+seq)
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := m.MakeQueue(pctx); err != nil {
		m.nak(msg)
		return err
	}
	out := &nats.Msg{Subject: store.SubjectQueue + m.Name, Header: h}
	if _, err := m.Bus.JS.PublishMsg(pctx, out, jetstream.WithExpectStream(store.StreamQueues)); err != nil {
		m.nak(msg)
		return fmt.Errorf("handing over to %s: %w", out.Subject, err)
	}
	if err := store.Ack(m.Bus, msg, m.AckWait); err != nil {
		m.Log.Warn("ack on the former consumer failed; handing over again stores no second copy", "error", err)
	}
	return nil
}

// retryDue is when an activity's next attempt is due by its recorded
// attempts since the run began (zero when it has none).
func (m *Mover) retryDue(ctx context.Context, id string, since time.Time) time.Time {
	if id == "" || len(m.Schedule.Delays) == 0 {
		return time.Time{}
	}
	history, err := m.History.Get(ctx, m.Name, id)
	if err != nil {
		return time.Time{}
	}
	n, last := 0, time.Time{}
	for _, at := range history {
		if !at.At.Before(since) && !at.Probe {
			n++
			last = at.At
		}
	}
	if n == 0 {
		return time.Time{}
	}
	delay, _ := m.Schedule.DelayAfter(n)
	return last.Add(delay)
}
