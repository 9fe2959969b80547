package relay_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/relaydev/relay/relay/activity"
	"github.com/relaydev/relay/relay/store"
)

// TestFanoutReadsEachActivityOnce: every activity is read once, by the
// fan-out, whatever the number of destinations taking it; the
// destinations' own consumers deliver nothing while all goes well.
func TestFanoutReadsEachActivityOnce(t *testing.T) {
	type dest struct {
		name, rules string
		takes       func(name, campaign string) bool
		r           *receiver
	}
	dests := []*dest{
		{name: "all-1", rules: `    include: ["*"]`, takes: func(string, string) bool { return true }},
		{name: "all-2", rules: ``, takes: func(string, string) bool { return true }},
		{name: "emails", rules: `    include: ["email.*"]`, takes: func(n, _ string) bool { return strings.HasPrefix(n, "email.") }},
		{name: "black-friday", rules: `    exclude: ["pageview"]
    when: 'activity.attributes.campaign == "black-friday"'`, takes: func(n, c string) bool { return n != "pageview" && c == "black-friday" }},
	}
	yaml := baseYAML(t.TempDir()) + "destinations:\n"
	for _, d := range dests {
		d.r = newReceiver(t, secretA)
		yaml += destYAML(d.name, d.r.srv.URL, secretA, d.rules)
	}
	n := startRelay(t, yaml)

	var items []map[string]any
	for _, e := range activity.Builtin().Entries() {
		for _, campaign := range []string{"black-friday", "cyber-monday"} {
			items = append(items, map[string]any{"type": e.Type, "action": e.Action,
				"contact": map[string]any{"email": "ann@example.com"}, "attributes": map[string]any{"campaign": campaign}})
		}
	}
	ids := n.send(items...)
	want := map[string]map[string]string{}
	for _, d := range dests {
		want[d.name] = map[string]string{}
	}
	for i, item := range items {
		name := item["type"].(string)
		if act := item["action"].(string); act != "" {
			name += "." + act
		}
		campaign := item["attributes"].(map[string]any)["campaign"].(string)
		for _, d := range dests {
			if d.takes(name, campaign) {
				want[d.name][ids[i]] = name
			}
		}
	}
	for _, d := range dests {
		waitFor(t, 30*time.Second, d.name+" to get its activities", func() bool { return len(d.r.delivered()) >= len(want[d.name]) })
	}
	waitSettled(t, n, "all-1", "all-2", "emails", "black-friday")
	for _, d := range dests {
		checkExactly(t, d.name, d.r, want[d.name])
	}

	ctx := context.Background()
	read, err := n.relay.ConsumerDelivered(ctx, store.StreamActivities, store.FanoutConsumer)
	if err != nil {
		t.Fatal(err)
	}
	if read != uint64(len(items)) {
		t.Errorf("the fan-out read %d messages for %d activities", read, len(items))
	}
	for _, d := range dests {
		// Nothing was ever stored for it: its own consumer is not even made.
		if _, err := n.relay.ConsumerDelivered(ctx, store.StreamQueues, store.ConsumerName(d.name)); !errors.Is(err, jetstream.ErrConsumerNotFound) {
			t.Errorf("%s's own consumer: %v; with every receiver answering there is none", d.name, err)
		}
	}
}

// TestSlowDestinationHoldsNoOtherBack: a destination whose receiver hangs
// does not slow the fan-out for the others; its activities wait in its own
// consumer and all arrive, once, when the receiver answers again.
func TestSlowDestinationHoldsNoOtherBack(t *testing.T) {
	fast := newReceiver(t, secretA)
	slow := newReceiver(t, secretB)
	release := make(chan struct{})
	var held atomic.Int32
	gated := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		held.Add(1)
		select {
		case <-release:
		case <-req.Context().Done():
			return
		}
		slow.handle(w, req)
	}))
	t.Cleanup(gated.Close)
	yaml := baseYAML(t.TempDir()) + "destinations:\n" +
		destYAML("fast", fast.srv.URL, secretA, "") +
		strings.Replace(destYAML("slow", gated.URL, secretB, "    max_in_flight: 1\n    breaker: off"), "timeout: 2s", "timeout: 60s", 1)
	n := startRelay(t, yaml)

	var items []map[string]any
	for range 300 {
		items = append(items, map[string]any{"type": "email", "action": "open", "contact": map[string]any{"email": "a@example.com"}})
	}
	ids := n.send(items...)
	waitFor(t, 30*time.Second, "the fast destination to get every activity while the slow one hangs", func() bool {
		return len(fast.delivered()) == len(ids)
	})
	if got := len(slow.delivered()); got != 0 {
		t.Fatalf("the hanging receiver answered %d", got)
	}
	if h := held.Load(); h > 1 {
		t.Errorf("%d requests hang at the slow receiver; max_in_flight is 1", h)
	}
	if p := n.destinations()["slow"].Pending; p == 0 {
		t.Errorf("the slow destination shows nothing pending while its receiver hangs")
	}
	close(release)
	waitFor(t, 60*time.Second, "the slow destination to get every activity", func() bool { return len(slow.delivered()) == len(ids) })
	waitSettled(t, n, "fast", "slow")
	for name, r := range map[string]*receiver{"fast": fast, "slow": slow} {
		for id, k := range r.delivered() {
			if k != 1 {
				t.Errorf("%s got %s %d times", name, id, k)
			}
		}
	}
	if bad := slow.badSignatures(); len(bad) > 0 {
		t.Errorf("bad signatures: %v", bad)
	}
}
