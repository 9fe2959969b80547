package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"text/tabwriter"

	"github.com/relaydev/relay/relay/bench"
)

// cmdBench measures Relay end to end on this machine beside a baseline of
// plain signed POSTs, in the same run.
func cmdBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench", stderr)
	var o bench.Options
	fs.IntVar(&o.Activities, "activities", 100000, "activities to push through")
	fs.IntVar(&o.Destinations, "destinations", 1, "webhook destinations; each gets every activity")
	fs.IntVar(&o.Concurrency, "concurrency", 64, "deliveries in flight per destination, and of the baseline")
	fs.IntVar(&o.PayloadBytes, "payload-bytes", 1024, "approximate size of each activity")
	fs.Float64Var(&o.Rate, "rate", 0, "steady activities per second (0: as fast as possible)")
	fs.IntVar(&o.BatchSize, "batch", 100, "activities per ingest request")
	fs.BoolVar(&o.Backlog, "backlog", false, "pause the destinations while ingesting, then time the drain from resume")
	fs.BoolVar(&o.Order, "order", false, "deliver with order: contact (one attempt at a time per contact, in stored order)")
	fs.IntVar(&o.Contacts, "contacts", 0, "contacts the activities spread over (default: one each; 10000 with --order)")
	asJSON := fs.Bool("json", false, "print one JSON document")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the run to this file")
	heapProfile := fs.String("memprofile", "", "with --backlog: write a heap profile, taken with the backlog waiting, to this file")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if !*asJSON {
		o.Progress = stderr
	}
	if *heapProfile != "" {
		o.HeapProfile = func() {
			if f, err := os.Create(*heapProfile); err == nil {
				_ = pprof.WriteHeapProfile(f)
				f.Close()
			}
		}
	}
	res, err := bench.Run(ctx, o)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, res)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\t\n", k, v) }
	row("activities", fmt.Sprint(res.Activities))
	row("destinations", fmt.Sprint(res.Destinations))
	if res.Order {
		row("order", fmt.Sprintf("contact, %d contacts", res.Contacts))
	}
	row("ingest activities/s", fmt.Sprintf("%.0f", res.IngestPerSec))
	row("delivered/s", fmt.Sprintf("%.0f", res.DeliveredPerSec))
	row("baseline POSTs/s", fmt.Sprintf("%.0f", res.BaselinePerSec))
	row("ratio", fmt.Sprintf("%.2f", res.Ratio))
	row("p50 latency ms", fmt.Sprintf("%.1f", res.P50ms))
	row("p99 latency ms", fmt.Sprintf("%.1f", res.P99ms))
	row("max latency ms", fmt.Sprintf("%.1f", res.MaxMs))
	row("peak RSS MB", fmt.Sprintf("%.0f", res.MaxRSSMB))
	row("CPU s per 1000 deliveries", fmt.Sprintf("%.3f", res.CPUSecPer1000))
	if o.Backlog {
		row("RSS MB with the backlog waiting", fmt.Sprintf("%.0f", res.BacklogRSSMB))
	}
	return tw.Flush()
}
