// Package rules is what a destination takes: its include and exclude
// patterns and its `when` expression, compiled once, and the checks of the
// expressions a destination has.
package rules

import (
	"fmt"
	"slices"
	"strings"

	"github.com/relaydev/relay/config"
	"github.com/relaydev/relay/relay/activity"
	"github.com/relaydev/relay/relay/expr"
	"github.com/relaydev/relay/relay/text"
)

// Rules decide which activities a destination gets: include and exclude
// patterns on the activity name, then an optional CEL expression.
type Rules struct {
	include []string // empty means every activity
	exclude []string
	when    *expr.Program
	// own is set for Relay's alerts: no activity at all, only what is
	// published to the destination's own subject (Own).
	own bool
}

// CompileRules checks a destination's patterns against the catalog and
// compiles its `when` expression, reporting every problem with its position.
func CompileRules(cfg *config.Config, cat *activity.Catalog, d config.Destination) (*Rules, config.Errors) {
	var errs config.Errors
	r := &Rules{}
	check := func(key string, patterns []string) []string {
		var out []string
		for i, p := range patterns {
			path := fmt.Sprintf("%s[%d]", key, i)
			if err := activity.ValidPattern(p); err != nil {
				errs = append(errs, destErr(cfg, d, path, "%v", err))
				continue
			}
			if len(cat.Match(p)) == 0 {
				errs = append(errs, destErr(cfg, d, path, "pattern %q matches no known activity (see `relay activities`, or declare it under activities:)", p))
				continue
			}
			out = append(out, p)
		}
		return out
	}
	r.include = check("include", d.Include)
	r.exclude = check("exclude", d.Exclude)
	if d.When != "" {
		prg, err := compileWhen(cfg, d)
		if err != nil {
			errs = append(errs, err)
		}
		r.when = prg
	}
	return r, errs
}

func compileWhen(cfg *config.Config, d config.Destination) (*expr.Program, *config.Error) {
	prg, err := expr.Compile(d.When, expr.Bool)
	if err != nil {
		return nil, cfg.Errorf(exprPos(d, "when", err), destPath(cfg, d, "when"), "%s", err.Msg)
	}
	return prg, nil
}

func destPath(cfg *config.Config, d config.Destination, key string) string {
	for i := range cfg.Destinations {
		if cfg.Destinations[i].Name == d.Name {
			return fmt.Sprintf("destinations[%d].%s", i, key)
		}
	}
	return "destinations." + d.Name + "." + key
}

func destErr(cfg *config.Config, d config.Destination, key, format string, args ...any) *config.Error {
	pos, ok := d.Pos[key]
	if !ok {
		pos = d.At
	}
	return cfg.Errorf(pos, destPath(cfg, d, key), format, args...)
}

// MatchName applies include and exclude to an activity name.
func (r *Rules) MatchName(name string) bool {
	if r.own { // alerts only: an activity replayed to relay-alerts is not one
		return slices.Contains(config.AlertEvents, name)
	}
	if len(r.include) > 0 && !anyMatches(r.include, name) {
		return false
	}
	return !anyMatches(r.exclude, name)
}

// MatchWhen evaluates the `when` expression. An expression that fails to
// evaluate (a missing attribute, say) does not match, and the error says
// why.
func (r *Rules) MatchWhen(a *activity.Activity) (bool, error) {
	if r.when == nil {
		return true, nil
	}
	return r.MatchInput(expr.NewInput(a))
}

// MatchInput evaluates `when` over an input made once for every rule
// that reads the same activity (the fan-out's), with the error of making
// it.
func (r *Rules) MatchInput(in *expr.Input, err error) (bool, error) {
	if r.when == nil {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	return r.when.Bool(in)
}

// HasWhen reports whether the destination has a `when` rule.
func (r *Rules) HasWhen() bool { return r.when != nil }

// FilterSubjects maps the include patterns to the consumer's subject
// filters, leaving out any pattern another one already covers (JetStream
// refuses overlapping filters).
func (r *Rules) FilterSubjects() []string {
	if r.own {
		return nil
	}
	if len(r.include) == 0 {
		return []string{activity.FilterSubject("*")}
	}
	var kept []string
	for i, p := range r.include {
		if coveredBy(p, r.include, i) {
			continue
		}
		kept = append(kept, activity.FilterSubject(p))
	}
	return kept
}

// coveredBy reports whether some other pattern of ps matches everything p
// does (ties broken by position, so one of two equal patterns stays).
func coveredBy(p string, ps []string, self int) bool {
	for j, q := range ps {
		if j == self {
			continue
		}
		if q == "*" && (p != "*" || j < self) {
			return true
		}
		if p == q {
			if j < self {
				return true
			}
			continue
		}
		if p != "*" && activity.Matches(q, p) {
			return true
		}
	}
	return false
}

func anyMatches(patterns []string, name string) bool {
	for _, p := range patterns {
		if activity.Matches(p, name) {
			return true
		}
	}
	return false
}

// Explain says whether the rules select an activity and which rule
// decided.
func (r *Rules) Explain(a *activity.Activity) (bool, string) {
	var why string
	switch {
	case len(r.include) == 0:
		why = "every activity is included (no include)"
	default:
		for _, p := range r.include {
			if activity.Matches(p, a.Name) {
				why = fmt.Sprintf("included by %q", p)
				break
			}
		}
		if why == "" {
			return false, fmt.Sprintf("not included: %s matches none of %s", a.Name, patternList(r.include))
		}
	}
	for _, p := range r.exclude {
		if activity.Matches(p, a.Name) {
			return false, fmt.Sprintf("excluded by %q", p)
		}
	}
	if r.when == nil {
		return true, why
	}
	in, err := expr.NewInput(a)
	ok, err := r.MatchInput(in, err)
	if err != nil && in != nil {
		err = r.when.Explained(in, err) // where it failed, for a person
	}
	switch {
	case err != nil:
		return false, "when failed: " + text.Clip(err.Error(), 200)
	case !ok:
		return false, "when was false"
	}
	return true, why + " and when was true"
}

func patternList(ps []string) string {
	q := make([]string, len(ps))
	for i, p := range ps {
		q[i] = fmt.Sprintf("%q", p)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// OwnOnly are the rules of a destination that takes no activity at all,
// only what is published to its own subject: Relay's alerts.
func OwnOnly() *Rules { return &Rules{own: true} }

// Own reports whether the rules are OwnOnly's.
func (r *Rules) Own() bool { return r.own }
