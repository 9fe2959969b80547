package consent

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/relaydev/relay/relay/store"
)

// scanBatch is how many messages one fetch of a scan asks for.
const scanBatch = 4096

// scan reads a stream (only the subjects of filters, when given) up to
// the last message it held when the scan began, handing each message to
// fn. A message's sequence is seqOf(msg), read only where it is needed.
func scan(ctx context.Context, js jetstream.JetStream, stream string, filters []string, fn func(jetstream.Msg)) error {
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return fmt.Errorf("stream %s: %w", stream, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return fmt.Errorf("stream %s: %w", stream, err)
	}
	if info.State.Msgs == 0 {
		return nil
	}
	return scanRange(ctx, js, stream, filters, info.State.FirstSeq, info.State.LastSeq, fn)
}

// scanRange hands fn the messages of sequences from to to (and those that
// came after to in the last fetch).
func scanRange(ctx context.Context, js jetstream.JetStream, stream string, filters []string, from, to uint64, fn func(jetstream.Msg)) error {
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: filters, DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: from}
	cons, err := js.OrderedConsumer(ctx, stream, cfg)
	if err != nil {
		return fmt.Errorf("read %s: %w", stream, err)
	}
	defer store.DeleteReader(js, stream, cons)
	for {
		batch, err := cons.FetchNoWait(scanBatch)
		if err != nil {
			return fmt.Errorf("read %s: %w", stream, err)
		}
		var lastMsg jetstream.Msg
		for msg := range batch.Messages() {
			fn(msg)
			lastMsg = msg
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return fmt.Errorf("read %s: %w", stream, err)
		}
		if lastMsg == nil {
			return nil
		}
		md, err := lastMsg.Metadata()
		if err != nil {
			return fmt.Errorf("read %s: %w", stream, err)
		}
		if md.Sequence.Stream >= to || md.NumPending == 0 {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// seqOf is a scanned message's stream sequence (0 when it cannot be read).
func seqOf(msg jetstream.Msg) uint64 {
	md, err := msg.Metadata()
	if err != nil {
		return 0
	}
	return md.Sequence.Stream
}
