package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relaydev/relay/relay/api"
)

// squash turns each run of spaces into one, so a test can read a table
// without counting its padding.
func squash(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.Join(strings.Fields(l), " ")
	}
	return strings.Join(lines, "\n")
}

const (
	destinationsAnswer = `{"destinations":[` +
		`{"name":"crm","type":"webhook","state":"active","breaker":"closed","pending":3,"oldest_pending_seconds":192.4,"delivered_last_minute":120,"failed_last_minute":2,"last_success_at":"2026-11-22T11:59:58Z","last_failure_at":"2026-11-22T11:57:00Z","p99_latency_ms":45.2,"delivered":9000,"failed_attempts":7,"dead_lettered":1},` +
		`{"name":"sf","type":"salesforce","state":"paused","pending":0,"oldest_pending_seconds":0}]}`
	traceAnswer = `{"id":"01ABC","name":"email.open","received_at":"2026-11-22T11:00:00Z","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736",` +
		`"activity":{"id":"01ABC","name":"email.open","contact":{"email":"ann@example.com"},"attributes":{"total":12345678901234567891}},` +
		`"destinations":[` +
		`{"name":"crm","selected":true,"reason":"included by \"email.*\"","status":"delivered","attempts":[` +
		`{"at":"2026-11-22T11:00:01.5Z","status":503,"error":"status 503:\nreceiver down","latency_ms":12.3,"outcome":"failed"},` +
		`{"at":"2026-11-22T11:00:03Z","status":204,"error":"","latency_ms":1500,"outcome":"delivered"}]},` +
		`{"name":"pages","selected":false,"reason":"excluded by \"pageview\"","status":"not_selected","attempts":[]},` +
		`{"name":"old","selected":true,"reason":"","status":"dead_letter","attempts":[{"attempt":3,"at":"2026-11-22T11:01:00Z","status":0,"error":"dial tcp: connection refused","latency_ms":0.4,"outcome":"dead_letter"}]}]}`
	deliveryD1 = `{"id":"01A","name":"email.open","destination":"crm","attempt":1,"at":"2026-11-22T11:59:40Z","outcome":"failed","status":503,"error":"status 503: down","latency_ms":12}`
	deliveryD2 = `{"id":"01A","name":"email.open","destination":"crm","attempt":2,"at":"2026-11-22T11:59:50.25Z","outcome":"delivered","status":200,"error":"","latency_ms":8}`
	deliveryD3 = `{"id":"01B","name":"sms.delivered","destination":"crm","attempt":1,"at":"2026-11-22T11:59:55Z","outcome":"dead_letter","status":400,"error":"status 400: bad","latency_ms":3}`
)

// TestObserveCommands covers status, trace, log, and deadletters and
// replay with their filters, against a fake API.
func TestObserveCommands(t *testing.T) {
	clock := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	now = func() time.Time { return clock }
	t.Cleanup(func() { now = time.Now })
	tests := []struct {
		name      string
		args      []string
		exchanges []exchange
		code      int
		stdout    []string // each must be in stdout, runs of spaces squashed
		stderr    string   // must be in stderr; "" means stderr stays empty
	}{
		{"status",
			[]string{"status"},
			[]exchange{{"GET", "/v1/destinations", "", 200, destinationsAnswer}},
			0, []string{
				"NAME TYPE STATE BREAKER PENDING OLDEST DELIVERED/1M FAILED/1M LAST SUCCESS LAST FAILURE P99\n",
				"\ncrm webhook active closed 3 3m12s 120 2 2s ago 3m0s ago 45ms\n",
				"\nsf salesforce paused — 0 — — — — — —\n",
			}, ""},
		{"status of an ordered destination",
			[]string{"status"},
			[]exchange{{"GET", "/v1/destinations", "", 200, `{"destinations":[{"name":"crm","type":"webhook","state":"active","pending":7,` +
				`"order":{"key":"contact.id|contact.email|contact.phone","held":7,"contacts":3,"held_behind":4,"resuming":true}}]}`}},
			0, []string{
				"\ncrm: ordered by contact.id|contact.email|contact.phone; this process holds 7 activities of 3 contacts, 4 behind an earlier one of their contact; resuming: waiting for activities another process held\n",
			}, ""},
		{"trace of an activity held behind another",
			[]string{"trace", "01B"},
			[]exchange{{"GET", "/v1/activities/01B", "", 200, `{"id":"01B","name":"email.open","received_at":"2026-11-22T11:00:00Z","activity":{"id":"01B"},` +
				`"destinations":[{"name":"crm","selected":true,"reason":"included by \"*\"","status":"pending","held_behind":"01A","attempts":[]}]}`}},
			0, []string{"\ncrm: pending, held behind 01A (an earlier activity of the same contact)\n"}, ""},
		{"status from a server that is down",
			[]string{"status"},
			[]exchange{{"GET", "/v1/destinations", "", 503, `{"error":"not ready"}`}},
			1, nil, "relay: server said 503: not ready\n"},
		{"trace",
			[]string{"trace", "01ABC"},
			[]exchange{{"GET", "/v1/activities/01ABC", "", 200, traceAnswer}},
			0, []string{
				"activity 01ABC\nname email.open\nreceived 2026-11-22T11:00:00Z (1h0m ago)\ntrace 4bf92f3577b34da6a3ce929d0e0e4736\n{\n",
				`"total": 12345678901234567891`,
				"\ncrm: delivered\nselected: included by \"email.*\"\n# AT STATUS LATENCY OUTCOME ERROR\n" +
					"1 2026-11-22T11:00:01.500Z 503 12ms failed status 503: receiver down\n" +
					"2 2026-11-22T11:00:03.000Z 204 1.5s delivered\n",
				"\npages: not_selected\nnot selected: excluded by \"pageview\"\nno attempt\n",
				"\nold: dead_letter\nselected\n# AT STATUS LATENCY OUTCOME ERROR\n3 2026-11-22T11:01:00.000Z — 0.4ms dead_letter dial tcp: connection refused\n",
			}, ""},
		{"trace with flags before the id",
			[]string{"trace", "--json", "01ABC"},
			[]exchange{{"GET", "/v1/activities/01ABC", "", 200, traceAnswer}},
			0, []string{`"total": 12345678901234567891`, `"reason": "excluded by \"pageview\""`}, ""},
		{"trace of an id that is not retained",
			[]string{"trace", "01ZZZ"},
			[]exchange{{"GET", "/v1/activities/01ZZZ", "", 404, `{"error":"activity \"01ZZZ\": not retained"}`}},
			1, nil, "relay: activity 01ZZZ is not retained (or never was)\n"},
		{"trace escapes the id",
			[]string{"trace", "a/b c"},
			[]exchange{{"GET", "/v1/activities/a%2Fb%20c", "", 404, `{"error":"activity \"a/b c\" is past nats.retention: not retained"}`}},
			1, nil, "relay: activity a/b c is not retained (or never was)\n"},
		{"trace with the delivery log off",
			[]string{"trace", "01ABC"},
			[]exchange{{"GET", "/v1/activities/01ABC", "", 404, `{"error":"activity \"01ABC\" cannot be looked up: the delivery log is off (log.deliveries: false)"}`}},
			1, nil, "relay: server said 404: activity \"01ABC\" cannot be looked up: the delivery log is off (log.deliveries: false)\n"},
		{"trace from a server without traces",
			[]string{"trace", "01ABC"},
			[]exchange{{"GET", "/v1/activities/01ABC", "", 404, `{"error":"not found"}`}},
			1, nil, "relay: server said 404: not found\n"},
		{"log filtered",
			[]string{"log", "--destination", "crm", "--outcome", "failed", "--activity", "email.*", "--since", "10m", "--until", "2026-11-22T11:59:59Z"},
			[]exchange{{"GET", "/v1/deliveries?activity=email.%2A&destination=crm&limit=100&outcome=failed&since=2026-11-22T11%3A50%3A00Z&until=2026-11-22T11%3A59%3A59Z", "", 200, `{"deliveries":[` + deliveryD1 + `],"next_cursor":""}`}},
			0, []string{
				"AT DESTINATION ID ACTIVITY ATTEMPT OUTCOME STATUS LATENCY ERROR\n" +
					"2026-11-22T11:59:40.000Z crm 01A email.open 1 failed 503 12ms status 503: down\n1 attempt\n",
			}, ""},
		{"log over two pages up to --limit",
			[]string{"log", "--limit", "3"},
			[]exchange{
				{"GET", "/v1/deliveries?limit=3", "", 200, `{"deliveries":[` + deliveryD3 + `,` + deliveryD2 + `],"next_cursor":"c1"}`},
				{"GET", "/v1/deliveries?cursor=c1&limit=1", "", 200, `{"deliveries":[` + deliveryD1 + `],"next_cursor":"c2"}`},
			},
			0, []string{
				"\n2026-11-22T11:59:55.000Z crm 01B sms.delivered 1 dead_letter 400 3.0ms status 400: bad\n" +
					"2026-11-22T11:59:50.250Z crm 01A email.open 2 delivered 200 8.0ms\n" +
					"2026-11-22T11:59:40.000Z crm 01A email.open 1 failed 503 12ms status 503: down\nfirst 3 attempts (--limit 3; there may be more, --limit 0 lists all)\n",
			}, ""},
		{"log of every attempt",
			[]string{"log", "--limit", "0", "--outcome", "dead_letter"},
			[]exchange{
				{"GET", "/v1/deliveries?limit=1000&outcome=dead_letter", "", 200, `{"deliveries":[` + deliveryD3 + `],"next_cursor":"c1"}`},
				{"GET", "/v1/deliveries?cursor=c1&limit=1000&outcome=dead_letter", "", 200, `{"deliveries":[],"next_cursor":""}`},
			},
			0, []string{"\n1 attempt\n"}, ""},
		{"log with a bad filter the server refuses",
			[]string{"log", "--destination", "nope"},
			[]exchange{{"GET", "/v1/deliveries?destination=nope&limit=100", "", 404, `{"error":"unknown destination \"nope\""}`}},
			1, nil, "relay: server said 404: unknown destination \"nope\"\n"},
		{"deadletters with replay's filters, total over pages",
			[]string{"deadletters", "--destination", "crm", "--since", "2h", "--until", "2026-11-22T11:30:00Z", "--activity", "email.*", "--id", "a1", "--id", "a2"},
			[]exchange{
				{"GET", "/v1/deadletters?activity=email.%2A&destination=crm&id=a1&id=a2&limit=1000&since=2026-11-22T10%3A00%3A00Z&until=2026-11-22T11%3A30%3A00Z", "", 200, `{"deadletters":[` + deadLetterA1 + `],"next_cursor":"p2"}`},
				{"GET", "/v1/deadletters?activity=email.%2A&cursor=p2&destination=crm&id=a1&id=a2&limit=1000&since=2026-11-22T10%3A00%3A00Z&until=2026-11-22T11%3A30%3A00Z", "", 200, `{"deadletters":[` + deadLetterA2 + `],"next_cursor":""}`},
			},
			0, []string{"\na1 crm email.open 2 ", "\na2 crm sms.delivered 1 ", "\n2 dead letters\n"}, ""},
		{"deadletters up to a limit, with the server's total",
			[]string{"deadletters", "--limit", "1", "--activity", "email.*"},
			[]exchange{{"GET", "/v1/deadletters?activity=email.%2A&limit=1", "", 200, `{"deadletters":[` + deadLetterA1 + `],"next_cursor":"7","total":2}`}},
			0, []string{"\na1 crm email.open 2 ", "\nfirst 1 of 2 dead letters (--limit 0 lists all)\n"}, ""},
		{"log of one activity",
			[]string{"log", "--id", "01A", "--limit", "0"},
			[]exchange{{"GET", "/v1/deliveries?id=01A&limit=1000", "", 200, `{"deliveries":[` + deliveryD2 + `,` + deliveryD1 + `],"next_cursor":""}`}},
			0, []string{"\n2026-11-22T11:59:50.250Z crm 01A email.open 2 delivered 200 8.0ms\n2026-11-22T11:59:40.000Z crm 01A email.open 1 failed 503 12ms status 503: down\n2 attempts\n"}, ""},
		{"replay --dry-run",
			[]string{"replay", "--destination", "crm", "--activity", "email.*", "--dry-run"},
			[]exchange{{"POST", "/v1/replay", `{"destination":"crm","activity":"email.*","dry_run":true}`, 200, `{"replayed":2,"ids":["a1","a3"]}`}},
			0, []string{"would replay 2 to crm (dry run: nothing re-queued)\na1\na3\n"}, ""},
		{"replay --dry-run --json",
			[]string{"replay", "--destination", "crm", "--dry-run", "--json"},
			[]exchange{{"POST", "/v1/replay", `{"destination":"crm","dry_run":true}`, 200, `{"replayed":1,"ids":["a1"],"dry_run":true}`}},
			0, []string{`"replayed": 1`, "\"ids\": [\n\"a1\"\n]", `"dry_run": true`}, ""},
		{"replay says what it skipped and why",
			[]string{"replay", "--destination", "crm", "--history", "--since", "1h"},
			[]exchange{{"POST", "/v1/replay", `{"destination":"crm","since":"2026-11-22T11:00:00Z","history":true}`, 200, `{"replayed":13,"skipped":{"its when was false":3,"not taken by the destination's include/exclude":6}}`}},
			0, []string{"replayed 13\nskipped 9 the destination does not take: 6 not taken by the destination's include/exclude, 3 its when was false\n"}, ""},
		{"replay with a filter that matches nothing",
			[]string{"replay", "--destination", "crm", "--activity", "emial.*"},
			[]exchange{{"POST", "/v1/replay", `{"destination":"crm","activity":"emial.*"}`, 422, `{"error":"invalid replay","details":[{"field":"activity","message":"pattern \"emial.*\" matches no known activity"}]}`}},
			1, nil, "relay: server said 422: activity: pattern \"emial.*\" matches no known activity\n"},
		{"replay of an empty time window",
			[]string{"replay", "--destination", "crm", "--since", "1h", "--until", "2h"},
			[]exchange{{"POST", "/v1/replay", `{"destination":"crm","since":"2026-11-22T11:00:00Z","until":"2026-11-22T10:00:00Z"}`, 400, `{"error":"since (2026-11-22T11:00:00Z) is after until (2026-11-22T10:00:00Z)"}`}},
			1, nil, "relay: server said 400: since (2026-11-22T11:00:00Z) is after until (2026-11-22T10:00:00Z)\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := newFakeAPI(t, "tok", tc.exchanges...)
			noConfig(t)
			code, out, errOut := runCLI(t, append(tc.args, "--server", srv.URL, "--token", "tok")...)
			if code != tc.code {
				t.Errorf("exit %d, want %d; stderr %q", code, tc.code, errOut)
			}
			for _, want := range tc.stdout {
				if !strings.Contains(squash(out), want) {
					t.Errorf("stdout lacks %q:\n%s", want, out)
				}
			}
			if tc.stderr == "" && errOut != "" || !strings.Contains(errOut, tc.stderr) {
				t.Errorf("stderr %q, want %q", errOut, tc.stderr)
			}
		})
	}
}

// TestStatusAndLogJSON checks that --json prints one document: the
// server's answer for status (every field kept), all pages for log.
func TestStatusAndLogJSON(t *testing.T) {
	noConfig(t)
	srv := newFakeAPI(t, "tok",
		exchange{"GET", "/v1/destinations", "", 200, destinationsAnswer},
		exchange{"GET", "/v1/deliveries?limit=100", "", 200, `{"deliveries":[` + deliveryD3 + `],"next_cursor":"c1"}`},
		exchange{"GET", "/v1/deliveries?cursor=c1&limit=99", "", 200, `{"deliveries":[` + deliveryD2 + `,` + deliveryD1 + `],"next_cursor":""}`})
	code, out, errOut := runCLI(t, "status", "--json", "--server", srv.URL, "--token", "tok")
	var status struct {
		Destinations []map[string]any `json:"destinations"`
	}
	if code != 0 || decodeOne(out, &status) != nil || len(status.Destinations) != 2 || status.Destinations[0]["dead_lettered"] != 1.0 || status.Destinations[0]["p99_latency_ms"] != 45.2 {
		t.Errorf("status --json: exit %d, stderr %q, stdout %s", code, errOut, out)
	}
	code, out, errOut = runCLI(t, "log", "--json", "--server", srv.URL, "--token", "tok")
	var log struct {
		Deliveries []api.LogEntry `json:"deliveries"`
	}
	if code != 0 || decodeOne(out, &log) != nil || len(log.Deliveries) != 3 || log.Deliveries[0].ID != "01B" || log.Deliveries[2].Attempt != 1 || log.Deliveries[2].Status != 503 {
		t.Errorf("log --json: exit %d, stderr %q, stdout %s", code, errOut, out)
	}
}

// decodeOne decodes s into v and fails unless s is exactly one JSON
// document.
func decodeOne(s string, v any) error {
	dec := json.NewDecoder(strings.NewReader(s))
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("more than one JSON document")
	}
	return nil
}

// syncBuffer is a buffer a command writes while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// deliveryLog stands in for GET /v1/deliveries while log --follow polls
// it: it lists its entries newest recorded first, in pages of the limit
// asked with the cursor, filtered by destination and since, as the API
// does. After its first answer it records deliveryLate (an attempt that
// began before d2 but ended after it) and d3.
type deliveryLog struct {
	t *testing.T

	mu       sync.Mutex
	entries  []string // JSON, in record order
	requests []url.Values
}

// deliveryLate is an attempt dated before d2 but recorded after it.
const deliveryLate = `{"id":"01C","name":"email.click","destination":"crm","attempt":1,"at":"2026-11-22T11:59:30Z","outcome":"delivered","status":200,"error":"","latency_ms":25000}`

func (l *deliveryLog) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	l.mu.Lock()
	defer l.mu.Unlock()
	q := r.URL.Query()
	l.requests = append(l.requests, q)
	if r.URL.Path != "/v1/deliveries" || r.Header.Get("Authorization") != "Bearer tok" || q.Get("destination") != "crm" {
		l.t.Errorf("request %s %s", r.URL, r.Header.Get("Authorization"))
	}
	if len(l.requests) > 1 && q.Get("since") == "" {
		l.t.Errorf("poll %s without since", r.URL)
	}
	since, _ := time.Parse(time.RFC3339, q.Get("since"))
	limit, _ := strconv.Atoi(q.Get("limit"))
	top := len(l.entries)
	if c := q.Get("cursor"); c != "" {
		top, _ = strconv.Atoi(c)
	}
	var page []string
	next := ""
	for i := top - 1; i >= 0; i-- {
		var d api.LogEntry
		json.Unmarshal([]byte(l.entries[i]), &d)
		if d.At.Before(since) {
			continue
		}
		if len(page) == limit {
			next = strconv.Itoa(i + 1)
			break
		}
		page = append(page, l.entries[i])
	}
	fmt.Fprintf(w, `{"deliveries":[%s],"next_cursor":%q}`, strings.Join(page, ","), next)
	if len(l.requests) == 1 {
		l.entries = append(l.entries, deliveryLate, deliveryD3)
	}
}

// TestLogFollow checks that log --follow prints what was there, then the
// attempts recorded after it started, even one dated before the last it
// printed, each once and in the order recorded, and that an interrupt
// ends it with exit status 0.
func TestLogFollow(t *testing.T) {
	followEvery = 5 * time.Millisecond
	t.Cleanup(func() { followEvery = time.Second })
	noConfig(t)
	for _, asJSON := range []bool{false, true} {
		t.Run(fmt.Sprintf("json=%v", asJSON), func(t *testing.T) {
			pageSize = 2 // the follower walks the cursor too
			defer func() { pageSize = 1000 }()
			fake := &deliveryLog{t: t, entries: []string{deliveryD1, deliveryD2}}
			srv := httptest.NewServer(fake)
			defer srv.Close()
			args := []string{"log", "--follow", "--destination", "crm", "--server", srv.URL, "--token", "tok"}
			if asJSON {
				args = append(args, "--json")
			}
			ctx, interrupt := context.WithCancel(context.Background())
			defer interrupt()
			var out, errOut syncBuffer
			done := make(chan int)
			go func() { done <- run(ctx, args, &out, &errOut) }()
			deadline := time.After(10 * time.Second)
			for !strings.Contains(out.String(), "01B") || !polledSinceD3(fake) {
				select {
				case <-deadline:
					t.Fatalf("no new attempt within 10s; stdout %q, stderr %q", out.String(), errOut.String())
				case code := <-done:
					t.Fatalf("log --follow ended by itself: exit %d, stderr %q", code, errOut.String())
				case <-time.After(followEvery):
				}
			}
			interrupt()
			if code := <-done; code != 0 || errOut.String() != "" {
				t.Errorf("after an interrupt: exit %d, stderr %q", code, errOut.String())
			}
			lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
			if !asJSON {
				if len(lines) != 5 || !strings.HasPrefix(squash(lines[0]), "AT DESTINATION ID ACTIVITY") {
					t.Fatalf("want a header and 4 attempts, got:\n%s", out.String())
				}
				lines = lines[1:]
			}
			want := []string{"2026-11-22T11:59:40", "2026-11-22T11:59:50.25", "2026-11-22T11:59:30", "2026-11-22T11:59:55"}
			if len(lines) != len(want) {
				t.Fatalf("want %d attempts, each once, got:\n%s", len(want), out.String())
			}
			for i, line := range lines {
				if !strings.Contains(line, want[i]) {
					t.Errorf("line %d %q, want the attempt at %s (in the order recorded)", i, line, want[i])
				}
				var d api.LogEntry
				if asJSON && (json.Unmarshal([]byte(line), &d) != nil || d.Destination != "crm") {
					t.Errorf("line %d is not one JSON attempt: %q", i, line)
				}
			}
		})
	}
}

// polledSinceD3 reports whether the fake log has been polled since the
// follower saw d3, so the test knows it would have printed anything again.
func polledSinceD3(l *deliveryLog) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	// followOverlap before d3's time: what a poll after d3 asks.
	return len(l.requests) > 0 && l.requests[len(l.requests)-1].Get("since") == "2026-11-22T11:54:55Z"
}
