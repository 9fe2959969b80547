package relay_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// TestLoneObjectErrorNamesWholePath: a body that is one activity, not an
// array, names a bad field by its whole path, as a batch item does.
func TestLoneObjectErrorNamesWholePath(t *testing.T) {
	n := startRelay(t, baseYAML(t.TempDir()))
	for _, tc := range []struct{ body, field string }{
		{`{"type":"pageview","attributes":{"k":1,"k":2}}`, "attributes.k"},
		{`{"type":"pageview","contact":{"a":{"b":1,"b":2}}}`, "contact.a.b"},
		{`[{"type":"pageview","attributes":{"k":1,"k":2}}]`, "attributes.k"},
	} {
		status, out := n.post(tc.body, ingestToken)
		if status != http.StatusBadRequest {
			t.Fatalf("%s: %d %v", tc.body, status, out)
		}
		if got := fmt.Sprint(out["details"]); !strings.Contains(got, "field:"+tc.field+" ") && !strings.Contains(got, "field:"+tc.field+"]") {
			t.Errorf("%s: details %s, want field %s", tc.body, got, tc.field)
		}
	}
}
