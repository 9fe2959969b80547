// Package bench measures Relay end to end on this machine: ingest through
// JetStream to signed webhooks received on loopback, beside a baseline of
// plain signed POSTs of the same bodies to the same receiver.
package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/relaydev/relay/config"
	"github.com/relaydev/relay/connectors/webhook"
	"github.com/relaydev/relay/relay"
)

// Options are the bench's knobs.
type Options struct {
	Activities   int     // activities to push through
	Destinations int     // webhook destinations, each gets every activity; 0 measures ingest alone
	Concurrency  int     // deliveries in flight per destination, and of the baseline
	PayloadBytes int     // approximate size of each activity's JSON
	Rate         float64 // activities per second; 0 = as fast as possible
	Producers    int     // concurrent ingest clients
	Backlog      bool    // pause the destinations while ingesting, then measure the drain
	// Order sets order: contact on the destinations; Contacts is how many
	// contacts the activities spread over (0: one each, or 10,000 with Order).
	Order    bool
	Contacts int
	// HeapProfile, when set, gets a heap profile written with the backlog waiting.
	HeapProfile func()
	BatchSize   int // activities per ingest request
	Progress    io.Writer
}

// Defaults fills what is unset with values that finish in under a minute on
// two cores.
func (o *Options) Defaults() {
	if o.Activities <= 0 {
		o.Activities = 100000
	}
	if o.Destinations < 0 {
		o.Destinations = 0
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 64
	}
	if o.PayloadBytes <= 0 {
		o.PayloadBytes = 1024
	}
	if o.Producers <= 0 {
		o.Producers = 4
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 100
	}
	if o.Contacts <= 0 && o.Order {
		o.Contacts = 10000
	}
}

// Result is what `relay bench --json` prints.
type Result struct {
	Activities      int     `json:"activities"`
	Destinations    int     `json:"destinations"`
	Concurrency     int     `json:"concurrency"`
	PayloadBytes    int     `json:"payload_bytes"`
	Rate            float64 `json:"rate,omitempty"`
	Order           bool    `json:"order,omitempty"`
	Contacts        int     `json:"contacts,omitempty"`
	IngestPerSec    float64 `json:"ingest_per_sec"`
	DeliveredPerSec float64 `json:"delivered_per_sec"`
	BaselinePerSec  float64 `json:"baseline_per_sec"`
	Ratio           float64 `json:"ratio"`
	P50ms           float64 `json:"p50_ms"`
	P99ms           float64 `json:"p99_ms"`
	MaxMs           float64 `json:"max_ms"`
	MaxRSSMB        float64 `json:"max_rss_mb"`
	CPUSecPer1000   float64 `json:"cpu_sec_per_1000"`
	BacklogRSSMB    float64 `json:"backlog_rss_mb,omitempty"` // resident set with the whole backlog waiting
	BadSignatures   int     `json:"bad_signatures"`
}

const benchSecret = "whsec_YmVuY2gtc2VjcmV0LWZvci1yZWxheS1iZW5jaG1hcms="

// Run measures the pipeline, then the baseline, in this process.
func Run(ctx context.Context, o Options) (*Result, error) {
	o.Defaults()
	dir, err := os.MkdirTemp("", "relay-bench")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	key, err := webhook.ParseSecret(benchSecret)
	if err != nil {
		return nil, err
	}
	recv, err := newReceiver(benchSecret, o.Activities)
	if err != nil {
		return nil, err
	}
	defer recv.close()
	res := &Result{Activities: o.Activities, Destinations: o.Destinations, Concurrency: o.Concurrency, PayloadBytes: o.PayloadBytes, Rate: o.Rate, Order: o.Order, Contacts: o.Contacts}
	if err := runPipeline(ctx, o, dir, recv, res); err != nil {
		return nil, err
	}
	base, err := baseline(ctx, o, recv, key)
	if err != nil {
		return nil, err
	}
	res.BaselinePerSec = base
	if base > 0 && o.Destinations > 0 {
		res.Ratio = res.DeliveredPerSec / base
	}
	res.MaxRSSMB = maxRSSMB()
	res.BadSignatures = recv.badSignatures()
	return res, nil
}

func benchConfig(o Options, dir, url string) (*config.Config, error) {
	yaml := fmt.Sprintf("nats: {url: embedded, data_dir: %q}\ningest: {listen: \"127.0.0.1:0\", tokens: [bench-token]}\nadmin: {listen: \"127.0.0.1:0\", token: bench-admin}\ndestinations:\n", filepath.Join(dir, "data"))
	order := "none"
	if o.Order {
		order = "contact"
	}
	for i := range o.Destinations {
		yaml += fmt.Sprintf("  - {name: d%d, type: webhook, url: \"%s/d%d\", allow_private_network: true, secrets: [%q], max_in_flight: %d, order: %s, retry: {schedule: [100ms, 1s, 5s]}}\n",
			i, url, i, benchSecret, o.Concurrency, order)
	}
	return config.Parse("bench.yaml", []byte(yaml), os.LookupEnv)
}

func runPipeline(ctx context.Context, o Options, dir string, recv *receiver, res *Result) error {
	cfg, err := benchConfig(o, dir, recv.url())
	if err != nil {
		return err
	}
	sinks := map[string]any{}
	for _, d := range cfg.Destinations {
		s, err := webhook.New(d, webhook.Options{})
		if err != nil {
			return err
		}
		defer s.Close()
		sinks[d.Name] = s
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	r, err := relay.New(cfg, relay.Options{Sinks: sinks, Logger: log})
	if err != nil {
		return err
	}
	if err := r.Listen(); err != nil {
		return err
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(runCtx) }()
	defer func() { stop(); <-done }()
	select {
	case <-r.Started():
	case err := <-done:
		return fmt.Errorf("relay did not start: %w", err)
	}
	if o.Backlog {
		if err := setAll(ctx, r, cfg, relay.StatePaused); err != nil {
			return err
		}
	}
	p := newProducer(o, "http://"+r.IngestAddr()+"/v1/activities", "bench-token", recv)
	cpu0 := cpuSeconds()
	start := time.Now()
	progress := startProgress(ctx, o, recv, start)
	ingestDur, err := p.run(ctx)
	if err != nil {
		progress()
		return err
	}
	res.IngestPerSec = float64(o.Activities) / ingestDur.Seconds()
	want := o.Activities * o.Destinations
	if want == 0 { // ingest alone
		progress()
		res.CPUSecPer1000 = (cpuSeconds() - cpu0) / float64(o.Activities) * 1000
		return nil
	}
	if o.Backlog { // the drain is timed from the resume
		res.BacklogRSSMB = rssMB()
		if o.HeapProfile != nil {
			o.HeapProfile()
		}
		start = time.Now()
		if err := setAll(ctx, r, cfg, relay.StateActive); err != nil {
			return err
		}
	}
	if err := recv.wait(ctx, want, 10*time.Minute); err != nil {
		progress()
		return err
	}
	elapsed := recv.lastAt().Sub(start)
	progress()
	cpu := cpuSeconds() - cpu0
	res.DeliveredPerSec = float64(want) / elapsed.Seconds()
	res.CPUSecPer1000 = cpu / float64(want) * 1000
	res.P50ms, res.P99ms, res.MaxMs = recv.latencies(p.acceptedAt)
	return nil
}

func setAll(ctx context.Context, r *relay.Relay, cfg *config.Config, state string) error {
	for _, d := range cfg.Destinations {
		if err := r.SetState(ctx, d.Name, state); err != nil {
			return err
		}
	}
	return nil
}

func startProgress(ctx context.Context, o Options, recv *receiver, start time.Time) (stop func()) {
	if o.Progress == nil {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				n := recv.count()
				fmt.Fprintf(o.Progress, "  %5.1fs  delivered %d/%d  (%.0f/s)\n", time.Since(start).Seconds(), n, o.Activities*o.Destinations, float64(n)/time.Since(start).Seconds())
			}
		}
	}()
	return func() { cancel(); <-done }
}
