package deliver

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/relaydev/relay/relay/held"
	"github.com/relaydev/relay/relay/schedule"
	"github.com/relaydev/relay/relay/sink"
	"github.com/relaydev/relay/relay/telemetry"
	"golang.org/x/time/rate"
)

// pullBatches gathers up to the sink's batch size, waiting at most its batch
// wait, delivers them in one call and settles each by its own result.
func (w *Worker) pullBatches(ctx context.Context) error {
	size, wait := w.Batch.Batch()
	cons := w.consumer()
	if cons == nil { // unbound meanwhile (the probe's Ensure failed)
		return nil
	}
	// What a batch holds counts toward engine.max_held_bytes: a fetch
	// asks for no more bytes than the budget has room for (at least the
	// largest activity), and waits while it has none.
	acct := w.st.Held.Account()
	for ctx.Err() == nil && w.Active() {
		if !w.waitHold(ctx) || !acct.WaitRoom(ctx, w.Active) {
			return nil
		}
		n := w.batchFor(ctx, cons, size)
		opts := []jetstream.FetchOpt{jetstream.FetchMaxWait(max(wait, bigFetchWait(n, size)))}
		if room := acct.FetchBytes(w.st.Bus.LargestMsg()); room > 0 {
			opts = append(opts, jetstream.FetchMaxBytes(room))
		}
		batch, err := cons.Fetch(n, opts...)
		if err != nil {
			w.setConsumer(nil)
			return fmt.Errorf("fetch batch: %w", err)
		}
		var msgs []jetstream.Msg
		var ds []*delivery
		for msg := range batch.Messages() {
			if d, ok := w.decode(ctx, msg); ok {
				msgs = append(msgs, msg)
				ds = append(ds, d)
			}
		}
		// The fetch can end in an error (the consumer deleted, its leader
		// moved) after some activities came: those are delivered, then
		// the consumer is bound again, as after a failed fetch.
		fetchErr := batch.Error()
		if len(ds) > 0 {
			var bytes int64
			for _, msg := range msgs {
				bytes += held.MsgBytes(msg)
			}
			acct.Charge(bytes)
			w.deliverBatch(ctx, msgs, ds)
			acct.Release(bytes)
		}
		if fetchErr != nil {
			w.setConsumer(nil)
			return fmt.Errorf("fetch batch: %w", fetchErr)
		}
	}
	return nil
}

// deliverBatch waits out a short back-off and the rate limit, makes the
// call and settles every activity. ctx is the worker's run context: a
// shutdown or a reload while the batch waits (as a long back-off, or a
// pause during one) hands the whole batch back unattempted; the call
// itself, once made, finishes and is settled. Every activity of the batch
// is kept in progress all along, so none passes its ack wait and is
// delivered again meanwhile.
func (w *Worker) deliverBatch(ctx context.Context, msgs []jetstream.Msg, ds []*delivery) {
	w.inflight.Add(1)
	defer w.inflight.Done()
	// Suppressed activities are settled before the waits, so they take no
	// rate-limit token, and again after them, for an opt-out meanwhile.
	if msgs, ds = w.unsuppressed(context.WithoutCancel(ctx), msgs, ds); len(ds) == 0 {
		return
	}
	stop := w.keepAlive(msgs)
	if ctx.Err() != nil || !w.holdOff(ctx, msgs[0]) || !w.waitBatch(ctx, len(msgs)) {
		stop()
		w.handBack(msgs)
		return
	}
	if !w.st.Calls.Take(ctx, nil) {
		stop()
		w.handBack(msgs)
		return
	}
	ctx = context.WithoutCancel(ctx) // a call in flight finishes on shutdown
	if msgs, ds = w.unsuppressed(ctx, msgs, ds); len(ds) == 0 {
		w.st.Calls.Release()
		stop()
		return
	}
	spans := make([]telemetry.Attempt, len(ds))
	for i, d := range ds {
		spans[i] = w.st.Tracing.StartAttempt(ctx, &w.Cfg, msgs[i].Headers(), &d.Delivery)
	}
	ats := w.Batch.DeliverBatch(ctx, sinkDeliveries(ds))
	w.st.Calls.Release()
	stop()
	for _, i := range w.unattempted(msgs, ats) {
		var at sink.Attempt
		if i < len(ats) {
			at = ats[i]
		} else {
			at = sink.Attempt{At: time.Now().UTC(), Err: fmt.Errorf("connector returned %d results for %d activities", len(ats), len(ds))}
		}
		out := w.settle(ctx, msgs[i], ds[i], at)
		spans[i].End(at, out)
		w.waitOut(msgs[i], out)
	}
	for i := range min(len(ats), len(spans)) { // those the connector held, handed back: to be tried again
		spans[i].End(ats[i], schedule.Outcome{Action: schedule.Retry}) // a span ended above stays as it was
	}
}

// bigFetchWait is how long a fetch of a backlog's large batch (n above the
// sink's size) may take to fill: the activities are there already.
func bigFetchWait(n, size int) time.Duration {
	if n > size {
		return 5 * time.Second
	}
	return 0
}

// keepAliveEvery is how often the activities of a batch that waits or is
// being delivered are told to JetStream as in progress: four times per ack
// wait, so a late or lost one still leaves time.
func (w *Worker) keepAliveEvery() time.Duration {
	return max(w.ackWait/4, 10*time.Millisecond)
}

// keepAlive tells JetStream every keepAliveEvery that each of msgs is still
// being worked on, until the returned stop is called; stop returns once
// no more is sent.
func (w *Worker) keepAlive(msgs []jetstream.Msg) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(w.keepAliveEvery())
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			failed, last := 0, error(nil)
			for _, msg := range msgs {
				if err := msg.InProgress(); err != nil {
					failed, last = failed+1, err
				}
			}
			if failed > 0 {
				w.log.Warn("telling JetStream a waiting batch is in progress failed; its activities may be delivered again after the ack wait",
					"failed", failed, "batch", len(msgs), "error", last)
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() { close(done); wg.Wait() })
	}
}

// waitBatch applies the rate limit to a batch of n activities (one token
// each), all reserved at once: it waits until the last is due, or hands
// every token back and returns false when ctx is done first.
func (w *Worker) waitBatch(ctx context.Context, n int) bool {
	if w.limiter == nil {
		return true
	}
	now := time.Now()
	rs := make([]*rate.Reservation, 0, n)
	var delay time.Duration
	for range n {
		r := w.limiter.ReserveN(now, 1)
		rs = append(rs, r)
		delay = max(delay, r.DelayFrom(now))
	}
	if delay <= 0 {
		return true
	}
	if w.debug {
		w.log.Debug("batch waits on the rate limit", "batch", n, "for", delay)
	}
	t := time.NewTimer(delay - time.Since(now))
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		for i := len(rs) - 1; i >= 0; i-- { // the latest first: each is then restored in full
			rs[i].Cancel()
		}
		return false
	}
}

// handBack returns a batch to JetStream unattempted, for this or another
// process to take at once (a handed-back activity uses up no attempt).
func (w *Worker) handBack(msgs []jetstream.Msg) {
	failed, last := 0, error(nil)
	for _, msg := range msgs {
		if err := msg.Nak(); err != nil {
			failed, last = failed+1, err
		}
	}
	if failed > 0 {
		w.log.Warn("handing a batch back failed; JetStream delivers its activities again after the ack wait",
			"failed", failed, "batch", len(msgs), "error", last)
		return
	}
	if w.debug {
		w.log.Debug("batch handed back unattempted", "batch", len(msgs))
	}
}
