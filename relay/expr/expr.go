// Package expr compiles and runs the CEL expressions of relay.yaml (`when`
// rules, webhook `body` transforms, Salesforce field expressions) against
// one declared activity type, so a misspelt field is an error at validate
// time rather than an expression that silently never matches.
package expr

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"sync"
	"time"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"
	"github.com/google/cel-go/ext"

	"github.com/relaydev/relay/relay/activity"
)

// Activity is the type `activity` has in an expression. contact and
// attributes are maps of the producer's values: strings, booleans, null,
// numbers (int when the literal is an integer that fits, uint beyond int's
// range, else double), lists and maps.
type Activity struct {
	ID         string    `cel:"id"`
	Name       string    `cel:"name"`
	Type       string    `cel:"type"`
	Action     string    `cel:"action"`
	Activity   string    `cel:"activity"`
	OccurredAt time.Time `cel:"occurred_at"`
	ReceivedAt time.Time `cel:"received_at"`
	Contact    Map       `cel:"contact"`
	Attributes Map       `cel:"attributes"`
}

// Map is a map of string to dyn in CEL: contact and attributes. (A Go
// map of any has no CEL type the native type provider can declare.)
type Map struct{ traits.Mapper }

var objectType = types.NewMapType(types.StringType, types.DynType)

// Type declares Map as map(string, dyn), also for its zero value.
func (Map) Type() ref.Type { return objectType }

func newMap(m map[string]any) Map {
	return Map{types.DefaultTypeAdapter.NativeToValue(m).(traits.Mapper)}
}

// typeName is Activity's name in CEL.
const typeName = "expr.Activity"

var env = sync.OnceValues(func() (*cel.Env, error) {
	return cel.NewEnv(
		ext.NativeTypes(reflect.TypeOf(Activity{}), ext.ParseStructTags(true)),
		cel.Variable("activity", cel.ObjectType(typeName)),
		ext.Strings(),
	)
})

// Result says what an expression must evaluate to.
type Result int

const (
	// Bool is for `when`: a bool (or a dyn value, checked at run time).
	Bool Result = iota
	// Object is for a webhook body: a map or a list.
	Object
	// Any is for a field value: anything JSON can carry.
	Any
)

// Error is a compile problem at a line and column of the expression, both
// counted from 1.
type Error struct {
	Line, Col int
	Msg       string
}

func (e *Error) Error() string { return fmt.Sprintf("%d:%d: %s", e.Line, e.Col, e.Msg) }

// Program is a compiled expression.
type Program struct {
	prg cel.Program
	src string
}

// Compile type-checks src against the activity type and checks its result.
func Compile(src string, want Result) (*Program, *Error) {
	e, err := env()
	if err != nil {
		return nil, &Error{Line: 1, Col: 1, Msg: "CEL environment: " + err.Error()}
	}
	ast, iss := e.Compile(src)
	if iss != nil && iss.Err() != nil {
		first := iss.Errors()[0]
		loc := first.Location
		return nil, &Error{Line: max(1, loc.Line()), Col: loc.Column() + 1, Msg: "invalid CEL expression: " + first.Message}
	}
	out := ast.OutputType()
	dyn := out.IsExactType(cel.DynType)
	switch want {
	case Bool:
		if !dyn && !out.IsExactType(cel.BoolType) {
			return nil, &Error{Line: 1, Col: 1, Msg: fmt.Sprintf("CEL expression must be a bool, it is %s", out)}
		}
	case Object:
		if !dyn && out.Kind() != types.MapKind && out.Kind() != types.ListKind {
			return nil, &Error{Line: 1, Col: 1, Msg: fmt.Sprintf("CEL expression must be a map or a list, it is %s", out)}
		}
	}
	prg, err := e.Program(ast, cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, &Error{Line: 1, Col: 1, Msg: "CEL program: " + err.Error()}
	}
	return &Program{prg: prg, src: src}, nil
}

// Source is the expression as written.
func (p *Program) Source() string { return p.src }

// Input is an activity made ready for evaluation; build it once with
// NewInput and evaluate any number of expressions over it.
type Input struct {
	vars map[string]any
}

// NewInput decodes the activity's contact and attributes for expressions.
func NewInput(a *activity.Activity) (*Input, error) {
	v := &Activity{
		ID: a.ID, Name: a.Name, Type: a.Type, Action: a.Action, Activity: a.Activity,
		OccurredAt: a.OccurredAt, ReceivedAt: a.ReceivedAt,
	}
	contact, err := object(a.Contact, "contact")
	if err != nil {
		return nil, err
	}
	attributes, err := object(a.Attributes, "attributes")
	if err != nil {
		return nil, err
	}
	v.Contact, v.Attributes = newMap(contact), newMap(attributes)
	return &Input{vars: map[string]any{"activity": v}}, nil
}

func object(raw json.RawMessage, field string) (map[string]any, error) {
	m, err := activity.DecodeObject(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	return numbersForCEL(m).(map[string]any), nil
}

// numbersForCEL replaces json.Number with the CEL number the literal is.
func numbersForCEL(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			v[k] = numbersForCEL(e)
		}
		return v
	case []any:
		for i, e := range v {
			v[i] = numbersForCEL(e)
		}
		return v
	case json.Number:
		if i, err := strconv.ParseInt(string(v), 10, 64); err == nil {
			return i
		}
		if u, err := strconv.ParseUint(string(v), 10, 64); err == nil {
			return u
		}
		f, _ := strconv.ParseFloat(string(v), 64) // ±Inf beyond float64's range
		return f
	}
	return v
}

// Bool evaluates a `when` expression.
func (p *Program) Bool(in *Input) (bool, error) {
	out, _, err := p.prg.Eval(in.vars)
	if err != nil {
		return false, err
	}
	b, ok := out.Value().(bool)
	if !ok {
		return false, fmt.Errorf("result is %s, not a bool", out.Type().TypeName())
	}
	return b, nil
}

// Value evaluates an expression to a value encoding/json writes as JSON:
// integers stay integers (never a float64), timestamps become RFC 3339
// strings, durations Go duration strings.
func (p *Program) Value(in *Input) (any, error) {
	out, _, err := p.prg.Eval(in.vars)
	if err != nil {
		return nil, err
	}
	return ToJSON(out)
}

// ToJSON converts a CEL value to plain Go values for encoding/json.
func ToJSON(v ref.Val) (any, error) {
	switch v := v.(type) {
	case types.Null:
		return nil, nil
	case types.Bool:
		return bool(v), nil
	case types.Int:
		return json.Number(strconv.FormatInt(int64(v), 10)), nil
	case types.Uint:
		return json.Number(strconv.FormatUint(uint64(v), 10)), nil
	case types.Double:
		f := float64(v)
		if f != f || f > 1.7976931348623157e308 || f < -1.7976931348623157e308 {
			return nil, fmt.Errorf("%v has no JSON form", f)
		}
		return f, nil
	case types.String:
		return string(v), nil
	case types.Bytes:
		return []byte(v), nil
	case types.Timestamp:
		return v.Time.UTC().Format(time.RFC3339Nano), nil
	case types.Duration:
		return v.Duration.String(), nil
	}
	switch v.Type().TypeName() {
	case "list":
		l, ok := v.(traits.Lister)
		if !ok {
			break
		}
		n := int(l.Size().(types.Int))
		out := make([]any, 0, n)
		for i := 0; i < n; i++ {
			e, err := ToJSON(l.Get(types.Int(i)))
			if err != nil {
				return nil, fmt.Errorf("[%d]: %w", i, err)
			}
			out = append(out, e)
		}
		return out, nil
	case "map":
		m, ok := v.(traits.Mapper)
		if !ok {
			break
		}
		out := map[string]any{}
		for it := m.Iterator(); it.HasNext() == types.True; {
			k := it.Next()
			ks, ok := k.(types.String)
			if !ok {
				return nil, fmt.Errorf("map key %v is not a string", k.Value())
			}
			e, err := ToJSON(m.Get(k))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", string(ks), err)
			}
			out[string(ks)] = e
		}
		return out, nil
	}
	if nv, err := v.ConvertToNative(reflect.TypeOf((*any)(nil)).Elem()); err == nil {
		if _, err := json.Marshal(nv); err == nil {
			return nv, nil
		}
	}
	return nil, errors.New("value of type " + v.Type().TypeName() + " has no JSON form")
}
