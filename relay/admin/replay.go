package admin

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/relaydev/relay/relay/activity"
	"github.com/relaydev/relay/relay/api"
	"github.com/relaydev/relay/relay/engine"
	"github.com/relaydev/relay/relay/rules"
	"github.com/relaydev/relay/relay/store"
	"github.com/relaydev/relay/relay/telemetry"
)

// Replayer re-queues activities for one destination on its own subject
// (relay.queue.<destination> for a fanned one, relay.redeliver.<destination>
// for the others), which only that destination's consumer reads.
type Replayer struct {
	JS      jetstream.JetStream
	DLs     *store.DeadLetters
	History *store.History
	// Queue is where a destination's replays go, and the stream that
	// holds them (its worker's own subject).
	Queue func(dest string) (subject, stream string)
	// Tracing makes each replay's span; nil is off.
	Tracing *telemetry.Tracing
}

func (r *Replayer) queueOf(dest string) (subject, stream string) {
	if r.Queue == nil {
		return store.SubjectRedeliver + dest, store.StreamActivities
	}
	return r.Queue(dest)
}

type replayFilter struct {
	req api.ReplayRequest
	// rules are the destination's: a replay re-queues only what the
	// destination takes.
	rules *rules.Rules
	ids   map[string]bool
	// skipped counts what the request selected but the destination does
	// not take, by reason.
	skipped map[string]int
}

// Why a replay skips an activity the request selected.
const (
	skipNotIncluded = "not taken by the destination's include/exclude"
	skipWhenFalse   = "its when was false"
	skipWhenFailed  = "its when failed to evaluate"
	skipUnreadable  = "not readable to evaluate when"
)

func newReplayFilter(req api.ReplayRequest, rules *rules.Rules) (*replayFilter, error) {
	if req.Activity != "" {
		if err := activity.ValidPattern(req.Activity); err != nil {
			return nil, fmt.Errorf("%w: activity: %v", errBadRequest, err)
		}
	}
	if err := checkReplayIDs(req.IDs); err != nil {
		return nil, err
	}
	f := &replayFilter{req: req, rules: rules, skipped: map[string]int{}}
	if req.IDs != nil {
		f.ids = map[string]bool{}
		for _, id := range req.IDs {
			f.ids[id] = true
		}
	}
	return f, nil
}

// checkReplayIDs refuses an id list that was given but is empty, or holds
// an empty id: a script whose list came out empty must not replay every
// dead letter (leaving ids out does that).
func checkReplayIDs(ids []string) error {
	if ids != nil && len(ids) == 0 {
		return fmt.Errorf("%w: ids: the list is empty, which would select nothing; leave ids out to replay every dead letter", errBadRequest)
	}
	for i, id := range ids {
		if id == "" {
			return fmt.Errorf("%w: ids[%d]: an id cannot be empty", errBadRequest, i)
		}
	}
	return nil
}

// takes reports whether the destination takes an activity: its include
// and exclude patterns on the name, then its `when` rule over the stored
// JSON (decoded only for a destination with one). An expression that fails
// to evaluate counts as false, as at delivery.
func (f *replayFilter) takes(name string, data []byte) bool {
	why := f.skips(name, data)
	if why != "" {
		f.skipped[why]++
	}
	return why == ""
}

// skips says why the destination does not take an activity, or "".
func (f *replayFilter) skips(name string, data []byte) string {
	r := f.rules
	if r == nil {
		return ""
	}
	if !r.MatchName(name) {
		return skipNotIncluded
	}
	if !r.HasWhen() {
		return ""
	}
	var a activity.Activity
	if err := json.Unmarshal(data, &a); err != nil || a.ID == "" || a.Name == "" {
		return skipUnreadable
	}
	switch ok, err := r.MatchWhen(&a); {
	case err != nil:
		return skipWhenFailed
	case !ok:
		return skipWhenFalse
	}
	return ""
}

func (f *replayFilter) match(id, name string, at time.Time) bool {
	if f.ids != nil && !f.ids[id] {
		return false
	}
	if f.req.Activity != "" && !activity.Matches(f.req.Activity, name) {
		return false
	}
	if f.req.Since != nil && at.Before(f.req.Since.Time) {
		return false
	}
	return f.req.Until == nil || !at.After(f.req.Until.Time)
}

// maxDryRunIDs bounds the ids a dry run lists.
const maxDryRunIDs = 10000

// Replay re-queues the selected activities the destination's rules take,
// or with DryRun lists them.
func (r *Replayer) Replay(ctx context.Context, req api.ReplayRequest, rules *rules.Rules) (api.ReplayResult, error) {
	f, err := newReplayFilter(req, rules)
	if err != nil {
		return api.ReplayResult{}, err
	}
	var n int
	var ids []string
	from := "deadletter"
	if req.History {
		from = "history"
	}
	span := telemetry.Replay{}
	if !req.DryRun {
		span = r.Tracing.StartReplay(ctx, req.Destination, from)
	}
	if req.History {
		n, ids, err = r.replayHistory(ctx, f)
	} else {
		n, ids, err = r.replayDeadLetters(ctx, f)
	}
	span.End(n, err)
	res := api.ReplayResult{Replayed: n, DryRun: req.DryRun}
	res.Skipped = f.skipped // omitempty: none shows as none
	if req.DryRun {
		res.IDs = ids
		if res.IDs == nil {
			res.IDs = []string{}
		}
	}
	return res, err
}

func (r *Replayer) replayDeadLetters(ctx context.Context, f *replayFilter) (int, []string, error) {
	dest := f.req.Destination
	var picked []store.DeadLetter
	var stored []time.Time // when each picked one was stored
	err := r.DLs.Each(ctx, dest, func(dl store.DeadLetter) bool {
		var head struct {
			Name       string    `json:"name"`
			ReceivedAt time.Time `json:"received_at"`
		}
		_ = json.Unmarshal(dl.Activity, &head)
		if !f.match(dl.ID, head.Name, dl.DeadAt) {
			return true
		}
		// One the destination no longer takes (its rules changed since)
		// stays a dead letter; an undecodable one is re-queued, so the
		// worker dead-letters it again saying why.
		if head.Name != "" && !f.takes(head.Name, dl.Activity) {
			return true
		}
		picked = append(picked, dl)
		stored = append(stored, head.ReceivedAt)
		return true
	})
	if err != nil {
		return 0, nil, err
	}
	picked = inStoredOrder(picked, stored)
	if f.req.DryRun {
		ids := make([]string, 0, min(len(picked), maxDryRunIDs))
		for _, dl := range picked[:min(len(picked), maxDryRunIDs)] {
			ids = append(ids, dl.ID)
		}
		return len(picked), ids, nil
	}
	n := 0
	for _, dl := range picked {
		requeued, err := r.requeueDeadLetter(ctx, dest, dl)
		if err != nil {
			return n, nil, err
		}
		if requeued {
			n++
		}
	}
	return n, nil, nil
}

// requeueDeadLetter re-queues one listed dead letter and removes it,
// reporting whether this call re-queued it: one that another replay took
// since it was listed (it is gone, or its publish is a duplicate of that
// replay's) is not counted, so concurrent replays of the same dead letters
// add up to how many there were.
func (r *Replayer) requeueDeadLetter(ctx context.Context, dest string, dl store.DeadLetter) (bool, error) {
	if r.DLs.Stream != nil && dl.Seq > 0 {
		if _, err := r.DLs.Stream.GetMsg(ctx, dl.Seq); errors.Is(err, jetstream.ErrMsgNotFound) {
			return false, nil // re-queued and removed by another replay
		} else if err != nil {
			return false, fmt.Errorf("dead letter %s of %s: %w", dl.ID, dest, err)
		}
	}
	if err := r.History.Put(ctx, dest, dl.ID, dl.Attempts); err != nil {
		return false, err
	}
	// Spaces, which no activity id has, keep it from ever matching one.
	msgID := "replay " + dest + " " + dl.ID + " " + strconv.FormatUint(dl.Seq, 10)
	h := nats.Header{}
	var a activity.Activity
	if err := json.Unmarshal(dl.Activity, &a); err == nil && a.Name != "" {
		h = store.ActivityHeaders(&a)
	} else { // an undecodable activity: the worker dead-letters it again, with the reason
		h.Set(store.HeaderID, dl.ID)
	}
	if dl.TraceParent != "" { // its attempts continue the activity's trace
		h.Set(store.HeaderTraceParent, dl.TraceParent)
		if dl.TraceState != "" {
			h.Set(store.HeaderTraceState, dl.TraceState)
		}
	}
	ack, err := r.publish(ctx, dest, dl.Activity, h, msgID)
	if err != nil {
		return false, err
	}
	if ack.Duplicate { // a concurrent replay published it first and removes it
		return false, nil
	}
	if err := r.removeDeadLetter(ctx, dest, dl); err != nil {
		return true, err
	}
	return true, nil
}

// removeDeadLetter deletes the replayed dead letter by its sequence: a
// newer dead letter of the same activity (the replay failed again already)
// stays.
func (r *Replayer) removeDeadLetter(ctx context.Context, dest string, dl store.DeadLetter) error {
	if r.DLs.Stream == nil || dl.Seq == 0 {
		return r.DLs.Remove(ctx, dest, dl.ID)
	}
	err := r.DLs.Stream.DeleteMsg(ctx, dl.Seq)
	if err == nil {
		return nil
	}
	// Already gone: the worker removes a dead letter once its replay is
	// delivered, and may have been first.
	if _, getErr := r.DLs.Stream.GetMsg(ctx, dl.Seq); errors.Is(getErr, jetstream.ErrMsgNotFound) {
		return nil
	}
	return fmt.Errorf("remove dead letter %s for %s: %w", dl.ID, dest, err)
}

// inStoredOrder sorts dead letters by when their activities were stored,
// so a replay re-queues a contact's activities in their order (order:
// contact). Those stored at the same instant (one ingest batch) keep the
// order they became dead letters in, which for an ordered destination is
// their stored order.
func inStoredOrder(dls []store.DeadLetter, stored []time.Time) []store.DeadLetter {
	idx := make([]int, len(dls))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return stored[a].Compare(stored[b]) })
	out := make([]store.DeadLetter, len(dls))
	for i, j := range idx {
		out[i] = dls[j]
	}
	return out
}

// publish re-queues a dead letter; msgID makes a repeated replay of the
// same dead letter a no-op, acked as a duplicate.
func (r *Replayer) publish(ctx context.Context, dest string, data []byte, h nats.Header, msgID string) (*jetstream.PubAck, error) {
	subject, stream := r.queueOf(dest)
	msg := &nats.Msg{Subject: subject, Data: data, Header: h}
	msg.Header.Set(store.HeaderReplay, "deadletter")
	msg.Header.Set(jetstream.MsgIDHeader, msgID)
	ack, err := r.JS.PublishMsg(ctx, msg, jetstream.WithExpectStream(stream))
	if err != nil {
		return nil, fmt.Errorf("replay to %s: %w", dest, err)
	}
	return ack, nil
}

// replayHistory re-queues retained activities by time range and pattern,
// publishing asynchronously and waiting for every ack.
func (r *Replayer) replayHistory(ctx context.Context, f *replayFilter) (int, []string, error) {
	subject, stream := r.queueOf(f.req.Destination)
	cons, err := r.historyConsumer(ctx, f)
	if err != nil {
		return 0, nil, err
	}
	defer store.DeleteReader(r.JS, store.StreamActivities, cons)
	h := &historyReplay{js: r.JS, f: f, subject: subject, stream: stream}
	err = store.EachMessage(ctx, cons, h.take)
	if f.req.DryRun {
		return h.n, h.ids, err
	}
	// What was replayed is what JetStream stored, also when the read
	// stopped part way: the caller reports that count with the error.
	acked, ackErr := waitAcks(ctx, h.futures)
	return acked, h.ids, errors.Join(err, ackErr)
}

// historyConsumer reads the retained activities a history replay may
// select: those the pattern names (or, with none, those the destination's
// rules may take), from since on.
func (r *Replayer) historyConsumer(ctx context.Context, f *replayFilter) (jetstream.Consumer, error) {
	pattern := f.req.Activity
	if pattern == "" {
		pattern = "*"
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{activity.FilterSubject(pattern)}}
	if rules := f.rules; f.req.Activity == "" && rules != nil && !rules.Own() {
		cfg.FilterSubjects = rules.FilterSubjects() // read only what the destination may take
	}
	if f.req.Since != nil {
		cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		cfg.OptStartTime = &f.req.Since.Time
	}
	cons, err := r.JS.OrderedConsumer(ctx, store.StreamActivities, cfg)
	if err != nil {
		return nil, fmt.Errorf("read history: %w", err)
	}
	return cons, nil
}

// historyReplay is one history replay under way: how many activities it
// selected, the ids a dry run lists and the acks of what it published.
type historyReplay struct {
	js              jetstream.JetStream
	f               *replayFilter
	subject, stream string // where the destination's replays go
	n               int
	ids             []string
	futures         []jetstream.PubAckFuture
}

// take selects one retained activity, listing it in a dry run and
// re-queuing it otherwise, and says whether to read on: not past until,
// nor past the last message.
func (h *historyReplay) take(msg jetstream.Msg, md *jetstream.MsgMetadata) (bool, error) {
	f := h.f
	if f.req.Until != nil && md.Timestamp.After(f.req.Until.Time) {
		return false, nil
	}
	name, _ := activity.NameFromSubject(msg.Subject())
	id := msg.Headers().Get(store.HeaderID)
	if id == "" {
		id = msg.Headers().Get(jetstream.MsgIDHeader)
	}
	if !f.match(id, name, md.Timestamp) || !f.takes(name, msg.Data()) {
		return md.NumPending > 0, nil
	}
	if f.req.DryRun {
		if len(h.ids) < maxDryRunIDs {
			h.ids = append(h.ids, id)
		}
		h.n++
		return md.NumPending > 0, nil
	}
	if err := h.publish(msg); err != nil {
		return false, err
	}
	h.n++
	return md.NumPending > 0, nil
}

// publish re-queues a retained activity on the destination's subject with
// its Relay headers, without waiting for the ack.
func (h *historyReplay) publish(msg jetstream.Msg) error {
	out := &nats.Msg{Subject: h.subject, Data: msg.Data(), Header: nats.Header{}}
	for _, k := range []string{store.HeaderID, store.HeaderName, store.HeaderOccurredAt} {
		out.Header.Set(k, msg.Headers().Get(k))
	}
	store.CopyTrace(out.Header, msg.Headers())
	out.Header.Set(store.HeaderReplay, "history")
	fut, err := h.js.PublishMsgAsync(out, jetstream.WithExpectStream(h.stream))
	if err != nil {
		return fmt.Errorf("replay to %s: %w", h.f.req.Destination, err)
	}
	h.futures = append(h.futures, fut)
	return nil
}

// waitAcks waits for the publish acks and returns how many were stored;
// the error is the first failure.
func waitAcks(ctx context.Context, futures []jetstream.PubAckFuture) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	acked := 0
	var first error
	for _, f := range futures {
		select {
		case ack := <-f.Ok():
			if ack == nil || !ack.Duplicate { // a duplicate re-queued nothing
				acked++
			}
		case err := <-f.Err():
			first = cmp.Or(first, fmt.Errorf("replay publish: %w", err))
		case <-ctx.Done():
			return acked, cmp.Or(first, fmt.Errorf("replay publish: %w", ctx.Err()))
		}
	}
	return acked, first
}

// errBadRequest is a replay request that can select nothing.
var errBadRequest = errors.New("bad request")

// doReplay re-queues dead letters, or retained activities, for one
// destination; a filter that can match nothing is a bad request naming why.
func (a *Admin) doReplay(ctx context.Context, req api.ReplayRequest) (api.ReplayResult, error) {
	if req.Destination == "" {
		return api.ReplayResult{}, fmt.Errorf("%w: destination is required", errBadRequest)
	}
	w := a.Engine.Worker(req.Destination)
	if w == nil {
		return api.ReplayResult{}, fmt.Errorf("%w %q", engine.ErrUnknownDestination, req.Destination)
	}
	if req.Activity != "" {
		if err := activity.ValidPattern(req.Activity); err != nil {
			return api.ReplayResult{}, fmt.Errorf("%w: activity: %v", errBadRequest, err)
		}
		if len(a.Catalog().Match(req.Activity)) == 0 {
			return api.ReplayResult{}, fmt.Errorf("%w: activity: pattern %q matches no known activity (see relay activities)", errBadRequest, req.Activity)
		}
	}
	if req.Since != nil && req.Until != nil && !req.Since.Before(req.Until.Time) {
		return api.ReplayResult{}, fmt.Errorf("%w: the window is empty: since %s is not before until %s", errBadRequest,
			req.Since.UTC().Format(time.RFC3339), req.Until.UTC().Format(time.RFC3339))
	}
	if req.Since != nil && req.Since.After(time.Now()) {
		return api.ReplayResult{}, fmt.Errorf("%w: the window is empty: since %s is in the future", errBadRequest, req.Since.UTC().Format(time.RFC3339))
	}
	if w.Fanned() && !req.DryRun {
		if err := w.MakeQueue(ctx); err != nil {
			return api.ReplayResult{}, err
		}
	}
	res, err := a.Replayer.Replay(ctx, req, w.Rules)
	if !req.DryRun {
		a.Metrics.Replayed.WithLabelValues(req.Destination).Add(float64(res.Replayed))
	}
	return res, err
}
