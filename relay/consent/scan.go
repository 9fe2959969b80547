package consent

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/relaydev/relay/relay/store"
)

// scanBatch is how many messages one fetch of a scan asks for.
const scanBatch = 4096

// scanIdle is how long a scan waits for a message before it takes the
// rest of its range to be gone (deleted while it read).
const scanIdle = 5 * time.Second

// scanSplit is the smallest number of messages a scan splits into parts
// read at once.
const scanSplit = 1 << 16

// scan reads a stream (only the subjects of filters, when given) up to
// the last message it held when the scan began, handing each message to
// fn. A long stream is read in parts at once, one a core (up to four), so
// fn may be called from several goroutines together. A message's
// sequence is seqOf(msg), read only where it is needed.
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
	first, last := info.State.FirstSeq, info.State.LastSeq
	parts := uint64(min(runtime.GOMAXPROCS(0), 4))
	if info.State.Msgs < scanSplit || parts < 2 || len(filters) > 0 {
		return scanRange(ctx, js, stream, filters, first, last, fn)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	size := (last - first + parts) / parts
	for from := first; from <= last; from += size {
		to := min(from+size-1, last)
		wg.Go(func() {
			if err := scanRange(ctx, js, stream, filters, from, to, fn); err != nil {
				cancel()
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// scanRange hands fn the messages of sequences from to to.
func scanRange(ctx context.Context, js jetstream.JetStream, stream string, filters []string, from, to uint64, fn func(jetstream.Msg)) error {
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: filters, DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: from}
	cons, err := js.OrderedConsumer(ctx, stream, cfg)
	if err != nil {
		return fmt.Errorf("read %s: %w", stream, err)
	}
	defer store.DeleteReader(js, stream, cons)
	if cons.CachedInfo().NumPending == 0 {
		return nil
	}
	// Messages keeps a pull outstanding while fn works, so the server
	// sends the next messages as these are read.
	it, err := cons.Messages(jetstream.PullMaxMessages(scanBatch))
	if err != nil {
		return fmt.Errorf("read %s: %w", stream, err)
	}
	defer it.Stop()
	for {
		msg, err := it.Next(jetstream.NextMaxWait(scanIdle))
		switch {
		case errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded):
			return nil // what was left of the range is gone
		case err != nil:
			return fmt.Errorf("read %s: %w", stream, err)
		}
		md, err := msg.Metadata()
		if err != nil {
			return fmt.Errorf("read %s: %w", stream, err)
		}
		if md.Sequence.Stream > to {
			return nil // the rest of the range is gone; what follows is another's
		}
		fn(msg)
		if md.Sequence.Stream >= to || md.NumPending == 0 {
			return nil
		}
		if md.Sequence.Stream%scanBatch == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
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
