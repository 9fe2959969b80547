// Package expr compiles and runs the CEL expressions of relay.yaml (`when`
// rules, webhook `body` transforms, Salesforce field expressions) against
// one declared activity type, so a misspelt field is an error at validate
// time rather than an expression that silently never matches.
package expr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
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

// The budget of every expression (docs/config.md, "Expressions"): an
// evaluation that goes past any of them fails, and the activity is a dead
// letter for that destination saying which.
const (
	// CostLimit is the most an evaluation may cost in CEL's cost units
	// (about one per operation, strings and lists by their size): enough
	// for any rule over an activity's fields and loops over its lists,
	// not for loops nested over large lists. At about 0.4 µs a unit, an
	// evaluation stops within some 40 ms.
	CostLimit = 100_000
	// MaxString is the longest string replace() may produce, in bytes.
	// The cost is counted after an operation, so the one operation that
	// grows a string many times over is bounded before it runs.
	MaxString = 1 << 20
	// MaxEvalTime is how long an evaluation may run; checked every
	// interruptEvery comprehension steps.
	MaxEvalTime    = time.Second
	interruptEvery = 100
)

// ErrBudget is what an evaluation that went past its budget fails with.
var ErrBudget = errors.New("expression over its budget")

var env = sync.OnceValues(func() (*cel.Env, error) {
	return cel.NewEnv(
		ext.NativeTypes(reflect.TypeOf(Activity{}), ext.ParseStructTags(true)),
		cel.Variable("activity", cel.ObjectType(typeName)),
		ext.Strings(),
		// replace() again, bounded: the library's would build a string of
		// any size before its cost is counted.
		cel.Function("replace",
			cel.MemberOverload("string_replace_string_string",
				[]*cel.Type{cel.StringType, cel.StringType, cel.StringType}, cel.StringType,
				cel.FunctionBinding(func(args ...ref.Val) ref.Val {
					return boundedReplace(args[0], args[1], args[2], types.Int(-1))
				})),
			cel.MemberOverload("string_replace_string_string_int",
				[]*cel.Type{cel.StringType, cel.StringType, cel.StringType, cel.IntType}, cel.StringType,
				cel.FunctionBinding(func(args ...ref.Val) ref.Val {
					return boundedReplace(args[0], args[1], args[2], args[3])
				}))),
	)
})

// growthCost costs a call that made a string, bytes, list or map larger
// than any of its arguments (s + s, l + l) by the size of what it made, as
// CEL does only where the types are known when the expression is checked:
// contact and attributes are dyn, so without it a chain of doublings costs
// one unit a step. A string or bytes over MaxString stops the evaluation.
type growthCost struct{}

func (growthCost) CallCost(_, _ string, args []ref.Val, result ref.Val) *uint64 {
	rs, ok := result.(traits.Sizer)
	if !ok {
		return nil
	}
	var size int64
	switch r := result.(type) {
	case types.String:
		size = int64(len(r))
	case types.Bytes:
		size = int64(len(r))
	default:
		size = int64(rs.Size().(types.Int))
	}
	for _, a := range args {
		if as, ok := a.(traits.Sizer); ok && int64(as.Size().(types.Int)) >= size {
			return nil // not grown: CEL's own cost
		}
	}
	cost := uint64(1 + size/10)
	if _, text := result.(types.String); (text || result.Type() == types.BytesType) && size > MaxString {
		cost = CostLimit + 1
	}
	return &cost
}

// boundedReplace is strings.Replace refusing to make a string longer than
// MaxString.
func boundedReplace(str, old, repl, count ref.Val) ref.Val {
	s, o, r := string(str.(types.String)), string(old.(types.String)), string(repl.(types.String))
	n := int(count.(types.Int))
	hits := strings.Count(s, o)
	if n >= 0 {
		hits = min(hits, n)
	}
	if size := len(s) + hits*(len(r)-len(o)); size > MaxString {
		return types.NewErr("%v: replace() would make a string of %d bytes, more than %d", ErrBudget, size, MaxString)
	}
	return types.String(strings.Replace(s, o, r, n))
}

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
	// ast and where (a second program recording every subexpression's
	// value, made and run only to explain an error) say where it failed.
	ast   *cel.Ast
	where func() (cel.Program, error)
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
	prg, err := e.Program(ast, cel.EvalOptions(cel.OptOptimize),
		cel.CostTracking(growthCost{}), cel.CostLimit(CostLimit), cel.InterruptCheckFrequency(interruptEvery))
	if err != nil {
		return nil, &Error{Line: 1, Col: 1, Msg: "CEL program: " + err.Error()}
	}
	p := &Program{prg: prg, src: src, ast: ast}
	p.where = sync.OnceValues(func() (cel.Program, error) {
		return e.Program(ast, cel.EvalOptions(cel.OptTrackState),
			cel.CostTracking(growthCost{}), cel.CostLimit(CostLimit), cel.InterruptCheckFrequency(interruptEvery))
	})
	return p, nil
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

// eval runs the program within its budget; an evaluation past it fails
// with an error that is ErrBudget.
func (p *Program) eval(in *Input) (ref.Val, error) {
	ctx, cancel := context.WithTimeout(context.Background(), MaxEvalTime)
	defer cancel()
	out, _, err := p.prg.ContextEval(ctx, in.vars)
	if err == nil {
		return out, nil
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "cost limit exceeded"):
		return nil, fmt.Errorf("%w: its cost passed %d", ErrBudget, CostLimit)
	case strings.Contains(msg, "operation interrupted"), ctx.Err() != nil:
		return nil, fmt.Errorf("%w: it ran longer than %s", ErrBudget, MaxEvalTime)
	case strings.Contains(msg, ErrBudget.Error()):
		return nil, fmt.Errorf("%w%s", ErrBudget, strings.TrimPrefix(msg, ErrBudget.Error()))
	}
	return nil, err
}

// Explained is err, an evaluation error of p over in, with where it
// failed: the path of a missing key, or the operator and the types it was
// given. It runs p again recording every value, so the delivery path's
// Bool leaves it to what shows an error to a person (a trace, a dead
// letter's reason).
func (p *Program) Explained(in *Input, err error) error {
	if err == nil || errors.Is(err, ErrBudget) {
		return err
	}
	if where := p.explain(in); where != "" {
		return errors.New(where)
	}
	return err
}

// Bool evaluates a `when` expression.
func (p *Program) Bool(in *Input) (bool, error) {
	out, err := p.eval(in)
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
	out, err := p.eval(in)
	if err != nil {
		return nil, p.Explained(in, err)
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
		return doubleToJSON(float64(v))
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
		if l, ok := v.(traits.Lister); ok {
			return listToJSON(l)
		}
	case "map":
		if m, ok := v.(traits.Mapper); ok {
			return mapToJSON(m)
		}
	}
	return nativeToJSON(v)
}

// doubleToJSON refuses NaN and the infinities, which JSON cannot carry.
func doubleToJSON(f float64) (any, error) {
	if f != f || f > 1.7976931348623157e308 || f < -1.7976931348623157e308 {
		return nil, fmt.Errorf("%v has no JSON form", f)
	}
	return f, nil
}

// listToJSON converts a list element by element; an error names the
// index of the element that has no JSON form.
func listToJSON(l traits.Lister) (any, error) {
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
}

// mapToJSON converts a map with string keys entry by entry; an error
// names the key of the entry that has no JSON form.
func mapToJSON(m traits.Mapper) (any, error) {
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

// nativeToJSON is v's native Go value, when it has one encoding/json can
// encode.
func nativeToJSON(v ref.Val) (any, error) {
	if nv, err := v.ConvertToNative(reflect.TypeOf((*any)(nil)).Elem()); err == nil {
		if _, err := json.Marshal(nv); err == nil {
			return nv, nil
		}
	}
	return nil, errors.New("value of type " + v.Type().TypeName() + " has no JSON form")
}
