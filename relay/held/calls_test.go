package held

import (
	"context"
	"testing"
	"time"
)

func TestCalls(t *testing.T) {
	ctx := context.Background()
	c := NewCalls(2)
	if !c.TryTake() || !c.TryTake() {
		t.Fatal("two rooms of two not taken")
	}
	if c.TryTake() {
		t.Fatal("a third room taken")
	}
	if c.TakeWithin(ctx, 10*time.Millisecond) {
		t.Fatal("TakeWithin took a room none gave back")
	}
	stop := make(chan struct{})
	close(stop)
	if c.Take(ctx, stop) {
		t.Fatal("Take took a room past its stop")
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if c.Take(cancelled, nil) {
		t.Fatal("Take took a room past its context")
	}
	took := make(chan bool)
	go func() { took <- c.Take(ctx, nil) }()
	c.Release()
	if !<-took {
		t.Fatal("a waiting Take missed the room given back")
	}

	// A Room gives back once, and takes again only when given back.
	c = NewCalls(1)
	if !c.TryTake() {
		t.Fatal("no room")
	}
	r := Held(c)
	r.Release()
	r.Release()
	if len(c.slots) != 0 {
		t.Fatalf("%d rooms held after two releases of one", len(c.slots))
	}
	if !r.Take(ctx) || !r.Take(ctx) || len(c.slots) != 1 {
		t.Fatalf("Take twice holds %d rooms, want 1", len(c.slots))
	}
	r.Release()

	// A nil Calls bounds nothing.
	var none *Calls
	if !none.TryTake() || !none.Take(ctx, nil) || !none.TakeWithin(ctx, 0) {
		t.Fatal("a nil Calls refused")
	}
	none.Release()
}
