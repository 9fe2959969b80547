package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/relaydev/relay/relay/text"
)

// TimeArg is a point in time given as RFC 3339 (2026-11-22T10:00:00Z) or
// as a duration back from now (2h, 30m), in queries and replay requests.
type TimeArg struct{ time.Time }

// TimeForms names the forms a TimeArg takes, for error messages.
const TimeForms = "an RFC 3339 time like 2026-11-22T10:00:00Z or a duration back from now like 5m"

// ParseTimeArg reads s; "" is the zero time.
func ParseTimeArg(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("want %s, got %s (a negative duration would be in the future)", TimeForms, text.Quote(s))
		}
		return now.Add(-d), nil
	}
	t, err := text.ParseTime(s)
	if err != nil {
		return time.Time{}, fmt.Errorf("want %s, got %s", TimeForms, text.Quote(s))
	}
	return t, nil
}

// MarshalJSON writes the time as time.Time does: RFC 3339, to the
// nanosecond, in the time's own zone.
func (t TimeArg) MarshalJSON() ([]byte, error) {
	return t.Time.MarshalJSON()
}

// UnmarshalJSON takes a string of either form; an empty string is
// refused (leave the field out, or null, for no bound).
func (t *TimeArg) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a string: %s, got %s", TimeForms, jsonKind(b))
	}
	if strings.TrimSpace(s) == "" {
		return fmt.Errorf("want %s, got %s", TimeForms, text.Quote(s))
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
	switch c := b[0]; {
	case c == '{':
		return "object"
	case c == '[':
		return "array"
	case c == '"':
		return "string"
	case c == '-' || (c >= '0' && c <= '9'):
		return "number"
	case c == 't' || c == 'f':
		return "boolean"
	case c == 'n':
		return "null"
	}
	return "invalid JSON"
}
