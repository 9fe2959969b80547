package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/relaydev/relay/config"
	"github.com/relaydev/relay/connectors/salesforce"
	"github.com/relaydev/relay/connectors/webhook"
	"github.com/relaydev/relay/relay"
)

// cmdServe runs ingest, workers and the admin API until SIGINT or SIGTERM,
// then drains in-flight deliveries and returns.
func cmdServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("serve", stderr)
	path := fs.String("c", configPath(), "config file")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	cfg, err := relay.LoadConfig(*path)
	if err != nil {
		return err
	}
	log := newLogger(cfg.Log, stderr)
	slog.SetDefault(log)
	sinks, closeAll, err := buildSinks(cfg, log)
	if err != nil {
		return err
	}
	defer closeAll()
	r, err := relay.New(cfg, relay.Options{Logger: log, Sinks: sinks})
	if err != nil {
		return err
	}
	return r.Run(ctx)
}

// newLogger is the process log as log: {level, format} says, on stderr.
func newLogger(c config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level)) // validated: debug, info, warn, error
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// buildSinks makes each destination's connector: the one place that knows
// every destination type.
func buildSinks(cfg *config.Config, log *slog.Logger) (map[string]any, func(), error) {
	sinks := map[string]any{}
	var closers []func()
	closeAll := func() {
		for _, c := range closers {
			c()
		}
	}
	for _, d := range cfg.Destinations {
		dlog := log.With("destination", d.Name)
		switch d.Type {
		case "webhook":
			s, err := webhook.New(d, webhook.Options{Logger: dlog})
			if err != nil {
				closeAll()
				return nil, nil, fmt.Errorf("destination %s: %w", d.Name, err)
			}
			sinks[d.Name], closers = s, append(closers, s.Close)
		case "salesforce":
			s, err := salesforce.New(d, salesforce.Options{Logger: dlog})
			if err != nil {
				closeAll()
				return nil, nil, fmt.Errorf("destination %s: %w", d.Name, err)
			}
			sinks[d.Name], closers = s, append(closers, s.Close)
		default:
			closeAll()
			return nil, nil, fmt.Errorf("destination %s: unknown type %q", d.Name, d.Type)
		}
	}
	return sinks, closeAll, nil
}
