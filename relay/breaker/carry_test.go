package breaker

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/relaydev/relay/config"
	"github.com/relaydev/relay/relay/sink"
)

// TestCarry: a reload's new breaker judges the same window as the one it
// replaces. A success the old one saw keeps the new one closed through
// failures within the window; failures the old one kept count toward
// opening the new one.
func TestCarry(t *testing.T) {
	cfg := config.Breaker{Failures: 3, Window: config.Duration(2 * time.Second)}
	newBreaker := func() *Breaker { return New(nil, Options{Name: "d", Config: cfg}) }
	ok := sink.Attempt{}
	tests := []struct {
		name     string
		old      func(b *Breaker, now time.Time) // what the replaced breaker saw
		carry    bool
		failures int // then failures of different activities on the new one
		wantOpen bool
	}{
		{"a success just before the reload keeps it closed", func(b *Breaker, now time.Time) {
			b.Observe(context.Background(), "s", ok)
		}, true, 3, false},
		{"without carrying, the same failures open it", func(b *Breaker, now time.Time) {
			b.Observe(context.Background(), "s", ok)
		}, false, 3, true},
		{"failures before the reload count", func(b *Breaker, now time.Time) {
			b.mu.Lock()
			b.failed(now, "f1")
			b.failed(now, "f2")
			b.mu.Unlock()
		}, true, 1, true},
		{"a nil old breaker carries nothing", nil, true, 2, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Now()
			var old *Breaker
			if tc.old != nil {
				old = newBreaker()
				tc.old(old, now)
			}
			b := newBreaker()
			if tc.carry {
				b.Carry(old)
			}
			open := false
			for i := range tc.failures {
				b.mu.Lock()
				open = b.failed(now.Add(time.Duration(i)*time.Millisecond), fmt.Sprintf("n%d", i))
				b.mu.Unlock()
			}
			if open != tc.wantOpen {
				t.Errorf("opens = %v, want %v", open, tc.wantOpen)
			}
		})
	}
	var none *Breaker
	none.Carry(newBreaker()) // a breaker that is off takes nothing
}

// TestSucceededAt: a success the destination's worker saw before the
// breaker existed (with breaker: off, before a reload turned it on)
// keeps it closed for the window after it, and no longer.
func TestSucceededAt(t *testing.T) {
	cfg := config.Breaker{Failures: 3, Window: config.Duration(2 * time.Second)}
	tests := []struct {
		name     string
		ago      time.Duration // the success, before the failures
		wantOpen bool
	}{
		{"within the window", 300 * time.Millisecond, false},
		{"at the window's edge", 2 * time.Second, false},
		{"before the window", 2100 * time.Millisecond, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Now()
			b := New(nil, Options{Name: "d", Config: cfg})
			b.SucceededAt(now.Add(-tc.ago))
			b.SucceededAt(now.Add(-time.Hour)) // an older one changes nothing
			open := false
			for i := range 3 {
				b.mu.Lock()
				open = b.failed(now, fmt.Sprintf("n%d", i))
				b.mu.Unlock()
			}
			if open != tc.wantOpen {
				t.Errorf("opens = %v, want %v", open, tc.wantOpen)
			}
		})
	}
	var off *Breaker
	off.SucceededAt(time.Now()) // a breaker that is off takes nothing
}
