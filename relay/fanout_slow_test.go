package relay_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/relaydev/relay/relay"
	"github.com/relaydev/relay/relay/store"
)

// TestSlowDestinationsWaitedOnTogether: with several destinations whose
// receivers hang, the fan-out waits for their attempt slots at the same
// time, not one after another: no activity holds the reader much longer
// than one slot wait, however many destinations are slow, and the healthy
// destination takes every activity from the fan-out, none handed over.
// Every slow destination still gets each activity once when its receiver
// answers again.
func TestSlowDestinationsWaitedOnTogether(t *testing.T) {
	const slowDests, count = 6, 50
	fast := newReceiver(t, secretA)
	slow := newReceiver(t, secretB)
	release := make(chan struct{})
	var mu sync.Mutex
	held := map[string]int{} // destination (its path) -> requests hanging
	gated := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		mu.Lock()
		held[req.URL.Path]++
		mu.Unlock()
		select {
		case <-release:
		case <-req.Context().Done():
			return
		}
		slow.handle(w, req)
	}))
	t.Cleanup(gated.Close)
	yaml := baseYAML(t.TempDir()) + "destinations:\n" + destYAML("fast", fast.srv.URL, secretA, "")
	var names []string
	for i := range slowDests {
		name := fmt.Sprintf("slow-%d", i)
		names = append(names, name)
		yaml += strings.Replace(destYAML(name, gated.URL+"/"+name, secretB, "    max_in_flight: 1\n    breaker: off"), "timeout: 2s", "timeout: 60s", 1)
	}
	n := startRelay(t, yaml)
	var longest time.Duration
	var dispatched int
	n.relay.OnFanoutDispatch(func(d time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		longest = max(longest, d)
		dispatched++
	})

	var items []map[string]any
	for range count {
		items = append(items, map[string]any{"type": "email", "action": "open", "contact": map[string]any{"email": "a@example.com"}})
	}
	ids := n.send(items...)
	waitFor(t, 30*time.Second, "the healthy destination to get every activity while the others hang", func() bool {
		return len(fast.delivered()) == len(ids)
	})
	waitFor(t, 30*time.Second, "the fan-out to have read every activity", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return dispatched >= count
	})
	mu.Lock()
	// One after another, the second activity alone held the reader
	// slowDests slot waits (1.5s); waited on together, one.
	if bound := 3 * relay.FanoutSlotWait; longest > bound {
		t.Errorf("the fan-out's reader was held %s by one activity; with %d destinations slow it should wait for their slots at once (at most ~%s)",
			longest, slowDests, relay.FanoutSlotWait)
	}
	for _, name := range names {
		if h := held["/"+name]; h != 1 {
			t.Errorf("%d requests hang at %s; max_in_flight is 1", h, name)
		}
	}
	mu.Unlock()
	// The healthy destination never waited behind the slow ones: it took
	// everything from the fan-out, nothing was stored for it.
	if _, err := n.relay.ConsumerDelivered(context.Background(), store.StreamQueues, store.ConsumerName("fast")); !errors.Is(err, jetstream.ErrConsumerNotFound) {
		t.Errorf("the healthy destination's own consumer: %v; everything should have come from the fan-out", err)
	}

	close(release)
	waitFor(t, 60*time.Second, "the slow destinations to get every activity", func() bool {
		return len(slow.delivered()) == len(ids)
	})
	waitSettled(t, n, append(names, "fast")...)
	for id, k := range slow.delivered() {
		if k != slowDests {
			t.Errorf("%s reached the slow destinations %d times; want once each (%d)", id, k, slowDests)
		}
	}
	for id, k := range fast.delivered() {
		if k != 1 {
			t.Errorf("fast got %s %d times", id, k)
		}
	}
}
