package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/relaydev/relay/config"
	"github.com/relaydev/relay/connectors/salesforce"
	"github.com/relaydev/relay/relay"
)

// cmdValidate checks a config and prints every problem as file:line:col;
// with --remote it also checks each Salesforce destination's mapping
// against its org's description of the object.
func cmdValidate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("validate", stderr)
	path := fs.String("c", configPath(), "config file")
	remote := fs.Bool("remote", false, "also describe each Salesforce destination's object in its org and check every mapped field")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	cfg, err := relay.LoadConfig(*path)
	var errs config.Errors
	if errors.As(err, &errs) {
		fmt.Fprintln(stderr, errs.Error())
		return errSilent
	}
	if err != nil {
		return err
	}
	if *remote && !checkRemote(ctx, *path, cfg, stderr) {
		return errSilent
	}
	fmt.Fprintf(stdout, "%s: ok (%d destinations)\n", *path, len(cfg.Destinations))
	return nil
}

// checkRemote describes every Salesforce destination's object and prints
// each problem at its place in the file; false when there was one.
func checkRemote(ctx context.Context, file string, cfg *config.Config, stderr io.Writer) bool {
	ok := true
	for i, d := range cfg.Destinations {
		if d.Type != "salesforce" {
			continue
		}
		problems, err := describeCheck(ctx, d)
		if err != nil {
			fmt.Fprintf(stderr, "%s:%d:%d: destinations[%d]: %v\n", file, d.At.Line, d.At.Col, i, err)
			ok = false
		}
		for _, p := range problems {
			at, found := d.Pos[p.Path]
			if !found {
				at = d.At
			}
			fmt.Fprintf(stderr, "%s:%d:%d: destinations[%d].%s: %s\n", file, at.Line, at.Col, i, p.Path, p.Message)
			ok = false
		}
	}
	return ok
}

// describeCheck runs one destination's check against its org.
func describeCheck(ctx context.Context, d config.Destination) ([]salesforce.Problem, error) {
	s, err := salesforce.New(d, salesforce.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, err
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return s.Check(ctx)
}
