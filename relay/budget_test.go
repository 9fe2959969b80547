package relay_test

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestExpressionBudgets: expressions that would cost without bound — a
// body that multiplies a string, a body over max_body, a `when` of loops
// nested over a list — make the activity a dead letter for their own
// destination, saying why, counted as reason budget; a plain destination
// beside them gets every activity, and the relay's memory never holds
// what they asked for.
func TestExpressionBudgets(t *testing.T) {
	plain := newReceiver(t, secretA)
	bomb := newReceiver(t, secretA)
	big := newReceiver(t, secretA)
	loops := newReceiver(t, secretA)
	n := startRelay(t, baseYAML(t.TempDir())+"destinations:\n"+
		destYAML("plain", plain.srv.URL, secretA, "")+
		destYAML("bomb", bomb.srv.URL, secretA, `    body: '{"x": activity.attributes.s.replace("a", activity.attributes.s)}'`)+
		destYAML("big", big.srv.URL, secretA, `    max_body: 4KiB
    body: '{"x": activity.attributes.s}'`)+
		destYAML("loops", loops.srv.URL, secretA, `    when: 'activity.attributes.l.all(a, activity.attributes.l.all(b, activity.attributes.l.all(c, c != -1)))'`))
	list := make([]string, 400)
	for i := range list {
		list[i] = fmt.Sprint(i)
	}
	const count = 5
	var items []map[string]any
	for i := range count {
		items = append(items, map[string]any{"type": "email", "action": "open", "id": fmt.Sprintf("budget-%d", i),
			"contact":    map[string]any{"email": "ann@example.com"},
			"attributes": map[string]any{"s": strings.Repeat("a", 20000), "l": list}})
	}
	start := time.Now()
	ids := n.send(items...)
	waitDelivered(t, plain, 20*time.Second, ids)
	t.Logf("the plain destination got %d activities in %s", len(ids), time.Since(start).Round(time.Millisecond))
	for _, dest := range []string{"bomb", "big", "loops"} {
		waitFor(t, 30*time.Second, dest+"'s dead letters", func() bool { return n.destinations()[dest].DeadLettered == count })
		_, out := n.adminDo("GET", "/v1/deadletters?destination="+dest, "")
		dls := out["deadletters"].([]any)
		attempts := dls[0].(map[string]any)["attempts"].([]any)
		reason := attempts[len(attempts)-1].(map[string]any)["error"].(string)
		if !strings.Contains(reason, "budget") {
			t.Errorf("%s: the dead letter's reason does not name the budget: %q", dest, reason)
		}
		t.Logf("%s: %s", dest, reason)
		if got := scrape(t, n, fmt.Sprintf(`relay_rule_errors_total{destination=%q,reason="budget"}`, dest)); got != count {
			t.Errorf("%s: relay_rule_errors_total{reason=budget} = %v, want %d", dest, got, count)
		}
	}
	for name, r := range map[string]*receiver{"bomb": bomb, "big": big, "loops": loops} {
		if got := len(r.delivered()); got != 0 {
			t.Errorf("%s received %d activities", name, got)
		}
	}
}
