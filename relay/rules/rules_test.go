package rules

import (
	"slices"
	"testing"
	"time"

	"github.com/relaydev/relay/config"
	"github.com/relaydev/relay/relay/activity"
)

func TestFilterSubjects(t *testing.T) {
	tests := []struct {
		include []string
		want    []string
	}{
		{nil, []string{"activities.>"}},
		{[]string{"*"}, []string{"activities.>"}},
		{[]string{"email.*", "email.open", "sms.sent"}, []string{"activities.email.*", "activities.sms.sent"}},
		{[]string{"*.open", "email.open", "email.*"}, []string{"activities.*.open", "activities.email.*"}},
		{[]string{"email.open", "email.open"}, []string{"activities.email.open"}},
		{[]string{"pageview", "*", "email.*"}, []string{"activities.>"}},
		{[]string{"*.*", "email.*"}, []string{"activities.*.*"}},
		{[]string{"pageview", "*.*"}, []string{"activities.pageview", "activities.*.*"}},
	}
	for _, tc := range tests {
		r := &Rules{include: tc.include}
		if got := r.FilterSubjects(); !slices.Equal(got, tc.want) {
			t.Errorf("FilterSubjects(%v) = %v, want %v", tc.include, got, tc.want)
		}
	}
}

func TestRulesMatch(t *testing.T) {
	cfg := &config.Config{File: "relay.yaml", Destinations: []config.Destination{{
		Name:    "d",
		Include: []string{"email.*", "order.purchase"},
		Exclude: []string{"email.sent"},
		When:    `activity.attributes.total > 100 || activity.type == "email"`,
	}}}
	r, errs := CompileRules(cfg, activity.Builtin(), cfg.Destinations[0])
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	tests := []struct {
		name  string
		attrs map[string]any
		want  bool
	}{
		{"email.open", nil, true},
		{"email.sent", nil, false},
		{"order.purchase", map[string]any{"total": 250.0}, true},
		{"order.purchase", map[string]any{"total": 20.0}, false},
		{"order.purchase", nil, false}, // missing attribute: no match
		{"sms.sent", nil, false},
	}
	for _, tc := range tests {
		typ, action, _ := activity.ParseName(tc.name)
		a := &activity.Activity{Name: tc.name, Type: typ, Action: action, Attributes: activity.MustObject(tc.attrs), OccurredAt: time.Now()}
		when, _ := r.MatchWhen(a)
		if got := r.MatchName(a.Name) && when; got != tc.want {
			t.Errorf("%s %v: match = %v, want %v", tc.name, tc.attrs, got, tc.want)
		}
	}
}

func TestCompileRulesErrors(t *testing.T) {
	pos := map[string]config.Pos{"include[0]": {Line: 5, Col: 14}, "when": {Line: 7, Col: 11}}
	cfg := &config.Config{File: "relay.yaml"}
	tests := []struct {
		d    config.Destination
		want string
	}{
		{config.Destination{Name: "d", Include: []string{"emial.*"}, Pos: pos},
			`relay.yaml:5:14: destinations[0].include[0]: pattern "emial.*" matches no known activity`},
		{config.Destination{Name: "d", Include: []string{"Email.open"}, Pos: pos},
			`relay.yaml:5:14: destinations[0].include[0]: invalid activity pattern`},
		{config.Destination{Name: "d", When: "activity.type = 1", Pos: pos},
			`relay.yaml:7:25: destinations[0].when: invalid CEL expression`},
		{config.Destination{Name: "d", When: `activity.type + "x"`, Pos: pos},
			`relay.yaml:7:11: destinations[0].when: CEL expression must be a bool`},
	}
	for _, tc := range tests {
		cfg.Destinations = []config.Destination{tc.d}
		_, errs := CompileRules(cfg, activity.Builtin(), tc.d)
		if len(errs) != 1 {
			t.Errorf("%+v: %d errors, want 1: %v", tc.d, len(errs), errs)
			continue
		}
		if got := errs[0].Error(); len(got) < len(tc.want) || got[:len(tc.want)] != tc.want {
			t.Errorf("error = %q, want prefix %q", got, tc.want)
		}
	}
}

// TestExplainSaysWhereWhenFailed: a trace's reason for a `when` that
// failed names the operator and the types it was given, or the path of
// the missing key.
func TestExplainSaysWhereWhenFailed(t *testing.T) {
	cfg := &config.Config{File: "relay.yaml", Destinations: []config.Destination{{
		Name: "d", When: `activity.attributes.total > 100`,
	}}}
	r, errs := CompileRules(cfg, activity.Builtin(), cfg.Destinations[0])
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	for attrs, want := range map[string]string{
		`{"total": "129.50"}`: "when failed: no such overload: operator > does not apply to string and int (in activity.attributes.total > 100)",
		`{}`:                  "when failed: no such key: total (in activity.attributes.total; test for it with has(activity.attributes.total))",
	} {
		a := &activity.Activity{ID: "a", Name: "order.purchase", Type: "order", Action: "purchase", Attributes: []byte(attrs), OccurredAt: time.Now()}
		if ok, why := r.Explain(a); ok || why != want {
			t.Errorf("attributes %s: %v %q, want %q", attrs, ok, why, want)
		}
	}
}
