package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/relaydev/relay/config"
	"github.com/relaydev/relay/relay"
)

// cmdValidate checks a config and prints every problem as file:line:col.
func cmdValidate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	flags := newFlags("validate", stderr)
	path := flags.String("c", configPath(), "config file")
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
	n := len(cfg.Destinations)
	fmt.Fprintf(stdout, "%s: ok (%d %s)\n", *path, n, plural(n, "destination"))
	return nil
}
