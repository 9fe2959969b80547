package salesforce

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/relaydev/relay/config"
	"github.com/relaydev/relay/relay/activity"
)

// Salesforce's dateTime format: ISO 8601 in UTC with milliseconds.
const sfTime = "2006-01-02T15:04:05.000Z"

// ValidPath reports whether path is an activity path a field can map from
// (the grammar config checks at validate time).
func ValidPath(path string) bool { return config.ValidFieldPath(path) }

// field maps one Salesforce field from one activity path.
type field struct {
	name string
	path []string
}

func compileFields(m map[string]string) ([]field, error) {
	var out []field
	for name, path := range m {
		if !ValidPath(path) {
			return nil, fmt.Errorf("fields.%s: unknown activity path %q", name, path)
		}
		out = append(out, field{name: name, path: strings.Split(path, ".")})
	}
	slices.SortFunc(out, func(a, b field) int { return strings.Compare(a.name, b.name) })
	return out, nil
}

// record maps an activity to a collections record; absent values are left out.
func (s *Sink) record(a *activity.Activity) map[string]any {
	rec := make(map[string]any, len(s.fields)+1)
	rec["attributes"] = map[string]string{"type": s.object}
	for _, f := range s.fields {
		if v, ok := value(a, f.path); ok {
			rec[f.name] = v
		}
	}
	return rec
}

func value(a *activity.Activity, path []string) (any, bool) {
	switch path[0] {
	case "id":
		return nonEmpty(a.ID)
	case "name":
		return nonEmpty(a.Name)
	case "type":
		return nonEmpty(a.Type)
	case "action":
		return nonEmpty(a.Action)
	case "activity":
		return nonEmpty(a.Activity)
	case "occurred_at":
		return timeValue(a.OccurredAt)
	case "received_at":
		return timeValue(a.ReceivedAt)
	case "contact":
		return lookup(a.Contact, path[1:])
	case "attributes":
		return lookup(a.Attributes, path[1:])
	}
	return nil, false
}

func nonEmpty(s string) (any, bool) { return s, s != "" }

func timeValue(t time.Time) (any, bool) {
	if t.IsZero() {
		return nil, false
	}
	return t.UTC().Format(sfTime), true
}

// lookup walks nested maps; numbers and booleans stay JSON types, objects
// and arrays become JSON text.
func lookup(m map[string]any, path []string) (any, bool) {
	var v any = m
	for _, key := range path {
		obj, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = obj[key]; !ok || v == nil {
			return nil, false
		}
	}
	switch v.(type) {
	case map[string]any, []any:
		data, err := json.Marshal(v)
		if err != nil {
			return nil, false
		}
		return string(data), true
	}
	return v, true
}
