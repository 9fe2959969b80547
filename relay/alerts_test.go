package relay_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relaydev/relay/connectors/webhook"
)

// alertReceiver verifies each alert's signature and keeps them by
// webhook-id, so a redelivered alert counts once.
type alertReceiver struct {
	srv *httptest.Server

	mu     sync.Mutex
	byID   map[string]alert
	order  []string // webhook-ids in the order first received
	failed []string
}

type alert struct {
	Type string         `json:"type"`
	Data map[string]any `json:"data"`
}

func newAlertReceiver(t *testing.T, secret string) *alertReceiver {
	a := &alertReceiver{byID: map[string]alert{}}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		id := r.Header.Get("webhook-id")
		a.mu.Lock()
		defer a.mu.Unlock()
		var al alert
		if err := webhook.VerifyRequest(secret, r.Header, body, time.Now()); err != nil {
			a.failed = append(a.failed, fmt.Sprintf("%s: %v", id, err))
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if err := json.Unmarshal(body, &al); err != nil || al.Data["id"] != id || al.Data["name"] != al.Type {
			a.failed = append(a.failed, fmt.Sprintf("%s: body %s", id, body))
		}
		if _, seen := a.byID[id]; !seen {
			a.order = append(a.order, id)
		}
		a.byID[id] = al
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(a.srv.Close)
	return a
}

// events returns the alerts of a type, each once, in the order received.
func (a *alertReceiver) events(typ string) []alert {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []alert
	for _, id := range a.order {
		if a.byID[id].Type == typ {
			out = append(out, a.byID[id])
		}
	}
	return out
}

func (a *alertReceiver) types() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for _, id := range a.order {
		out = append(out, a.byID[id].Type)
	}
	return out
}

// TestAlerts: the alerts receiver gets breaker_opened then breaker_closed,
// paused and resumed, signed, once each, and the dead letters of a
// destination counted in relay.deadletter.created.
func TestAlerts(t *testing.T) {
	alerts := newAlertReceiver(t, secretB)
	var down atomic.Bool
	down.Store(true)
	rcv := newReceiver(t, secretA)
	rcv.setRespond(func(string, int) int {
		if down.Load() {
			return http.StatusServiceUnavailable
		}
		return http.StatusNoContent
	})
	doomed := newReceiver(t, secretA)
	doomed.setRespond(func(string, int) int { return http.StatusInternalServerError })
	f := newConfigFile(t, baseYAML(t.TempDir())+"destinations:\n"+breakerDest(rcv.srv.URL)+
		destYAML("doomed", doomed.srv.URL, secretA, "    retry: {schedule: [100ms]}\n    breaker: off")+
		fmt.Sprintf("alerts: {url: %q, secrets: [%q], allow_private_network: true, deadletter_every: 500ms, retry: {schedule: [200ms, 200ms, 200ms]}}\n", alerts.srv.URL+"/alerts", secretB))
	n := startFromFile(t, f)

	n.send(emailOpens(20)...)
	waitFor(t, 30*time.Second, "breaker_opened", func() bool { return len(alerts.events("relay.destination.breaker_opened")) == 1 })
	down.Store(false)
	waitFor(t, 30*time.Second, "breaker_closed", func() bool { return len(alerts.events("relay.destination.breaker_closed")) == 1 })

	for _, verb := range []string{"pause", "resume"} {
		if status, out := n.adminDo("POST", "/v1/destinations/d/"+verb, ""); status != http.StatusOK {
			t.Fatalf("%s: %d %v", verb, status, out)
		}
	}
	waitFor(t, 30*time.Second, "paused and resumed", func() bool {
		return len(alerts.events("relay.destination.paused")) == 1 && len(alerts.events("relay.destination.resumed")) == 1
	})
	dead := func() int {
		sum := 0
		for _, a := range alerts.events("relay.deadletter.created") {
			if a.Data["destination"] != "doomed" {
				t.Errorf("deadletter.created for %v", a.Data["destination"])
			}
			c, _ := a.Data["count"].(float64)
			sum += int(c)
		}
		return sum
	}
	// doomed takes every activity, so its 20 all become dead letters.
	waitFor(t, 30*time.Second, "20 dead letters counted", func() bool { return dead() == 20 })

	// Activities replayed to relay-alerts by mistake are not alerts: it
	// takes none, so none is re-queued, and none reaches the alerts
	// receiver.
	status, out := n.adminDo("POST", "/v1/replay", `{"destination": "relay-alerts", "history": true}`)
	if status != http.StatusOK || out["replayed"].(float64) != 0 {
		t.Fatalf("replay to relay-alerts: %d %v", status, out)
	}
	waitFor(t, 30*time.Second, "the replayed activities settled", func() bool { return n.destinations()["relay-alerts"].Pending == 0 })
	for _, typ := range alerts.types() {
		if !strings.HasPrefix(typ, "relay.") {
			t.Errorf("the alerts receiver got %s", typ)
		}
	}

	types := alerts.types()
	first := func(typ string) int {
		for i, ty := range types {
			if ty == typ {
				return i
			}
		}
		return -1
	}
	if first("relay.destination.breaker_opened") > first("relay.destination.breaker_closed") {
		t.Errorf("breaker_closed came before breaker_opened: %v", types)
	}
	for _, typ := range []string{"relay.destination.breaker_opened", "relay.destination.breaker_closed", "relay.destination.paused", "relay.destination.resumed"} {
		got := alerts.events(typ)
		if len(got) != 1 {
			t.Errorf("%d %s alerts, want 1", len(got), typ)
			continue
		}
		if got[0].Data["destination"] != "d" {
			t.Errorf("%s names destination %v", typ, got[0].Data["destination"])
		}
	}
	if n := len(alerts.events("relay.deadletter.created")); n > 20 {
		t.Errorf("%d deadletter.created alerts for 20 dead letters: not rate-limited", n)
	}
	alerts.mu.Lock()
	defer alerts.mu.Unlock()
	if len(alerts.failed) > 0 {
		t.Errorf("bad alerts: %v", alerts.failed)
	}
	t.Logf("alerts: %v", types)
}
