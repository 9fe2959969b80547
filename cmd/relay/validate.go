package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/relaydev/relay/config"
	"github.com/relaydev/relay/relay"
)

// cmdValidate checks a config and prints every problem as file:line:col.
func cmdValidate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("validate", stderr)
	path := fs.String("c", configPath(), "config file")
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
	fmt.Fprintf(stdout, "%s: ok (%d destinations)\n", *path, len(cfg.Destinations))
	return nil
}
