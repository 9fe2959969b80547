package deliver

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/relaydev/relay/relay/activity"
	"github.com/relaydev/relay/relay/store"
)

// A destination's pull waits up to PullExpiry on the server, which sends a
// heartbeat every PullHeartbeat while it has nothing to deliver. Longer
// waits cost an idle destination fewer messages (30 s and 5 s: a quarter),
// but measured slower under load with 100 busy destinations (ratio 0.24
// against 0.53, median of 3 interleaved runs), so these stay.
const (
	PullExpiry    = 5 * time.Second
	PullHeartbeat = 2500 * time.Millisecond
)

// A fanned destination's own consumer (fanout.go) carries only retries,
// hand-overs and replays: mostly idle, it waits longer per pull.
const (
	fannedPullExpiry    = 30 * time.Second
	fannedPullHeartbeat = 10 * time.Second
	// fannedIdleAfter is how long a pull waits for a message before it
	// checks whether the consumer has anything left; when not, the worker
	// stops pulling until woken (fanout.go: every process subscribes to
	// relay.queue.>) or fannedRecheck passes, in case a wake was missed
	// (a reconnect).
	fannedIdleAfter = 10 * time.Second
	fannedRecheck   = 2 * time.Minute
	// wakeGrace is how long after a wake the worker pulls whatever a look
	// at its consumer says: the wake can come before the store.
	wakeGrace = 2 * time.Second
)

// ensureParallel is how many consumers are created or updated at once at
// startup: each is a round trip to the server and a write of its state, so
// a thousand destinations one after the other take several seconds.
const ensureParallel = 32

// EnsureAll creates or updates every worker's durable consumer, several
// at a time, and returns the first error.
func EnsureAll(ctx context.Context, workers []*Worker) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, ensureParallel)
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for _, w := range workers {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := w.Ensure(ctx); err != nil {
				once.Do(func() { first = err; cancel() })
			}
		}()
	}
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
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

// moveOver moves what the destination's consumer of its former kind holds
// each time Ensure finds one, until ctx is done.
func (w *Worker) moveOver(ctx context.Context) {
	bo := backoff.NewExponentialBackOff(backoff.WithMaxInterval(10*time.Second), backoff.WithMaxElapsedTime(0))
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.moveReq:
		}
		bo.Reset()
		for ctx.Err() == nil {
			var err error
			if w.Fanned() {
				err = w.handOverActivities(ctx)
			} else {
				err = w.moveQueue(ctx)
			}
			if err == nil || ctx.Err() != nil {
				break
			}
			delay := bo.NextBackOff()
			w.log.Warn("moving what the destination held as another kind failed; retrying", "error", err, "in", delay)
			select {
			case <-ctx.Done():
			case <-time.After(delay):
			}
		}
	}
}

// moveQueue moves a no longer fanned destination's retries, hand-overs
// and replays from its QUEUES consumer to relay.redeliver.<destination>,
// which its consumer of ACTIVITIES reads, and deletes the QUEUES consumer
// once it holds nothing.
func (w *Worker) moveQueue(ctx context.Context) error {
	name := ConsumerName(w.Name)
	cons, err := w.bus.JS.Consumer(ctx, store.StreamQueues, name)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		w.moving.Store(false)
		return nil
	}
	if err != nil {
		return fmt.Errorf("consumer %s on %s: %w", name, store.StreamQueues, err)
	}
	w.moving.Store(true)
	moved := 0
	for ctx.Err() == nil {
		ci, err := cons.Info(ctx)
		if err != nil {
			return fmt.Errorf("consumer %s on %s: %w", name, store.StreamQueues, err)
		}
		if ci.NumPending == 0 && ci.NumAckPending == 0 {
			next, err := w.deleteQueue(ctx, ci)
			if err != nil {
				return err
			}
			if next == nil {
				w.moving.Store(false)
				if moved > 0 {
					w.log.Info("the destination is no longer fanned: moved its retries to its own consumer", "moved", moved)
				}
				return nil
			}
			cons = next
			continue
		}
		n, err := w.moveFetched(ctx, cons, nil, w.moveQueued)
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
func (w *Worker) deleteQueue(ctx context.Context, ci *jetstream.ConsumerInfo) (jetstream.Consumer, error) {
	name := ConsumerName(w.Name)
	if err := w.bus.JS.DeleteConsumer(ctx, store.StreamQueues, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, fmt.Errorf("deleting consumer %s on %s: %w", name, store.StreamQueues, err)
	}
	subject := store.SubjectQueue + w.Name
	m, err := w.bus.Queues.GetMsg(ctx, ci.Delivered.Stream+1, jetstream.WithGetMsgSubject(subject))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("looking for copies stored on %s: %w", subject, err)
	}
	cfg := jetstream.ConsumerConfig{
		Durable:       name,
		Description:   "Relay destination " + w.Name + ": copies left from when it was fanned",
		FilterSubject: subject,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       w.ackWait,
		MaxDeliver:    -1,
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:   m.Sequence,
	}
	cons, err := w.bus.JS.CreateOrUpdateConsumer(ctx, store.StreamQueues, cfg)
	if err != nil {
		return nil, fmt.Errorf("create consumer %s on %s: %w", name, store.StreamQueues, err)
	}
	return cons, nil
}

// moveFetched fetches a batch from the former consumer and moves each
// message with move; on an error the rest of the batch is handed back.
func (w *Worker) moveFetched(ctx context.Context, cons jetstream.Consumer, opts []jetstream.FetchOpt, move func(context.Context, jetstream.Msg) error) (int, error) {
	batch, err := cons.Fetch(moveBatch, append([]jetstream.FetchOpt{jetstream.FetchMaxWait(moveWait)}, opts...)...)
	if err != nil {
		return 0, fmt.Errorf("fetch: %w", err)
	}
	n := 0
	var failed error
	for msg := range batch.Messages() {
		if failed != nil {
			w.nak(msg)
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
func (w *Worker) moveQueued(ctx context.Context, msg jetstream.Msg) error {
	md, err := msg.Metadata()
	if err != nil {
		w.nak(msg)
		return fmt.Errorf("message metadata: %w", err)
	}
	if due := notBefore(msg.Headers()); time.Until(due) > 0 {
		// Moved when its retry is due (the attempts of an ordered or
		// batch destination do not read Relay-Not-Before).
		if err := msg.NakWithDelay(time.Until(due)); err != nil {
			w.log.Warn("handing back a retry not due yet failed; JetStream redelivers it after the ack wait", "error", err)
		}
		return nil
	}
	full, ok := w.resolve(ctx, msg)
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
	h.Set(jetstream.MsgIDHeader, "moved "+w.Name+" "+strconv.FormatUint(md.Sequence.Stream, 10))
	out := &nats.Msg{Subject: store.SubjectRedeliver + w.Name, Data: full.Data(), Header: h}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := w.bus.JS.PublishMsg(pctx, out, jetstream.WithExpectStream(store.StreamActivities)); err != nil {
		w.nak(msg)
		return fmt.Errorf("storing on %s: %w", out.Subject, err)
	}
	if err := w.ack(msg); err != nil {
		w.log.Warn("ack of a moved retry failed; moving it again stores no second copy", "error", err)
	}
	return nil
}

// handOverActivities hands a now fanned destination's unsettled
// activities and redeliveries over from its consumer of ACTIVITIES (as an
// Ordered or batch destination, or an earlier Relay's) to QUEUES, and
// deletes that consumer once nothing it must hand over is left.
func (w *Worker) handOverActivities(ctx context.Context) error {
	name := ConsumerName(w.Name)
	cons, err := w.bus.JS.Consumer(ctx, store.StreamActivities, name)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		w.moving.Store(false)
		return nil
	}
	if err != nil {
		return fmt.Errorf("consumer %s on %s: %w", name, store.StreamActivities, err)
	}
	w.moving.Store(true)
	cfg := cons.CachedInfo().Config
	var opts []jetstream.FetchOpt
	if len(cfg.PriorityGroups) > 0 {
		// Pinned to the ordered worker it had: unpinned, this fetch is.
		g := cfg.PriorityGroups[0]
		if err := w.bus.Activities.UnpinConsumer(ctx, name, g); err != nil {
			w.log.Debug("unpinning the former consumer", "error", err)
		}
		opts = append(opts, jetstream.FetchPriorityGroup(g))
	}
	redeliveries := slices.Contains(cfg.FilterSubjects, store.SubjectRedeliver+w.Name) || cfg.FilterSubject == store.SubjectRedeliver+w.Name
	if !w.fanSet.Load() {
		fan, err := w.bus.JS.Consumer(ctx, store.StreamActivities, store.FanoutConsumer)
		if err != nil {
			return fmt.Errorf("consumer %s: %w", store.FanoutConsumer, err)
		}
		w.SetFanFrom(fan.CachedInfo().Delivered.Stream, false)
	}
	upTo := w.fanFrom.Load()
	moved := 0
	for ctx.Err() == nil {
		ci, err := cons.Info(ctx)
		if err != nil {
			return fmt.Errorf("consumer %s on %s: %w", name, store.StreamActivities, err)
		}
		done := ci.NumAckPending == 0 && ci.NumPending == 0
		if !done && ci.NumAckPending == 0 && ci.Delivered.Stream >= upTo {
			// The rest is the fan-out's, unless a redelivery follows.
			done = !redeliveries || !w.storedAfter(ctx, w.bus.Activities, ci.Delivered.Stream, store.SubjectRedeliver+w.Name)
		}
		if done {
			if err := w.bus.JS.DeleteConsumer(ctx, store.StreamActivities, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
				return fmt.Errorf("deleting consumer %s on %s: %w", name, store.StreamActivities, err)
			}
			w.moving.Store(false)
			if moved > 0 {
				w.log.Info("the destination takes activities from the fan-out now: handed over what its former consumer had not settled", "handed_over", moved)
			}
			return nil
		}
		n, err := w.moveFetched(ctx, cons, opts, func(ctx context.Context, msg jetstream.Msg) error {
			return w.handOverOne(ctx, msg, upTo)
		})
		moved += n
		if err != nil {
			return err
		}
	}
	return nil
}

// storedAfter reports whether a message on subject is stored after seq.
func (w *Worker) storedAfter(ctx context.Context, st jetstream.Stream, seq uint64, subject string) bool {
	_, err := st.GetMsg(ctx, seq+1, jetstream.WithGetMsgSubject(subject))
	return !errors.Is(err, jetstream.ErrMsgNotFound)
}

// handOverOne hands one message of a now fanned destination's former
// consumer over to QUEUES, as the fan-out hands over (the same
// Nats-Msg-Id), and acks it: an activity the fan-out gives the destination
// (stored after upTo) or that it no longer takes is only acked.
func (w *Worker) handOverOne(ctx context.Context, msg jetstream.Msg, upTo uint64) error {
	md, err := msg.Metadata()
	if err != nil {
		w.nak(msg)
		return fmt.Errorf("message metadata: %w", err)
	}
	src := msg.Headers()
	if msg.Subject() != store.SubjectRedeliver+w.Name {
		name, fromSubject := activity.NameFromSubject(msg.Subject())
		if md.Sequence.Stream > upTo || (fromSubject && !w.Rules.MatchName(name)) {
			if err := w.ack(msg); err != nil {
				w.log.Warn("ack on the former consumer failed", "error", err)
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
	since := runStart(src, md)
	h.Set(store.HeaderSince, since.UTC().Format(time.RFC3339Nano))
	if md.NumDelivered > 1 || src.Get(store.HeaderSince) != "" {
		// A retry handed back by the lanes is due a delay after its last
		// attempt, as the history says.
		if due := w.retryDue(ctx, h.Get(store.HeaderID), since); time.Until(due) > 0 {
			h.Set(store.HeaderNotBefore, due.UTC().Format(time.RFC3339Nano))
		}
	}
	seq := strconv.FormatUint(md.Sequence.Stream, 10)
	h.Set(store.HeaderSeq, seq)
	h.Set(jetstream.MsgIDHeader, "fanout "+w.Name+" "+seq)
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := w.MakeQueue(pctx); err != nil {
		w.nak(msg)
		return err
	}
	out := &nats.Msg{Subject: w.OwnSubject(), Header: h}
	if _, err := w.bus.JS.PublishMsg(pctx, out, jetstream.WithExpectStream(store.StreamQueues)); err != nil {
		w.nak(msg)
		return fmt.Errorf("handing over to %s: %w", out.Subject, err)
	}
	if err := w.ack(msg); err != nil {
		w.log.Warn("ack on the former consumer failed; handing over again stores no second copy", "error", err)
	}
	return nil
}

// retryDue is when an activity's next attempt is due by its recorded
// attempts since the run began (zero when it has none).
func (w *Worker) retryDue(ctx context.Context, id string, since time.Time) time.Time {
	if id == "" || len(w.schedule) == 0 {
		return time.Time{}
	}
	history, err := w.history.Get(ctx, w.Name, id)
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
	delay, _ := w.delayAfter(n)
	return last.Add(delay)
}
