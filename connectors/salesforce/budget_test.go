package salesforce

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/relaydev/relay/config"
	"github.com/relaydev/relay/connectors/salesforce/sftest"
	"github.com/relaydev/relay/relay/metrics"
	"github.com/relaydev/relay/relay/sink"
)

// waitUntil polls cond every 20 ms until it holds or the deadline passes.
func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s in %s", what, d)
		}
		<-tick.C
	}
}

// TestBudgetShare: with max_share 0.1 of a 10,000-call window, Relay's
// calls in the window stop at 1,000: the sink holds (budget), hands
// batches back unattempted meanwhile, and lets calls go again by itself
// once its calls leave the window.
func TestBudgetShare(t *testing.T) {
	const window = 4 * time.Second
	fake := newFake(t, sftest.WithAPILimit(10_000, window))
	d := destination(fake)
	d.Name = "sf-share"
	d.APIBudget = config.APIBudget{MaxShare: 0.1}
	s, err := New(d, Options{Window: window})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	ctx := context.Background()
	ds := deliveries("a", "b", "c", "d", "e")
	made, heldAt := 0, -1
	for i := 0; i < 2000 && heldAt < 0; i++ {
		at := s.DeliverBatch(ctx, ds[i%5:i%5+1])[0]
		switch k, _ := sink.Classify(at.Err); {
		case at.Err == nil:
			made++
		case k == sink.Hold:
			heldAt = i
		default:
			t.Fatalf("call %d: %v", i, at.Err)
		}
	}
	used, _ := fake.APIUsage()
	if heldAt < 0 || used > 1000 || used < 990 {
		t.Fatalf("held after %d calls; Relay's calls in the window: %d, want 990 to 1,000 (the share)", heldAt, used)
	}
	if until, reason := s.Hold(ctx); until.IsZero() || reason != "budget" {
		t.Fatalf("hold = %v %q, want budget", until, reason)
	}
	if got := metrics.CounterValue(metrics.SalesforceAPIUsed, "sf-share"); int(got) != fake.APICalls() {
		t.Errorf("relay_salesforce_api_used_total = %v, want %d (every call the org saw)", got, fake.APICalls())
	}
	var g dto.Metric
	if err := metrics.SalesforceAPIRemaining.WithLabelValues("sf-share").Write(&g); err != nil || g.GetGauge().GetValue() < 8990 {
		t.Errorf("relay_salesforce_api_remaining = %v (%v), want about 9,000", g.GetGauge().GetValue(), err)
	}
	waitUntil(t, 3*window, "end of the hold", func() bool { until, _ := s.Hold(ctx); return until.IsZero() })
	if at := s.DeliverBatch(ctx, ds[:1])[0]; at.Err != nil {
		t.Fatalf("after the window: %v", at.Err)
	}
	t.Logf("%d batches before the hold; org usage %d", made, used)
}

// TestBudgetReserve: Relay never brings the org's remaining calls under
// the reserve: with the other integrations' use leaving less, it holds
// from the start (it read /limits) and resumes once their calls leave the
// window.
func TestBudgetReserve(t *testing.T) {
	const window = 2 * time.Second
	fake := newFake(t, sftest.WithAPILimit(10_000, window))
	fake.UseAPI(9_000)
	d := destination(fake)
	d.APIBudget = config.APIBudget{MaxShare: 1, Reserve: 1_500}
	s, err := New(d, Options{Window: window})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	ctx := context.Background()
	if until, reason := s.Hold(ctx); until.IsZero() || reason != "budget" {
		t.Fatalf("hold = %v %q, want budget", until, reason)
	}
	if fake.Calls() != 0 {
		t.Fatal("an upsert was made under the reserve")
	}
	waitUntil(t, 3*window, "end of the hold", func() bool { until, _ := s.Hold(ctx); return until.IsZero() })
	if at := s.DeliverBatch(ctx, deliveries("x"))[0]; at.Err != nil {
		t.Fatal(at.Err)
	}
}

// TestConcurrentCallsCapped: however many batches go at once, no more
// than max_concurrent_calls calls are in flight to the org.
func TestConcurrentCallsCapped(t *testing.T) {
	fake := newFake(t, sftest.WithLatency(30*time.Millisecond))
	d := destination(fake)
	d.MaxConcurrentCalls = 2
	s := newSink(t, d, nil)
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, at := range s.DeliverBatch(context.Background(), deliveries(strings.Repeat("x", i+1))) {
				if at.Err != nil {
					t.Error(at.Err)
				}
			}
		}()
	}
	wg.Wait()
	if got := fake.MaxConcurrent(); got != 2 {
		t.Errorf("at most %d calls in flight, want 2", got)
	}
}

// TestAllowanceSpent: an org whose allowance other integrations spent
// answers 403 REQUEST_LIMIT_EXCEEDED with Sforce-Limit-Info; the call backs
// the destination off (throttle), and from that answer on Relay holds
// instead of calling.
func TestAllowanceSpent(t *testing.T) {
	fake := newFake(t, sftest.WithAPILimit(100, time.Hour))
	fake.UseAPI(100)
	d := destination(fake)
	d.APIBudget = config.APIBudget{MaxShare: 1}
	s := newSink(t, d, nil)
	at := s.DeliverBatch(context.Background(), deliveries("a"))[0]
	if k, _ := sink.Classify(at.Err); k != sink.Throttle || !strings.Contains(at.Err.Error(), "REQUEST_LIMIT_EXCEEDED") {
		t.Fatalf("first call: %v", at.Err)
	}
	if k, _ := sink.Classify(s.DeliverBatch(context.Background(), deliveries("a"))[0].Err); k != sink.Hold {
		t.Fatalf("after the org said 100/100 the sink called again (%s)", k)
	}
	if used, max := fake.APIUsage(); used != 100 || max != 100 || fake.Calls() != 1 {
		t.Errorf("org usage %d/%d after %d upsert calls; want 100/100 after 1", used, max, fake.Calls())
	}
}

// TestOrgCallsCapped: destinations to one org together have at most 25
// calls in flight, whatever each allows.
func TestOrgCallsCapped(t *testing.T) {
	fake := newFake(t, sftest.WithLatency(50*time.Millisecond))
	d := destination(fake)
	d.InstanceURL = "https://org-cap.invalid"
	d.MaxConcurrentCalls = 20
	a, b := newSink(t, d, nil), newSink(t, d, nil)
	var wg sync.WaitGroup
	for i := range 60 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := a
			if i%2 == 1 {
				s = b
			}
			for _, at := range s.DeliverBatch(context.Background(), deliveries(fmt.Sprint("r", i))) {
				if at.Err != nil {
					t.Error(at.Err)
				}
			}
		}()
	}
	wg.Wait()
	if got := fake.MaxConcurrent(); got > OrgMaxCalls || got < 21 {
		t.Errorf("at most %d calls in flight, want more than one destination's 20 and at most %d", got, OrgMaxCalls)
	}
}
