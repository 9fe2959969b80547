package store

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/relaydev/relay/config"
)

func openTestDeadLetters(t *testing.T) (context.Context, *DeadLetters) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	bus, err := OpenBus(ctx, config.NATS{URL: "embedded", DataDir: t.TempDir(), Replicas: 1}, 1<<20, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bus.Close)
	return ctx, &DeadLetters{JS: bus.JS, Stream: bus.DeadLetters}
}

func putDeadLetters(t *testing.T, ctx context.Context, s *DeadLetters, dest string, from, n int, pad int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		dl := DeadLetter{ID: fmt.Sprintf("id-%04d", i), Destination: dest, DeadAt: time.Now().UTC(),
			Activity: []byte(fmt.Sprintf(`{"id":"id-%04d","name":"email.open","pad":%q}`, i, strings.Repeat("x", pad)))}
		if err := s.Put(ctx, dl); err != nil {
			t.Fatal(err)
		}
	}
}

// TestDeadLetterPages: every page of a destination's dead letters, read
// cursor to cursor, holds each once in stored order, with the total, and
// another destination's never show.
func TestDeadLetterPages(t *testing.T) {
	ctx, s := openTestDeadLetters(t)
	putDeadLetters(t, ctx, s, "a", 0, 25, 10)
	putDeadLetters(t, ctx, s, "b", 100, 5, 10)
	putDeadLetters(t, ctx, s, "a", 25, 5, 10)
	for _, tc := range []struct {
		dest  string
		limit int
		want  int
	}{{"a", 7, 30}, {"a", 30, 30}, {"a", 100, 30}, {"b", 2, 5}, {"", 9, 35}, {"none", 5, 0}} {
		var got []string
		var cursor uint64
		for pages := 0; ; pages++ {
			if pages > 50 {
				t.Fatalf("%s: pages never end", tc.dest)
			}
			page, next, total, err := s.Filtered(ctx, tc.dest, nil, cursor, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			if total != tc.want {
				t.Errorf("%s limit %d: total %d, want %d", tc.dest, tc.limit, total, tc.want)
			}
			if len(page) > tc.limit {
				t.Fatalf("%s: page of %d, limit %d", tc.dest, len(page), tc.limit)
			}
			for _, dl := range page {
				if tc.dest != "" && dl.Destination != tc.dest {
					t.Errorf("%s: page holds %s's dead letter", tc.dest, dl.Destination)
				}
				got = append(got, dl.Destination+"/"+dl.ID)
			}
			if next == 0 {
				break
			}
			cursor = next
		}
		if len(got) != tc.want {
			t.Errorf("%s limit %d: %d dead letters over the pages, want %d", tc.dest, tc.limit, len(got), tc.want)
		}
		seen := map[string]bool{}
		for _, k := range got {
			if seen[k] {
				t.Errorf("%s: %s twice", tc.dest, k)
			}
			seen[k] = true
		}
	}
}

// TestSweep: dead letters past max_age go, then the oldest past
// max_bytes, each counted once by its reason; the newest stay.
func TestSweep(t *testing.T) {
	ctx, s := openTestDeadLetters(t)
	putDeadLetters(t, ctx, s, "a", 0, 10, 1000)
	mid := time.Now()
	putDeadLetters(t, ctx, s, "a", 10, 10, 1000)
	// Nothing is old, and 1 GiB holds them all.
	if got, err := s.Sweep(ctx, time.Hour, 1<<30, time.Now()); err != nil || got != (Dropped{}) {
		t.Fatalf("sweep of nothing due: %+v %v", got, err)
	}
	// As if an hour passed since mid: the first ten are past max_age.
	got, err := s.Sweep(ctx, time.Hour, 1<<30, mid.Add(time.Hour))
	if err != nil || got != (Dropped{MaxAge: 10}) {
		t.Fatalf("sweep past max_age: %+v %v, want 10 past max_age", got, err)
	}
	if n, _ := s.Count(ctx, "a"); n != 10 {
		t.Fatalf("%d dead letters left, want 10", n)
	}
	// Ten of about 1.1 kB each: a 5 kB bound keeps the newest four or so.
	got, err = s.Sweep(ctx, time.Hour, 5000, time.Now())
	if err != nil || got.MaxAge != 0 || got.MaxBytes < 5 || got.MaxBytes > 7 {
		t.Fatalf("sweep past max_bytes: %+v %v", got, err)
	}
	page, _, total, err := s.Filtered(ctx, "a", nil, 0, 100)
	if err != nil || total != 10-got.MaxBytes || page[len(page)-1].ID != "id-0019" {
		t.Fatalf("left: total %d, %v", total, err)
	}
	if got, err := s.Sweep(ctx, time.Hour, 5000, time.Now()); err != nil || got != (Dropped{}) {
		t.Fatalf("second sweep: %+v %v, want nothing more", got, err)
	}
}
