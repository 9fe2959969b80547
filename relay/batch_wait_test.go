package relay_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/relaydev/relay/config"
	"github.com/relaydev/relay/connectors/salesforce"
	"github.com/relaydev/relay/connectors/salesforce/sftest"
	"github.com/relaydev/relay/relay"
	"github.com/relaydev/relay/relay/sink"
	"github.com/relaydev/relay/relay/store"
)

// startHooked is startRelay with hook run on the relay after it is made
// and before it runs (and makes its consumers).
func startHooked(t *testing.T, yaml string, hook func(*relay.Relay)) *node {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(yaml), os.LookupEnv)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	sinks := map[string]sink.Connector{}
	for _, d := range cfg.Destinations {
		if d.Type != "salesforce" {
			t.Fatalf("startHooked takes Salesforce destinations only, not %s", d.Type)
		}
		s, err := salesforce.New(d, salesforce.Options{})
		if err != nil {
			t.Fatalf("salesforce %s: %v", d.Name, err)
		}
		t.Cleanup(s.Close)
		sinks[d.Name] = sink.Batched(s)
	}
	r, err := relay.New(cfg, relay.Options{Sinks: sinks, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("relay.New: %v", err)
	}
	if hook != nil {
		hook(r)
	}
	return runNode(t, r)
}

// sharedNATSYAML starts a nats-server on 127.0.0.1 for Relay processes to
// share (as processes of one deployment do) and returns the top of their
// config.
func sharedNATSYAML(t *testing.T) string {
	t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	return fmt.Sprintf(`nats: {url: %q}
ingest: {listen: "127.0.0.1:0", tokens: [%q]}
admin: {listen: "127.0.0.1:0", token: %q}
`, ns.ClientURL(), ingestToken, adminToken)
}

// sfConsumer is the Salesforce destination's consumer, read over the
// relay's own connection.
func sfConsumer(t *testing.T, n *node) jetstream.Consumer {
	t.Helper()
	js, err := jetstream.New(n.relay.BusConn())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cons, err := js.Consumer(ctx, store.StreamActivities, store.ConsumerName("sf"))
	if err != nil {
		t.Fatal(err)
	}
	return cons
}

func consumerInfo(t *testing.T, cons jetstream.Consumer) *jetstream.ConsumerInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ci, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return ci
}

// sendOneBatch sends count activities while sf is paused, then resumes it:
// its worker takes them all in one batch.
func sendOneBatch(t *testing.T, n *node, cons jetstream.Consumer, count int) []string {
	t.Helper()
	if code, out := n.adminDo("POST", "/v1/destinations/sf/pause", ""); code != http.StatusOK {
		t.Fatalf("pause: %d %v", code, out)
	}
	waitFor(t, 10*time.Second, "sf paused", func() bool { return n.destinations()["sf"].State == "paused" })
	// The worker sees the pause a moment later: until then it opens a
	// pull each batch_wait (200ms). None open through 400ms: it stopped.
	var closedSince time.Time
	waitFor(t, 10*time.Second, "no pull open for 400ms", func() bool {
		if consumerInfo(t, cons).NumWaiting > 0 {
			closedSince = time.Time{}
			return false
		}
		if closedSince.IsZero() {
			closedSince = time.Now()
		}
		return time.Since(closedSince) > 400*time.Millisecond
	})
	var items []map[string]any
	for i := range count {
		items = append(items, map[string]any{"type": "email", "action": "open", "contact": map[string]any{"email": fmt.Sprintf("c%d@example.com", i)}})
	}
	ids := n.send(items...)
	waitFor(t, 10*time.Second, "the activities stored", func() bool { return consumerInfo(t, cons).NumPending == uint64(count) })
	if code, out := n.adminDo("POST", "/v1/destinations/sf/resume", ""); code != http.StatusOK {
		t.Fatalf("resume: %d %v", code, out)
	}
	waitFor(t, 10*time.Second, "the batch pulled", func() bool {
		ci := consumerInfo(t, cons)
		return ci.NumPending == 0 && ci.NumAckPending == count
	})
	return ids
}

// upsertedOnce checks every id was upserted exactly once.
func upsertedOnce(t *testing.T, fake *sftest.Server, ids []string) {
	t.Helper()
	ups := fake.Upserts()
	for _, id := range ids {
		if ups[id] != 1 {
			t.Errorf("%s upserted %d times, want once", id, ups[id])
		}
	}
	if len(ups) != len(ids) {
		t.Errorf("%d records upserted, want %d", len(ups), len(ids))
	}
}

// TestBatchRateLimitKeepsBatchAlive: a Salesforce batch waiting on its
// rate limit far longer than the ack wait keeps every one of its
// activities in progress: a second Relay process on the same consumer is
// given none of them meanwhile, and each is upserted exactly once.
func TestBatchRateLimitKeepsBatchAlive(t *testing.T) {
	fake := sftest.New(t)
	yaml := sharedNATSYAML(t) + "destinations:\n" + salesforceYAML(fake, "    rate_limit: 2/s")
	const ackWait = time.Second
	hook := func(r *relay.Relay) { r.SetAckWait("sf", ackWait) }
	a := startHooked(t, yaml, hook)
	cons := sfConsumer(t, a)
	// 12 activities at 2/s (a burst of 2): the batch waits 5s.
	ids := sendOneBatch(t, a, cons, 12)
	if calls := fake.Calls(); calls != 0 {
		t.Fatalf("%d calls before the rate limit's wait is over", calls)
	}
	start := time.Now()
	startHooked(t, yaml, hook) // a second process, pulling from the same consumer
	waitFor(t, 60*time.Second, "12 records", func() bool { return len(fake.Records()) == 12 })
	if waited := time.Since(start); waited < 2*ackWait {
		t.Fatalf("the batch was upserted %s after the second process started: the test did not outlast the ack wait", waited)
	}
	waitFor(t, 30*time.Second, "every activity acknowledged", func() bool {
		ci := consumerInfo(t, cons)
		return ci.NumPending == 0 && ci.NumAckPending == 0
	})
	upsertedOnce(t, fake, ids)
	if calls := fake.Calls(); calls != 1 {
		t.Errorf("%d upsert calls, want 1", calls)
	}
}

// TestBatchShutdownDuringRateLimitWait: a shutdown while a batch waits on
// its rate limit returns at once and hands the batch back unattempted;
// once Relay is started again every activity is delivered once, without
// waiting out the ack wait. (NATS runs on: a restarted nats-server forgets
// a hand-back and redelivers after the ack wait.)
func TestBatchShutdownDuringRateLimitWait(t *testing.T) {
	head := sharedNATSYAML(t)
	fake := sftest.New(t)
	// 12 activities at 1/m: the batch would wait 11 minutes.
	n := startRelay(t, head+"destinations:\n"+salesforceYAML(fake, "    rate_limit: 1/m"))
	cons := sfConsumer(t, n)
	ids := sendOneBatch(t, n, cons, 12)
	stopped := make(chan struct{})
	start := time.Now()
	go func() { defer close(stopped); n.stop() }()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("the relay did not stop within 10s of a shutdown while a batch waited on the rate limit")
	}
	t.Logf("stopped in %s", time.Since(start))
	if calls := fake.Calls(); calls != 0 {
		t.Fatalf("%d upsert calls: the batch was attempted on shutdown", calls)
	}

	// The ack wait is 2*timeout+30s+batch_wait: delivered within 15s, the
	// batch was handed back, not left to expire.
	n = startRelay(t, head+"destinations:\n"+salesforceYAML(fake, ""))
	cons = sfConsumer(t, n)
	waitFor(t, 15*time.Second, "12 records after the restart", func() bool { return len(fake.Records()) == 12 })
	waitFor(t, 30*time.Second, "every activity acknowledged", func() bool {
		ci := consumerInfo(t, cons)
		return ci.NumPending == 0 && ci.NumAckPending == 0
	})
	upsertedOnce(t, fake, ids)
	_, out := n.adminDo("GET", "/v1/deadletters?destination=sf", "")
	var list struct {
		DeadLetters []struct{} `json:"deadletters"`
	}
	remarshal(t, out, &list)
	if len(list.DeadLetters) != 0 {
		t.Errorf("%d dead letters, want none", len(list.DeadLetters))
	}
}

// TestBatchFetchErrorRebinds: a fetch that ends in an error (here the
// consumer deleted under it) is not ignored: the worker makes its consumer
// again and delivers what comes next.
func TestBatchFetchErrorRebinds(t *testing.T) {
	fake := sftest.New(t)
	n := startRelay(t, baseYAML(t.TempDir())+"destinations:\n"+salesforceYAML(fake, ""))
	first := n.send(map[string]any{"type": "email", "action": "open", "contact": map[string]any{"email": "a@example.com"}})
	waitFor(t, 30*time.Second, "the first record", func() bool { return len(fake.Records()) == 1 })
	js, err := jetstream.New(n.relay.BusConn())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := js.DeleteConsumer(ctx, store.StreamActivities, store.ConsumerName("sf")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the consumer made again", func() bool {
		_, err := js.Consumer(ctx, store.StreamActivities, store.ConsumerName("sf"))
		return err == nil
	})
	second := n.send(map[string]any{"type": "email", "action": "open", "contact": map[string]any{"email": "b@example.com"}})
	waitFor(t, 30*time.Second, "the second record", func() bool { return len(fake.Records()) == 2 })
	upsertedOnce(t, fake, append(first, second...))
}
