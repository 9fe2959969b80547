package expr

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/relaydev/relay/relay/activity"
)

// TestErrorsSayWhere: an expression that fails on an activity says which
// part failed: the full path of a missing key, the operator and the types
// it was given.
func TestErrorsSayWhere(t *testing.T) {
	a := &activity.Activity{ID: "x", Name: "order.purchase", Attributes: json.RawMessage(`{"total":"129.50","items":3}`), Contact: json.RawMessage(`{"str::email":"a@b.c"}`)}
	in, err := NewInput(a)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ src, want string }{
		{`activity.attributes.total > 100`, `no such overload: operator > does not apply to string and int (in activity.attributes.total > 100)`},
		{`activity.contact.email == "x"`, `no such key: email (in activity.contact.email; test for it with has(activity.contact.email))`},
		{`"by " + activity.contact.email == "by x"`, `no such key: email (in activity.contact.email;`},
		{`activity.attributes.items + 1.5 > 2.0`, `operator + does not apply to int and double`},
		{`activity.contact["email"] == "x"`, `no such key: email (in activity.contact["email"]`},
	}
	for _, tc := range tests {
		p, cerr := Compile(tc.src, Bool)
		if cerr != nil {
			t.Fatal(cerr)
		}
		_, err := p.Bool(in)
		err = p.Explained(in, err)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.src, err, tc.want)
		}
	}
}
