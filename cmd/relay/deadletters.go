package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"text/tabwriter"
	"time"
)

type deadLetter struct {
	ID          string          `json:"id"`
	Destination string          `json:"destination"`
	Activity    json.RawMessage `json:"activity"`
	Attempts    []struct {
		At        time.Time `json:"at"`
		Status    int       `json:"status"`
		Error     string    `json:"error"`
		LatencyMS float64   `json:"latency_ms"`
	} `json:"attempts"`
	DeadAt time.Time `json:"dead_at"`
}

// cmdDeadLetters lists dead letters, following the API's pages.
func cmdDeadLetters(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("deadletters", stderr)
	cf := addClientFlags(fs, true)
	dest := fs.String("destination", "", "only this destination's")
	limit := fs.Int("limit", 0, "at most this many (0: all)")
	asJSON := fs.Bool("json", false, "print one JSON document")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	c := cf.client()
	all := []deadLetter{}
	cursor := ""
	for {
		q := url.Values{"limit": {"1000"}}
		if *dest != "" {
			q.Set("destination", *dest)
		}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		var page struct {
			DeadLetters []deadLetter `json:"deadletters"`
			NextCursor  string       `json:"next_cursor"`
		}
		if err := c.do(ctx, "GET", "/v1/deadletters?"+q.Encode(), nil, &page); err != nil {
			return err
		}
		all = append(all, page.DeadLetters...)
		if *limit > 0 && len(all) >= *limit {
			all = all[:*limit]
			break
		}
		if cursor = page.NextCursor; cursor == "" {
			break
		}
	}
	if *asJSON {
		return printJSON(stdout, map[string]any{"deadletters": all})
	}
	return printDeadLetters(stdout, all)
}

func printDeadLetters(w io.Writer, all []deadLetter) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tDESTINATION\tACTIVITY\tATTEMPTS\tLAST ERROR\tDEAD AT")
	for _, dl := range all {
		var head struct {
			Name string `json:"name"`
		}
		_ = json.Unmarshal(dl.Activity, &head)
		last := ""
		if n := len(dl.Attempts); n > 0 {
			last = dl.Attempts[n-1].Error
			if len(last) > 60 {
				last = last[:60] + "…"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", dl.ID, dl.Destination, head.Name, strconv.Itoa(len(dl.Attempts)), last, dl.DeadAt.Format(time.RFC3339))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "%d dead letters\n", len(all))
	return nil
}
