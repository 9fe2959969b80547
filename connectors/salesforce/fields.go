package salesforce

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/cel-go/common/types"

	"github.com/relaydev/relay/config"
	"github.com/relaydev/relay/relay"
)

// Salesforce's dateTime format: ISO 8601 in UTC with milliseconds.
const sfTime = "2006-01-02T15:04:05.000Z"

// ValidPath reports whether path is an activity path a field can map from
// (the grammar config checks at validate time).
func ValidPath(path string) bool { return config.ValidFieldPath(path) }

// source is where a value comes from: an activity path or a CEL expression.
type source struct {
	path []string    // nil for an expression
	expr *relay.Expr // nil for a path
}

func compileSource(src string) (source, error) {
	if config.IsFieldExpr(src) {
		e, err := relay.CompileExpr(src)
		if err != nil {
			return source{}, fmt.Errorf("invalid CEL expression: %w", err)
		}
		return source{expr: e}, nil
	}
	if !ValidPath(src) {
		return source{}, fmt.Errorf("unknown activity path %q", src)
	}
	return source{path: strings.Split(src, ".")}, nil
}

// value reads the source from an activity's expression variables
// (relay.ExprVars): absent and null are not ok; an expression that fails
// to evaluate is an error.
func (s source) value(vars map[string]any) (any, bool, error) {
	if s.expr == nil {
		return pathValue(vars["activity"].(map[string]any), s.path)
	}
	out, err := s.expr.EvalVal(vars)
	if err != nil {
		return nil, false, err
	}
	if t, ok := out.(types.Timestamp); ok {
		return t.Time.UTC().Format(sfTime), true, nil
	}
	v, err := relay.JSONValue(out)
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
func (s *Sink) record(vars map[string]any) (map[string]any, error) {
	rec := make(map[string]any, len(s.fields)+2)
	rec["attributes"] = map[string]string{"type": s.object}
	for _, f := range s.fields {
		v, ok, err := f.src.value(vars)
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
func pathValue(a map[string]any, path []string) (any, bool, error) {
	switch path[0] {
	case "occurred_at", "received_at":
		t, _ := a[path[0]].(time.Time)
		if t.IsZero() {
			return nil, false, nil
		}
		return t.UTC().Format(sfTime), true, nil
	case "contact", "attributes":
		return lookup(a[path[0]], path[1:])
	}
	s, _ := a[path[0]].(string)
	return s, s != "", nil
}

// lookup walks nested maps.
func lookup(v any, path []string) (any, bool, error) {
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

// fieldValue: numbers and booleans stay JSON types (integers exact),
// objects and arrays become JSON text.
func fieldValue(v any) (any, bool, error) {
	switch v.(type) {
	case map[string]any, []any:
		data, err := relay.MarshalJSON(v)
		if err != nil {
			return nil, false, err
		}
		return string(data), true, nil
	}
	return v, true, nil
}
