package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"time"

	"github.com/relaydev/relay/config"
	"github.com/relaydev/relay/connectors/salesforce"
	"github.com/relaydev/relay/relay"
)

// cmdValidate checks a config and prints every problem as file:line:col;
// with --remote it also checks each Salesforce destination's mapping
// against its org's description of the object.
func cmdValidate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	flags := newFlags("validate", stderr)
	path := flags.String("c", configPath(), "config file")
	remote := flags.Bool("remote", false, "also describe each Salesforce destination's object in its org and check every mapped field")
	if err := parseNoArgs(flags, args); err != nil {
		return err
	}
	if _, err := os.Stat(*path); errors.Is(err, fs.ErrNotExist) {
		if by := configNamedBy(flags); by != "" {
			return fmt.Errorf("config %s (named by %s) does not exist", *path, by)
		}
		return fmt.Errorf("config %s does not exist (name one with -c or $RELAY_CONFIG)", *path)
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
	n := len(cfg.Destinations)
	fmt.Fprintf(stdout, "%s: ok (%d %s)\n", *path, n, plural(n, "destination"))
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
