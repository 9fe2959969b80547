package relay

import (
	"fmt"

	"github.com/relaydev/relay/relay/deliver"
	"github.com/relaydev/relay/relay/rules"
)

// addAlerts makes the worker that delivers alerts, when they are
// configured: a webhook destination named relay-alerts.
func (r *Relay) addAlerts() error {
	r.alerts = deliver.NewAlerter(r.cfg.Alerts, r.log)
	if r.alerts == nil {
		return nil
	}
	d := r.cfg.Alerts.Destination()
	conn, ok := r.opts.Sinks[d.Name]
	if !ok && r.opts.NewSink != nil {
		var err error
		if conn, err = r.opts.NewSink(d); err != nil {
			return fmt.Errorf("alerts: %w", err)
		}
		r.initial[d.Name] = conn.Close
	}
	w, err := deliver.New(d, rules.OwnOnly(), conn, r.log, r.metrics)
	if err != nil {
		return fmt.Errorf("alerts: %w", err)
	}
	r.workers = append(r.workers, w)
	return nil
}

// connect gives a worker the stores.
func (r *Relay) connect(w *deliver.Worker) {
	r.alerts.Attach(r.bus.JS)
	w.Connect(deliver.Stores{Bus: r.bus, DeadLetters: r.dls, History: r.history, States: r.states, Log: r.dlog,
		Held: r.held, Alerts: r.alerts, Breakers: r.breakers})
}
