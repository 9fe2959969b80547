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
	"strings"
	"syscall"
	"text/tabwriter"
)

// command is one subcommand: what runs it.
type command struct {
	run func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

var commands = map[string]command{
	"serve": {cmdServe}, "validate": {cmdValidate}, "activities": {cmdActivities}, "send": {cmdSend},
	"status": {cmdStatus}, "trace": {cmdTrace}, "log": {cmdLog}, "deadletters": {cmdDeadLetters},
	"replay": {cmdReplay}, "pause": {cmdPause}, "resume": {cmdResume}, "verify": {cmdVerify},
	"reload": {cmdReload}, "bench": {cmdBench}, "healthcheck": {cmdHealthcheck}, "version": {cmdVersion},
	"contact": {cmdContact}, "erase": {cmdErase},
}

// synopses are each command's usage line and what it does, for relay
// help and every command's -h.
var synopses = map[string][2]string{
	"serve":       {"serve [-c relay.yaml]", "run ingest, workers and the admin API"},
	"validate":    {"validate [-c relay.yaml] [--remote]", "check the config; every error as file:line:col (--remote: each Salesforce object in its org too)"},
	"activities":  {"activities [--json]", "list the activity catalog"},
	"send":        {"send --activity NAME [--email E] ...", "send one activity through ingest"},
	"status":      {"status [--json] [--watch]", "what every destination is doing now"},
	"trace":       {"trace ID [--json]", "what happened to one activity at every destination"},
	"log":         {"log [--destination D] [--follow] ...", "delivery attempts, newest first, or as they happen"},
	"deadletters": {"deadletters [--destination D] [...]", "list dead letters and count them"},
	"contact":     {"contact --email E (or --phone, --id)", "a person's channel states and newest activities"},
	"erase":       {"erase --email E (or --phone, --id)", "forget a person: every activity and trace of it"},
	"replay":      {"replay --destination D [--dry-run] ...", "deliver dead letters (or --history) again"},
	"pause":       {"pause DESTINATION", "stop delivering to a destination"},
	"resume":      {"resume DESTINATION", "restart delivering to a destination"},
	"verify":      {"verify --secret S --id ID --timestamp TS --signature SIG < body", "check a received webhook's signature"},
	"reload":      {"reload", "apply the edited config to a running Relay (which reads ${VAR}s from its own environment)"},
	"bench":       {"bench [--activities N] [...]", "measure throughput and latency on this machine"},
	"healthcheck": {"healthcheck [--url URL] [--timeout T]", "exit 0 when the admin API's /readyz answers 200"},
	"version":     {"version [--json]", "print the version, commit and Go version"},
}

// order is the order of the usage.
var order = []string{"serve", "validate", "reload", "activities", "send", "status", "trace", "log", "deadletters", "replay", "contact", "erase", "pause", "resume", "verify", "bench", "healthcheck", "version"}

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
	if len(args) == 0 { // a command is required
		usage(stderr)
		return 2
	}
	if args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		return help(ctx, args[1:], stdout, stderr)
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

// help prints the usage, or with one command's name its flags, on stdout
// as asked.
func help(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stdout)
		return 0
	}
	if _, ok := commands[args[0]]; ok && len(args) == 1 {
		return run(ctx, []string{args[0], "-h"}, stdout, stdout)
	}
	fmt.Fprintf(stderr, "relay: help %s: want one of these commands\n\n", strings.Join(args, " "))
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: relay COMMAND [flags]\n\ncommands:")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, name := range order {
		syn := synopses[name]
		line := syn[0]
		if len(line) > 40 { // verify's: its flags are the usage
			line = name + " --secret S ..."
		}
		fmt.Fprintf(tw, "  %s\t%s\n", line, syn[1])
	}
	_ = tw.Flush()
	fmt.Fprintln(w, "\nrun 'relay help COMMAND' for what a command does and its flags; docs/cli.md has them all")
}

// newFlags makes a command's flag set, writing usage and flag errors to
// stderr. Its usage (-h, and after a wrong use) is the same for every
// command: the usage line, what the command does, then the flags.
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("relay "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		syn := synopses[name]
		fmt.Fprintf(fs.Output(), "usage: relay %s\n\n%s.\n\nflags:\n", syn[0], upperFirst(syn[1]))
		fs.PrintDefaults()
	}
	return fs
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
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

// parseNoArgs parses flags and refuses any argument left over: a command
// that takes none must not silently ignore one.
func parseNoArgs(fs *flag.FlagSet, args []string) error {
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError(fs, "unexpected argument %q", fs.Arg(0))
	}
	return nil
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
func usageError(fs *flag.FlagSet, format string, args ...any) error {
	fmt.Fprintf(fs.Output(), "%s: %s\n", fs.Name(), fmt.Sprintf(format, args...))
	fs.Usage()
	return errUsage
}
