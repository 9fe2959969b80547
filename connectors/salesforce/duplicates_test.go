package salesforce

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/relaydev/relay/config"
	"github.com/relaydev/relay/connectors/salesforce/sftest"
	"github.com/relaydev/relay/relay/sink"
)

// drain delivers ds as the worker would until each is settled: batches of
// at most size, what failed for a while (a timeout, a 503, a row left
// unprocessed) sent again; a permanent failure fails the test.
func drain(t *testing.T, s *Sink, ds []*sink.Delivery, size int) (rounds int) {
	t.Helper()
	for rounds = 1; len(ds) > 0; rounds++ {
		if rounds > 40 {
			t.Fatalf("%d activities still not delivered after 40 rounds", len(ds))
		}
		var again []*sink.Delivery
		for i := 0; i < len(ds); i += size {
			batch := ds[i:min(i+size, len(ds))]
			for j, at := range s.DeliverBatch(context.Background(), batch) {
				if at.Err == nil {
					continue
				}
				if k, _ := sink.Classify(at.Err); k == sink.Permanent {
					t.Fatalf("activity %d: %v", i+j, at.Err)
				}
				again = append(again, batch[j])
			}
		}
		ds = again
	}
	return rounds
}

// TestNoDuplicatesUnderFaults: with 5% of calls timing out after the org
// applied them and 1% answered 503, every activity is in the org exactly
// once, through sObject Collections and through Bulk jobs alike: Relay
// upserts by external id only, and a call that timed out is made again
// as the same upsert.
func TestNoDuplicatesUnderFaults(t *testing.T) {
	for _, tc := range []struct {
		name    string
		n, size int
	}{
		{"collections", 10000, 100},
		{"bulk", 20000, 1000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := newFake(t, sftest.WithFaults(7, 0.05, 0.01))
			d := destination(fake)
			d.Timeout = config.Duration(300 * time.Millisecond)
			s := newSink(t, d, nil)
			ds := campaigns(tc.n, func(int) string { return "bf" })
			rounds := drain(t, s, ds, tc.size)
			recs := fake.Records()
			if len(recs) != tc.n {
				t.Fatalf("%d records, want %d", len(recs), tc.n)
			}
			twice := 0
			for _, n := range fake.Upserts() {
				if n > 1 {
					twice++
				}
			}
			t.Logf("%d records in %d rounds, %d calls: %d timed out after applying, %d answered 503, %d jobs; %d records upserted again",
				len(recs), rounds, fake.APICalls(), fake.Timeouts(), fake.Unavailable(), fake.Jobs(), twice)
			if fake.Timeouts() == 0 {
				t.Error("no call timed out: the test proves nothing")
			}
		})
	}
}

// TestExternalIDMatchingSeveral: an external id two records share is a
// dead letter naming both, by either transport.
func TestExternalIDMatchingSeveral(t *testing.T) {
	for _, n := range []int{10, 500} {
		fake := newFake(t)
		s := newSink(t, destination(fake), nil)
		second := fake.AddDuplicateRecord("act-000003")
		ats := s.DeliverBatch(context.Background(), campaigns(n, func(int) string { return "bf" }))
		err := ats[3].Err
		if k, _ := sink.Classify(err); k != sink.Permanent || !strings.Contains(err.Error(), "DUPLICATE_EXTERNAL_ID") || !strings.Contains(err.Error(), second) {
			t.Errorf("%d activities: %v", n, err)
		}
		if got := kindCounts(ats); got["ok"] != n-1 {
			t.Errorf("%d activities: %v", n, got)
		}
	}
}

// TestDuplicateRules: a duplicate rule that fires refuses the record
// (DUPLICATES_DETECTED, a dead letter) with duplicate_rules: block, and
// lets it be saved with allow_save — through Collections with the header,
// and for a Bulk job (which cannot send it) by sending the refused rows
// again through Collections.
func TestDuplicateRules(t *testing.T) {
	for _, tc := range []struct {
		mode string
		n    int
		want string
	}{
		{config.DuplicateBlock, 10, "permanent"},
		{config.DuplicateBlock, 500, "permanent"},
		{config.DuplicateAllowSave, 10, "ok"},
		{config.DuplicateAllowSave, 500, "ok"},
	} {
		fake := newFake(t, sftest.WithDuplicateRule("Email__c"))
		d := destination(fake)
		d.DuplicateRules = tc.mode
		s := newSink(t, d, nil)
		if at := s.DeliverBatch(context.Background(), deliveries("c5"))[0]; at.Err != nil {
			t.Fatal(at.Err)
		}
		ats := s.DeliverBatch(context.Background(), campaigns(tc.n, func(int) string { return "bf" })) // c5@example.com again
		if got := kinds(ats)[5]; got != tc.want {
			t.Errorf("%s, %d activities: the duplicate is %s (%v), want %s", tc.mode, tc.n, got, ats[5].Err, tc.want)
		}
		if tc.want == "permanent" && !strings.Contains(ats[5].Err.Error(), "DUPLICATES_DETECTED") {
			t.Errorf("%s: %v", tc.mode, ats[5].Err)
		}
		if got := kindCounts(ats); got["ok"] < tc.n-1 {
			t.Errorf("%s, %d activities: %v", tc.mode, tc.n, got)
		}
	}
}
