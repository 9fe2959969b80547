// Command relay ingests activities into NATS JetStream and delivers them to
// webhooks and Salesforce, with durable retries, dead letters and replay.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

// command is one subcommand: what runs it and its line in the usage.
type command struct {
	run   func(ctx context.Context, args []string, stdout, stderr io.Writer) error
	usage string
}

var commands = map[string]command{
	"serve":       {cmdServe, "serve [-c relay.yaml]                 run ingest, workers and the admin API"},
	"validate":    {cmdValidate, "validate [-c relay.yaml]              check the config; every error as file:line:col"},
	"activities":  {cmdActivities, "activities [--json]                   list the activity catalog"},
	"send":        {cmdSend, "send --activity NAME [--email E] ...  send one activity through ingest"},
	"deadletters": {cmdDeadLetters, "deadletters [--destination D]         list dead letters"},
	"replay":      {cmdReplay, "replay --destination D [...]          deliver dead letters (or --history) again"},
	"pause":       {cmdPause, "pause DESTINATION                     stop delivering to a destination"},
	"resume":      {cmdResume, "resume DESTINATION                    restart delivering to a destination"},
	"verify":      {cmdVerify, "verify --secret S --id ID --timestamp TS --signature SIG < body"},
	"reload":      {cmdReload, "reload                                apply the edited config to a running Relay"},
	"bench":       {cmdBench, "bench [--activities N] [...]          measure throughput and latency on this machine"},
}

// order is the order of the usage.
var order = []string{"serve", "validate", "reload", "activities", "send", "deadletters", "replay", "pause", "resume", "verify", "bench"}

var (
	// errSilent is returned by a command that already said why it failed.
	errSilent = errors.New("failed")
	// errUsage is returned for bad flags or arguments, already reported.
	errUsage = errors.New("usage")
)

func main() {
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, nil)))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run dispatches args[0] to its command and returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		if len(args) > 1 { // relay help COMMAND
			return run(ctx, []string{args[1], "-h"}, stdout, stderr)
		}
		usage(stdout)
		return 0
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "relay: unknown command %q\n\n", args[0])
		usage(stderr)
		return 2
	}
	err := cmd.run(ctx, args[1:], stdout, stderr)
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	case errors.Is(err, errSilent):
		return 1
	}
	fmt.Fprintf(stderr, "relay: %v\n", err)
	return 1
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: relay COMMAND [flags]\n\ncommands:")
	for _, name := range order {
		fmt.Fprintf(w, "  %s\n", commands[name].usage)
	}
	fmt.Fprintln(w, "\nrun 'relay help COMMAND' for a command's flags; docs/cli.md has them all")
}

// newFlags makes a command's flag set, writing usage and flag errors to
// stderr.
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("relay "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parseFlags parses args; the flag package has already reported any error,
// so the error returned only sets the exit status.
func parseFlags(fs *flag.FlagSet, args []string) error {
	err := fs.Parse(args)
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return err
	}
	return fmt.Errorf("%w: %w", errUsage, err)
}

// configPath is -c's default: $RELAY_CONFIG, then ./relay.yaml.
func configPath() string {
	if p := os.Getenv("RELAY_CONFIG"); p != "" {
		return p
	}
	return "relay.yaml"
}

// usageError reports a wrong use of a command with its usage and returns
// errUsage.
func usageError(fs *flag.FlagSet, msg string) error {
	fmt.Fprintf(fs.Output(), "%s: %s\n", fs.Name(), msg)
	fs.Usage()
	return errUsage
}
