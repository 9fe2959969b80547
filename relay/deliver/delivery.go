package deliver

import (
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
}

// sinkDeliveries are the connector's view of ds.
func sinkDeliveries(ds []*delivery) []*sink.Delivery {
	out := make([]*sink.Delivery, len(ds))
	for i, d := range ds {
		out[i] = &d.Delivery
	}
	return out
}
