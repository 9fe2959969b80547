package store

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/relaydev/relay/config"
	"github.com/relaydev/relay/relay/api"
	"github.com/relaydev/relay/relay/metrics"
)

// clock is a settable time for the roll-ups.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

func openTestLog(t *testing.T, ctx context.Context) *DeliveryLog {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	bus, err := OpenBus(ctx, config.NATS{URL: "embedded", DataDir: t.TempDir(), Replicas: 1}, 1<<20, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bus.Close)
	dl, err := OpenDeliveryLog(ctx, bus.NC, 1, time.Hour, 1<<26, log, metrics.New())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dl.Close)
	return dl
}

func attempt(dest, outcome string, at time.Time, ms float64) LogEntry {
	return LogEntry{LogEntry: api.LogEntry{ID: "a", Destination: dest, Outcome: outcome, At: at, LatencyMS: ms}}
}

// TestSeriesRollsUpTheLog: attempts logged by two processes are added up
// per minute and outcome, with latency percentiles from the histogram,
// the backlog sampled and the breaker's open span; the 24h window adds
// minutes up in steps of ten; the minute in progress is read before it is
// published; a destination with nothing logged reads as zeros.
func TestSeriesRollsUpTheLog(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dl := openTestLog(t, ctx)
	s := dl.Series()
	// A second process: its own roll-up on the same stream.
	other := newSeries(s.js, s.log)
	c := &clock{t: time.Now().Truncate(time.Minute).Add(-30 * time.Minute).Add(5 * time.Second)}
	s.now, other.now = c.now, c.now
	t0 := c.now()

	for i := range 10 {
		dl.Attempt(attempt("billing", OutcomeDelivered, t0, float64(10+i))) // 10…19 ms
	}
	s.add(&LogEntry{LogEntry: api.LogEntry{Destination: "billing", Outcome: OutcomeFailed, At: t0, LatencyMS: 1000}})
	other.add(&LogEntry{LogEntry: api.LogEntry{Destination: "billing", Outcome: OutcomeFailed, At: t0, LatencyMS: 1000}})
	other.add(&LogEntry{LogEntry: api.LogEntry{Destination: "billing", Outcome: OutcomeDeadLetter, At: t0.Add(time.Minute), LatencyMS: 5}})
	other.add(&LogEntry{LogEntry: api.LogEntry{Destination: "billing", Outcome: OutcomeSuppressed, At: t0.Add(time.Minute)}})
	s.Sample(map[string]Gauge{"billing": {Pending: 7, BreakerOpen: true}, "crm": {}})
	other.Sample(map[string]Gauge{"billing": {Pending: 9, BreakerOpen: true}})

	c.set(t0.Add(2 * time.Minute)) // both minutes are over
	s.Sample(map[string]Gauge{"billing": {Pending: 0}, "crm": {}})
	other.Sample(map[string]Gauge{"billing": {Pending: 0}})
	s.Flush(ctx, false)
	other.Flush(ctx, false)
	s.add(&LogEntry{LogEntry: api.LogEntry{Destination: "billing", Outcome: OutcomeDelivered, At: c.now(), LatencyMS: 3}}) // not yet published

	got, err := s.Read(ctx, "billing", "1h")
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Points) != 60 || got.StepSeconds != 60 {
		t.Fatalf("1h: %d points of %d s, want 60 of 60", len(got.Points), got.StepSeconds)
	}
	at := func(tm time.Time) api.SeriesPoint {
		for _, p := range got.Points {
			if p.At.Equal(tm.Truncate(time.Minute)) {
				return p
			}
		}
		t.Fatalf("no point at %s", tm)
		return api.SeriesPoint{}
	}
	p := at(t0)
	if p.Delivered != 10 || p.Failed != 2 || p.DeadLetter != 0 || p.Pending != 9 {
		t.Errorf("first minute: %+v, want 10 delivered, 2 failed, pending 9", p)
	}
	// 12 attempts: the 6th is 15 ms, the 12th 1000 ms; within a bucket (9%).
	if p.P50MS == nil || *p.P50MS < 15 || *p.P50MS > 15*1.1 || p.P99MS == nil || *p.P99MS < 1000 || *p.P99MS > 1100 {
		t.Errorf("first minute p50 %v p99 %v, want about 15 and 1000", fmtp(p.P50MS), fmtp(p.P99MS))
	}
	if p := at(t0.Add(time.Minute)); p.DeadLetter != 1 || p.Delivered != 0 || p.Suppressed != 1 || p.P99MS == nil || *p.P99MS > 6 {
		t.Errorf("second minute: %+v, want 1 dead letter and 1 suppressed (no latency of its own)", p)
	}
	if p := at(c.now()); p.Delivered != 1 {
		t.Errorf("the minute in progress: %+v, want the 1 delivered not yet published", p)
	}
	if p := at(t0.Add(-time.Minute)); p.Delivered+p.Failed != 0 || p.P50MS != nil {
		t.Errorf("a minute with nothing: %+v", p)
	}
	if len(got.BreakerOpen) != 1 || !got.BreakerOpen[0].From.Equal(t0) || got.BreakerOpen[0].Until == nil || !got.BreakerOpen[0].Until.Equal(c.now()) {
		t.Errorf("breaker open: %+v, want one span from %s to %s", got.BreakerOpen, t0, c.now())
	}

	day, err := s.Read(ctx, "billing", "24h")
	if err != nil {
		t.Fatal(err)
	}
	if len(day.Points) != 144 || day.StepSeconds != 600 {
		t.Fatalf("24h: %d points of %d s", len(day.Points), day.StepSeconds)
	}
	sum := api.SeriesPoint{}
	for _, p := range day.Points {
		sum.Delivered += p.Delivered
		sum.Failed += p.Failed
		sum.DeadLetter += p.DeadLetter
	}
	if sum.Delivered != 11 || sum.Failed != 2 || sum.DeadLetter != 1 {
		t.Errorf("24h totals %+v, want 11 delivered, 2 failed, 1 dead letter", sum)
	}

	all, err := s.ReadAll(ctx, []string{"billing", "crm"}, "1h")
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || all[0].Destination != "billing" || all[1].Destination != "crm" {
		t.Fatalf("all: %+v", all)
	}
	if p := all[0].Points; p[len(p)-3].Delivered != 10 || p[len(p)-3].Failed != 2 || p[len(p)-1].Delivered != 1 {
		t.Errorf("all, billing: %+v", p[len(p)-3:])
	}
	if len(all[1].BreakerOpen) != 0 || all[1].Points[59].Delivered != 0 {
		t.Errorf("all, crm: %+v", all[1])
	}
	if _, err := s.Read(ctx, "billing", "2h"); err == nil {
		t.Error("window 2h was read")
	}
}

// TestSeriesBreakerStillOpen: a breaker open now reads as open (no end);
// once published, a later minute still shows it open from when it opened.
func TestSeriesBreakerStillOpen(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := openTestLog(t, ctx).Series()
	c := &clock{t: time.Now().Truncate(time.Minute).Add(-5 * time.Minute).Add(10 * time.Second)}
	s.now = c.now
	opened := c.now()
	s.Sample(map[string]Gauge{"billing": {BreakerOpen: true}})
	c.set(opened.Add(3 * time.Minute))
	s.Sample(map[string]Gauge{"billing": {BreakerOpen: true}})
	s.Flush(ctx, false)
	got, err := s.Read(ctx, "billing", "1h")
	if err != nil {
		t.Fatal(err)
	}
	if len(got.BreakerOpen) != 1 || !got.BreakerOpen[0].From.Equal(opened) || got.BreakerOpen[0].Until != nil {
		t.Fatalf("breaker open: %+v, want one span from %s, still open", got.BreakerOpen, opened)
	}
}

func fmtp(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}

// BenchmarkSeriesAdd is what rolling up costs each logged attempt, from
// many workers at once over 100 destinations.
func BenchmarkSeriesAdd(b *testing.B) {
	s := newSeries(nil, slog.New(slog.DiscardHandler))
	dests := make([]string, 100)
	for i := range dests {
		dests[i] = "destination-" + string(rune('a'+i%26)) + string(rune('a'+i/26))
	}
	now := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			s.add(&LogEntry{LogEntry: api.LogEntry{Destination: dests[i%len(dests)], Outcome: OutcomeDelivered, At: now, LatencyMS: float64(i % 500)}})
		}
	})
}

// BenchmarkSeriesRead is what a chart costs to read: one destination's day
// (1,440 minutes) and every destination's hour at 1,000 destinations, all
// busy every minute, from one process's roll-ups.
func BenchmarkSeriesRead(b *testing.B) {
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)
	bus, err := OpenBus(ctx, config.NATS{URL: "embedded", DataDir: b.TempDir(), Replicas: 1}, 8<<20, log)
	if err != nil {
		b.Fatal(err)
	}
	defer bus.Close()
	dl, err := OpenDeliveryLog(ctx, bus.NC, 1, time.Hour, 1<<26, log, metrics.New())
	if err != nil {
		b.Fatal(err)
	}
	defer dl.Close()
	s := dl.Series()
	now := time.Now().Truncate(time.Minute)
	dests := make([]string, 1000)
	for i := range dests {
		dests[i] = fmt.Sprintf("d%04d", i)
	}
	var out []*seriesRecord
	for m := range 1440 {
		at := now.Add(-time.Duration(1440-m) * time.Minute).Unix()
		out = append(out, &seriesRecord{Destination: dests[0], Minute: at, Delivered: 50, Failed: 1, Latency: map[int]int{70: 40, 80: 11}, Pending: 3})
		if m >= 1380 {
			for _, d := range dests[1:] {
				out = append(out, &seriesRecord{Destination: d, Minute: at, Delivered: 50, Failed: 1, Latency: map[int]int{70: 40, 80: 11}, Pending: 3})
			}
		}
	}
	s.publish(ctx, out)
	b.Run("one destination, 24h", func(b *testing.B) {
		for b.Loop() {
			sr, err := s.Read(ctx, dests[0], "24h")
			if err != nil || sr.Points[140].Delivered != 500 {
				b.Fatalf("%v %+v", err, sr.Points[140])
			}
		}
	})
	b.Run("1000 destinations, 1h", func(b *testing.B) {
		for b.Loop() {
			all, err := s.readAll(ctx, dests, "1h") // not the reused answer
			if err != nil || len(all) != 1000 || all[999].Points[58].Delivered != 50 {
				b.Fatalf("%v", err)
			}
		}
	})
}

// TestSeriesReadAllReused: every destination's hour is read once per
// allFor however many dashboards ask; after that a new read sees what was
// added.
func TestSeriesReadAllReused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := openTestLog(t, ctx).Series()
	c := &clock{t: time.Now()}
	s.now = c.now
	count := func() int {
		all, err := s.ReadAll(ctx, []string{"crm"}, "1h")
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, p := range all[0].Points {
			n += p.Delivered
		}
		return n
	}
	s.add(&LogEntry{LogEntry: api.LogEntry{Destination: "crm", Outcome: OutcomeDelivered, At: c.now(), LatencyMS: 3}})
	if n := count(); n != 1 {
		t.Fatalf("first read: %d delivered, want 1", n)
	}
	s.add(&LogEntry{LogEntry: api.LogEntry{Destination: "crm", Outcome: OutcomeDelivered, At: c.now(), LatencyMS: 3}})
	if n := count(); n != 1 {
		t.Errorf("read again at once: %d delivered, want the answer reused (1)", n)
	}
	c.set(c.now().Add(allFor))
	if n := count(); n != 2 {
		t.Errorf("read after %s: %d delivered, want 2", allFor, n)
	}
}
