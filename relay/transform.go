package relay

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/relaydev/relay/config"
	"github.com/relaydev/relay/relay/activity"
	"github.com/relaydev/relay/relay/expr"
)

// FullActivity is a delivery's activity with its contact and attributes:
// decoded from the stored JSON (the worker leaves them out for a sink
// without a `when` rule), or the decoded one when there is no JSON.
func FullActivity(d *Delivery) (*activity.Activity, error) {
	if len(d.Raw) == 0 {
		if d.Activity == nil {
			return nil, errors.New("delivery has no activity")
		}
		return d.Activity, nil
	}
	a := &activity.Activity{}
	if err := json.Unmarshal(d.Raw, a); err != nil {
		return nil, fmt.Errorf("decode activity: %w", err)
	}
	return a, nil
}

// EvalBody evaluates a webhook body expression over a delivery and encodes
// the map or list it returns; integers are written exactly as the producer
// wrote them (never through a float64). A body over maxBytes (when above
// zero) fails with expr.ErrBudget.
func EvalBody(p *expr.Program, d *Delivery, maxBytes int) ([]byte, error) {
	a, err := FullActivity(d)
	if err != nil {
		return nil, err
	}
	in, err := expr.NewInput(a)
	if err != nil {
		return nil, err
	}
	v, err := p.Value(in)
	if err != nil {
		return nil, fmt.Errorf("body: %w", err)
	}
	switch v.(type) {
	case map[string]any, []any:
	default:
		return nil, fmt.Errorf("body must be a map or a list, it is %T", v)
	}
	body, err := MarshalJSON(v)
	if err == nil && maxBytes > 0 && len(body) > maxBytes {
		return nil, fmt.Errorf("body: %w: %d bytes, more than max_body (%d)", expr.ErrBudget, len(body), maxBytes)
	}
	return body, err
}

// MarshalJSON encodes an expression's value: no HTML escaping, no trailing
// newline.
func MarshalJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// CheckExprs type-checks a destination's expressions other than `when`:
// a webhook's body (a map or a list), Salesforce fields that are
// expressions rather than paths, and relate's value, each problem at its
// line and column.
func CheckExprs(cfg *config.Config, d config.Destination) config.Errors {
	var errs config.Errors
	check := func(key, src string, want expr.Result) {
		if _, err := expr.Compile(src, want); err != nil {
			errs = append(errs, cfg.Errorf(exprPos(d, key, err), destPath(cfg, d, key), "%s", err.Msg))
		}
	}
	if d.Body != "" {
		check("body", d.Body, expr.Object)
	}
	names := make([]string, 0, len(d.Fields))
	for name := range d.Fields {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if src := d.Fields[name]; config.IsFieldExpr(src) {
			check("fields."+name, src, expr.Any)
		}
	}
	if d.HasRelate() && config.IsFieldExpr(d.Relate.Value) {
		check("relate.value", d.Relate.Value, expr.Any)
	}
	return errs
}

// exprPos is where in relay.yaml an expression's error is: line 1 of the
// expression starts where its text does (past a quote; on the first line of
// a | block), and later lines of a block at the block's indentation.
func exprPos(d config.Destination, key string, err *expr.Error) config.Pos {
	pos, ok := d.Text[key]
	if !ok {
		pos = d.Pos[key]
	}
	if pos.Line == 0 {
		return d.At
	}
	pos.Line += err.Line - 1
	pos.Col += err.Col - 1
	return pos
}
