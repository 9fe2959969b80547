package expr

import (
	"context"
	"fmt"
	"strings"

	celast "github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/parser"
)

// explain runs the expression again recording every subexpression's value
// and says which part failed and why: the path of a missing key
// (activity.contact.email), the operator and the types it was given (> of
// string and int). "" when it cannot tell.
func (p *Program) explain(in *Input) string {
	prg, err := p.where()
	if err != nil {
		return ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), MaxEvalTime)
	defer cancel()
	_, det, _ := prg.ContextEval(ctx, in.vars)
	if det == nil || det.State() == nil {
		return ""
	}
	state := det.State()
	native := p.ast.NativeRep()
	var failed celast.Expr
	celast.PostOrderVisit(native.Expr(), celast.NewExprVisitor(func(e celast.Expr) {
		if failed != nil || !isErr(state.Value(e.ID())) {
			return
		}
		failed = e // the first in post order: none of its parts failed
	}))
	if failed == nil {
		return ""
	}
	v, _ := state.Value(failed.ID())
	reason := v.(*types.Err).Error()
	src := unparse(failed, native)
	switch failed.Kind() {
	case celast.SelectKind:
		return fmt.Sprintf("%s (in %s; test for it with has(%s))", reason, src, src)
	case celast.CallKind:
		call := failed.AsCall()
		var kinds []string
		if call.IsMemberFunction() {
			kinds = append(kinds, typeOf(state, call.Target()))
		}
		for _, a := range call.Args() {
			kinds = append(kinds, typeOf(state, a))
		}
		name := call.FunctionName()
		if strings.HasPrefix(reason, "no such overload") {
			what := name + "()"
			if op, ok := operatorSymbol(name); ok {
				what = "operator " + op
			}
			return fmt.Sprintf("no such overload: %s does not apply to %s (in %s)", what, strings.Join(kinds, " and "), src)
		}
		if name == "_[_]" && strings.HasPrefix(reason, "no such key") {
			return fmt.Sprintf("%s (in %s; test for it with \"key\" in map)", reason, src)
		}
	}
	return fmt.Sprintf("%s (in %s)", reason, src)
}

func isErr(v ref.Val, ok bool) bool { return ok && types.IsError(v) }

// typeOf names the CEL type of a subexpression's recorded value.
func typeOf(state interface{ Value(int64) (ref.Val, bool) }, e celast.Expr) string {
	v, ok := state.Value(e.ID())
	if !ok || v == nil {
		return "unknown"
	}
	return v.Type().TypeName()
}

// operatorSymbol is the operator a CEL function name stands for (_>_ is
// >).
func operatorSymbol(fn string) (string, bool) {
	switch fn {
	case "_[_]":
		return "[]", true
	case "_?_:_":
		return "?:", true
	case "!_", "-_":
		return fn[:1], true
	}
	if strings.HasPrefix(fn, "_") && strings.HasSuffix(fn, "_") && len(fn) > 2 {
		return strings.Trim(fn, "_"), true
	}
	return "", false
}

// unparse writes a subexpression back as source, clipped.
func unparse(e celast.Expr, a *celast.AST) string {
	s, err := parser.Unparse(e, a.SourceInfo())
	if err != nil {
		return "the expression"
	}
	if len(s) > 120 {
		s = s[:117] + "..."
	}
	return s
}
