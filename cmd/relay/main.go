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
	"bench":       {cmdBench, "bench [--activities N] [...]          measure throughput and latency on this machine"},
}

var order = []string{"serve", "validate", "activities", "send", "deadletters", "replay", "pause", "resume", "verify", "bench"}

func main() {
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
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
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errSilent):
		return 1
	}
	fmt.Fprintf(stderr, "relay %s: %v\n", args[0], err)
	return 1
}

// errSilent is returned by commands that already said why they failed.
var errSilent = errors.New("failed")

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: relay COMMAND [flags]\n\ncommands:")
	for _, name := range order {
		fmt.Fprintf(w, "  %s\n", commands[name].usage)
	}
	fmt.Fprintln(w, "\nrun 'relay COMMAND -h' for a command's flags; docs/cli.md has them all")
}

// newFlags makes a command's flag set, writing usage to stderr.
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("relay "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// configPath is -c's default: $RELAY_CONFIG, then ./relay.yaml.
func configPath() string {
	if p := os.Getenv("RELAY_CONFIG"); p != "" {
		return p
	}
	return "relay.yaml"
}
