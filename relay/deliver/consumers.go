package deliver

import (
	"context"
	"sync"
	"time"
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
