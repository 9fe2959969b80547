package bench

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/relaydev/relay/connectors/webhook"
	"github.com/relaydev/relay/relay"
	"github.com/relaydev/relay/relay/sink"
)

// serveEnv, set, makes the test binary the relay the bench measures: what
// `relay serve` does, for webhook destinations.
const serveEnv = "RELAY_BENCH_TEST_SERVE"

func TestMain(m *testing.M) {
	if os.Getenv(serveEnv) != "" {
		if err := serve(os.Args[1:]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	path := fs.String("c", "", "config")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	cfg, err := relay.LoadConfig(*path)
	if err != nil {
		return err
	}
	sinks := map[string]sink.Connector{}
	for _, d := range cfg.Destinations {
		s, err := webhook.New(d, webhook.Options{})
		if err != nil {
			return err
		}
		defer s.Close()
		sinks[d.Name] = sink.One(s)
	}
	r, err := relay.New(cfg, relay.Options{Sinks: sinks, Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))})
	if err != nil {
		return err
	}
	return r.Run(ctx)
}

func testServe(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), serveEnv+"=1")
	return cmd
}

// TestRunSmall runs the whole bench on a small load: every delivery arrives
// verified, and each figure is filled in.
func TestRunSmall(t *testing.T) {
	tests := []Options{
		{Activities: 500, Destinations: 2, Concurrency: 8, PayloadBytes: 300},
		{Activities: 300, Destinations: 1, Concurrency: 4, Backlog: true},
		{Activities: 200, Destinations: 1, Concurrency: 4, Rate: 400},
		{Activities: 400, Destinations: 20, Concurrency: 2, IncludeFraction: 0.1},
		{Activities: 500, Destinations: 0},
		{Activities: 500, Destinations: 1, Concurrency: 8, Order: true, Contacts: 50},
	}
	for _, o := range tests {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		o.Serve = testServe
		res, err := Run(ctx, o)
		cancel()
		if err != nil {
			t.Fatalf("%+v: %v", o, err)
		}
		if res.BadSignatures != 0 || res.IngestPerSec <= 0 || res.MaxRSSMB <= 0 || res.ReadyRSSMB <= 0 || res.BaselinePerSec <= 0 ||
			res.StartupSec <= 0 || res.RelayCPUSecPer1000 <= 0 || res.CPUSecPer1000 < res.RelayCPUSecPer1000 {
			t.Errorf("%+v: result %+v", o, res)
		}
		if o.Destinations > 0 && (res.DeliveredPerSec <= 0 || res.Ratio <= 0 || res.P99ms < res.P50ms || res.MaxMs < res.P99ms ||
			res.RSSMBPerDestination <= 0 || res.Deliveries <= 0) {
			t.Errorf("%+v: delivery figures %+v", o, res)
		}
		if o.IncludeFraction == 0 && res.Deliveries != o.Activities*o.Destinations {
			t.Errorf("%+v: %d deliveries, want every activity to every destination", o, res.Deliveries)
		}
		if o.Backlog && res.BacklogRSSMB <= 0 {
			t.Errorf("backlog RSS not measured: %+v", res)
		}
	}
}

// TestPlanShares: with a fraction, each destination takes that share of the
// catalog, the same for the same seed, and the deliveries counted are those
// the shares make.
func TestPlanShares(t *testing.T) {
	tests := []struct {
		fraction     float64
		destinations int
	}{
		{0.05, 100},
		{0.5, 7},
		{0.001, 3}, // at least one activity each
	}
	for _, tc := range tests {
		o := Options{Destinations: tc.destinations, IncludeFraction: tc.fraction, Seed: 7}
		o.Defaults()
		p, again := newPlan(o), newPlan(o)
		if len(p.includes) != tc.destinations {
			t.Fatalf("%v: %d include lists", tc, len(p.includes))
		}
		want := max(1, int(tc.fraction*float64(len(p.names))+0.5))
		taken := map[string]int{}
		for i, inc := range p.includes {
			if len(inc) != want {
				t.Errorf("%v: destination %d takes %d activities, want %d", tc, i, len(inc), want)
			}
			if fmt.Sprint(inc) != fmt.Sprint(again.includes[i]) {
				t.Errorf("%v: the same seed gave %v then %v", tc, inc, again.includes[i])
			}
			for _, n := range inc {
				taken[n]++
			}
		}
		n := 0
		for i := range 1000 {
			n += taken[p.names[i%len(p.names)].Name]
		}
		if got := p.deliveries(1000, tc.destinations); got != n {
			t.Errorf("%v: deliveries %d, want %d", tc, got, n)
		}
	}
}
