package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/relaydev/relay/relay/activity"
)

// cmdActivities lists the built-in catalog.
func cmdActivities(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("activities", stderr)
	asJSON := fs.Bool("json", false, "print one JSON array")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	entries := activity.Builtin().Entries()
	if *asJSON {
		return printJSON(stdout, entries)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tORTTO NAME\tDESCRIPTION")
	for _, e := range entries {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", e.Name, strings.Join(e.Aliases, ", "), e.Description)
	}
	return tw.Flush()
}
