package main

import (
	"context"
	"encoding/json"
	"fmt"
)

// pageSize is the most entries asked for in one page: the API's largest
// page. Tests shorten it to walk the cursor.
var pageSize = 1000

// maxPages bounds how many pages one listing follows.
const maxPages = 10000

// listing is what a paged listing fetched.
type listing[T any] struct {
	items []T
	// more reports that the listing was cut at its limit, with entries
	// perhaps left on the server; total is how many match in all, when
	// the server says (0 when it does not).
	more  bool
	total int
}

// page is one page of a listing as the API returns it.
type page[T any] struct {
	items []T
	next  string
	total int
}

// listPages fetches page after page of a listing whose entries are under
// key ("deadletters", "deliveries"), until the last or until it has limit
// entries (0: no limit). path makes the request for a cursor and the most
// entries still wanted.
func listPages[T any](ctx context.Context, c *apiClient, key string, limit int, path func(cursor string, want int) string) (listing[T], error) {
	l := listing[T]{items: []T{}}
	cursor := ""
	for range maxPages {
		p, err := getPage[T](ctx, c, key, path(cursor, limit-len(l.items)))
		if err != nil {
			return listing[T]{}, err
		}
		l.items, l.total = append(l.items, p.items...), p.total
		if limit > 0 && len(l.items) >= limit {
			l.more = len(l.items) > limit || p.next != ""
			l.items = l.items[:limit]
			return l, nil
		}
		if p.next == "" {
			return l, nil
		}
		if p.next == cursor {
			return listing[T]{}, fmt.Errorf("list %s: the server returned cursor %q twice", key, cursor)
		}
		cursor = p.next
	}
	return listing[T]{}, fmt.Errorf("list %s: more than %d pages", key, maxPages)
}

// getPage fetches one page: its entries, the next cursor and the total
// when the server gives them.
func getPage[T any](ctx context.Context, c *apiClient, key, path string) (page[T], error) {
	var answer map[string]json.RawMessage
	if err := c.do(ctx, "GET", path, nil, &answer); err != nil {
		return page[T]{}, err
	}
	var p page[T]
	for field, into := range map[string]any{key: &p.items, "next_cursor": &p.next, "total": &p.total} {
		raw, ok := answer[field]
		if !ok && field != key {
			continue
		}
		if err := json.Unmarshal(raw, into); err != nil {
			return page[T]{}, fmt.Errorf("GET %s: unexpected answer: %s: %w", path, field, err)
		}
	}
	return p, nil
}

// countLine is the line under a listing of things (one thing, several
// things+"s"): how many it shows and, when it was cut at its limit, how
// many there are or that there may be more.
func countLine[T any](l listing[T], thing string) string {
	n := len(l.items)
	switch {
	case !l.more:
		return fmt.Sprintf("%d %s\n", n, plural(n, thing))
	case l.total > n:
		return fmt.Sprintf("first %d of %d %s (--limit 0 lists all)\n", n, l.total, plural(l.total, thing))
	}
	return fmt.Sprintf("first %d %s (--limit %d; there may be more, --limit 0 lists all)\n", n, plural(n, thing), n)
}

// plural is thing, with an s unless n is 1.
func plural(n int, thing string) string {
	if n == 1 {
		return thing
	}
	return thing + "s"
}
