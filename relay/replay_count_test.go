package relay_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestReplayHistoryTakesOnlyWhatTheDestinationTakes: a history replay
// re-queues, counts and (as a dry run) lists only the retained activities
// the destination selects: its include and exclude patterns and its
// `when` rule, intersected with the request's own activity pattern. What
// it answers is what the receiver then gets again, no more.
func TestReplayHistoryTakesOnlyWhatTheDestinationTakes(t *testing.T) {
	rules := map[string]string{
		"click":  "    include: [email.click]",
		"noopen": "    exclude: [email.open]",
		"both":   "    include: [email.*]\n    exclude: [email.open]",
		"big":    "    include: [order.*]\n    when: 'has(activity.attributes.amount) && activity.attributes.amount > 100'",
		"all":    "",
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for k := range rules {
			if !yield(k) {
				return
			}
		}
	})
	recv := map[string]*receiver{}
	yaml := baseYAML(t.TempDir()) + "destinations:\n"
	for _, name := range names {
		recv[name] = newReceiver(t, secretA)
		yaml += destYAML(name, recv[name].srv.URL, secretA, rules[name])
	}
	n := startRelay(t, yaml)

	type sent struct{ name, id string }
	items := []map[string]any{
		{"type": "email", "action": "click"}, {"type": "email", "action": "click"},
		{"type": "email", "action": "open"}, {"type": "email", "action": "open"}, {"type": "email", "action": "open"},
		{"type": "order", "action": "purchase", "attributes": map[string]any{"amount": 50}},
		{"type": "order", "action": "purchase", "attributes": map[string]any{"amount": 500}},
		{"type": "sms", "action": "delivered"},
	}
	ids := n.send(items...)
	var all []sent
	for i, it := range items {
		all = append(all, sent{it["type"].(string) + "." + it["action"].(string), ids[i]})
	}
	takes := map[string]func(s sent) bool{
		"click":  func(s sent) bool { return s.name == "email.click" },
		"noopen": func(s sent) bool { return s.name != "email.open" },
		"both":   func(s sent) bool { return s.name == "email.click" },
		"big":    func(s sent) bool { return s.id == ids[6] },
		"all":    func(s sent) bool { return true },
	}
	want := func(dest, pattern string) []string {
		var out []string
		for _, s := range all {
			if takes[dest](s) && (pattern == "" || strings.HasPrefix(s.name, strings.TrimSuffix(pattern, "*"))) {
				out = append(out, s.id)
			}
		}
		sort.Strings(out)
		return out
	}
	waitFor(t, 30*time.Second, "first deliveries", func() bool {
		for _, name := range names {
			if len(recv[name].delivered()) != len(want(name, "")) {
				return false
			}
		}
		return true
	})
	waitSettled(t, n, names...)

	replay := func(t *testing.T, body string) (int, []string) {
		t.Helper()
		status, out := n.adminDoT(t, "POST", "/v1/replay", body)
		if status != http.StatusOK {
			t.Fatalf("replay %s: %d %v", body, status, out)
		}
		var got []string
		if list, ok := out["ids"].([]any); ok {
			for _, id := range list {
				got = append(got, id.(string))
			}
		}
		sort.Strings(got)
		return int(out["replayed"].(float64)), got
	}
	for _, dest := range names {
		for _, pattern := range []string{"", "email.*", "order.*"} {
			t.Run(fmt.Sprintf("dry run %s %q", dest, pattern), func(t *testing.T) {
				body := fmt.Sprintf(`{"destination":%q,"history":true,"since":"5m","dry_run":true`, dest)
				if pattern != "" {
					body += fmt.Sprintf(`,"activity":%q`, pattern)
				}
				count, got := replay(t, body+"}")
				w := want(dest, pattern)
				if count != len(w) || !slices.Equal(got, w) {
					t.Errorf("dry run: replayed %d ids %v; want %d %v", count, got, len(w), w)
				}
			})
		}
	}
	// What the request selected but the destination does not take is
	// counted by reason.
	for _, tc := range []struct {
		body, reason string
		n            float64
	}{
		{`{"destination":"big","history":true,"since":"5m","dry_run":true}`, "its when was false", 1},
		{`{"destination":"click","history":true,"since":"5m","dry_run":true,"activity":"email.*"}`, "not taken by the destination's include/exclude", 3},
	} {
		status, out := n.adminDo("POST", "/v1/replay", tc.body)
		skipped, _ := out["skipped"].(map[string]any)
		if status != http.StatusOK || len(skipped) != 1 || skipped[tc.reason] != tc.n {
			t.Errorf("replay %s: %d, skipped %v; want %v %q", tc.body, status, out["skipped"], tc.n, tc.reason)
		}
	}
	for _, dest := range names {
		t.Run("replay "+dest, func(t *testing.T) {
			before := recv[dest].delivered()
			count, _ := replay(t, fmt.Sprintf(`{"destination":%q,"history":true,"since":"5m"}`, dest))
			w := want(dest, "")
			if count != len(w) {
				t.Errorf("replayed %d, want %d (what %s takes)", count, len(w), dest)
			}
			waitFor(t, 30*time.Second, "replayed deliveries", func() bool {
				got := recv[dest].delivered()
				for _, id := range w {
					if got[id] != before[id]+1 {
						return false
					}
				}
				return true
			})
			waitSettled(t, n, dest)
			got := recv[dest].delivered()
			again := 0
			for id, c := range got {
				again += c - before[id]
			}
			if again != count {
				t.Errorf("the receiver got %d activities again, the replay answered %d", again, count)
			}
		})
	}
}

// TestReplayConcurrentDeadLettersCountedOnce: replays of the same dead
// letters at the same time each answer only what that request re-queued,
// so the answers add up to the dead letters there were, each delivered
// once; a second round finds nothing left.
func TestReplayConcurrentDeadLettersCountedOnce(t *testing.T) {
	const total, concurrent = 120, 5
	down := newReceiver(t, secretA)
	var mu sync.Mutex
	failing := true
	down.setRespond(func(string, int) int {
		mu.Lock()
		defer mu.Unlock()
		if failing {
			return http.StatusServiceUnavailable
		}
		return http.StatusNoContent
	})
	n := startRelay(t, baseYAML(t.TempDir())+"destinations:\n"+destYAML("down", down.srv.URL, secretA, "    retry: {schedule: []}\n    breaker: off"))
	items := make([]map[string]any, total)
	for i := range items {
		items[i] = map[string]any{"type": "email", "action": "open", "contact": map[string]any{"email": fmt.Sprintf("c%d@example.com", i)}}
	}
	ids := n.send(items...)
	waitFor(t, 60*time.Second, "dead letters", func() bool { return n.destinations()["down"].DeadLettered == total })
	mu.Lock()
	failing = false
	mu.Unlock()

	for round, want := range []int{total, 0} {
		answers := make([]int, concurrent)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range concurrent {
			wg.Go(func() {
				<-start
				status, out := doJSON(t, "POST", n.admin+"/v1/replay", adminToken, `{"destination":"down"}`)
				if status != http.StatusOK {
					t.Errorf("replay: %d %v", status, out)
					return
				}
				answers[i] = int(out["replayed"].(float64))
			})
		}
		close(start)
		wg.Wait()
		sum := 0
		for _, a := range answers {
			sum += a
		}
		if sum != want {
			t.Errorf("round %d: answers %v add up to %d, want %d", round, answers, sum, want)
		}
	}
	waitFor(t, 60*time.Second, "every replayed dead letter delivered", func() bool { return len(down.delivered()) == total })
	waitSettled(t, n, "down")
	for _, id := range ids {
		if c := down.delivered()[id]; c != 1 {
			t.Errorf("%s delivered %d times, want once", id, c)
		}
	}
}

// TestReplayRequestErrors: what a replay request can get wrong is a 400
// naming the field in JSON's terms (string, number, boolean, array,
// object; never a Go type), and an id list that came out empty is refused
// instead of meaning every dead letter.
func TestReplayRequestErrors(t *testing.T) {
	down := newReceiver(t, secretA)
	down.setRespond(func(string, int) int { return http.StatusServiceUnavailable })
	n := startRelay(t, baseYAML(t.TempDir())+"destinations:\n"+destYAML("down", down.srv.URL, secretA, "    retry: {schedule: []}"))
	n.send(map[string]any{"type": "email", "action": "open"}, map[string]any{"type": "email", "action": "click"})
	waitFor(t, 30*time.Second, "dead letters", func() bool { return n.destinations()["down"].DeadLettered == 2 })

	timeForms := "an RFC 3339 time like 2026-11-22T10:00:00Z or a duration back from now like 5m"
	tests := []struct {
		name, body string
		want       string // a 400 whose error contains this
	}{
		{"empty ids", `{"destination":"down","ids":[]}`, `ids: the list is empty, which would select nothing; leave ids out to replay every dead letter`},
		{"empty ids, dry run", `{"destination":"down","ids":[],"dry_run":true}`, `ids: the list is empty`},
		{"empty ids, history", `{"destination":"down","ids":[],"history":true}`, `ids: the list is empty`},
		{"null ids", `{"destination":"down","ids":null}`, `ids: null is not a list of ids; leave ids out to replay every dead letter`},
		{"empty id", `{"destination":"down","ids":["a",""]}`, `ids[1]: an id cannot be empty`},
		{"since yesterday", `{"destination":"down","since":"yesterday"}`, `malformed replay request: since: want ` + timeForms + `, got "yesterday"`},
		{"since -5h", `{"destination":"down","since":"-5h"}`, `malformed replay request: since: want ` + timeForms + `, got "-5h" (a negative duration would be in the future)`},
		{"until -5h", `{"destination":"down","history":true,"until":"-5h"}`, `until: want ` + timeForms + `, got "-5h"`},
		{"since empty", `{"destination":"down","since":""}`, `since: want ` + timeForms + `, got ""`},
		{"since a number", `{"destination":"down","since":5}`, `since: want a string: ` + timeForms + `, got number`},
		{"since an object", `{"destination":"down","since":{}}`, `since: want a string: ` + timeForms + `, got object`},
		{"since a bool", `{"destination":"down","since":true}`, `since: want a string: ` + timeForms + `, got boolean`},
		{"destination a number", `{"destination":5}`, `malformed replay request: destination: want a string, got number`},
		{"destination an array", `{"destination":["down"]}`, `destination: want a string, got array`},
		{"activity a number", `{"destination":"down","activity":1.5}`, `activity: want a string, got number`},
		{"history a string", `{"destination":"down","history":"yes"}`, `history: want true or false, got string`},
		{"dry_run a number", `{"destination":"down","dry_run":1}`, `dry_run: want true or false, got number`},
		{"ids a string", `{"destination":"down","ids":"a"}`, `ids: want an array of strings, got string`},
		{"ids an object", `{"destination":"down","ids":{"a":1}}`, `ids: want an array of strings, got object`},
		{"id a number", `{"destination":"down","ids":["a",7]}`, `ids[1]: want a string, got number`},
		{"id null", `{"destination":"down","ids":[null]}`, `ids[0]: want a string, got null`},
		{"body an array", `[{"destination":"down"}]`, `malformed replay request: want an object, got array`},
		{"body a string", `"down"`, `want an object, got string`},
		{"body null", `null`, `want an object, got null`},
		{"body empty", ``, `malformed replay request: the body is empty: want a JSON object`},
		{"unknown field", `{"destination":"down","destinaton":"x"}`, `malformed replay request: destinaton: unknown field`},
		{"duplicate field", `{"destination":"down","destination":"down"}`, `malformed replay request: destination: malformed JSON: duplicate`},
		{"syntax", `{"destination":"down",}`, `malformed replay request: malformed JSON`},
		{"trailing data", `{"destination":"down"} {}`, `malformed replay request: malformed JSON`},
	}
	goTypes := []string{"struct", "json.Number", "<nil>", "relay.", "api.", "admin.", "TimeArg", "[]string", "time.Time", "Go ", "bool,", "a bool", "slice", "float64", "interface"}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, out := n.adminDoT(t, "POST", "/v1/replay", tc.body)
			msg, _ := out["error"].(string)
			if status != http.StatusBadRequest || !strings.Contains(msg, tc.want) {
				t.Errorf("answer %d %q\nwant 400 %q", status, msg, tc.want)
			}
			for _, g := range goTypes {
				if strings.Contains(msg, g) {
					t.Errorf("error %q names a Go type (%q)", msg, g)
				}
			}
		})
	}
	if n.destinations()["down"].DeadLettered != 2 {
		t.Errorf("a refused request replayed something: %v", n.destinations()["down"])
	}
	// Left out, ids select every dead letter, as before.
	status, out := n.adminDo("POST", "/v1/replay", `{"destination":"down","dry_run":true}`)
	if b, _ := json.Marshal(out); status != http.StatusOK || out["replayed"] != float64(2) {
		t.Errorf("dry run without ids: %d %s", status, b)
	}
}
