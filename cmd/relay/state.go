package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
)

func cmdPause(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return setState(ctx, "pause", args, stdout, stderr)
}

func cmdResume(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return setState(ctx, "resume", args, stdout, stderr)
}

// setState pauses or resumes a destination through the admin API.
func setState(ctx context.Context, verb string, args []string, stdout, stderr io.Writer) error {
	fs := newFlags(verb, stderr)
	cf := addClientFlags(fs, true)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() < 1 {
		return errors.New("name one destination: relay " + verb + " DESTINATION")
	}
	name := fs.Arg(0)
	if err := fs.Parse(fs.Args()[1:]); err != nil { // flags may follow the name
		return err
	}
	if fs.NArg() > 0 {
		return errors.New("name one destination: relay " + verb + " DESTINATION")
	}
	var out struct {
		State string `json:"state"`
	}
	if err := cf.client().do(ctx, "POST", "/v1/destinations/"+url.PathEscape(name)+"/"+verb, nil, &out); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: %s\n", name, out.State)
	return nil
}
