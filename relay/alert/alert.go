// Package alert publishes Relay's operational events (a breaker opened, a
// destination paused, dead letters) for the relay-alerts destination.
package alert

import (
	"context"
	"encoding/json"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"

	"github.com/relaydev/relay/config"
	"github.com/relaydev/relay/relay/store"
)

// Event types.
const (
	BreakerOpened     = "relay.destination.breaker_opened"
	BreakerClosed     = "relay.destination.breaker_closed"
	Paused            = "relay.destination.paused"
	Resumed           = "relay.destination.resumed"
	Gone              = "relay.destination.gone"
	Held              = "relay.destination.held"
	DeadLetterCreated = "relay.deadletter.created"
)

// Publisher publishes Relay's operational events to the alerts destination's
// own subject, in the ACTIVITIES stream: the alerts worker delivers them
// like any activity, durably, with retries and dead letters, so an alert
// is not lost once published. Dead letters are counted and sent at most
// once per deadletter_every per destination.
type Publisher struct {
	js     jetstream.JetStream
	events map[string]bool
	every  time.Duration
	log    *slog.Logger

	mu    sync.Mutex
	dead  map[string]int       // dead letters not yet told, by destination
	since map[string]time.Time // the first of them
}

// New returns nil when alerts are not configured; a nil Publisher
// sends nothing.
func New(cfg config.Alerts, log *slog.Logger) *Publisher {
	if !cfg.Enabled() {
		return nil
	}
	include := cfg.Include
	if len(include) == 0 {
		include = config.AlertEvents
	}
	events := map[string]bool{}
	for _, e := range include {
		events[e] = true
	}
	return &Publisher{events: events, every: time.Duration(cfg.DeadLetterEvery), log: log,
		dead: map[string]int{}, since: map[string]time.Time{}}
}

// Attach gives the alerts the JetStream they publish on, once, before any
// worker runs.
func (a *Publisher) Attach(js jetstream.JetStream) {
	if a != nil {
		a.js = js
	}
}

// Emit publishes one event about a destination, if alerts include it.
func (a *Publisher) Emit(ctx context.Context, event, dest string, fields map[string]any) {
	if a == nil || !a.events[event] || dest == config.AlertsDestination {
		return
	}
	now := time.Now().UTC()
	id := "alert_" + ulid.Make().String()
	data := map[string]any{"id": id, "name": event, "occurred_at": now, "received_at": now, "destination": dest}
	maps.Copy(data, fields)
	body, err := json.Marshal(data)
	if err != nil {
		a.log.Error("encoding an alert", "event", event, "error", err)
		return
	}
	msg := nats.NewMsg(store.SubjectRedeliver + config.AlertsDestination)
	msg.Header.Set(jetstream.MsgIDHeader, id)
	msg.Data = body
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, err := a.js.PublishMsg(ctx, msg); err != nil {
		a.log.Error("publishing an alert failed; it is lost", "event", event, "destination", dest, "error", err)
		return
	}
	a.log.Info("alert", "event", event, "destination", dest, "alert_id", id)
}

// DeadLetter counts a dead letter of a destination for the next
// relay.deadletter.created.
func (a *Publisher) DeadLetter(dest string) {
	if a == nil || !a.events[DeadLetterCreated] || dest == config.AlertsDestination {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.dead[dest] == 0 {
		a.since[dest] = time.Now().UTC()
	}
	a.dead[dest]++
}

// Run sends the counted dead letters each deadletter_every until ctx is
// done, and once more then.
func (a *Publisher) Run(ctx context.Context) {
	if a == nil {
		return
	}
	tick := time.NewTicker(a.every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			a.flush(ctx)
			return
		case <-tick.C:
			a.flush(ctx)
		}
	}
}

func (a *Publisher) flush(ctx context.Context) {
	a.mu.Lock()
	dead, since := a.dead, a.since
	a.dead, a.since = map[string]int{}, map[string]time.Time{}
	a.mu.Unlock()
	for _, dest := range slices.Sorted(maps.Keys(dead)) {
		a.Emit(ctx, DeadLetterCreated, dest, map[string]any{"count": dead[dest], "since": since[dest]})
	}
}
