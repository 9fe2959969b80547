// Package activity defines the activity Relay moves and the built-in catalog of
// activities it knows.
package activity

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Activity is one thing that happened to a person, as stored in JetStream and
// sent as the "data" of a webhook.
//
// Contact and Attributes hold the producer's JSON text as it was sent, so
// every value reaches a receiver unchanged: number literals beyond float64
// (12345678901234567891, 1e-999, 1.50) and strings byte for byte. Decode
// them with DecodeObject when a value is needed.
type Activity struct {
	ID         string          `json:"id"`
	Name       string          `json:"name"`               // canonical "type.action" ("pageview" has no action)
	Type       string          `json:"type"`               // first part of Name
	Action     string          `json:"action"`             // second part of Name, "" when there is none
	Activity   string          `json:"activity,omitempty"` // the Ortto display name, when the catalog has one
	OccurredAt time.Time       `json:"occurred_at"`
	ReceivedAt time.Time       `json:"received_at"`
	Contact    json.RawMessage `json:"contact,omitempty"`
	Attributes json.RawMessage `json:"attributes,omitempty"`
}

// DecodeObject decodes contact or attributes: a JSON object (or nothing,
// or null, which give an empty map), numbers as json.Number so no literal
// is rounded.
func DecodeObject(raw json.RawMessage) (map[string]any, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return map[string]any{}, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("not a JSON object: %w", err)
	}
	if m == nil {
		m = map[string]any{}
	}
	return m, nil
}

// MustObject is raw JSON of an object built from m, for tests and tools
// that make activities in code.
func MustObject(m map[string]any) json.RawMessage {
	if m == nil {
		return nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

// ErrTimeRange is returned for a time outside years 0001–9999 (UTC), which
// RFC 3339 cannot write.
var ErrTimeRange = errors.New("time outside years 0001-9999 (UTC)")

// Encode returns the activity's stored JSON: Relay's fields in a fixed
// order, contact and attributes exactly as the producer wrote them (and
// checked to be valid JSON).
func Encode(a *Activity) ([]byte, error) { return encode(a, true) }

// EncodeDecoded is Encode for an activity whose contact and attributes
// come from a strict decoder, which has checked them already.
func EncodeDecoded(a *Activity) ([]byte, error) { return encode(a, false) }

func encode(a *Activity, check bool) ([]byte, error) {
	for _, t := range []time.Time{a.OccurredAt, a.ReceivedAt} {
		if y := t.UTC().Year(); y < 1 || y > 9999 {
			return nil, ErrTimeRange
		}
	}
	b := make([]byte, 0, 192+len(a.Contact)+len(a.Attributes))
	b = append(b, `{"id":`...)
	b = AppendString(b, a.ID)
	b = append(b, `,"name":`...)
	b = AppendString(b, a.Name)
	b = append(b, `,"type":`...)
	b = AppendString(b, a.Type)
	b = append(b, `,"action":`...)
	b = AppendString(b, a.Action)
	if a.Activity != "" {
		b = append(b, `,"activity":`...)
		b = AppendString(b, a.Activity)
	}
	b = append(b, `,"occurred_at":"`...)
	b = a.OccurredAt.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","received_at":"`...)
	b = a.ReceivedAt.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	for _, f := range []struct {
		key string
		raw json.RawMessage
	}{{"contact", a.Contact}, {"attributes", a.Attributes}} {
		raw := bytes.TrimSpace(f.raw)
		if len(raw) == 0 || string(raw) == "null" {
			continue
		}
		if check && !json.Valid(raw) {
			return nil, fmt.Errorf("%s is not valid JSON", f.key)
		}
		b = append(b, `,"`...)
		b = append(b, f.key...)
		b = append(b, `":`...)
		b = append(b, raw...)
	}
	return append(b, '}'), nil
}

// AppendString appends s as a JSON string without HTML escaping: as is
// when it needs no escaping, else through encoding/json.
func AppendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			var buf bytes.Buffer
			enc := json.NewEncoder(&buf)
			enc.SetEscapeHTML(false)
			_ = enc.Encode(s) // a string always encodes
			return append(b, bytes.TrimSuffix(buf.Bytes(), []byte("\n"))...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
