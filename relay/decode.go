package relay

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"

	"github.com/oklog/ulid/v2"

	"github.com/relaydev/relay/relay/activity"
)

// inbound is one activity as a producer sends it: Relay's own shape, or
// ODP's (identifiers for contact, data for attributes).
type inbound struct {
	ID          string         `json:"id"`
	Type        string         `json:"type"`
	Action      string         `json:"action"`
	Activity    string         `json:"activity"`
	Name        string         `json:"name"`
	OccurredAt  string         `json:"occurred_at"`
	Contact     map[string]any `json:"contact"`
	Identifiers map[string]any `json:"identifiers"`
	Attributes  map[string]any `json:"attributes"`
	Data        map[string]any `json:"data"`
}

// itemError is a problem with one item of a request. Unknown marks an
// activity the catalog doesn't have (422); anything else is malformed (400).
type itemError struct {
	Field   string
	Message string
	Unknown bool
}

const maxIDLen = 128

// splitItems returns the items of a body that holds one activity or an
// array of them.
func splitItems(body []byte) ([]json.RawMessage, error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return nil, errors.New("empty body: expected an activity or an array of activities")
	}
	if trimmed[0] == '[' {
		var items []json.RawMessage
		if err := json.Unmarshal(trimmed, &items); err != nil {
			return nil, fmt.Errorf("malformed JSON: %v", err)
		}
		return items, nil
	}
	if trimmed[0] != '{' {
		return nil, errors.New("malformed JSON: expected an object or an array")
	}
	if !json.Valid(trimmed) {
		var v any
		err := json.Unmarshal(trimmed, &v)
		return nil, fmt.Errorf("malformed JSON: %v", err)
	}
	return []json.RawMessage{trimmed}, nil
}

// decodeAll decodes a whole body in one pass. It fails on any JSON-level
// problem, trailing bytes included; the caller then decodes item by item
// to say which item it was.
func decodeAll(body []byte) ([]inbound, error) {
	trimmed := bytes.TrimSpace(body)
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.DisallowUnknownFields()
	whole := func() bool { return dec.InputOffset() == int64(len(trimmed)) }
	if len(trimmed) > 0 && trimmed[0] == '[' {
		var all []inbound
		if err := dec.Decode(&all); err != nil || !whole() {
			return nil, errors.New("decode batch")
		}
		return all, nil
	}
	var one inbound
	if err := dec.Decode(&one); err != nil || !whole() {
		return nil, errors.New("decode activity")
	}
	return []inbound{one}, nil
}

// decodeItem turns one item into an activity, or says what is wrong with it.
func decodeItem(raw json.RawMessage, cat *activity.Catalog, allowCustom bool, now time.Time) (*activity.Activity, []itemError) {
	var in inbound
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return nil, []itemError{jsonItemError(err)}
	}
	return buildActivity(&in, cat, allowCustom, now)
}

// buildActivity checks a decoded item against the catalog and fills in
// what Relay sets.
func buildActivity(in *inbound, cat *activity.Catalog, allowCustom bool, now time.Time) (*activity.Activity, []itemError) {
	var errs []itemError
	a := &activity.Activity{ReceivedAt: now}
	errs = append(errs, resolveName(in, a, cat, allowCustom)...)
	if err := checkID(in.ID); err != nil {
		errs = append(errs, itemError{Field: "id", Message: err.Error()})
	}
	a.ID = in.ID
	if a.ID == "" {
		a.ID = ulid.Make().String()
	}
	a.OccurredAt = now
	if in.OccurredAt != "" {
		t, err := time.Parse(time.RFC3339Nano, in.OccurredAt)
		if err != nil {
			errs = append(errs, itemError{Field: "occurred_at", Message: fmt.Sprintf("expected an RFC 3339 time like 2026-11-22T10:00:00Z, got %q", in.OccurredAt)})
		}
		a.OccurredAt = t.UTC()
	}
	a.Contact, a.Attributes = in.Contact, in.Attributes
	if in.Identifiers != nil {
		if in.Contact != nil {
			errs = append(errs, itemError{Field: "identifiers", Message: "give contact or identifiers, not both"})
		}
		a.Contact = in.Identifiers
	}
	if in.Data != nil {
		if in.Attributes != nil {
			errs = append(errs, itemError{Field: "data", Message: "give attributes or data, not both"})
		}
		a.Attributes = in.Data
	}
	return a, errs
}

func jsonItemError(err error) itemError {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return itemError{Field: te.Field, Message: fmt.Sprintf("expected %s, got %s", te.Type, te.Value)}
	}
	msg := err.Error()
	if f, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		return itemError{Field: strings.Trim(f, `"`), Message: "unknown field"}
	}
	return itemError{Message: "malformed activity: " + strings.TrimPrefix(msg, "json: ")}
}

// resolveName finds the activity in the catalog from type/action, name or
// the Ortto display name.
func resolveName(in *inbound, a *activity.Activity, cat *activity.Catalog, allowCustom bool) []itemError {
	name, field := "", ""
	switch {
	case in.Type != "":
		name, field = in.Type, "type"
		if in.Action != "" {
			name += "." + in.Action
		}
	case in.Action != "":
		return []itemError{{Field: "type", Message: "action given without type"}}
	case in.Name != "":
		name, field = in.Name, "name"
	case in.Activity != "":
		name, field = in.Activity, "activity"
	default:
		return []itemError{{Field: "type", Message: "missing: give type (and action), or activity"}}
	}
	e, ok := cat.Lookup(name)
	if !ok && field == "name" {
		e, ok = cat.Lookup(in.Name)
	}
	if ok {
		if in.Activity != "" && field != "activity" {
			if other, ok2 := cat.Lookup(in.Activity); !ok2 || other.Name != e.Name {
				return []itemError{{Field: "activity", Message: fmt.Sprintf("%q does not name the same activity as %s %q", in.Activity, field, name)}}
			}
		}
		fill(a, e)
		return nil
	}
	if !allowCustom {
		return []itemError{{Field: field, Message: fmt.Sprintf("unknown activity %q (see `relay activities`, declare it under activities:, or set ingest.allow_custom)", name), Unknown: true}}
	}
	typ, action, err := activity.ParseName(name)
	if err != nil {
		return []itemError{{Field: field, Message: fmt.Sprintf("custom activity name %q: %v", name, err)}}
	}
	fill(a, activity.Entry{Name: name, Type: typ, Action: action})
	return nil
}

func fill(a *activity.Activity, e activity.Entry) {
	a.Name, a.Type, a.Action = e.Name, e.Type, e.Action
	if len(e.Aliases) > 0 {
		a.Activity = e.Aliases[0]
	}
}

// checkID accepts client ids of printable characters without spaces.
func checkID(id string) error {
	if len(id) > maxIDLen {
		return fmt.Errorf("longer than %d bytes", maxIDLen)
	}
	for _, r := range id {
		if !unicode.IsPrint(r) || unicode.IsSpace(r) {
			return errors.New("must be printable characters without spaces")
		}
	}
	return nil
}
