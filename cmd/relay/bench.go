package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"text/tabwriter"
	"time"

	"github.com/relaydev/relay/cmd/relay/bench"
)

// cmdBench measures Relay end to end on this machine beside a baseline of
// plain signed POSTs, in the same run. The relay runs as this binary's
// `relay serve` in a child process.
func cmdBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench", stderr)
	var o bench.Options
	deliveryLog, asJSON := benchFlags(fs, &o)
	other := fs.String("relay", "", "run this relay binary's serve instead of this one's (to compare two builds on one bench)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	o.NoDeliveryLog = !*deliveryLog
	if o.IncludeFraction <= 0 || o.IncludeFraction > 1 {
		fmt.Fprintln(stderr, "relay bench: --include-fraction must be in (0, 1]")
		return errUsage
	}
	if o.SampleRatio <= 0 || o.SampleRatio > 1 {
		fmt.Fprintln(stderr, "relay bench: --sample-ratio must be in (0, 1]")
		return errUsage
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("bench: cannot find the relay binary to run: %w", err)
	}
	if *other != "" {
		exe = *other
	}
	o.Serve = func(args ...string) *exec.Cmd {
		return exec.Command(exe, append([]string{"serve"}, args...)...)
	}
	if !*asJSON {
		o.Progress = stderr
	}
	res, err := bench.Run(ctx, o)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, res)
	}
	return printBench(stdout, o, res)
}

// benchFlags defines the bench's flags on fs, setting o, and returns the
// two that are not options: --delivery-log and --json.
func benchFlags(fs *flag.FlagSet, o *bench.Options) (deliveryLog, asJSON *bool) {
	fs.IntVar(&o.Activities, "activities", 100000, "activities to push through")
	fs.IntVar(&o.Destinations, "destinations", 1, "webhook destinations; each gets every activity")
	fs.IntVar(&o.Concurrency, "concurrency", 64, "deliveries in flight per destination, and of the baseline")
	fs.IntVar(&o.PayloadBytes, "payload-bytes", 1024, "approximate size of each activity")
	fs.Float64Var(&o.Rate, "rate", 0, "steady activities per second (0: as fast as possible)")
	fs.IntVar(&o.BatchSize, "batch", 100, "activities per ingest request")
	fs.BoolVar(&o.Backlog, "backlog", false, "pause the destinations while ingesting, then time the drain from resume")
	fs.BoolVar(&o.Order, "order", false, "deliver with order: contact (one attempt at a time per contact, in stored order)")
	fs.BoolVar(&o.Consent, "consent", false, "set consent: email on the destinations (each attempt checks the person's channel state)")
	fs.IntVar(&o.Contacts, "contacts", 0, "contacts the activities spread over (default: one each; 10000 with --order)")
	fs.Float64Var(&o.IncludeFraction, "include-fraction", 1, "each destination takes this random fraction of the catalog (1: every activity)")
	fs.Int64Var(&o.Seed, "seed", 1, "seed of the destinations' random shares of the catalog")
	fs.DurationVar(&o.IdleWindow, "idle", 3*time.Second, "measure the relay's CPU use this long at rest, once started, before sending (0: skip)")
	fs.IntVar(&o.Failing, "failing", 0, "after the run, fail every delivery of this many more activities of each name and measure the relay while it retries them")
	deliveryLog = fs.Bool("delivery-log", true, "keep the delivery log (log.deliveries); --delivery-log=false measures its cost")
	asJSON = fs.Bool("json", false, "print one JSON document")
	fs.BoolVar(&o.OTLP, "otlp", false, "turn telemetry on, exporting every span over OTLP/HTTP to a collector the bench runs")
	fs.Float64Var(&o.SampleRatio, "sample-ratio", 1, "telemetry.sample_ratio with --otlp")
	fs.StringVar(&o.CPUProfile, "cpuprofile", "", "write a CPU profile of the relay process to this file")
	fs.StringVar(&o.MemProfile, "memprofile", "", "write a heap profile of the relay process, taken as it stops after the run, to this file")
	return deliveryLog, asJSON
}

// printBench writes the bench's result as a table, with the rows the
// options make meaningful.
func printBench(w io.Writer, o bench.Options, res *bench.Result) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\t\n", k, v) }
	row("activities", fmt.Sprint(res.Activities))
	row("destinations", fmt.Sprint(res.Destinations))
	if res.Order {
		row("order", fmt.Sprintf("contact, %d contacts", res.Contacts))
	}
	if res.Consent {
		row("consent", "email")
	}
	row("include fraction", fmt.Sprintf("%.3g", res.IncludeFraction))
	row("deliveries", fmt.Sprint(res.Deliveries))
	row("startup s", fmt.Sprintf("%.2f", res.StartupSec))
	row("ingest activities/s", fmt.Sprintf("%.0f", res.IngestPerSec))
	row("delivered/s", fmt.Sprintf("%.0f", res.DeliveredPerSec))
	row("baseline POSTs/s", fmt.Sprintf("%.0f", res.BaselinePerSec))
	row("ratio", fmt.Sprintf("%.2f", res.Ratio))
	row("p50 latency ms", fmt.Sprintf("%.1f", res.P50ms))
	row("p99 latency ms", fmt.Sprintf("%.1f", res.P99ms))
	row("max latency ms", fmt.Sprintf("%.1f", res.MaxMs))
	row("relay peak RSS MB", fmt.Sprintf("%.0f", res.MaxRSSMB))
	row("relay RSS MB when started", fmt.Sprintf("%.0f", res.ReadyRSSMB))
	if res.Destinations > 0 {
		row("relay peak RSS MB per destination", fmt.Sprintf("%.2f", res.RSSMBPerDestination))
	}
	if o.IdleWindow > 0 {
		row("relay CPU at rest, % of a core", fmt.Sprintf("%.1f", res.IdleCPUPct))
	}
	row("relay CPU s per 1000 deliveries", fmt.Sprintf("%.3f", res.RelayCPUSecPer1000))
	row("all CPU s per 1000 deliveries", fmt.Sprintf("%.3f", res.CPUSecPer1000))
	if o.Backlog {
		row("RSS MB with the backlog waiting", fmt.Sprintf("%.0f", res.BacklogRSSMB))
	}
	if res.Destinations > 0 {
		row("GET /v1/destinations ms (median, max)", fmt.Sprintf("%.1f, %.1f", res.AdminP50ms, res.AdminMaxms))
		row("deliveries with a traceparent", fmt.Sprint(res.Traced))
	}
	if res.Telemetry != nil {
		row("spans exported (sample ratio)", fmt.Sprintf("%d (%g)", res.Telemetry.Spans, res.Telemetry.SampleRatio))
	}
	if res.FailingDeliveries > 0 {
		row("failing deliveries, retrying", fmt.Sprint(res.FailingDeliveries))
		row("relay RSS MB while they retry (peak)", fmt.Sprintf("%.0f (%.0f)", res.FailingRSSMB, res.FailingMaxRSSMB))
		row("GET /v1/destinations ms then (median, max)", fmt.Sprintf("%.1f, %.1f", res.FailingAdminP50ms, res.FailingAdminMaxms))
	}
	return tw.Flush()
}
