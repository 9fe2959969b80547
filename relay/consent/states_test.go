package consent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/relaydev/relay/config"
	"github.com/relaydev/relay/relay/activity"
	"github.com/relaydev/relay/relay/store"
)

var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

func act(id, name string, at time.Time, contact map[string]any) *activity.Activity {
	typ, action, _ := activity.ParseName(name)
	return &activity.Activity{ID: id, Name: name, Type: typ, Action: action, OccurredAt: at, Contact: activity.MustObject(contact)}
}

// TestApplyByOccurredAt: within a facet the latest occurred_at wins in any
// order of arrival; a suppressing facet decides over an allowing one.
func TestApplyByOccurredAt(t *testing.T) {
	mark := func(s State, at time.Duration, id string) Mark {
		return Mark{State: s, Since: t0.Add(at), ActivityID: id}
	}
	tests := []struct {
		name  string
		marks []Mark
		want  State
	}{
		{"opt-out after opt-in", []Mark{mark(OptedIn, 0, "a"), mark(OptedOut, time.Second, "b")}, OptedOut},
		{"late opt-in older than the opt-out", []Mark{mark(OptedOut, time.Second, "b"), mark(OptedIn, 0, "a")}, OptedOut},
		{"newer opt-in lifts the opt-out", []Mark{mark(OptedOut, 0, "a"), mark(OptedIn, time.Second, "b")}, OptedIn},
		{"same instant: suppressing wins", []Mark{mark(OptedOut, 0, "a"), mark(Subscribed, 0, "b")}, OptedOut},
		{"same instant, other order", []Mark{mark(Subscribed, 0, "b"), mark(OptedOut, 0, "a")}, OptedOut},
		{"subscribing does not un-bounce", []Mark{mark(Bounced, 0, "a"), mark(Subscribed, time.Second, "b")}, Bounced},
		{"reachable again after the bounce", []Mark{mark(Bounced, 0, "a"), mark(Subscribed, time.Second, "b"), mark(Reachable, 2*time.Second, "c")}, Reachable},
		{"reachable does not undo an opt-out", []Mark{mark(OptedOut, 0, "a"), mark(Reachable, time.Second, "b")}, OptedOut},
		{"abuse lifted by a newer opt-in", []Mark{mark(AbuseReported, 0, "a"), mark(OptedIn, time.Second, "b")}, OptedIn},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r Record
			for _, m := range tt.marks {
				r, _ = r.Apply(m)
			}
			if got := r.Effective(); got == nil || got.State != tt.want {
				t.Errorf("effective %+v, want %s", got, tt.want)
			}
		})
	}
}

func TestNormalize(t *testing.T) {
	tests := []struct {
		ch       Channel
		in, want string
	}{
		{Email, " Ann@Example.COM ", "ann@example.com"},
		{SMS, "+1 (555) 010-0", "+15550100"},
		{SMS, "555.0100", "5550100"},
		{SMS, "n/a", ""},
		{SMS, "+", ""},
	}
	for _, tt := range tests {
		if got := Normalize(tt.ch, tt.in); got != tt.want {
			t.Errorf("Normalize(%s, %q) = %q, want %q", tt.ch, tt.in, got, tt.want)
		}
	}
}

func testNATS(dir string) config.NATS {
	return config.NATS{URL: "embedded", DataDir: dir, Replicas: 1, Retention: config.Duration(24 * time.Hour), DuplicateWindow: config.Duration(time.Minute)}
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func openBus(t *testing.T, ctx context.Context) *store.Bus {
	t.Helper()
	bus, err := store.OpenBus(ctx, testNATS(t.TempDir()), 1<<20, discard())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bus.Close)
	return bus
}

// TestStatesShared: two processes' States on one bucket. A wish recorded
// by one suppresses in the other once the watch brings it; an older wish
// arriving later changes nothing; a States opened afterwards (a restart)
// starts with every record.
func TestStatesShared(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bus := openBus(t, ctx)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	a, err := Open(ctx, bus.JS, 1, log)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Open(ctx, bus.JS, 1, log)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ann := map[string]any{"email": "Ann@Example.com", "phone": "+1 555 0100"}
	open := act("x1", "email.open", t0.Add(time.Hour), map[string]any{"email": "ann@example.com"})
	if s := b.Check(Email, open); s != nil {
		t.Fatalf("suppressed before any wish: %s", s)
	}
	if err := a.Record(ctx, act("01OUT", "consent.opt-out", t0.Add(time.Minute), ann)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, func() bool { return b.Check(Email, open) != nil })
	want := "suppressed: email opted out at 2026-11-22T10:01:00Z by consent.opt-out 01OUT"
	if got := b.Check(Email, open).String(); got != want {
		t.Errorf("reason %q, want %q", got, want)
	}
	// The phone's record is a key of its own: its watch update may come
	// just after the email's.
	text := act("x2", "sms.sent", t0.Add(time.Hour), map[string]any{"phone": "+15550100"})
	waitFor(t, ctx, func() bool { return b.Check(SMS, text) != nil })
	// The consent activities themselves pass.
	if s := b.Check(Email, act("x3", "email.subscribed", t0.Add(time.Hour), ann)); s != nil {
		t.Errorf("a consent activity suppressed: %s", s)
	}
	// An older opt-in stored late changes nothing, in either process.
	if err := b.Record(ctx, act("00IN", "consent.opt-in", t0, ann)); err != nil {
		t.Fatal(err)
	}
	if a.Check(Email, open) == nil || b.Check(Email, open) == nil {
		t.Error("a late, older opt-in undid the opt-out")
	}
	// A restart starts with the bucket.
	c, err := Open(ctx, bus.JS, 1, log)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Check(Email, open) == nil {
		t.Error("a States opened later does not see the opt-out")
	}
	// A newer opt-in lets activities through again everywhere.
	if err := a.Record(ctx, act("02IN", "email.subscribed", t0.Add(2*time.Minute), ann)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, func() bool { return b.Check(Email, open) == nil && c.Check(Email, open) == nil })
}

// TestRecordConcurrent: processes writing one person's record at once
// lose no wish: the newest stands.
func TestRecordConcurrent(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bus := openBus(t, ctx)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var ss []*States
	for range 4 {
		s, err := Open(ctx, bus.JS, 1, log)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		ss = append(ss, s)
	}
	errs := make(chan error, 40)
	for i := range 40 {
		name := "consent.opt-in"
		if i == 17 {
			name = "consent.opt-out" // the newest
		}
		go func() {
			errs <- ss[i%4].Record(ctx, act("id", name, t0.Add(time.Duration(i)*time.Second), map[string]any{"email": "bo@example.com"}))
		}()
	}
	for range 40 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	open := act("x", "email.open", t0, map[string]any{"email": "bo@example.com"})
	// The newest is i=39, an opt-in.
	waitFor(t, ctx, func() bool {
		for _, s := range ss {
			r, _ := s.Get(Email, "bo@example.com")
			if m := r.Effective(); m == nil || !m.Since.Equal(t0.Add(39*time.Second)) {
				return false
			}
		}
		return true
	})
	if ss[0].Check(Email, open) != nil {
		t.Error("the newest wish is an opt-in, yet suppressed")
	}
}

func waitFor(t *testing.T, ctx context.Context, ok func() bool) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !ok() {
		select {
		case <-ctx.Done():
			t.Fatal("condition not met before the deadline")
		case <-tick.C:
		}
	}
}

// TestContactOf: the contact read from the stored JSON, as the encoder
// wrote it or in any other order, never an attribute named contact.
func TestContactOf(t *testing.T) {
	a := act("x", "email.open", t0, map[string]any{"email": "a@example.com"})
	a.Attributes = activity.MustObject(map[string]any{"contact": map[string]any{"email": "not@example.com"}})
	stored, err := activity.Encode(a)
	if err != nil {
		t.Fatal(err)
	}
	a.Contact = nil
	noContact, err := activity.Encode(a)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, raw, want string
	}{
		{"as encoded", string(stored), `{"email":"a@example.com"}`},
		{"none, an attribute named contact", string(noContact), ``},
		{"other order", `{"attributes":{"contact":{"email":"no@x"}},"contact":{"email":"b@x"},"id":"x"}`, `{"email":"b@x"}`},
		{"none at all", `{"id":"x","received_at":"2026-11-22T10:00:00Z"}`, ``},
		{"braces and quotes in strings", `{"id":"x","received_at":"2026-11-22T10:00:00Z","contact":{"email":"a}\\\"{@x","n":[{"a":"]"}]},"attributes":{}}`, `{"email":"a}\\\"{@x","n":[{"a":"]"}]}`},
	}
	for _, tt := range tests {
		if got := string(ContactOf([]byte(tt.raw))); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
}

// BenchmarkCheck is the check an attempt makes on a consent destination:
// the contact read from a 1 KiB stored activity, the identifier hashed,
// looked up among 100,000 people's records.
func BenchmarkCheck(b *testing.B) {
	s := &States{records: map[string]held{}}
	for i := range 100_000 {
		s.records[Key(Email, fmt.Sprintf("p%d@example.com", i))] = held{rec: Record{Wish: &Mark{State: OptedIn}}, rev: 1}
	}
	a := act("x", "email.open", t0, map[string]any{"email": "P777@example.com"})
	a.Attributes = activity.MustObject(map[string]any{"pad": strings.Repeat("x", 1000)})
	raw, err := activity.Encode(a)
	if err != nil {
		b.Fatal(err)
	}
	head := &activity.Activity{ID: a.ID, Name: a.Name, OccurredAt: a.OccurredAt}
	b.ReportAllocs()
	for b.Loop() {
		c := *head
		c.Contact = ContactOf(raw)
		if s.Check(Email, &c) != nil {
			b.Fatal("suppressed")
		}
	}
}
