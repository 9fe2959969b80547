package store

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/relaydev/relay/config"
)

// TestStatesWatchShared: many destinations' watches share one watch of the
// bucket; each sees its own state first, then only its own changes, and a
// watch started after the others ended (or after a state was set) still
// begins with the state as it is.
func TestStatesWatchShared(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bus, err := OpenBus(ctx, config.NATS{URL: "embedded", DataDir: t.TempDir(), Replicas: 1}, 1<<20, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	s := &States{KV: bus.State}
	if err := s.Set(ctx, "d1", StatePaused); err != nil {
		t.Fatal(err)
	}
	const n = 50
	seen := make([]chan string, n)
	wctx, stopWatches := context.WithCancel(ctx)
	ended := make(chan error, n)
	for i := range n {
		seen[i] = make(chan string, 10)
		go func() {
			ended <- s.Watch(wctx, fmt.Sprintf("d%d", i), func(state string) { seen[i] <- state })
		}()
	}
	next := func(i int) string {
		t.Helper()
		select {
		case st := <-seen[i]:
			return st
		case <-ctx.Done():
			t.Fatalf("d%d: no state", i)
			return ""
		}
	}
	for i := range n {
		want := StateActive
		if i == 1 {
			want = StatePaused
		}
		if got := next(i); got != want {
			t.Errorf("d%d starts %s, want %s", i, got, want)
		}
	}
	tests := []struct {
		dest  int
		state string
	}{
		{7, StatePaused},
		{7, StateActive},
		{1, StateActive},
		{49, StatePaused},
	}
	for _, tc := range tests {
		if err := s.Set(ctx, fmt.Sprintf("d%d", tc.dest), tc.state); err != nil {
			t.Fatal(err)
		}
		if got := next(tc.dest); got != tc.state {
			t.Errorf("d%d: got %s, want %s", tc.dest, got, tc.state)
		}
	}
	// Another key of the bucket (a breaker) is followed by the same watch,
	// raw, absent first; the destination's own watch hears nothing of it.
	type kv struct {
		value string
		ok    bool
	}
	raw := make(chan kv, 10)
	kctx, stopKey := context.WithCancel(ctx)
	keyEnded := make(chan error, 1)
	go func() {
		keyEnded <- s.WatchKey(kctx, "breaker.d7", func(v []byte, ok bool) { raw <- kv{string(v), ok} })
	}()
	nextRaw := func() kv {
		t.Helper()
		select {
		case got := <-raw:
			return got
		case <-ctx.Done():
			t.Fatal("breaker.d7: nothing")
			return kv{}
		}
	}
	if got := nextRaw(); got.ok {
		t.Errorf("breaker.d7 starts present: %+v", got)
	}
	if _, err := bus.State.Put(ctx, "breaker.d7", []byte(`{"state":"open"}`)); err != nil {
		t.Fatal(err)
	}
	if got := nextRaw(); !got.ok || got.value != `{"state":"open"}` {
		t.Errorf("breaker.d7: got %+v", got)
	}
	if err := bus.State.Delete(ctx, "breaker.d7"); err != nil {
		t.Fatal(err)
	}
	if got := nextRaw(); got.ok {
		t.Errorf("breaker.d7 deleted, still present: %+v", got)
	}
	stopKey()
	if err := <-keyEnded; err != nil {
		t.Errorf("key watch ended with %v", err)
	}
	for i := range n {
		select {
		case st := <-seen[i]:
			t.Errorf("d%d was told %s, a change of another key", i, st)
		default:
		}
	}
	s.mu.Lock()
	shared := s.watch
	s.mu.Unlock()
	if shared == nil || shared.n != n {
		t.Fatalf("want one shared watch with %d subscribers, got %+v", n, shared)
	}
	stopWatches()
	for range n {
		if err := <-ended; err != nil {
			t.Errorf("watch ended with %v", err)
		}
	}
	s.mu.Lock()
	if s.watch != nil {
		t.Error("the shared watch outlived its last subscriber")
	}
	s.mu.Unlock()
	// A new watch after the shared one stopped starts with the state as it is.
	again := make(chan string, 1)
	actx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { _ = s.Watch(actx, "d49", func(st string) { again <- st }) }()
	select {
	case st := <-again:
		if st != StatePaused {
			t.Errorf("d49 restarts %s, want paused", st)
		}
	case <-ctx.Done():
		t.Fatal("no state after restarting the watch")
	}
}
