package expr

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/relaydev/relay/relay/activity"
)

// budgetActivity has a 20,000-character string and a 400-element list.
func budgetActivity(t *testing.T) *Input {
	t.Helper()
	list := make([]int, 400)
	for i := range list {
		list[i] = i
	}
	attrs, _ := json.Marshal(map[string]any{"s": strings.Repeat("a", 20000), "l": list, "small": "abc"})
	in, err := NewInput(&activity.Activity{ID: "b", Name: "email.open", Contact: json.RawMessage(`{}`), Attributes: attrs})
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// TestBudget: expressions whose cost grows with the input (a replace that
// multiplies a string, loops nested over a list, strings doubled in a
// chain) stop at the budget with ErrBudget, quickly and without building
// what they asked for; ordinary ones over the same input evaluate.
func TestBudget(t *testing.T) {
	in := budgetActivity(t)
	doubled := "activity.attributes.s"
	for range 30 { // 20,000 × 2^30 characters
		doubled = fmt.Sprintf("[%s].map(x, x + x)[0]", doubled)
	}
	tests := []struct {
		name, src string
		want      Result
		over      bool
	}{
		{"replace multiplies", `{"x": activity.attributes.s.replace("a", activity.attributes.s)}`, Object, true},
		{"replace with a count multiplies", `{"x": activity.attributes.s.replace("a", activity.attributes.s, 1000)}`, Object, true},
		{"nested loops n^3", `activity.attributes.l.all(a, activity.attributes.l.all(b, activity.attributes.l.all(c, c != -1)))`, Bool, true},
		{"map of maps n^2 lists", `size(activity.attributes.l.map(a, activity.attributes.l.map(b, activity.attributes.l))) > 0`, Bool, true},
		{"doubling chain", "size(" + doubled + ") > 0", Bool, true},
		{"replace within bounds", `{"x": activity.attributes.small.replace("a", "bb")}`, Object, false},
		{"one loop", `activity.attributes.l.exists(a, a == 399)`, Bool, false},
		{"two loops", `activity.attributes.l.exists(a, a > 398 && activity.attributes.l.exists(b, b == a))`, Bool, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, cerr := Compile(tc.src, tc.want)
			if cerr != nil {
				t.Fatalf("compile: %v", cerr)
			}
			start := time.Now()
			var err error
			if tc.want == Bool {
				_, err = p.Bool(in)
			} else {
				_, err = p.Value(in)
			}
			took := time.Since(start)
			if tc.over != errors.Is(err, ErrBudget) {
				t.Fatalf("over budget %v, want %v: %v", errors.Is(err, ErrBudget), tc.over, err)
			}
			if !tc.over && err != nil {
				t.Fatalf("eval: %v", err)
			}
			if tc.over && !strings.Contains(err.Error(), "budget") {
				t.Errorf("error does not say why: %v", err)
			}
			t.Logf("%s: %v in %s", tc.name, err, took.Round(time.Microsecond))
		})
	}
}
