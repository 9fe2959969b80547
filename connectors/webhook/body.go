package webhook

import (
	"encoding/json"
	"time"

	"github.com/relaydev/relay/relay/activity"
)

// Body is the webhook payload: {"type", "timestamp", "data"}, where data is
// the activity's stored JSON, appended as is rather than encoded again
// (null when there is none).
func Body(a *activity.Activity, raw []byte) []byte {
	b := make([]byte, 0, len(raw)+len(a.Name)+64)
	b = append(b, `{"type":`...)
	b = appendJSONString(b, a.Name)
	b = append(b, `,"timestamp":"`...)
	b = a.OccurredAt.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","data":`...)
	if len(raw) == 0 {
		raw = []byte("null")
	}
	b = append(b, raw...)
	return append(b, '}')
}

// appendJSONString appends s as a JSON string: as is when it needs no
// escaping (catalog names never do), else through encoding/json.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			q, _ := json.Marshal(s) // a string always encodes
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
