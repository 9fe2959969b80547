package rules

import (
	"slices"

	"github.com/relaydev/relay/config"
	"github.com/relaydev/relay/relay/expr"
)

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
