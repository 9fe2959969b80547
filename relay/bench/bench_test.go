package bench

import (
	"context"
	"testing"
	"time"
)

// TestRunSmall runs the whole bench on a small load: every delivery arrives
// verified, and each figure is filled in.
func TestRunSmall(t *testing.T) {
	tests := []Options{
		{Activities: 500, Destinations: 2, Concurrency: 8, PayloadBytes: 300},
		{Activities: 300, Destinations: 1, Concurrency: 4, Backlog: true},
		{Activities: 200, Destinations: 1, Concurrency: 4, Rate: 400},
		{Activities: 500, Destinations: 0},
		{Activities: 500, Destinations: 1, Concurrency: 8, Order: true, Contacts: 50},
	}
	for _, o := range tests {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		res, err := Run(ctx, o)
		cancel()
		if err != nil {
			t.Fatalf("%+v: %v", o, err)
		}
		if res.BadSignatures != 0 || res.IngestPerSec <= 0 || res.MaxRSSMB <= 0 || res.BaselinePerSec <= 0 {
			t.Errorf("%+v: result %+v", o, res)
		}
		if o.Destinations > 0 && (res.DeliveredPerSec <= 0 || res.Ratio <= 0 || res.P99ms < res.P50ms || res.MaxMs < res.P99ms) {
			t.Errorf("%+v: delivery figures %+v", o, res)
		}
		if o.Backlog && res.BacklogRSSMB <= 0 {
			t.Errorf("backlog RSS not measured: %+v", res)
		}
	}
}
