package main

import (
	"context"
	"encoding/json"
	"fmt"
)

const (
	// pageSize is the most entries the API returns in one page.
	pageSize = 1000
	// maxPages bounds how many pages one listing follows.
	maxPages = 10000
)

// listPages fetches page after page of a listing whose entries are under
// key ("deadletters", "deliveries"), until the last or until it has limit
// entries (0: no limit). path makes the request for a cursor and the most
// entries still wanted. more reports that the listing was cut at limit
// with entries perhaps left on the server.
func listPages[T any](ctx context.Context, c *apiClient, key string, limit int, path func(cursor string, want int) string) (all []T, more bool, err error) {
	all = []T{}
	cursor := ""
	for range maxPages {
		items, next, err := getPage[T](ctx, c, key, path(cursor, limit-len(all)))
		if err != nil {
			return nil, false, err
		}
		all = append(all, items...)
		if limit > 0 && len(all) >= limit {
			return all[:limit], len(all) > limit || next != "", nil
		}
		if next == "" {
			return all, false, nil
		}
		if next == cursor {
			return nil, false, fmt.Errorf("list %s: the server returned cursor %q twice", key, cursor)
		}
		cursor = next
	}
	return nil, false, fmt.Errorf("list %s: more than %d pages", key, maxPages)
}

// getPage fetches one page: its entries and the next cursor.
func getPage[T any](ctx context.Context, c *apiClient, key, path string) ([]T, string, error) {
	var page map[string]json.RawMessage
	if err := c.do(ctx, "GET", path, nil, &page); err != nil {
		return nil, "", err
	}
	var items []T
	var next string
	if err := json.Unmarshal(page[key], &items); err != nil {
		return nil, "", fmt.Errorf("GET %s: unexpected answer: %s: %w", path, key, err)
	}
	if raw, ok := page["next_cursor"]; ok {
		if err := json.Unmarshal(raw, &next); err != nil {
			return nil, "", fmt.Errorf("GET %s: unexpected answer: next_cursor: %w", path, err)
		}
	}
	return items, next, nil
}

// countLine is the line under a listing: its total, or that it was cut.
func countLine(n int, what string, more bool) string {
	if more {
		return fmt.Sprintf("first %d %s (--limit %d; there may be more, --limit 0 lists all)\n", n, what, n)
	}
	return fmt.Sprintf("%d %s\n", n, what)
}
