package relay

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// pullBatches gathers up to the sink's batch size, waiting at most its batch
// wait, delivers them in one call and settles each by its own result.
func (w *Worker) pullBatches(ctx context.Context) error {
	size, wait := w.Batch.Batch()
	for ctx.Err() == nil && w.active() {
		batch, err := w.cons.Fetch(size, jetstream.FetchMaxWait(wait))
		if err != nil {
			w.cons = nil
			return fmt.Errorf("fetch batch: %w", err)
		}
		var msgs []jetstream.Msg
		var ds []*Delivery
		for msg := range batch.Messages() {
			if d, ok := w.decode(ctx, msg); ok {
				msgs = append(msgs, msg)
				ds = append(ds, d)
			}
		}
		if len(ds) == 0 {
			continue
		}
		w.deliverBatch(ctx, msgs, ds)
	}
	return nil
}

func (w *Worker) deliverBatch(ctx context.Context, msgs []jetstream.Msg, ds []*Delivery) {
	w.inflight.Add(1)
	defer w.inflight.Done()
	ctx = context.WithoutCancel(ctx)
	for _, msg := range msgs {
		w.wait(ctx, msg)
	}
	ats := w.Batch.DeliverBatch(ctx, ds)
	for i, d := range ds {
		at := Attempt{Err: fmt.Errorf("connector returned %d results for %d activities", len(ats), len(ds))}
		if i < len(ats) {
			at = ats[i]
		}
		w.settle(ctx, msgs[i], d, at)
	}
}
