package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/relaydev/relay/relay/api"
)

// followEvery is how often log --follow asks for new attempts. Tests
// shorten it.
var followEvery = time.Second

// followOverlap is how far before the newest attempt seen each ask
// reaches. An attempt is recorded when it ends but dated when it began,
// so it can appear after attempts dated later: the overlap must outlast
// the longest attempt (a destination's timeout, retries inside it
// included).
const followOverlap = 5 * time.Minute

// follower prints each attempt once, oldest first. The log lists attempts
// newest recorded first, so a poll reads from the newest down to the
// first attempt it has already printed: everything below was printed by
// an earlier poll.
type follower struct {
	c      *apiClient
	q      logQuery
	since  *time.Time // --since, if given
	out    io.Writer
	asJSON bool
	seen   map[string]time.Time // key → at, of attempts printed
	newest time.Time            // the latest at printed, else when following began
}

// followLog prints the attempts already listed (newest first), oldest
// first, then asks every followEvery for newer ones until ctx is done
// (SIGINT), which is not an error.
func followLog(ctx context.Context, c *apiClient, q logQuery, first []api.LogEntry, out io.Writer, asJSON bool) error {
	f := &follower{c: c, q: q, since: q.since, out: out, asJSON: asJSON, seen: map[string]time.Time{}, newest: now()}
	if len(first) > 0 {
		f.newest = time.Time{}
	}
	if !asJSON {
		fmt.Fprintln(out, followRow(logHeader))
	}
	if err := f.print(first); err != nil {
		return err
	}
	tick := time.NewTicker(followEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		fresh, err := f.poll(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		if err := f.print(fresh); err != nil {
			return err
		}
	}
}

// poll returns the attempts recorded since the last poll, newest first:
// page after page down to one already printed.
func (f *follower) poll(ctx context.Context) ([]api.LogEntry, error) {
	since := f.newest.Add(-followOverlap)
	if f.since != nil && f.since.After(since) {
		since = *f.since
	}
	f.q.since = &since
	var fresh []api.LogEntry
	cursor := ""
	for range maxPages {
		p, err := getPage[api.LogEntry](ctx, f.c, "deliveries", f.q.path(cursor, 0))
		if err != nil {
			return nil, err
		}
		for _, d := range p.items {
			if _, ok := f.seen[deliveryKey(d)]; ok {
				return fresh, nil
			}
			fresh = append(fresh, d)
		}
		if p.next == "" || p.next == cursor {
			return fresh, nil
		}
		cursor = p.next
	}
	return fresh, nil
}

// print writes the attempts of batch (newest first, as the API lists
// them) not printed before, oldest first, and forgets those too old to be
// listed again.
func (f *follower) print(batch []api.LogEntry) error {
	enc := json.NewEncoder(f.out)
	for _, d := range slices.Backward(batch) {
		if _, ok := f.seen[deliveryKey(d)]; ok {
			continue
		}
		f.seen[deliveryKey(d)] = d.At
		if d.At.After(f.newest) {
			f.newest = d.At
		}
		var err error
		if f.asJSON {
			err = enc.Encode(toDeliveryJSON(d))
		} else {
			_, err = fmt.Fprintln(f.out, followRow(deliveryRow(d)))
		}
		if err != nil {
			return err
		}
	}
	for k, at := range f.seen {
		if at.Before(f.newest.Add(-2 * followOverlap)) {
			delete(f.seen, k)
		}
	}
	return nil
}
