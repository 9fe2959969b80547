package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/relaydev/relay/relay/api"
)

// deadLetterJSON is a dead letter as deadletters --json prints it, as it
// always has: the api.DeadLetter the server sent, each attempt's error
// written even when empty and its probe mark left out.
type deadLetterJSON struct {
	ID          string          `json:"id"`
	Destination string          `json:"destination"`
	Activity    json.RawMessage `json:"activity"`
	Attempts    []attemptJSON   `json:"attempts"`
	DeadAt      time.Time       `json:"dead_at"`
}

// attemptJSON is one attempt of a deadLetterJSON.
type attemptJSON struct {
	At        time.Time `json:"at"`
	Status    int       `json:"status"`
	Error     string    `json:"error"`
	LatencyMS float64   `json:"latency_ms"`
}

// deadLettersJSON turns dead letters as read into what --json prints.
func deadLettersJSON(all []api.DeadLetter) []deadLetterJSON {
	out := make([]deadLetterJSON, 0, len(all))
	for _, dl := range all {
		j := deadLetterJSON{ID: dl.ID, Destination: dl.Destination, Activity: dl.Activity, DeadAt: dl.DeadAt}
		if dl.Attempts != nil {
			j.Attempts = make([]attemptJSON, 0, len(dl.Attempts))
		}
		for _, a := range dl.Attempts {
			j.Attempts = append(j.Attempts, attemptJSON{At: a.At, Status: a.Status, Error: a.Error, LatencyMS: a.LatencyMS})
		}
		out = append(out, j)
	}
	return out
}

// deadLetterQuery is what GET /v1/deadletters is asked: replay's filters.
type deadLetterQuery struct {
	destination, activity string
	since, until          *time.Time
	ids                   []string
}

// cmdDeadLetters lists dead letters, following the API's pages.
func cmdDeadLetters(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("deadletters", stderr)
	cf := addClientFlags(fs, true)
	var q deadLetterQuery
	fs.StringVar(&q.destination, "destination", "", "only this destination's")
	filters := addFilterFlags(fs)
	limit := fs.Int("limit", 0, "at most this many (0: all)")
	asJSON := fs.Bool("json", false, "print one JSON document")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if *limit < 0 {
		return usageError(fs, "--limit: want 0 (all) or more, got %d", *limit)
	}
	var err error
	if q.since, q.until, err = filters.times(fs); err != nil {
		return err
	}
	q.activity, q.ids = *filters.activity, filters.ids
	c, err := cf.client(stderr)
	if err != nil {
		return err
	}
	l, err := listPages[api.DeadLetter](ctx, c, "deadletters", *limit, q.path)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, map[string]any{"deadletters": deadLettersJSON(l.items), "total": max(l.total, len(l.items))})
	}
	if err := printDeadLetters(stdout, l.items); err != nil {
		return err
	}
	_, err = io.WriteString(stdout, countLine(l, "dead letter"))
	return err
}

// path is the request for the page at cursor, of at most want entries
// (0: a full page).
func (dq deadLetterQuery) path(cursor string, want int) string {
	q := url.Values{"limit": {strconv.Itoa(pageSize)}}
	if want > 0 && want < pageSize {
		q.Set("limit", strconv.Itoa(want))
	}
	setQuery(q, "destination", dq.destination)
	setQuery(q, "activity", dq.activity)
	setQuery(q, "since", rfc3339(dq.since))
	setQuery(q, "until", rfc3339(dq.until))
	setQuery(q, "cursor", cursor)
	q["id"] = dq.ids
	return "/v1/deadletters?" + q.Encode()
}

// setQuery sets q's key to v unless v is empty.
func setQuery(q url.Values, key, v string) {
	if v != "" {
		q.Set(key, v)
	}
}

// rfc3339 formats t for a query; nil is "".
func rfc3339(t *time.Time) string {
	if t == nil {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// printDeadLetters writes a table: id, destination, activity, attempts,
// last error, dead at.
func printDeadLetters(w io.Writer, all []api.DeadLetter) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tDESTINATION\tACTIVITY\tATTEMPTS\tLAST ERROR\tDEAD AT")
	for _, dl := range all {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", dl.ID, dl.Destination, activityName(dl), len(dl.Attempts), lastError(dl), dl.DeadAt.Format(time.RFC3339))
	}
	return tw.Flush()
}

// activityName is the name in a dead letter's activity; "?" when it has
// none.
func activityName(dl api.DeadLetter) string {
	var head struct {
		Name string `json:"name"`
	}
	if json.Unmarshal(dl.Activity, &head) != nil || head.Name == "" {
		return "?"
	}
	return head.Name
}

// lastError is the last attempt's error on one line, shortened.
func lastError(dl api.DeadLetter) string {
	if len(dl.Attempts) == 0 {
		return ""
	}
	return truncate(strings.Join(strings.Fields(dl.Attempts[len(dl.Attempts)-1].Error), " "), 60)
}
