package relay

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"

	"github.com/relaydev/relay/config"
)

// ExprEnv is the CEL environment every expression in relay.yaml compiles
// in: `when`, a webhook's `body`, Salesforce `fields` and `relate`.
func ExprEnv() (*cel.Env, error) { return celEnv() }

// Expr is a compiled CEL expression a connector evaluates per activity.
type Expr struct {
	prg cel.Program
}

// CompileExpr compiles an expression. relay validate has already reported
// its problems with their positions (CheckExprs); this error is plain.
func CompileExpr(src string) (*Expr, error) {
	env, err := ExprEnv()
	if err != nil {
		return nil, err
	}
	ast, iss := env.Compile(src)
	if iss != nil && iss.Err() != nil {
		return nil, iss.Err()
	}
	prg, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, err
	}
	return &Expr{prg: prg}, nil
}

// Eval evaluates the expression over vars (from ExprVars) and returns its
// value as plain Go values ready for encoding/json: integers stay int64 or
// uint64, never float64.
func (e *Expr) Eval(vars map[string]any) (any, error) {
	out, _, err := e.prg.Eval(vars)
	if err != nil {
		return nil, err
	}
	return JSONValue(out)
}

// EvalVal evaluates the expression and returns CEL's own value, for a
// connector that converts some types its own way (Salesforce's times).
func (e *Expr) EvalVal(vars map[string]any) (ref.Val, error) {
	out, _, err := e.prg.Eval(vars)
	return out, err
}

// exprActivity is a stored activity as expressions see it; contact and
// attributes are kept as text to decode with their numbers exact.
type exprActivity struct {
	ID         string          `json:"id"`
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Action     string          `json:"action"`
	Activity   string          `json:"activity"`
	OccurredAt time.Time       `json:"occurred_at"`
	ReceivedAt time.Time       `json:"received_at"`
	Contact    json.RawMessage `json:"contact"`
	Attributes json.RawMessage `json:"attributes"`
}

// ExprVars decodes an activity's stored JSON into the variables expressions
// see. JSON numbers become int64 or uint64 when they are whole and fit,
// else double: an integer is never rounded through float64.
func ExprVars(raw []byte) (map[string]any, error) {
	var a exprActivity
	if err := json.Unmarshal(raw, &a); err != nil {
		return nil, fmt.Errorf("decode activity: %w", err)
	}
	contact, err := exactObject(a.Contact)
	if err != nil {
		return nil, fmt.Errorf("decode contact: %w", err)
	}
	attrs, err := exactObject(a.Attributes)
	if err != nil {
		return nil, fmt.Errorf("decode attributes: %w", err)
	}
	return map[string]any{"activity": map[string]any{
		"id": a.ID, "name": a.Name, "type": a.Type, "action": a.Action, "activity": a.Activity,
		"occurred_at": a.OccurredAt, "received_at": a.ReceivedAt,
		"contact": contact, "attributes": attrs,
	}}, nil
}

// exactObject decodes a JSON object (or null, or nothing) with UseNumber
// and turns the numbers into CEL's int, uint or double.
func exactObject(raw json.RawMessage) (map[string]any, error) {
	out := map[string]any{}
	if len(bytes.TrimSpace(raw)) == 0 || string(bytes.TrimSpace(raw)) == "null" {
		return out, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&out); err != nil {
		return nil, err
	}
	return exactNumbers(out).(map[string]any), nil
}

func exactNumbers(v any) any {
	switch v := v.(type) {
	case json.Number:
		if i, err := strconv.ParseInt(string(v), 10, 64); err == nil {
			return i
		}
		if u, err := strconv.ParseUint(string(v), 10, 64); err == nil {
			return u
		}
		f, _ := strconv.ParseFloat(string(v), 64) // out of range: ±Inf, caught on output
		return f
	case map[string]any:
		for k, e := range v {
			v[k] = exactNumbers(e)
		}
	case []any:
		for i, e := range v {
			v[i] = exactNumbers(e)
		}
	}
	return v
}

// JSONValue turns a CEL value into Go values encoding/json writes as JSON:
// maps with string keys, lists, strings, bools, null, int64, uint64 and
// float64; timestamps as RFC 3339, durations as Go durations, bytes as
// base64.
func JSONValue(v ref.Val) (any, error) {
	switch v := v.(type) {
	case types.Null:
		return nil, nil
	case types.Bool:
		return bool(v), nil
	case types.String:
		return string(v), nil
	case types.Int:
		return int64(v), nil
	case types.Uint:
		return uint64(v), nil
	case types.Double:
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return nil, fmt.Errorf("%v has no JSON form", float64(v))
		}
		return float64(v), nil
	case types.Bytes:
		return base64.StdEncoding.EncodeToString(v), nil
	case types.Timestamp:
		return v.Time.UTC().Format(time.RFC3339Nano), nil
	case types.Duration:
		return v.Duration.String(), nil
	case traits.Mapper:
		return jsonMap(v)
	case traits.Lister:
		return jsonList(v)
	}
	if types.IsError(v) {
		return nil, fmt.Errorf("%v", v)
	}
	return nil, fmt.Errorf("a %s has no JSON form", v.Type().(ref.Type).TypeName())
}

func jsonMap(m traits.Mapper) (map[string]any, error) {
	out := map[string]any{}
	for it := m.Iterator(); it.HasNext() == types.True; {
		k := it.Next()
		key, ok := k.(types.String)
		if !ok {
			return nil, fmt.Errorf("map key %v is not a string", k)
		}
		val, err := JSONValue(m.Get(k))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", string(key), err)
		}
		out[string(key)] = val
	}
	return out, nil
}

func jsonList(l traits.Lister) ([]any, error) {
	out := []any{}
	for it := l.Iterator(); it.HasNext() == types.True; {
		val, err := JSONValue(it.Next())
		if err != nil {
			return nil, fmt.Errorf("[%d]: %w", len(out), err)
		}
		out = append(out, val)
	}
	return out, nil
}

// MarshalJSON encodes a JSONValue result: integers exact, no HTML escaping,
// no trailing newline.
func MarshalJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// errNotJSONBody is a body expression whose value is not a map or a list.
var errNotJSONBody = errors.New("body must be a map or a list")

// EvalBody evaluates a webhook body expression over an activity's stored
// JSON and encodes the result.
func EvalBody(e *Expr, raw []byte) ([]byte, error) {
	vars, err := ExprVars(raw)
	if err != nil {
		return nil, err
	}
	v, err := e.Eval(vars)
	if err != nil {
		return nil, fmt.Errorf("body: %w", err)
	}
	switch v.(type) {
	case map[string]any, []any:
	default:
		return nil, fmt.Errorf("%w, it is %T", errNotJSONBody, v)
	}
	return MarshalJSON(v)
}

// CheckExprs type-checks a destination's expressions other than `when`:
// a webhook's body (a map or a list) and Salesforce fields that are
// expressions rather than paths, each problem at its position.
func CheckExprs(cfg *config.Config, d config.Destination) config.Errors {
	var errs config.Errors
	if d.Body != "" {
		if err := checkExpr(cfg, d, "body", d.Body, "a map or a list", types.MapKind, types.ListKind); err != nil {
			errs = append(errs, err)
		}
	}
	for _, name := range sortedKeys(d.Fields) {
		if src := d.Fields[name]; config.IsFieldExpr(src) {
			if err := checkExpr(cfg, d, "fields."+name, src, "a value"); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if d.HasRelate() && config.IsFieldExpr(d.Relate.Value) {
		if err := checkExpr(cfg, d, "relate.value", d.Relate.Value, "a value"); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// checkExpr compiles src and wants its type among kinds (any, when none).
func checkExpr(cfg *config.Config, d config.Destination, key, src, want string, kinds ...types.Kind) *config.Error {
	env, err := ExprEnv()
	if err != nil {
		return destErr(cfg, d, key, "CEL environment: %v", err)
	}
	ast, iss := env.Compile(src)
	if iss != nil && iss.Err() != nil {
		first := iss.Errors()[0]
		return cfg.Errorf(exprPos(d, key, first.Location), destPath(cfg, d, key), "invalid CEL expression: %s", first.Message)
	}
	kind := ast.OutputType().Kind()
	if len(kinds) > 0 && kind != types.DynKind && kind != types.AnyKind && !kindIn(kind, kinds) {
		return destErr(cfg, d, key, "CEL expression must be %s, it is %s", want, ast.OutputType())
	}
	return nil
}

func kindIn(k types.Kind, kinds []types.Kind) bool {
	for _, want := range kinds {
		if k == want {
			return true
		}
	}
	return false
}

// exprPos is where in relay.yaml a place in an expression is: line 1 of
// the expression starts where its text does; later lines (of a | block)
// start at the block's indentation.
func exprPos(d config.Destination, key string, loc common.Location) config.Pos {
	pos, ok := d.Text[key]
	if !ok {
		pos = d.Pos[key]
	}
	if pos.Line == 0 {
		return d.At
	}
	pos.Line += loc.Line() - 1
	pos.Col += loc.Column()
	return pos
}
