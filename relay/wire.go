package relay

import (
	"fmt"

	"github.com/relaydev/relay/relay/alert"
	"github.com/relaydev/relay/relay/deliver"
	"github.com/relaydev/relay/relay/rules"
)

// addAlerts makes the worker that delivers alerts, when they are
// configured: a webhook destination named relay-alerts.
func (r *Relay) addAlerts() (*deliver.Worker, error) {
	r.alerts = alert.New(r.cfg.Alerts, r.log)
	if r.alerts == nil {
		return nil, nil
	}
	d := r.cfg.Alerts.Destination()
	conn, ok := r.opts.Sinks[d.Name]
	if !ok && r.opts.NewSink != nil {
		var err error
		if conn, err = r.opts.NewSink(d); err != nil {
			return nil, fmt.Errorf("alerts: %w", err)
		}
		r.initial[d.Name] = conn.Close
	}
	w, err := deliver.New(d, rules.OwnOnly(), conn, r.log, r.metrics)
	if err != nil {
		return nil, fmt.Errorf("alerts: %w", err)
	}
	return w, nil
}
