package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/relaydev/relay/config"
	"github.com/relaydev/relay/connectors/salesforce"
	"github.com/relaydev/relay/connectors/webhook"
	"github.com/relaydev/relay/relay"
	"github.com/relaydev/relay/relay/sink"
	"github.com/relaydev/relay/relay/telemetry"
)

// cmdServe runs ingest, workers and the admin API until SIGINT or SIGTERM,
// then drains in-flight deliveries and returns. SIGHUP reloads the config.
func cmdServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("serve", stderr)
	path := fs.String("c", configPath(), "config file")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	memProfile := fs.String("memprofile", "", "write a heap profile to this file when asked to stop, before draining")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	// From now on a SIGHUP reloads instead of ending the process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	cfg, err := relay.LoadConfig(*path)
	if err != nil {
		return err
	}
	log := newLogger(cfg.Log, stderr)
	slog.SetDefault(log)
	// The webhook destinations share one connection pool, sized by
	// engine.max_in_flight (read at start, as the bound itself is).
	conns := webhook.NewTransports(cfg.Engine.MaxInFlight, nil)
	defer conns.Close()
	r, err := relay.New(cfg, relay.Options{Logger: log, NewSink: func(d config.Destination) (sink.Connector, error) {
		return newSink(d, log, conns)
	}})
	if err != nil {
		return err
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if *memProfile != "" {
		ctx = heapProfileOnStop(ctx, *memProfile, log)
	}
	go reloadOnHUP(ctx, r, hup)
	return r.Run(ctx)
}

// heapProfileOnStop returns a context done once ctx is and a heap profile
// is written to path: the heap as it was running, before the drain.
func heapProfileOnStop(ctx context.Context, path string, log *slog.Logger) context.Context {
	inner, cancel := context.WithCancel(context.WithoutCancel(ctx))
	go func() {
		<-ctx.Done()
		defer cancel()
		f, err := os.Create(path)
		if err != nil {
			log.Error("heap profile", "error", err)
			return
		}
		defer f.Close()
		if err := pprof.WriteHeapProfile(f); err != nil {
			log.Error("heap profile", "error", err)
		}
	}()
	return inner
}

// reloadOnHUP reloads the config on each SIGHUP; Reload logs the outcome.
func reloadOnHUP(ctx context.Context, r *relay.Relay, hup <-chan os.Signal) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			_, _ = r.Reload(ctx)
		}
	}
}

// newLogger is the process log as log: {level, format} says, on stderr.
func newLogger(c config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level)) // validated: debug, info, warn, error
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(telemetry.LogHandler(slog.NewJSONHandler(w, opts)))
	}
	return slog.New(telemetry.LogHandler(slog.NewTextHandler(w, opts)))
}

// newSink makes a destination's connector: the one place that knows every
// destination type.
func newSink(d config.Destination, log *slog.Logger, conns *webhook.Transports) (sink.Connector, error) {
	switch d.Type {
	case "webhook":
		s, err := webhook.New(d, webhook.Options{Transports: conns})
		if err != nil {
			return sink.Connector{}, err
		}
		return sink.Connector{Sink: s, Close: s.Close}, nil
	case "salesforce":
		s, err := salesforce.New(d, salesforce.Options{Logger: log.With("destination", d.Name)})
		if err != nil {
			return sink.Connector{}, err
		}
		return sink.Connector{Batch: s, Close: s.Close}, nil
	}
	return sink.Connector{}, fmt.Errorf("unknown type %q", d.Type)
}
