package deliver

import (
	"time"

	"github.com/relaydev/relay/relay/sink"
)

// delivery is a sink.Delivery with what the worker keeps of it while it
// settles (one allocation for both).
type delivery struct {
	sink.Delivery
	// history is the activity's recorded attempts, when numbering this
	// attempt read them (historyRead).
	history     []sink.Attempt
	historyRead bool
	// fanoutWait is how long the fan-out waited for an attempt slot
	// before this worker took the activity (0: one was free).
	fanoutWait time.Duration
}

// sinkDeliveries are the connector's view of ds.
func sinkDeliveries(ds []*delivery) []*sink.Delivery {
	out := make([]*sink.Delivery, len(ds))
	for i, d := range ds {
		out[i] = &d.Delivery
	}
	return out
}
