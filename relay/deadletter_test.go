package relay_test

import (
	"encoding/json"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// TestDeadLetterAndReplay: a receiver that always fails yields a dead letter
// with every attempt recorded; once it recovers, replay delivers the
// activity to that destination only, and the dead letter is gone.
func TestDeadLetterAndReplay(t *testing.T) {
	down := newReceiver(t, secretA)
	var failing atomic.Bool
	failing.Store(true)
	down.setRespond(func(id string, n int) int {
		if failing.Load() {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	other := newReceiver(t, secretB)
	yaml := baseYAML(t.TempDir()) + "destinations:\n" +
		destYAML("down", down.srv.URL, secretA, `    retry: {schedule: [50ms, 100ms]}`) +
		destYAML("other", other.srv.URL, secretB, "")
	n := startRelay(t, yaml)
	ids := n.send(
		map[string]any{"type": "order", "action": "purchase", "contact": map[string]any{"email": "a@example.com"}},
		map[string]any{"activity": "Opened email", "contact": map[string]any{"email": "b@example.com"}},
	)
	waitFor(t, 30*time.Second, "two dead letters", func() bool { return n.destinations()["down"].DeadLettered == 2 })

	status, out := n.adminDo("GET", "/v1/deadletters?destination=down", "")
	if status != http.StatusOK {
		t.Fatalf("deadletters: %d %v", status, out)
	}
	var list struct {
		DeadLetters []struct {
			ID          string          `json:"id"`
			Destination string          `json:"destination"`
			Activity    json.RawMessage `json:"activity"`
			Attempts    []struct {
				Status int     `json:"status"`
				Error  string  `json:"error"`
				At     string  `json:"at"`
				MS     float64 `json:"latency_ms"`
			} `json:"attempts"`
		} `json:"deadletters"`
	}
	remarshal(t, out, &list)
	if len(list.DeadLetters) != 2 {
		t.Fatalf("dead letters = %d, want 2", len(list.DeadLetters))
	}
	for _, dl := range list.DeadLetters {
		if dl.Destination != "down" || len(dl.Attempts) != 3 {
			t.Errorf("dead letter %s: destination %q, %d attempts; want down, 3", dl.ID, dl.Destination, len(dl.Attempts))
		}
		for _, at := range dl.Attempts {
			if at.Status != http.StatusServiceUnavailable || at.Error == "" || at.At == "" {
				t.Errorf("attempt %+v: want status 503 with an error and a time", at)
			}
		}
	}
	waitSettled(t, n, "other")
	before := other.delivered()

	failing.Store(false)
	status, out = n.adminDo("POST", "/v1/replay", `{"destination": "down"}`)
	if status != http.StatusOK || out["replayed"] != float64(2) {
		t.Fatalf("replay: %d %v", status, out)
	}
	waitFor(t, 30*time.Second, "replayed deliveries", func() bool {
		got := down.delivered()
		return got[ids[0]] == 1 && got[ids[1]] == 1
	})
	waitSettled(t, n, "down", "other")
	if got := other.delivered(); len(got) != len(before) || got[ids[0]] != 1 || got[ids[1]] != 1 {
		t.Errorf("replay reached the other destination: before %v, after %v", before, got)
	}
	waitFor(t, 10*time.Second, "dead letters to clear", func() bool { return n.destinations()["down"].DeadLettered == 0 })
	if _, out := n.adminDo("GET", "/v1/deadletters?destination=down", ""); len(out["deadletters"].([]any)) != 0 {
		t.Errorf("dead letters after replay: %v", out["deadletters"])
	}
}

// TestReplayFailsAgainAppendsAttempts: a replayed dead letter that fails
// again comes back with the new attempts after the old ones.
func TestReplayFailsAgainAppendsAttempts(t *testing.T) {
	down := newReceiver(t, secretA)
	down.setRespond(func(string, int) int { return http.StatusInternalServerError })
	yaml := baseYAML(t.TempDir()) + "destinations:\n" +
		destYAML("down", down.srv.URL, secretA, `    retry: {schedule: [50ms]}`)
	n := startRelay(t, yaml)
	n.send(map[string]any{"type": "sms", "action": "delivered"})
	waitFor(t, 30*time.Second, "dead letter", func() bool { return n.destinations()["down"].DeadLettered == 1 })
	if status, out := n.adminDo("POST", "/v1/replay", `{"destination": "down", "activity": "sms.*"}`); status != 200 || out["replayed"] != float64(1) {
		t.Fatalf("replay: %d %v", status, out)
	}
	var list struct {
		DeadLetters []struct {
			Attempts []any `json:"attempts"`
		} `json:"deadletters"`
	}
	waitFor(t, 30*time.Second, "the dead letter to come back with 4 attempts", func() bool {
		_, out := n.adminDo("GET", "/v1/deadletters?destination=down", "")
		remarshal(t, out, &list)
		return len(list.DeadLetters) == 1 && len(list.DeadLetters[0].Attempts) == 4
	})
}

// TestGonePausesUntilResumed: 410 pauses the destination, its backlog waits,
// and resume delivers it.
func TestGonePausesUntilResumed(t *testing.T) {
	r := newReceiver(t, secretA)
	var gone atomic.Bool
	gone.Store(true)
	r.setRespond(func(string, int) int {
		if gone.Load() {
			return http.StatusGone
		}
		return http.StatusOK
	})
	yaml := baseYAML(t.TempDir()) + "destinations:\n" + destYAML("leaving", r.srv.URL, secretA, "")
	n := startRelay(t, yaml)
	ids := n.send(map[string]any{"type": "email", "action": "click"})
	waitFor(t, 30*time.Second, "pause", func() bool { return n.destinations()["leaving"].State == "paused" })
	more := n.send(map[string]any{"type": "email", "action": "click"}, map[string]any{"type": "email", "action": "open"})
	// The fan-out hands what a paused destination takes to its own queue
	// as it reads it: the three are pending once it has.
	waitFor(t, 30*time.Second, "the paused destination's 3 pending", func() bool { return n.destinations()["leaving"].Pending >= 3 })
	if st := n.destinations()["leaving"]; st.State != "paused" || st.DeadLettered != 0 {
		t.Fatalf("paused destination: %+v; want paused, no dead letters", st)
	}
	gone.Store(false)
	if status, out := n.adminDo("POST", "/v1/destinations/leaving/resume", ""); status != 200 {
		t.Fatalf("resume: %d %v", status, out)
	}
	waitFor(t, 30*time.Second, "backlog delivered after resume", func() bool {
		got := r.delivered()
		return got[ids[0]] == 1 && got[more[0]] == 1 && got[more[1]] == 1
	})
}

func remarshal(t *testing.T, in any, out any) {
	t.Helper()
	data, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, out); err != nil {
		t.Fatal(err)
	}
}
