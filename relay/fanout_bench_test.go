package relay

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/relaydev/relay/config"
	"github.com/relaydev/relay/relay/activity"
	"github.com/relaydev/relay/relay/ingest"
	"github.com/relaydev/relay/relay/sink"
)

// countSink takes every delivery at once: what is measured is the engine's
// own work per delivery (pull, decode, match, ack, metrics), not a
// connector's.
type countSink struct{ c *counter }

// counter counts deliveries and closes reached at the want-th.
type counter struct {
	n, want atomic.Int64
	reached chan struct{}
}

func (s countSink) Deliver(_ context.Context, _ *sink.Delivery) sink.Attempt {
	if s.c.n.Add(1) == s.c.want.Load() {
		close(s.c.reached)
	}
	return sink.Attempt{At: time.Now()}
}

// BenchmarkFanOut pushes activities through JetStream to D destinations'
// workers and reports the engine's time per delivery: flat in D is the
// goal. With a fraction, each destination takes that share of the catalog.
func BenchmarkFanOut(b *testing.B) {
	tests := []struct {
		destinations int
		fraction     float64
	}{
		{1, 1},
		{10, 1},
		{100, 1},
		{100, 0.05},
		{1000, 0.05},
	}
	for _, tc := range tests {
		b.Run(fmt.Sprintf("destinations=%d/fraction=%g", tc.destinations, tc.fraction), func(b *testing.B) {
			if testing.Short() && tc.destinations > 100 {
				b.Skip("1,000 destinations: not in -short")
			}
			benchFanOut(b, tc.destinations, tc.fraction)
		})
	}
}

func benchFanOut(b *testing.B, destinations int, fraction float64) {
	names := []string{"email.open"}
	if fraction < 1 {
		names = nil
		for _, e := range activity.Builtin().Entries() {
			names = append(names, e.Name)
		}
	}
	k := max(1, int(fraction*float64(len(names))+0.5))
	rng := rand.New(rand.NewPCG(1, 0))
	takers := map[string]int{}
	var yaml strings.Builder
	fmt.Fprintf(&yaml, "nats: {url: embedded, data_dir: %q}\ningest: {tokens: [t]}\nadmin: {token: a}\ndestinations:\n", b.TempDir())
	for i := range destinations {
		var inc []string
		for _, j := range rng.Perm(len(names))[:k] {
			inc = append(inc, names[j])
			takers[names[j]]++
		}
		fmt.Fprintf(&yaml, "  - {name: d%d, type: webhook, url: \"http://127.0.0.1:1/\", allow_private_network: true, secrets: [\"whsec_YmVuY2gtc2VjcmV0LWZvci1yZWxheS1iZW5jaG1hcms=\"], max_in_flight: 8, include: [%s]}\n", i, strings.Join(inc, ", "))
	}
	cfg, err := config.Parse("bench.yaml", []byte(yaml.String()), os.LookupEnv)
	if err != nil {
		b.Fatal(err)
	}
	want := 0
	for i := range b.N {
		want += takers[names[i%len(names)]]
	}
	c := &counter{reached: make(chan struct{})}
	c.want.Store(int64(want))
	sinks := map[string]sink.Connector{}
	for _, d := range cfg.Destinations {
		sinks[d.Name] = sink.One(countSink{c})
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	r, err := New(cfg, Options{Sinks: sinks, Logger: log})
	if err != nil {
		b.Fatal(err)
	}
	r.cfg.Ingest.Listen, r.cfg.Admin.Listen = "127.0.0.1:0", "127.0.0.1:0"
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() { cancel(); <-done }()
	select {
	case <-r.Started():
	case err := <-done:
		b.Fatal(err)
	}
	in := &ingest.Ingest{JS: r.bus.JS, PublishTimeout: time.Minute}
	now := time.Now().UTC()
	b.ResetTimer()
	cpu0 := cpuTime()
	for lo := 0; lo < b.N; lo += 100 {
		var acts []*activity.Activity
		var raws [][]byte
		for i := lo; i < min(lo+100, b.N); i++ {
			name := names[i%len(names)]
			typ, action, _ := activity.ParseName(name)
			a := &activity.Activity{ID: fmt.Sprintf("b%d-%d", b.N, i), Name: name, Type: typ, Action: action, OccurredAt: now, ReceivedAt: now,
				Contact: activity.MustObject(map[string]any{"email": "ann@example.com"}), Attributes: activity.MustObject(map[string]any{"campaign": "bench"})}
			acts = append(acts, a)
			raw, err := json.Marshal(a)
			if err != nil {
				b.Fatal(err)
			}
			raws = append(raws, raw)
		}
		if _, err := in.Publish(ctx, acts, raws); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-c.reached:
	case <-time.After(5 * time.Minute):
		b.Fatalf("%d of %d deliveries after 5 minutes", c.n.Load(), want)
	}
	b.StopTimer()
	// CPU time as well as wall time: on a shared machine it is the steadier
	// of the two, and it counts the embedded nats-server's share.
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(max(want, 1)), "cpu-ns/delivery")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(max(want, 1)), "ns/delivery")
	b.ReportMetric(float64(want)/float64(b.N), "deliveries/op")
}

// cpuTime is the user and system CPU time of this process, in ns.
func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
