package store

import (
	"context"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/relaydev/relay/relay/api"
)

// Reading the roll-ups: a window's steps, the processes' shares of each
// added up, this process's minute not yet published included.

// window returns the steps of a window ending now: the first step's
// start and the step.
func window(now time.Time, w string) (from time.Time, step time.Duration, n int, err error) {
	step, ok := SeriesWindow(w)
	if !ok {
		return time.Time{}, 0, 0, fmt.Errorf("window: want 1h or 24h, got %q", w)
	}
	n = 60
	if w == "24h" {
		n = 144
	}
	return now.Truncate(step).Add(-time.Duration(n-1) * step), step, n, nil
}

// Read returns one destination's series over the window (1h or 24h).
func (s *Series) Read(ctx context.Context, dest, w string) (api.Series, error) {
	out, err := s.read(ctx, w, subjectSeriesDest+dest, func(d string) bool { return d == dest })
	if err != nil {
		return api.Series{}, err
	}
	if sr, ok := out[dest]; ok {
		return sr, nil
	}
	return s.emptySeries(dest, w), nil
}

// ReadAll returns the series of every named destination over the window;
// an answer is reused for allFor.
func (s *Series) ReadAll(ctx context.Context, dests []string, w string) ([]api.Series, error) {
	key := w + "\x00" + strings.Join(dests, "\x00")
	s.allMu.Lock()
	defer s.allMu.Unlock() // one read at a time; the others wait for it
	if s.all.key == key && s.now().Sub(s.all.at) < allFor && !s.all.at.After(s.now()) {
		return s.all.list, nil
	}
	list, err := s.readAll(ctx, dests, w)
	if err == nil {
		s.all.at, s.all.key, s.all.list = s.now(), key, list
	}
	return list, err
}

func (s *Series) readAll(ctx context.Context, dests []string, w string) ([]api.Series, error) {
	want := map[string]bool{}
	for _, d := range dests {
		want[d] = true
	}
	got, err := s.read(ctx, w, subjectSeriesAll, func(d string) bool { return want[d] })
	if err != nil {
		return nil, err
	}
	list := make([]api.Series, 0, len(dests))
	for _, d := range dests {
		sr, ok := got[d]
		if !ok {
			sr = s.emptySeries(d, w)
		}
		list = append(list, sr)
	}
	return list, nil
}

func (s *Series) emptySeries(dest, w string) api.Series {
	from, step, n, _ := window(s.now(), w)
	return newSeriesBuilder(dest, w, from, step, n).series(s.now())
}

// read adds up the roll-ups on subject and this process's unpublished
// ones, per destination that want keeps.
func (s *Series) read(ctx context.Context, w, subject string, want func(string) bool) (map[string]api.Series, error) {
	now := s.now()
	from, step, n, err := window(now, w)
	if err != nil {
		return nil, err
	}
	s.flushM.RLock()
	defer s.flushM.RUnlock()
	builders := map[string]*seriesBuilder{}
	add := func(r *seriesRecord) {
		if !want(r.Destination) {
			return
		}
		b := builders[r.Destination]
		if b == nil {
			b = newSeriesBuilder(r.Destination, w, from, step, n)
			builders[r.Destination] = b
		}
		b.add(r)
	}
	s.eachLocal(now, add)
	start := from
	cons, err := s.js.OrderedConsumer(ctx, StreamSeries, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subject}, DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &start})
	if err != nil {
		return nil, fmt.Errorf("series: %w", err)
	}
	defer DeleteReader(s.js, StreamSeries, cons)
	err = EachMessage(ctx, cons, func(msg jetstream.Msg, md *jetstream.MsgMetadata) (bool, error) {
		for _, r := range decodeRecords(msg, subject) {
			add(r)
		}
		return md.NumPending > 0, nil
	})
	if err != nil {
		return nil, fmt.Errorf("series: %w", err)
	}
	out := make(map[string]api.Series, len(builders))
	for d, b := range builders {
		out[d] = b.series(now)
	}
	return out, nil
}

// eachLocal gives fn copies of this process's unpublished records, and
// the spans still open up to now.
func (s *Series) eachLocal(now time.Time, fn func(*seriesRecord)) {
	var local []*seriesRecord
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for k, r := range sh.minutes {
			c := *r
			c.Destination = k.dest
			c.Latency = maps.Clone(r.Latency)
			c.Open = slices.Clone(r.Open)
			local = append(local, &c)
		}
		sh.mu.Unlock()
	}
	s.mu.Lock()
	for dest, since := range s.openSince {
		local = append(local, &seriesRecord{Destination: dest, Minute: now.Truncate(time.Minute).Unix(), Open: [][2]int64{{since.Unix(), -1}}})
	}
	s.mu.Unlock()
	for _, r := range local {
		fn(r)
	}
}

func decodeRecords(msg jetstream.Msg, subject string) []*seriesRecord {
	if subject == subjectSeriesAll {
		var list []*seriesRecord
		if jsonv2.Unmarshal(msg.Data(), &list) != nil {
			return nil
		}
		return list
	}
	var r seriesRecord
	if jsonv2.Unmarshal(msg.Data(), &r) != nil {
		return nil
	}
	r.Destination = msg.Subject()[len(subjectSeriesDest):]
	return []*seriesRecord{&r}
}

// seriesBuilder adds records up into a window's steps.
type seriesBuilder struct {
	out     api.Series
	from    time.Time
	step    time.Duration
	latency []*histogram
	open    [][2]int64 // -1: still open
}

func newSeriesBuilder(dest, w string, from time.Time, step time.Duration, n int) *seriesBuilder {
	b := &seriesBuilder{from: from, step: step, latency: make([]*histogram, n)}
	b.out = api.Series{Destination: dest, Window: w, StepSeconds: int(step / time.Second), Points: make([]api.SeriesPoint, n), BreakerOpen: []api.Interval{}}
	for i := range b.out.Points {
		b.out.Points[i].At = from.Add(time.Duration(i) * step).UTC()
	}
	return b
}

func (b *seriesBuilder) add(r *seriesRecord) {
	b.open = append(b.open, r.Open...)
	i := int(time.Unix(r.Minute, 0).Sub(b.from) / b.step)
	if r.Minute < b.from.Unix() || i >= len(b.out.Points) {
		return
	}
	p := &b.out.Points[i]
	p.Delivered += r.Delivered
	p.Failed += r.Failed
	p.DeadLetter += r.DeadLetter
	p.Suppressed += r.Suppressed
	p.Pending = max(p.Pending, r.Pending)
	if len(r.Latency) > 0 && b.latency[i] == nil {
		b.latency[i] = &histogram{}
	}
	for k, v := range r.Latency {
		if k >= 0 && k <= latencyMax {
			b.latency[i].c[k] += v
			b.latency[i].n += v
		}
	}
}

func (b *seriesBuilder) series(now time.Time) api.Series {
	for i, h := range b.latency {
		if h != nil {
			b.out.Points[i].P50MS, b.out.Points[i].P99MS = h.percentiles()
		}
	}
	b.out.BreakerOpen = mergeSpans(b.open, b.from, now)
	return b.out
}

// histogram counts attempts per latency bucket, n in all.
type histogram struct {
	n int
	c [latencyMax + 1]int
}

// percentiles reads the 50th and 99th percentiles: the upper bound of the
// bucket each falls in; nil for no attempts.
func (h *histogram) percentiles() (p50, p99 *float64) {
	if h.n == 0 {
		return nil, nil
	}
	r50, r99 := max(1, (h.n+1)/2), max(1, int(math.Ceil(0.99*float64(h.n))))
	seen := 0
	for k, v := range h.c {
		if v == 0 {
			continue
		}
		seen += v
		if p50 == nil && seen >= r50 {
			u := latencyUpper(k)
			p50 = &u
		}
		if seen >= r99 {
			u := latencyUpper(k)
			return p50, &u
		}
	}
	return p50, p50
}

// mergeSpans joins overlapping spans (an end of -1 is still open, up to
// now), clipped to [from, now].
func mergeSpans(spans [][2]int64, from, now time.Time) []api.Interval {
	out := []api.Interval{}
	if len(spans) == 0 {
		return out
	}
	type span struct {
		a, b int64
		open bool
	}
	list := make([]span, 0, len(spans))
	for _, s := range spans {
		sp := span{a: s[0], b: s[1]}
		if s[1] < 0 {
			sp.b, sp.open = now.Unix(), true
		}
		if sp.b < from.Unix() {
			continue
		}
		sp.a = max(sp.a, from.Unix())
		list = append(list, sp)
	}
	slices.SortFunc(list, func(x, y span) int { return int(x.a - y.a) })
	var merged []span
	for _, sp := range list {
		if n := len(merged); n > 0 && sp.a <= merged[n-1].b+int64(SeriesSample/time.Second)+1 {
			merged[n-1].b = max(merged[n-1].b, sp.b)
			merged[n-1].open = merged[n-1].open || sp.open
			continue
		}
		merged = append(merged, sp)
	}
	for _, sp := range merged {
		iv := api.Interval{From: time.Unix(sp.a, 0).UTC()}
		if !sp.open {
			u := time.Unix(sp.b, 0).UTC()
			iv.Until = &u
		}
		out = append(out, iv)
	}
	return out
}
