package relay

import (
	"errors"
	"slices"

	"github.com/relaydev/relay/config"
	"github.com/relaydev/relay/relay/activity"
	"github.com/relaydev/relay/relay/ingest"
	"github.com/relaydev/relay/relay/rules"
)

// LoadConfig reads relay.yaml and runs every check, structural and the
// engine's own (patterns against the catalog, CEL expressions). The error,
// if any, is a config.Errors listing every problem.
func LoadConfig(path string) (*config.Config, error) {
	cfg, err := config.Load(path)
	var errs config.Errors
	if err != nil {
		if !errors.As(err, &errs) || cfg == nil {
			return nil, err
		}
	}
	if _, more := Compile(cfg); len(more) > 0 {
		errs = append(errs, more...)
	}
	if len(errs) > 0 {
		slices.SortStableFunc(errs, func(a, b *config.Error) int {
			if a.Line != b.Line {
				return a.Line - b.Line
			}
			return a.Col - b.Col
		})
		return nil, errs
	}
	return cfg, nil
}

// Compiled is the runtime form of a config: the catalog including custom
// activities, and each destination's rules.
type Compiled struct {
	Catalog *activity.Catalog
	Rules   map[string]*rules.Rules
}

// Compile builds the catalog and every destination's rules.
func Compile(cfg *config.Config) (*Compiled, config.Errors) {
	var errs config.Errors
	cat := activity.Builtin()
	var custom []activity.Entry
	for _, c := range cfg.Activities {
		typ, action, err := activity.ParseName(c.Name)
		if err != nil {
			continue // the loader reported it
		}
		custom = append(custom, activity.Entry{Name: c.Name, Type: typ, Action: action, Description: c.Description})
	}
	if len(custom) > 0 {
		withCustom, err := cat.With(custom...)
		if err != nil {
			errs = append(errs, cfg.Errorf(cfg.Activities[0].Pos, "activities", "%v", err))
		} else {
			cat = withCustom
		}
	}
	errs = append(errs, ingest.CheckSources(cfg, cat)...)
	out := &Compiled{Catalog: cat, Rules: map[string]*rules.Rules{}}
	for _, d := range cfg.Destinations {
		r, more := rules.CompileRules(cfg, cat, d)
		errs = append(errs, more...)
		errs = append(errs, rules.CheckExprs(cfg, d)...)
		out.Rules[d.Name] = r
	}
	return out, errs
}
