package relay

import (
	"context"
	"sync"

	"github.com/relaydev/relay/relay/store"
)

// runSeries rolls the delivery log up for charts until ctx is done, sampling
// every destination's backlog and breaker from the engine's status; the
// returned wait blocks until it has stopped.
func (r *Relay) runSeries(ctx context.Context) (wait func()) {
	s := r.dlog.Series()
	if s == nil {
		return func() {}
	}
	var wg sync.WaitGroup
	wg.Go(func() { s.Run(ctx, r.sampleSeries) })
	return wg.Wait
}

func (r *Relay) sampleSeries(ctx context.Context) (map[string]store.Gauge, error) {
	list, err := r.engine.Statuses(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]store.Gauge, len(list))
	for _, d := range list {
		out[d.Name] = store.Gauge{Pending: d.Pending, BreakerOpen: d.Breaker == "open" || d.Breaker == "half_open"}
	}
	return out, nil
}
