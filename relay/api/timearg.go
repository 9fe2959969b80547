package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
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
			return time.Time{}, fmt.Errorf("want %s, got %s (a negative duration would be in the future)", TimeForms, quote(s))
		}
		return now.Add(-d), nil
	}
	t, err := parseTime(s)
	if err != nil {
		return time.Time{}, fmt.Errorf("want %s, got %s", TimeForms, quote(s))
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
		return fmt.Errorf("want %s, got %s", TimeForms, quote(s))
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

// parseTime reads an RFC 3339 time whose UTC time falls in years
// 0001–9999, the range RFC 3339 can write; it keeps the instant and
// stores it in UTC. (A copy of the server's ingest.ParseTime.)
func parseTime(s string) (time.Time, error) {
	if len(s) > 10 && (s[10] == 't' || s[len(s)-1] == 'z') { // RFC 3339 allows lower case
		b := []byte(s)
		if b[10] == 't' {
			b[10] = 'T'
		}
		if b[len(b)-1] == 'z' {
			b[len(b)-1] = 'Z'
		}
		s = string(b)
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if _, off := t.Zone(); err != nil || off <= -24*3600 || off >= 24*3600 {
		return time.Time{}, fmt.Errorf("expected an RFC 3339 time like 2026-11-22T10:00:00Z or 2026-11-22T11:00:00+01:00, got %s", quote(s))
	}
	// Go also takes offsets RFC 3339 does not (+24:00, +00:60): the hour
	// of an offset is 00-23 and its minute 00-59.
	if n := len(s); s[n-1] != 'Z' && s[n-1] != 'z' && (s[n-5:n-3] > "23" || s[n-2:] > "59") {
		return time.Time{}, fmt.Errorf("%s has a time zone offset beyond ±23:59", quote(s))
	}
	t = t.UTC()
	if y := t.Year(); y < 1 || y > 9999 {
		return time.Time{}, fmt.Errorf("%s is outside years 0001-9999 in UTC", quote(s))
	}
	return t, nil
}

// maxQuote bounds the bytes of a client's input an error message quotes.
const maxQuote = 64

// quote is a client's value in a message: quoted, at most maxQuote bytes.
// (A copy of the server's ingest.Quote.)
func quote(s string) string {
	if len(s) > maxQuote {
		return fmt.Sprintf("%q… (%d bytes)", clip(s, maxQuote), len(s))
	}
	return fmt.Sprintf("%q", s)
}

// clip shortens s to at most n bytes, cut at a rune boundary, marking
// the cut. (A copy of the server's web.Clip.)
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
