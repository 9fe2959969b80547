package schedule

import (
	"testing"
	"time"

	"github.com/relaydev/relay/relay/sink"
)

func TestAfterFailure(t *testing.T) {
	s := Schedule{Delays: []time.Duration{time.Second, time.Minute}, MaxAge: time.Hour, MaxHold: 30 * time.Second}
	none := Schedule{MaxAge: time.Hour, MaxHold: 30 * time.Second}
	tests := []struct {
		name  string
		s     Schedule
		kind  sink.Kind
		after time.Duration
		n     int
		age   time.Duration
		want  Outcome
	}{
		{"retry after the first attempt", s, sink.Retry, 0, 1, 0, Outcome{Action: Retry, In: time.Second}},
		{"retry after the second attempt", s, sink.Retry, 0, 2, 0, Outcome{Action: Retry, In: time.Minute}},
		{"schedule used up", s, sink.Retry, 0, 3, 0, Outcome{Action: DeadLetter}},
		{"past max_age", s, sink.Retry, 0, 1, 2 * time.Hour, Outcome{Action: DeadLetter}},
		{"no schedule", none, sink.Retry, 0, 1, 0, Outcome{Action: DeadLetter}},
		{"retry-after longer than the delay", s, sink.Retry, 10 * time.Second, 1, 0, Outcome{Action: Retry, In: 10 * time.Second, BackOff: 10 * time.Second}},
		{"retry-after past max_hold backs off max_hold", s, sink.Retry, 2 * time.Minute, 1, 0, Outcome{Action: Retry, In: 2 * time.Minute, BackOff: 30 * time.Second}},
		{"retry-after capped at an hour for the activity", s, sink.Retry, 3 * time.Hour, 1, 0, Outcome{Action: Retry, In: time.Hour, BackOff: 30 * time.Second}},
		{"retry-after on the last attempt still backs off", s, sink.Retry, 5 * time.Second, 3, 0, Outcome{Action: DeadLetter, BackOff: 5 * time.Second}},
		{"permanent", s, sink.Permanent, 0, 1, 0, Outcome{Action: DeadLetter}},
		{"gone pauses", s, sink.Gone, 0, 1, 0, Outcome{Action: Pause, In: time.Second}},
		{"throttle at the schedule's delay", s, sink.Throttle, 0, 1, 0, Outcome{Action: Retry, In: time.Second, BackOff: time.Second}},
		{"throttle past the schedule keeps its last delay", s, sink.Throttle, 0, 9, 0, Outcome{Action: Retry, In: time.Minute, BackOff: time.Minute}},
		{"throttle as long as asked", s, sink.Throttle, 2 * time.Minute, 1, 0, Outcome{Action: Retry, In: 2 * time.Minute, BackOff: 2 * time.Minute}},
		{"throttle past max_age", s, sink.Throttle, 5 * time.Second, 1, 2 * time.Hour, Outcome{Action: DeadLetter}},
		{"throttle without a schedule", none, sink.Throttle, 5 * time.Second, 1, 0, Outcome{Action: DeadLetter, BackOff: 5 * time.Second}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.s.AfterFailure(tc.kind, tc.after, tc.n, tc.age); got != tc.want {
				t.Errorf("AfterFailure(%v, %v, %d, %v) = %+v, want %+v", tc.kind, tc.after, tc.n, tc.age, got, tc.want)
			}
		})
	}
}

func TestDelayAfter(t *testing.T) {
	s := Schedule{Delays: []time.Duration{time.Second, time.Minute}}
	for _, tc := range []struct {
		n    int
		want time.Duration
	}{{0, time.Second}, {1, time.Second}, {2, time.Minute}, {5, time.Minute}} {
		if got, ok := s.DelayAfter(tc.n); !ok || got != tc.want {
			t.Errorf("DelayAfter(%d) = %v, %v; want %v", tc.n, got, ok, tc.want)
		}
	}
	if _, ok := (Schedule{}).DelayAfter(1); ok {
		t.Error("an empty schedule has a delay")
	}
}
