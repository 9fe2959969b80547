// Package bench measures Relay end to end on this machine: ingest through
// JetStream to signed webhooks received on loopback, beside a baseline of
// plain signed POSTs of the same bodies to the same receiver. The relay runs
// as `relay serve` in a process of its own, so its CPU time and memory are
// measured apart from the producers' and the receiver's.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/relaydev/relay/connectors/webhook"
	"github.com/relaydev/relay/relay/activity"
	"github.com/relaydev/relay/relay/telemetry/collector"
)

// Options are the bench's knobs.
type Options struct {
	Activities   int     // activities to push through
	Destinations int     // webhook destinations; 0 measures ingest alone
	Concurrency  int     // deliveries in flight per destination, and of the baseline
	PayloadBytes int     // approximate size of each activity's JSON
	Rate         float64 // activities per second; 0 = as fast as possible
	Producers    int     // concurrent ingest clients
	Backlog      bool    // pause the destinations while ingesting, then measure the drain
	BatchSize    int     // activities per ingest request
	// Order sets order: contact on the destinations; Contacts is how many
	// contacts the activities spread over (0: one each, or 10,000 with Order).
	Order    bool
	Contacts int
	// Consent sets consent: email on the destinations: every attempt
	// checks the person's channel state (docs/consent.md).
	Consent bool
	// IncludeFraction below 1 gives each destination a random share of the
	// catalog (at least one activity) and spreads the activities over the
	// catalog, so each matches few destinations; 1 (or 0) sends every
	// destination every activity, all email.open.
	IncludeFraction float64
	Seed            int64 // of the random shares; the same seed, the same shares
	// Serve makes the command that runs `relay serve` with these arguments;
	// the relay runs in that process so its CPU time and memory are its own.
	Serve func(args ...string) *exec.Cmd
	// CPUProfile and MemProfile, when set, are passed to the relay's serve
	// (--cpuprofile, --memprofile): profiles of the relay alone.
	CPUProfile, MemProfile string
	Progress               io.Writer
	// IdleWindow, when set, is how long the started relay is left idle,
	// before any activity, to measure what its destinations cost at rest.
	IdleWindow time.Duration
	// NoDeliveryLog turns the delivery log off (log.deliveries: false), to
	// measure what it costs.
	NoDeliveryLog bool
	// Failing, when above 0, has the receiver fail every delivery once the
	// run is over, sends Failing activities of each name the run used,
	// and measures the relay while every destination retries them: its
	// resident set and GET /v1/destinations.
	Failing int
	// OTLP turns telemetry on, exporting every span to a collector the
	// bench runs in its own process, at SampleRatio (0 means 1).
	OTLP        bool
	SampleRatio float64
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
	if o.IncludeFraction <= 0 || o.IncludeFraction > 1 {
		o.IncludeFraction = 1
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	if o.SampleRatio <= 0 || o.SampleRatio > 1 {
		o.SampleRatio = 1
	}
}

// Result is what `relay bench --json` prints.
type Result struct {
	Activities      int     `json:"activities"`
	Destinations    int     `json:"destinations"`
	IncludeFraction float64 `json:"include_fraction"`
	Deliveries      int     `json:"deliveries"` // activities times the destinations each matches
	Concurrency     int     `json:"concurrency"`
	PayloadBytes    int     `json:"payload_bytes"`
	Rate            float64 `json:"rate,omitempty"`
	Order           bool    `json:"order,omitempty"`
	Contacts        int     `json:"contacts,omitempty"`
	Consent         bool    `json:"consent,omitempty"`
	StartupSec      float64 `json:"startup_sec"` // from starting the relay to its consumers ready and APIs serving
	IngestPerSec    float64 `json:"ingest_per_sec"`
	IngestRetries   int     `json:"ingest_retries"` // ingest requests answered 503 and sent again
	DeliveredPerSec float64 `json:"delivered_per_sec"`
	BaselinePerSec  float64 `json:"baseline_per_sec"`
	Ratio           float64 `json:"ratio"`
	P50ms           float64 `json:"p50_ms"`
	P99ms           float64 `json:"p99_ms"`
	MaxMs           float64 `json:"max_ms"`
	// The relay process alone: its peak and just-started resident set, the
	// peak shared out over the destinations, and its CPU time.
	MaxRSSMB            float64 `json:"max_rss_mb"`
	ReadyRSSMB          float64 `json:"ready_rss_mb"`
	RSSMBPerDestination float64 `json:"rss_mb_per_destination,omitempty"`
	RelayCPUSecPer1000  float64 `json:"relay_cpu_sec_per_1000"`
	IdleCPUPct          float64 `json:"idle_cpu_pct,omitempty"` // relay's CPU while idle, percent of one core
	// CPU time of the relay, the producers and the receiver together.
	CPUSecPer1000 float64 `json:"cpu_sec_per_1000"`
	BacklogRSSMB  float64 `json:"backlog_rss_mb,omitempty"` // relay's resident set with the whole backlog waiting
	// GET /v1/destinations once every delivery arrived: the median and the
	// slowest of adminSamples requests, in milliseconds.
	AdminP50ms float64 `json:"admin_p50_ms,omitempty"`
	AdminMaxms float64 `json:"admin_max_ms,omitempty"`
	// With Failing: the failing deliveries, the relay's resident set once
	// each was attempted twice and its peak, and GET /v1/destinations then.
	FailingDeliveries int     `json:"failing_deliveries,omitempty"`
	FailingRSSMB      float64 `json:"failing_rss_mb,omitempty"`
	FailingMaxRSSMB   float64 `json:"failing_max_rss_mb,omitempty"`
	FailingAdminP50ms float64 `json:"failing_admin_p50_ms,omitempty"`
	FailingAdminMaxms float64 `json:"failing_admin_max_ms,omitempty"`
	BadSignatures     int     `json:"bad_signatures"`
	// Traced counts the deliveries (attempts, retries and duplicates too)
	// that carried a valid traceparent.
	Traced int `json:"traced"`
	// Telemetry is what the bench's collector received with --otlp.
	Telemetry *TelemetryResult `json:"telemetry,omitempty"`
}

// TelemetryResult is what the collector of `relay bench --otlp` received.
type TelemetryResult struct {
	SampleRatio float64 `json:"sample_ratio"`
	Spans       int     `json:"spans"`
	Exports     int     `json:"exports"`
}

const (
	benchSecret = "whsec_YmVuY2gtc2VjcmV0LWZvci1yZWxheS1iZW5jaG1hcms="
	benchToken  = "bench-token"
	benchAdmin  = "bench-admin"
)

// Run measures the pipeline, then the baseline.
func Run(ctx context.Context, o Options) (*Result, error) {
	o.Defaults()
	if o.Serve == nil {
		return nil, errors.New("bench: no command to run the relay")
	}
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
	res := &Result{Activities: o.Activities, Destinations: o.Destinations, IncludeFraction: o.IncludeFraction,
		Concurrency: o.Concurrency, PayloadBytes: o.PayloadBytes, Rate: o.Rate, Order: o.Order, Contacts: o.Contacts, Consent: o.Consent}
	col, stopCol, err := startCollector(o)
	if err != nil {
		return nil, err
	}
	defer stopCol()
	if err := runPipeline(ctx, o, dir, recv, col, res); err != nil {
		return nil, err
	}
	res.Traced = int(recv.traced.Load())
	if col != nil { // the relay exported its last spans as it stopped
		spans, exports := col.Count()
		res.Telemetry = &TelemetryResult{SampleRatio: o.SampleRatio, Spans: spans, Exports: exports}
	}
	base, err := baseline(ctx, o, recv, key)
	if err != nil {
		return nil, err
	}
	res.BaselinePerSec = base
	if base > 0 && o.Destinations > 0 {
		res.Ratio = res.DeliveredPerSec / base
	}
	res.BadSignatures = recv.badSignatures()
	return res, nil
}

// plan is what the bench sends and what each destination takes.
type plan struct {
	names    []activity.Entry // activity i is names[i%len(names)]
	includes [][]string       // by destination; nil takes every activity
	takers   map[string]int   // activity name -> destinations taking it
}

func newPlan(o Options) plan {
	p := plan{takers: map[string]int{}}
	if o.IncludeFraction >= 1 {
		e, _ := activity.Builtin().Lookup("email.open")
		p.names = []activity.Entry{e}
		p.includes = make([][]string, o.Destinations)
		p.takers[e.Name] = o.Destinations
		return p
	}
	p.names = activity.Builtin().Entries()
	rng := rand.New(rand.NewPCG(uint64(o.Seed), 0))
	k := max(1, int(math.Round(o.IncludeFraction*float64(len(p.names)))))
	for range o.Destinations {
		var inc []string
		for _, i := range rng.Perm(len(p.names))[:k] {
			inc = append(inc, p.names[i].Name)
			p.takers[p.names[i].Name]++
		}
		slices.Sort(inc)
		p.includes = append(p.includes, inc)
	}
	return p
}

// deliveries is how many webhooks the activities make in all.
func (p plan) deliveries(activities, destinations int) int {
	if destinations == 0 {
		return 0
	}
	n := 0
	for i := range activities {
		n += p.takers[p.names[i%len(p.names)].Name]
	}
	return n
}

// startCollector starts the OTLP collector of --otlp on loopback (nil
// without it); stop stops it.
func startCollector(o Options) (col *collector.Collector, stop func(), err error) {
	if !o.OTLP {
		return nil, func() {}, nil
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, fmt.Errorf("bench collector: %w", err)
	}
	col = collector.New(false)
	srv := col.Serve(ln)
	return col, func() { srv.Close() }, nil
}

func benchConfig(o Options, p plan, dir, url, otlp string) string {
	var b strings.Builder
	// The log is text at info: the bench reads the addresses from its
	// "relay started" line. The delivery log is on unless NoDeliveryLog.
	fmt.Fprintf(&b, "nats: {url: embedded, data_dir: %q}\nlog: {level: info, format: text, deliveries: %t}\ningest: {listen: \"127.0.0.1:0\", tokens: [%s]}\nadmin: {listen: \"127.0.0.1:0\", token: %s}\n",
		filepath.Join(dir, "data"), !o.NoDeliveryLog, benchToken, benchAdmin)
	if otlp != "" {
		fmt.Fprintf(&b, "telemetry: {otlp_endpoint: %q, sample_ratio: %g}\n", otlp, o.SampleRatio)
	}
	b.WriteString("destinations:\n")
	order := "none"
	if o.Order {
		order = "contact"
	}
	for i := range o.Destinations {
		fmt.Fprintf(&b, "  - {name: d%d, type: webhook, url: \"%s/d%d\", allow_private_network: true, secrets: [%q], max_in_flight: %d, order: %s, retry: {schedule: [100ms, 1s, 5s]}",
			i, url, i, benchSecret, o.Concurrency, order)
		if o.Consent {
			b.WriteString(", consent: email")
		}
		if inc := p.includes[i]; inc != nil {
			fmt.Fprintf(&b, ", include: [%s]", strings.Join(inc, ", "))
		}
		b.WriteString("}\n")
	}
	return b.String()
}

// runPipeline starts the relay on the plan's config, measures it at rest,
// then with the activities going through, and stops it, recording into res.
func runPipeline(ctx context.Context, o Options, dir string, recv *receiver, col *collector.Collector, res *Result) error {
	p := newPlan(o)
	r, err := launchRelay(ctx, o, p, dir, recv, col)
	if err != nil {
		return err
	}
	stopped := false
	defer func() {
		if !stopped { // a failed run: still stopped gently, so its profiles are written
			_ = r.stop()
		}
	}()
	res.StartupSec = r.startup.Seconds()
	res.ReadyRSSMB = r.rssMB()
	if err := measureIdle(ctx, o, r, res); err != nil {
		return err
	}
	if o.Backlog {
		if err := setAll(ctx, r, o, true); err != nil {
			return err
		}
	}
	if err := measureRun(ctx, o, p, r, recv, res); err != nil {
		return err
	}
	stopped = true
	return r.stop()
}

// launchRelay writes the bench's config into dir and starts the relay on
// it, writing the profiles asked for.
func launchRelay(ctx context.Context, o Options, p plan, dir string, recv *receiver, col *collector.Collector) (*relayProc, error) {
	path := filepath.Join(dir, "relay.yaml")
	otlp := ""
	if col != nil {
		otlp = col.URL()
	}
	if err := os.WriteFile(path, []byte(benchConfig(o, p, dir, recv.url(), otlp)), 0o600); err != nil {
		return nil, err
	}
	args := []string{"-c", path}
	if o.CPUProfile != "" {
		args = append(args, "--cpuprofile", o.CPUProfile)
	}
	if o.MemProfile != "" {
		args = append(args, "--memprofile", o.MemProfile)
	}
	return startRelay(ctx, o.Serve, args, benchAdmin, 5*time.Minute)
}

// measureIdle leaves the started relay idle for o.IdleWindow, when set,
// and records its CPU use meanwhile: what the destinations cost doing
// nothing.
func measureIdle(ctx context.Context, o Options, r *relayProc, res *Result) error {
	if o.IdleWindow <= 0 {
		return nil
	}
	idle0 := r.cpuSeconds()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(o.IdleWindow):
	}
	res.IdleCPUPct = (r.cpuSeconds() - idle0) / o.IdleWindow.Seconds() * 100
	return nil
}

// measureRun ingests the activities, waits for their deliveries (if any),
// reporting progress meanwhile, and records the rates, latencies, CPU time
// and peak memory.
func measureRun(ctx context.Context, o Options, p plan, r *relayProc, recv *receiver, res *Result) error {
	prod := newProducer(o, p.names, "http://"+r.ingest+"/v1/activities", benchToken)
	relayCPU0, cpu0 := r.cpuSeconds(), cpuSeconds()
	start := time.Now()
	want := p.deliveries(o.Activities, o.Destinations)
	res.Deliveries = want
	progress := startProgress(ctx, o, recv, want, start)
	err := ingest(ctx, o, prod, res)
	if err == nil && want != 0 {
		err = awaitDeliveries(ctx, o, r, recv, prod, want, start, res)
	}
	progress()
	if err != nil {
		return err
	}
	recordCost(o, r, res, want, relayCPU0, cpu0)
	if o.Destinations > 0 {
		if res.AdminP50ms, res.AdminMaxms, err = r.adminLatency(ctx, adminSamples); err != nil {
			return err
		}
	}
	if o.Failing > 0 && o.Destinations > 0 {
		return measureFailing(ctx, o, p, r, recv, res)
	}
	return nil
}

// measureFailing has the receiver fail every delivery, sends o.Failing
// activities of each name, waits until every delivery of them failed
// twice (the destinations are retrying them), and records the relay's
// resident set and the admin API's latency then.
func measureFailing(ctx context.Context, o Options, p plan, r *relayProc, recv *receiver, res *Result) error {
	recv.failing.Store(true)
	fo := o
	fo.Activities = o.Failing * len(p.names)
	prod := newProducer(fo, p.names, "http://"+r.ingest+"/v1/activities", benchToken)
	prod.idPrefix = "bench-failing-"
	if _, err := prod.run(ctx); err != nil {
		return err
	}
	res.FailingDeliveries = p.deliveries(fo.Activities, o.Destinations)
	want := int64(2 * res.FailingDeliveries)
	deadline := time.Now().Add(5 * time.Minute)
	for recv.failed.Load() < want {
		if time.Now().After(deadline) {
			return fmt.Errorf("bench: %d of %d failing attempts arrived within 5m", recv.failed.Load(), want)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	res.FailingRSSMB = r.rssMB()
	var err error
	if res.FailingAdminP50ms, res.FailingAdminMaxms, err = r.adminLatency(ctx, adminSamples); err != nil {
		return err
	}
	res.FailingMaxRSSMB = r.maxRSSMB()
	return nil
}

// ingest sends every activity and records the ingest rate and retries.
func ingest(ctx context.Context, o Options, prod *producer, res *Result) error {
	ingestDur, err := prod.run(ctx)
	if err != nil {
		return err
	}
	res.IngestPerSec = float64(o.Activities) / ingestDur.Seconds()
	res.IngestRetries = int(prod.retries.Load())
	return nil
}

// awaitDeliveries waits for the want deliveries, resuming the destinations
// first with a backlog, and records their rate, timed from start (from the
// resume with a backlog), and their latencies.
func awaitDeliveries(ctx context.Context, o Options, r *relayProc, recv *receiver, prod *producer, want int, start time.Time, res *Result) error {
	if o.Backlog { // the drain is timed from the resume
		res.BacklogRSSMB = r.rssMB()
		start = time.Now()
		if err := setAll(ctx, r, o, false); err != nil {
			return err
		}
	}
	if err := recv.wait(ctx, want, 10*time.Minute); err != nil {
		return err
	}
	res.DeliveredPerSec = float64(want) / recv.lastAt().Sub(start).Seconds()
	res.P50ms, res.P99ms, res.MaxMs = recv.latencies(prod.acceptedAt)
	return nil
}

// recordCost records the CPU time since relayCPU0 and cpu0, the relay's
// and everyone's, per 1000 deliveries (per 1000 activities when ingest
// alone), and the relay's peak memory.
func recordCost(o Options, r *relayProc, res *Result, want int, relayCPU0, cpu0 float64) {
	per := float64(max(want, 1))
	if want == 0 { // ingest alone
		per = float64(o.Activities)
	}
	relayCPU := r.cpuSeconds() - relayCPU0
	res.RelayCPUSecPer1000 = relayCPU / per * 1000
	res.CPUSecPer1000 = (relayCPU + cpuSeconds() - cpu0) / per * 1000
	res.MaxRSSMB = r.maxRSSMB()
	if o.Destinations > 0 {
		res.RSSMBPerDestination = res.MaxRSSMB / float64(o.Destinations)
	}
}

func setAll(ctx context.Context, r *relayProc, o Options, pause bool) error {
	for i := range o.Destinations {
		if err := r.setState(ctx, fmt.Sprintf("d%d", i), pause); err != nil {
			return err
		}
	}
	return nil
}

func startProgress(ctx context.Context, o Options, recv *receiver, want int, start time.Time) (stop func()) {
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
				fmt.Fprintf(o.Progress, "  %5.1fs  delivered %d/%d  (%.0f/s)\n", time.Since(start).Seconds(), n, want, float64(n)/time.Since(start).Seconds())
			}
		}
	}()
	return func() { cancel(); <-done }
}
