// Package text reads and quotes the text clients send: RFC 3339 times,
// and values quoted in error messages, bounded so a message never echoes a
// request whole.
package text

import (
	"fmt"
	"time"
	"unicode/utf8"
)

// MaxQuote is how many bytes of a client's input a message quotes.
const MaxQuote = 64

// Quote is the producer's value in a message: quoted, at most MaxQuote bytes.
func Quote(s string) string {
	if len(s) > MaxQuote {
		return fmt.Sprintf("%q… (%d bytes)", Clip(s, MaxQuote), len(s))
	}
	return fmt.Sprintf("%q", s)
}

// Clip shortens s to at most n bytes (on a rune boundary), marking the cut.
func Clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// ParseTime reads an RFC 3339 time whose UTC time falls in years
// 0001–9999, the range RFC 3339 can write; it keeps the instant and
// stores it in UTC.
func ParseTime(s string) (time.Time, error) {
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
		return time.Time{}, fmt.Errorf("expected an RFC 3339 time like 2026-11-22T10:00:00Z or 2026-11-22T11:00:00+01:00, got %s", Quote(s))
	}
	// Go also takes offsets RFC 3339 does not (+24:00, +00:60): the hour
	// of an offset is 00-23 and its minute 00-59.
	if n := len(s); s[n-1] != 'Z' && s[n-1] != 'z' && (s[n-5:n-3] > "23" || s[n-2:] > "59") {
		return time.Time{}, fmt.Errorf("%s has a time zone offset beyond ±23:59", Quote(s))
	}
	t = t.UTC()
	if y := t.Year(); y < 1 || y > 9999 {
		return time.Time{}, fmt.Errorf("%s is outside years 0001-9999 in UTC", Quote(s))
	}
	return t, nil
}
