package main

import (
	"strings"
	"testing"
	"time"

	"github.com/relaydev/relay/relay/api"
)

// TestReplayArgs: replay flags that would select something other than
// what was meant are usage errors before any request: an empty --id (an
// id list that came out empty, `--id "$ID"` with ID unset) and a negative
// duration for --since or --until (a time in the future). The shared
// filters of deadletters refuse them too.
func TestReplayArgs(t *testing.T) {
	clock := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	now = func() time.Time { return clock }
	t.Cleanup(func() { now = time.Now })
	tests := []struct {
		name   string
		args   []string
		stderr string
	}{
		{"empty --id", []string{"replay", "--destination", "crm", "--id", ""}, `invalid value "" for flag -id: an id cannot be empty (leave --id out for every dead letter)`},
		{"empty --id after another", []string{"replay", "--destination", "crm", "--id", "a1", "--id", " "}, `for flag -id: an id cannot be empty`},
		{"empty --id, history", []string{"replay", "--destination", "crm", "--history", "--id", ""}, `for flag -id: an id cannot be empty`},
		{"negative --since", []string{"replay", "--destination", "crm", "--since", "-5h"}, `relay replay: --since: want a duration like 2h or an RFC 3339 time, got "-5h" (a negative duration would be in the future)`},
		{"negative --until", []string{"replay", "--destination", "crm", "--until", "-1m"}, `relay replay: --until: want a duration like 2h or an RFC 3339 time, got "-1m"`},
		{"deadletters empty --id", []string{"deadletters", "--id", ""}, `for flag -id: an id cannot be empty`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := newFakeAPI(t, "tok") // any request fails the test
			noConfig(t)
			code, _, errOut := runCLI(t, append(tc.args, "--server", srv.URL, "--token", "tok")...)
			if code != 2 || !strings.Contains(errOut, tc.stderr) {
				t.Errorf("exit %d, stderr %q; want 2 and %q", code, errOut, tc.stderr)
			}
		})
	}
}

// TestTraceMarksReplay: the attempts of a replayed activity count from 1
// again, as the delivery log numbers them, and a line marks the replay.
func TestTraceMarksReplay(t *testing.T) {
	at := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	var list []api.TraceEntry
	for _, n := range []int{1, 2, 3, 1} {
		list = append(list, api.TraceEntry{Attempt: n, At: at, Status: 503, Outcome: "failed"})
	}
	var b strings.Builder
	if err := printAttempts(&b, list); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 6 || !strings.Contains(lines[4], "replayed") || !strings.HasPrefix(strings.TrimSpace(lines[5]), "1 ") || !strings.HasPrefix(strings.TrimSpace(lines[3]), "3 ") {
		t.Errorf("trace attempts:\n%s", b.String())
	}
}
