package admin

import (
	"context"
	"slices"

	"github.com/relaydev/relay/relay/api"
)

// TraceRemoved is the status, in a trace, of a destination no longer in
// the config whose attempts the delivery log still keeps.
const TraceRemoved = "removed"

// addRemoved lists in a trace the destinations a reload removed that
// attempted the activity, from the delivery log (kept log.retention): what
// happened to it there does not vanish with the config.
func (a *Admin) addRemoved(ctx context.Context, t *api.Trace) error {
	if a.Log == nil {
		return nil
	}
	entries, err := a.Log.ForActivity(ctx, t.ID, t.ReceivedAt)
	if err != nil {
		return err
	}
	listed := map[string]bool{}
	for _, d := range t.Destinations {
		listed[d.Name] = true
	}
	removed := map[string]*api.DestinationTrace{}
	var names []string
	for _, e := range entries {
		if listed[e.Destination] {
			continue
		}
		d := removed[e.Destination]
		if d == nil {
			d = &api.DestinationTrace{Name: e.Destination, Selected: true, Status: TraceRemoved,
				Reason: "no longer in the config; its attempts are from the delivery log"}
			removed[e.Destination] = d
			names = append(names, e.Destination)
		}
		d.Attempts = append(d.Attempts, api.TraceEntry{Attempt: e.Attempt, At: e.At, Status: e.Status, Error: e.Error, LatencyMS: e.LatencyMS, Outcome: e.Outcome})
	}
	slices.Sort(names)
	for _, n := range names {
		t.Destinations = append(t.Destinations, *removed[n])
	}
	return nil
}
