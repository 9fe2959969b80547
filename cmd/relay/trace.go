package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/relaydev/relay/relay/api"
)

// cmdTrace shows what happened to one activity at every destination.
func cmdTrace(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("trace", stderr)
	cf := addClientFlags(fs, true)
	asJSON := fs.Bool("json", false, "print the server's answer as one JSON document")
	id, err := oneArg(fs, args, "activity id")
	if err != nil {
		return err
	}
	c, err := cf.client(stderr)
	if err != nil {
		return err
	}
	var raw json.RawMessage
	err = c.do(ctx, "GET", "/v1/activities/"+url.PathEscape(id), nil, &raw)
	if apiErr := (*apiError)(nil); errors.As(err, &apiErr) && apiErr.Status == http.StatusNotFound && strings.HasSuffix(apiErr.Message, "not retained") {
		return fmt.Errorf("activity %s is not retained (or never was)", id)
	}
	if err != nil {
		return err
	}
	if *asJSON {
		return printRaw(stdout, raw)
	}
	var t api.Trace
	if err := json.Unmarshal(raw, &t); err != nil {
		return fmt.Errorf("GET /v1/activities/%s: unexpected answer: %w", id, err)
	}
	return printTrace(stdout, t, now())
}

// printTrace writes the activity, then each destination: whether it was
// selected and why, its status and every attempt.
func printTrace(w io.Writer, t api.Trace, at time.Time) error {
	fmt.Fprintf(w, "activity  %s\nname      %s\nreceived  %s (%s)\n", t.ID, t.Name, t.ReceivedAt.Format(time.RFC3339), ago(&t.ReceivedAt, at))
	if t.TraceID != "" {
		fmt.Fprintf(w, "trace     %s\n", t.TraceID)
	}
	if err := printRaw(w, t.Activity); err != nil {
		return err
	}
	for _, d := range t.Destinations {
		status := d.Status
		if d.HeldBehind != "" {
			status += ", held behind " + d.HeldBehind + " (an earlier activity of the same contact)"
		}
		fmt.Fprintf(w, "\n%s: %s\n  %s\n", d.Name, status, selection(d))
		if err := printAttempts(w, d.Attempts); err != nil {
			return err
		}
	}
	return nil
}

// selection says whether a destination took the activity, and the rule
// that decided when the server names it.
func selection(d api.DestinationTrace) string {
	word := "not selected"
	if d.Selected {
		word = "selected"
	}
	if d.Reason == "" {
		return word
	}
	return word + ": " + d.Reason
}

// printAttempts writes one indented line per attempt: when, HTTP status,
// latency, outcome and error. An attempt is numbered as the delivery log
// numbers it (by its place when the server does not: Attempt 0); a replay
// starts counting again from 1, and a line marks where it did.
func printAttempts(w io.Writer, attempts []api.TraceEntry) error {
	if len(attempts) == 0 {
		_, err := fmt.Fprintln(w, "  no attempt")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  #\tAT\tSTATUS\tLATENCY\tOUTCOME\tERROR")
	prev := 0
	for i, a := range attempts {
		n := i + 1
		if a.Attempt > 0 {
			n = a.Attempt
		}
		if i > 0 && n <= prev {
			fmt.Fprintln(tw, "  --\t\t\t\treplayed\tthe attempts after a replay count from 1 again")
		}
		prev = n
		fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%s\t%s\n", n, a.At.Format(logTime), httpStatus(a.Status), humanMillis(a.LatencyMS), orNone(a.Outcome), oneLine(a.Error))
	}
	return tw.Flush()
}

// httpStatus is an attempt's HTTP status; 0 (no answer) is none.
func httpStatus(code int) string {
	if code == 0 {
		return none
	}
	return strconv.Itoa(code)
}

// oneLine puts an error on one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
