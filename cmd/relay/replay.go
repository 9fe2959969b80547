package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// parseSince reads a Go duration (that long ago) or an RFC 3339 time.
func parseSince(s string, now time.Time) (*time.Time, error) {
	if s == "" {
		return nil, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		t := now.Add(-d).UTC()
		return &t, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return nil, fmt.Errorf("want a duration like 2h or an RFC 3339 time, got %q", s)
	}
	return &t, nil
}

// cmdReplay re-queues dead letters (or, with --history, retained
// activities) for one destination.
func cmdReplay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("replay", stderr)
	cf := addClientFlags(fs, true)
	dest := fs.String("destination", "", "the destination to deliver to (required)")
	since := fs.String("since", "", "only from this time on: a duration (2h) or RFC 3339")
	until := fs.String("until", "", "only up to this time: a duration ago or RFC 3339")
	pattern := fs.String("activity", "", "only activities matching this pattern (email.*)")
	history := fs.Bool("history", false, "replay any retained activity, not only dead letters")
	asJSON := fs.Bool("json", false, "print the JSON answer")
	var ids stringList
	fs.Var(&ids, "id", "only this activity id (repeatable)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *dest == "" {
		return errors.New("--destination is required")
	}
	now := time.Now()
	s, err := parseSince(*since, now)
	if err != nil {
		return fmt.Errorf("--since: %w", err)
	}
	u, err := parseSince(*until, now)
	if err != nil {
		return fmt.Errorf("--until: %w", err)
	}
	req := map[string]any{"destination": *dest, "history": *history}
	if s != nil {
		req["since"] = s.Format(time.RFC3339Nano)
	}
	if u != nil {
		req["until"] = u.Format(time.RFC3339Nano)
	}
	if *pattern != "" {
		req["activity"] = *pattern
	}
	if len(ids) > 0 {
		req["ids"] = []string(ids)
	}
	var out struct {
		Replayed int `json:"replayed"`
	}
	if err := cf.client().do(ctx, "POST", "/v1/replay", req, &out); err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, out)
	}
	fmt.Fprintf(stdout, "replayed %d\n", out.Replayed)
	return nil
}
