package salesforce

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/relaydev/relay/config"
	"github.com/relaydev/relay/relay/activity"
	"github.com/relaydev/relay/relay/expr"
)

// Salesforce's dateTime format: ISO 8601 in UTC with milliseconds.
const sfTime = "2006-01-02T15:04:05.000Z"

// ValidPath reports whether path is an activity path a field can map from
// (the grammar config checks at validate time).
func ValidPath(path string) bool { return config.ValidFieldPath(path) }

// source is where a value comes from: an activity path or a CEL expression.
type source struct {
	path []string      // nil for an expression
	prg  *expr.Program // nil for a path
	text string        // as written
}

func compileSource(src string) (source, error) {
	if config.IsFieldExpr(src) {
		prg, err := expr.Compile(src, expr.Any)
		if err != nil {
			return source{}, err
		}
		return source{prg: prg, text: src}, nil
	}
	if !ValidPath(src) {
		return source{}, fmt.Errorf("unknown activity path %q", src)
	}
	return source{path: strings.Split(src, "."), text: src}, nil
}

// input is one activity as fields read it; contact, attributes and the
// expression input are decoded once, when first needed.
type input struct {
	a                   *activity.Activity
	contact, attributes map[string]any
	expr                *expr.Input
}

func (in *input) object(which string) (map[string]any, error) {
	var err error
	switch which {
	case "contact":
		if in.contact == nil {
			in.contact, err = activity.DecodeObject(in.a.Contact)
		}
		return in.contact, err
	default:
		if in.attributes == nil {
			in.attributes, err = activity.DecodeObject(in.a.Attributes)
		}
		return in.attributes, err
	}
}

func (in *input) exprInput() (*expr.Input, error) {
	if in.expr == nil {
		var err error
		if in.expr, err = expr.NewInput(in.a); err != nil {
			return nil, err
		}
	}
	return in.expr, nil
}

// value reads the source: absent and null are not ok; an expression that
// fails to evaluate is an error.
func (s source) value(in *input) (any, bool, error) {
	if s.prg == nil {
		return pathValue(in, s.path)
	}
	ein, err := in.exprInput()
	if err != nil {
		return nil, false, err
	}
	v, err := s.prg.Value(ein)
	if err != nil || v == nil {
		return nil, false, err
	}
	return fieldValue(v)
}

// field maps one Salesforce field from one source.
type field struct {
	name string
	src  source
}

func compileFields(m map[string]string) ([]field, error) {
	var out []field
	for name, src := range m {
		s, err := compileSource(src)
		if err != nil {
			return nil, fmt.Errorf("fields.%s: %w", name, err)
		}
		out = append(out, field{name: name, src: s})
	}
	slices.SortFunc(out, func(a, b field) int { return strings.Compare(a.name, b.name) })
	return out, nil
}

// record maps an activity to a collections record; absent values are left
// out. An expression that fails to evaluate makes the error.
func (s *Sink) record(in *input) (map[string]any, error) {
	rec := make(map[string]any, len(s.fields)+2)
	rec["attributes"] = map[string]string{"type": s.object}
	for _, f := range s.fields {
		v, ok, err := f.src.value(in)
		if err != nil {
			return nil, fmt.Errorf("fields.%s: %w", f.name, err)
		}
		if ok {
			rec[f.name] = v
		}
	}
	return rec, nil
}

// pathValue walks an activity path; times are Salesforce dateTimes.
func pathValue(in *input, path []string) (any, bool, error) {
	a := in.a
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
	case "contact", "attributes":
		m, err := in.object(path[0])
		if err != nil {
			return nil, false, fmt.Errorf("%s: %w", path[0], err)
		}
		return lookup(m, path[1:])
	}
	return nil, false, nil
}

func nonEmpty(s string) (any, bool, error) { return s, s != "", nil }

func timeValue(t time.Time) (any, bool, error) {
	if t.IsZero() {
		return nil, false, nil
	}
	return t.UTC().Format(sfTime), true, nil
}

// lookup walks nested maps.
func lookup(m map[string]any, path []string) (any, bool, error) {
	var v any = m
	for _, key := range path {
		obj, ok := v.(map[string]any)
		if !ok {
			return nil, false, nil
		}
		if v, ok = obj[key]; !ok || v == nil {
			return nil, false, nil
		}
	}
	return fieldValue(v)
}

// fieldValue: numbers (json.Number, exactly as written) and booleans stay
// JSON types, objects and arrays become JSON text.
func fieldValue(v any) (any, bool, error) {
	switch v.(type) {
	case map[string]any, []any:
		data, err := json.Marshal(v)
		if err != nil {
			return nil, false, err
		}
		return string(data), true, nil
	}
	return v, true, nil
}
