package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// replayTimeout bounds a replay call: re-queueing a long history takes a
// while, and the admin API allows a request as long.
const replayTimeout = 10 * time.Minute

// stringList collects a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// parseTime reads a Go duration (that long before now) or an RFC 3339
// time; "" is no time.
func parseTime(s string, now time.Time) (*time.Time, error) {
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

// replayRequest is the body of POST /v1/replay.
type replayRequest struct {
	Destination string     `json:"destination"`
	Since       *time.Time `json:"since,omitempty"`
	Until       *time.Time `json:"until,omitempty"`
	Activity    string     `json:"activity,omitempty"`
	IDs         []string   `json:"ids,omitempty"`
	History     bool       `json:"history,omitempty"`
}

// cmdReplay re-queues dead letters (or, with --history, retained
// activities) for one destination.
func cmdReplay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("replay", stderr)
	cf := addClientFlags(fs, true)
	req := replayRequest{}
	fs.StringVar(&req.Destination, "destination", "", "the destination to deliver to (required)")
	since := fs.String("since", "", "only from this time on: a duration ago (2h) or RFC 3339")
	until := fs.String("until", "", "only up to this time: a duration ago or RFC 3339")
	fs.StringVar(&req.Activity, "activity", "", "only activities matching this pattern (email.*)")
	fs.Var((*stringList)(&req.IDs), "id", "only this activity id (repeatable)")
	fs.BoolVar(&req.History, "history", false, "replay any retained activity, not only dead letters")
	asJSON := fs.Bool("json", false, "print the JSON answer")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if req.Destination == "" {
		return errors.New("--destination is required")
	}
	var err error
	t := now()
	if req.Since, err = parseTime(*since, t); err != nil {
		return fmt.Errorf("--since: %w", err)
	}
	if req.Until, err = parseTime(*until, t); err != nil {
		return fmt.Errorf("--until: %w", err)
	}
	var out struct {
		Replayed int `json:"replayed"`
	}
	c := cf.client(stderr)
	c.timeout = replayTimeout
	if err := c.do(ctx, "POST", "/v1/replay", req, &out); err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, out)
	}
	fmt.Fprintf(stdout, "replayed %d\n", out.Replayed)
	return nil
}
