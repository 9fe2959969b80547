package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/url"
)

// cmdPause stops delivery to a destination; its backlog waits in JetStream.
func cmdPause(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return setState(ctx, "pause", "paused", args, stdout, stderr)
}

// cmdResume restarts delivery to a paused destination.
func cmdResume(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return setState(ctx, "resume", "active", args, stdout, stderr)
}

// setState pauses or resumes a destination through the admin API.
func setState(ctx context.Context, verb, state string, args []string, stdout, stderr io.Writer) error {
	fs := newFlags(verb, stderr)
	cf := addClientFlags(fs, true)
	name, err := oneArg(fs, args, "destination")
	if err != nil {
		return err
	}
	c, err := cf.client(stderr)
	if err != nil {
		return err
	}
	var out struct {
		State string `json:"state"`
	}
	if err := c.do(ctx, "POST", "/v1/destinations/"+url.PathEscape(name)+"/"+verb, nil, &out); err != nil {
		return err
	}
	if out.State != "" {
		state = out.State
	}
	fmt.Fprintf(stdout, "%s: %s\n", name, state)
	return nil
}

// oneArg parses flags given before or after the one positional argument,
// a what, and returns it.
func oneArg(fs *flag.FlagSet, args []string, what string) (string, error) {
	if err := parseFlags(fs, args); err != nil {
		return "", err
	}
	if fs.NArg() == 0 {
		return "", usageError(fs, "name one %s", what)
	}
	name := fs.Arg(0)
	if err := parseFlags(fs, fs.Args()[1:]); err != nil {
		return "", err
	}
	if fs.NArg() > 0 {
		return "", usageError(fs, "name one %s, not several", what)
	}
	return name, nil
}
