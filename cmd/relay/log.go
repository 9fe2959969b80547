package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/relaydev/relay/relay/api"
)

// deliveryKey tells attempts apart: an activity's attempt at a
// destination.
func deliveryKey(d api.LogEntry) string {
	return d.ID + "\x00" + d.Destination + "\x00" + strconv.Itoa(d.Attempt)
}

// deliveryJSON is an attempt as log --json prints it, as it always has:
// the api.LogEntry the server sent, its error written even when empty
// and its probe mark left out.
type deliveryJSON struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	Destination string    `json:"destination"`
	Attempt     int       `json:"attempt"`
	At          time.Time `json:"at"`
	Outcome     string    `json:"outcome"`
	Status      int       `json:"status"`
	Error       string    `json:"error"`
	LatencyMS   float64   `json:"latency_ms"`
}

// toDeliveryJSON is d as --json prints it.
func toDeliveryJSON(d api.LogEntry) deliveryJSON {
	return deliveryJSON{ID: d.ID, Name: d.Name, Destination: d.Destination, Attempt: d.Attempt, At: d.At,
		Outcome: d.Outcome, Status: d.Status, Error: d.Error, LatencyMS: d.LatencyMS}
}

// logQuery is what GET /v1/deliveries is asked.
type logQuery struct {
	destination, outcome, activity, id string
	since, until                       *time.Time
}

// path is the request for the page at cursor, of at most want entries
// (0: a full page).
func (lq logQuery) path(cursor string, want int) string {
	q := url.Values{"limit": {strconv.Itoa(pageSize)}}
	if want > 0 && want < pageSize {
		q.Set("limit", strconv.Itoa(want))
	}
	setQuery(q, "destination", lq.destination)
	setQuery(q, "outcome", lq.outcome)
	setQuery(q, "activity", lq.activity)
	setQuery(q, "id", lq.id)
	setQuery(q, "since", rfc3339(lq.since))
	setQuery(q, "until", rfc3339(lq.until))
	setQuery(q, "cursor", cursor)
	return "/v1/deliveries?" + q.Encode()
}

// cmdLog lists delivery attempts, newest first, or with --follow streams
// them as they happen.
func cmdLog(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("log", stderr)
	cf := addClientFlags(fs, true)
	o, err := logFlags(fs, args)
	if err != nil {
		return err
	}
	c, err := cf.client(stderr)
	if err != nil {
		return err
	}
	l, err := listPages[api.LogEntry](ctx, c, "deliveries", o.limit, o.q.path)
	if o.follow && ctx.Err() != nil { // interrupted before the first answer
		return nil
	}
	if err != nil {
		return err
	}
	switch {
	case o.follow:
		return followLog(ctx, c, o.q, l.items, stdout, o.asJSON)
	case o.asJSON:
		out := make([]deliveryJSON, 0, len(l.items))
		for _, d := range l.items {
			out = append(out, toDeliveryJSON(d))
		}
		return printJSON(stdout, map[string]any{"deliveries": out})
	}
	if err := printDeliveries(stdout, l.items); err != nil {
		return err
	}
	_, err = io.WriteString(stdout, countLine(l, "attempt"))
	return err
}

// logOptions are log's flags.
type logOptions struct {
	q              logQuery
	limit          int
	follow, asJSON bool
}

// logFlags parses log's flags; a bad value is a usage error.
func logFlags(fs *flag.FlagSet, args []string) (logOptions, error) {
	var o logOptions
	q := &o.q
	fs.StringVar(&q.destination, "destination", "", "only this destination's attempts")
	fs.StringVar(&q.outcome, "outcome", "", "only attempts with this outcome: delivered, failed, dead_letter or suppressed")
	fs.StringVar(&q.activity, "activity", "", "only activities matching this pattern (email.*)")
	fs.StringVar(&q.id, "id", "", "only this activity's attempts")
	since := fs.String("since", "", "only from this time on: a duration ago (10m) or RFC 3339")
	until := fs.String("until", "", "only up to this time: a duration ago or RFC 3339")
	fs.IntVar(&o.limit, "limit", 100, "at most this many attempts (0: all); with --follow, of those before it starts")
	fs.BoolVar(&o.follow, "follow", false, "then print new attempts as they happen, until interrupted")
	fs.BoolVar(&o.asJSON, "json", false, "print one JSON document; with --follow, one JSON object per line")
	if err := parseNoArgs(fs, args); err != nil {
		return o, err
	}
	if !slices.Contains([]string{"", "delivered", "failed", "dead_letter", "suppressed"}, q.outcome) {
		return o, usageError(fs, "--outcome: want delivered, failed, dead_letter or suppressed, got %q", q.outcome)
	}
	if o.limit < 0 {
		return o, usageError(fs, "--limit: want 0 (all) or more, got %d", o.limit)
	}
	if o.follow && *until != "" {
		return o, usageError(fs, "--until and --follow do not go together")
	}
	var err error
	q.since, q.until, err = (&filterFlags{since: since, until: until}).times(fs)
	return o, err
}

// logTime is how the log shows a time: to the millisecond, always as
// wide.
const logTime = "2006-01-02T15:04:05.000Z07:00"

// logHeader is the header of the log table.
const logHeader = "AT\tDESTINATION\tID\tACTIVITY\tATTEMPT\tOUTCOME\tSTATUS\tLATENCY\tERROR"

// printDeliveries writes attempts as a table.
func printDeliveries(w io.Writer, all []api.LogEntry) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, logHeader)
	for _, d := range all {
		fmt.Fprintln(tw, deliveryRow(d))
	}
	return tw.Flush()
}

// deliveryRow is an attempt's line of the table, its cells separated by
// tabs.
func deliveryRow(d api.LogEntry) string {
	return fmt.Sprintf("%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s", d.At.Format(logTime), d.Destination, d.ID, d.Name,
		d.Attempt, d.Outcome, httpStatus(d.Status), humanMillis(d.LatencyMS), truncate(oneLine(d.Error), 80))
}

// followWidths are the widths of --follow's columns, which cannot be
// measured ahead: the widest typical value of each.
var followWidths = []int{24, 16, 26, 16, 7, 11, 6, 7}

// followRow is an attempt's line when following: fixed-width columns.
func followRow(cells string) string {
	var b strings.Builder
	for i, cell := range strings.Split(cells, "\t") {
		if i < len(followWidths) {
			fmt.Fprintf(&b, "%-*s  ", followWidths[i], cell)
			continue
		}
		b.WriteString(cell)
	}
	return strings.TrimRight(b.String(), " ")
}
