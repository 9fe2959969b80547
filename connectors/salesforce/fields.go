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
	obj := &objects{a: a}
	for _, f := range s.fields {
		if v, ok := value(a, obj, f.path); ok {
			rec[f.name] = v
		}
	}
	return rec
}

// objects decodes an activity's contact and attributes once, when a field
// first needs them; numbers stay json.Number, so no literal is rounded.
type objects struct {
	a                   *activity.Activity
	contact, attributes map[string]any
}

func (o *objects) get(which string) map[string]any {
	switch which {
	case "contact":
		if o.contact == nil {
			o.contact, _ = activity.DecodeObject(o.a.Contact)
		}
		return o.contact
	default:
		if o.attributes == nil {
			o.attributes, _ = activity.DecodeObject(o.a.Attributes)
		}
		return o.attributes
	}
}

func value(a *activity.Activity, obj *objects, path []string) (any, bool) {
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
		return lookup(obj.get("contact"), path[1:])
	case "attributes":
		return lookup(obj.get("attributes"), path[1:])
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
