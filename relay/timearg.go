package relay

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// TimeArg is a point in time given as RFC 3339 (2026-11-22T10:00:00Z) or
// as a duration back from now (2h, 30m), in queries and replay requests.
type TimeArg struct{ time.Time }

// ParseTimeArg reads s; "" is the zero time.
func ParseTimeArg(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("want a duration back from now like 2h, got %s (negative)", quote(s))
		}
		return now.Add(-d), nil
	}
	t, err := parseTime(s)
	if err != nil {
		return time.Time{}, fmt.Errorf("want an RFC 3339 time like 2026-11-22T10:00:00Z or a duration back from now like 2h, got %s", quote(s))
	}
	return t, nil
}

// UnmarshalJSON takes a string of either form.
func (t *TimeArg) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a string: an RFC 3339 time or a duration like 2h")
	}
	v, err := ParseTimeArg(s, time.Now())
	if err != nil {
		return err
	}
	t.Time = v
	return nil
}
