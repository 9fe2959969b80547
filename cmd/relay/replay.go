package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/relaydev/relay/relay/api"
)

// replayTimeout bounds a replay call: re-queueing a long history takes a
// while, and the admin API allows a request as long.
const replayTimeout = 10 * time.Minute

// stringList collects a repeatable --id flag. An empty id is refused: an
// id list that came out empty (--id "$ID" with ID unset) must not select
// every dead letter, or none.
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error {
	if strings.TrimSpace(v) == "" {
		return errors.New("an id cannot be empty (leave --id out for every dead letter)")
	}
	*s = append(*s, v)
	return nil
}

// parseTime reads a Go duration (that long before now) or an RFC 3339
// time; "" is no time.
func parseTime(s string, now time.Time) (*time.Time, error) {
	if s == "" {
		return nil, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return nil, fmt.Errorf("want a duration like 2h or an RFC 3339 time, got %q (a negative duration would be in the future)", s)
		}
		t := now.Add(-d).UTC()
		return &t, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return nil, fmt.Errorf("want a duration like 2h or an RFC 3339 time, got %q", s)
	}
	return &t, nil
}

// filterFlags are the filters replay and deadletters share: --since,
// --until, --activity and --id.
type filterFlags struct {
	since, until, activity *string
	ids                    stringList
}

func addFilterFlags(fs *flag.FlagSet) *filterFlags {
	f := &filterFlags{
		since:    fs.String("since", "", "only from this time on: a duration ago (2h) or RFC 3339"),
		until:    fs.String("until", "", "only up to this time: a duration ago or RFC 3339"),
		activity: fs.String("activity", "", "only activities matching this pattern (email.*)"),
	}
	fs.Var(&f.ids, "id", "only this activity id (repeatable)")
	return f
}

// times reads --since and --until against the clock; a bad value is a
// usage error.
func (f *filterFlags) times(fs *flag.FlagSet) (since, until *time.Time, err error) {
	t := now()
	if since, err = parseTime(*f.since, t); err != nil {
		return nil, nil, usageError(fs, "--since: %v", err)
	}
	if until, err = parseTime(*f.until, t); err != nil {
		return nil, nil, usageError(fs, "--until: %v", err)
	}
	return since, until, nil
}

// timeArg is t as a replay request's bound, written as time.Time writes
// it (RFC 3339); nil is no bound.
func timeArg(t *time.Time) *api.TimeArg {
	if t == nil {
		return nil
	}
	return &api.TimeArg{Time: *t}
}

// cmdReplay re-queues dead letters (or, with --history, retained
// activities) for one destination.
func cmdReplay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("replay", stderr)
	cf := addClientFlags(fs, true)
	req := api.ReplayRequest{}
	fs.StringVar(&req.Destination, "destination", "", "the destination to deliver to (required)")
	filters := addFilterFlags(fs)
	fs.BoolVar(&req.History, "history", false, "replay any retained activity, not only dead letters")
	fs.BoolVar(&req.DryRun, "dry-run", false, "only list what would be re-queued")
	asJSON := fs.Bool("json", false, "print the JSON answer")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if req.Destination == "" {
		return usageError(fs, "--destination is required")
	}
	since, until, err := filters.times(fs)
	if err != nil {
		return err
	}
	req.Since, req.Until = timeArg(since), timeArg(until)
	req.Activity, req.IDs = *filters.activity, filters.ids
	c, err := cf.client(stderr)
	if err != nil {
		return err
	}
	c.timeout = replayTimeout
	var out api.ReplayResult
	if err := c.do(ctx, "POST", "/v1/replay", req, &out); err != nil {
		return err
	}
	if *asJSON { // the server's answer, dry_run and skipped included
		return printJSON(stdout, out)
	}
	return printReplay(stdout, req, out)
}

// printReplay says how many were re-queued; a dry run lists the ids that
// would be.
func printReplay(w io.Writer, req api.ReplayRequest, out api.ReplayResult) error {
	if !req.DryRun {
		fmt.Fprintf(w, "replayed %d\n", out.Replayed)
	} else {
		fmt.Fprintf(w, "would replay %d to %s (dry run: nothing re-queued)\n", out.Replayed, req.Destination)
	}
	printSkipped(w, out.Skipped)
	for _, id := range out.IDs {
		fmt.Fprintf(w, "  %s\n", id)
	}
	return nil
}

// printSkipped says what the filters selected but the destination does
// not take, by reason, most first.
func printSkipped(w io.Writer, skipped map[string]int) {
	total := 0
	reasons := make([]string, 0, len(skipped))
	for r, n := range skipped {
		total += n
		reasons = append(reasons, r)
	}
	if total == 0 {
		return
	}
	slices.SortFunc(reasons, func(a, b string) int { return cmp.Or(skipped[b]-skipped[a], strings.Compare(a, b)) })
	parts := make([]string, len(reasons))
	for i, r := range reasons {
		parts[i] = fmt.Sprintf("%d %s", skipped[r], r)
	}
	fmt.Fprintf(w, "skipped %d the destination does not take: %s\n", total, strings.Join(parts, ", "))
}
