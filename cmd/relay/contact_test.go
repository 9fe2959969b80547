package main

import (
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/relaydev/relay/relay/api"
)

// TestContactAndErase: relay contact shows a person's channel state (set
// by an opt-out sent through ingest) and activities with their status at
// the consent destination (suppressed); relay erase forgets them, after
// which relay contact lists nothing; a wrong use names the flags.
func TestContactAndErase(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Relay with embedded NATS")
	}
	noConfig(t)
	ok := &receiver{got: map[string]int{}}
	srv := httptest.NewServer(ok)
	defer srv.Close()
	l := startLiveRelay(t, fmt.Sprintf("  - {name: mailer, type: webhook, url: %q, allow_private_network: true, secrets: [%q], consent: email}\n", srv.URL, itSecret))
	send := func(name string) string {
		t.Helper()
		code, out, errOut := runCLI(t, "send", "--activity", name, "--email", "dee@example.com", "--server", l.ingest, "--token", itIngestToken)
		id, found := strings.CutPrefix(strings.TrimSpace(out), "accepted ")
		if code != 0 || !found {
			t.Fatalf("send %s: exit %d, %q %q", name, code, out, errOut)
		}
		return id
	}
	out := send("consent.opt-out")
	open := send("email.open")
	waitUntil(t, 20*time.Second, "the opt-out delivered", func() bool { return ok.count(out) == 1 })
	var c api.Contact
	waitUntil(t, 20*time.Second, "email.open suppressed", func() bool {
		code, stdout, _ := l.cli(t, "contact", "--email", "DEE@example.com", "--json")
		c = api.Contact{}
		return code == 0 && json.Unmarshal([]byte(stdout), &c) == nil && len(c.Activities) == 2 &&
			len(c.Activities[0].Destinations) == 1 && c.Activities[0].Destinations[0].Status == "suppressed"
	})
	if ch := c.Channels["email"]; ch.State != "opted_out" || ch.ActivityID != out || !ch.Suppressed {
		t.Errorf("email channel %+v", ch)
	}
	if c.Activities[0].ID != open {
		t.Errorf("newest activity %s, want %s", c.Activities[0].ID, open)
	}
	code, stdout, errOut := l.cli(t, "contact", "--email", "dee@example.com")
	if code != 0 || !strings.Contains(squash(stdout), "email opted_out (suppressed) ") || !strings.Contains(squash(stdout), open+" email.open ") || !strings.Contains(stdout, "mailer: suppressed") {
		t.Errorf("contact: exit %d\n%s%s", code, stdout, errOut)
	}
	if ok.count(open) != 0 {
		t.Error("the suppressed activity reached the mailer")
	}

	code, stdout, errOut = l.cli(t, "erase", "--email", "dee@example.com")
	if code != 0 || !strings.HasPrefix(stdout, "erased 2 activities, ") || !strings.Contains(stdout, "recorded as sha256:") || strings.Contains(stdout, "dee@") {
		t.Fatalf("erase: exit %d, %q %q", code, stdout, errOut)
	}
	code, stdout, _ = l.cli(t, "contact", "--email", "dee@example.com", "--json")
	if c = (api.Contact{}); code != 0 || json.Unmarshal([]byte(stdout), &c) != nil || len(c.Activities) != 0 {
		t.Errorf("contact after erase: exit %d %s", code, stdout)
	}
	if code, _, _ := l.cli(t, "trace", open); code == 0 {
		t.Error("trace of an erased activity succeeded")
	}

	for _, args := range [][]string{{"erase"}, {"erase", "--email", "a@example.com", "--id", "x"}, {"contact"}} {
		code, _, errOut := l.cli(t, args...)
		if code != 2 || !strings.Contains(errOut, "--email") {
			t.Errorf("%v: exit %d, stderr %q", args, code, errOut)
		}
	}
	code, _, errOut = l.cli(t, "erase", "--email", "not-an-address")
	if code != 1 || !strings.Contains(errOut, "email: not an email address") {
		t.Errorf("erase of a bad address: exit %d, %q", code, errOut)
	}
}
