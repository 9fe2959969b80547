package webhook

import (
	"strconv"
	"time"

	"github.com/relaydev/relay/relay/activity"
)

// Body is the webhook payload: {"type", "timestamp", "data"}, where data is
// the activity's stored JSON, appended as is rather than encoded again.
func Body(a *activity.Activity, raw []byte) []byte {
	b := make([]byte, 0, len(raw)+len(a.Name)+64)
	b = append(b, `{"type":`...)
	b = strconv.AppendQuote(b, a.Name)
	b = append(b, `,"timestamp":"`...)
	b = a.OccurredAt.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","data":`...)
	b = append(b, raw...)
	return append(b, '}')
}
