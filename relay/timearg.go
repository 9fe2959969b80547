package relay

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/relaydev/relay/relay/ingest"
)

// TimeArg is a point in time given as RFC 3339 (2026-11-22T10:00:00Z) or
// as a duration back from now (2h, 30m), in queries and replay requests.
type TimeArg struct{ time.Time }

// timeForms names the forms a TimeArg takes, for error messages.
const timeForms = "an RFC 3339 time like 2026-11-22T10:00:00Z or a duration back from now like 5m"

// ParseTimeArg reads s; "" is the zero time.
func ParseTimeArg(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("want %s, got %s (a negative duration would be in the future)", timeForms, ingest.Quote(s))
		}
		return now.Add(-d), nil
	}
	t, err := ingest.ParseTime(s)
	if err != nil {
		return time.Time{}, fmt.Errorf("want %s, got %s", timeForms, ingest.Quote(s))
	}
	return t, nil
}

// UnmarshalJSON takes a string of either form; an empty string is
// refused (leave the field out, or null, for no bound).
func (t *TimeArg) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a string: %s, got %s", timeForms, jsonKind(b))
	}
	if strings.TrimSpace(s) == "" {
		return fmt.Errorf("want %s, got %s", timeForms, ingest.Quote(s))
	}
	v, err := ParseTimeArg(s, time.Now())
	if err != nil {
		return err
	}
	t.Time = v
	return nil
}

// jsonKind names the JSON type of a value by its first byte: object,
// array, string, number, boolean or null.
func jsonKind(b []byte) string {
	b = bytes.TrimLeft(b, " \t\r\n")
	if len(b) == 0 {
		return "nothing"
	}
	k := jsontext.Kind(b[0])
	if b[0] == '-' || (b[0] >= '0' && b[0] <= '9') {
		k = '0'
	}
	if name := jsonKindName(k); name != "" {
		return name
	}
	return "invalid JSON"
}
