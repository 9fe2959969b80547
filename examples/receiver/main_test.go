package main

import (
	"bytes"
	"errors"
	"flag"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/relaydev/relay/connectors/webhook"
)

func TestReceiver(t *testing.T) {
	key, err := webhook.ParseSecret(demoSecret)
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := webhook.ParseSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		t.Fatal(err)
	}
	body := `{"type":"email.open","timestamp":"2026-11-22T10:00:00Z","data":{"id":"a1","contact":{"email":"ann@example.com"},"attributes":{"campaign":"bf", "total": 129.50}}}`
	now := time.Now()
	tests := []struct {
		name     string
		id       string
		ts       time.Time
		keys     [][]byte
		body     string // sent; the signature is always over the original body
		failRate float64
		status   int
		printed  string
	}{
		{"wrong key", "a1", now, [][]byte{otherKey}, body, 0, http.StatusUnauthorized, ""},
		{"tampered body", "a1", now, [][]byte{key}, strings.Replace(body, "bf", "xx", 1), 0, http.StatusUnauthorized, ""},
		{"stale timestamp", "a1", now.Add(-time.Hour), [][]byte{key}, body, 0, http.StatusUnauthorized, ""},
		{"simulated outage", "a1", now, [][]byte{key}, body, 1, http.StatusServiceUnavailable, ""},
		{"valid", "a1", now, [][]byte{key}, body, 0, http.StatusNoContent, `contact={"email":"ann@example.com"} attributes={"campaign":"bf","total":129.50}`},
		{"one of two secrets", "a2", now, [][]byte{otherKey, key}, body, 0, http.StatusNoContent, "a2 email.open"},
		{"redelivery", "a1", now, [][]byte{key}, body, 0, http.StatusOK, "a1 duplicate"},
	}
	var out bytes.Buffer
	h := newHandler(demoSecret, 0, &out)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out.Reset()
			h.failRate = tc.failRate
			req := httptest.NewRequest(http.MethodPost, "/webhook", strings.NewReader(tc.body))
			req.Header.Set("webhook-id", tc.id)
			req.Header.Set("webhook-timestamp", strconv.FormatInt(tc.ts.Unix(), 10))
			req.Header.Set("webhook-signature", webhook.Sign(tc.keys, tc.id, tc.ts, []byte(body)))
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.status {
				t.Errorf("status = %d, want %d", rec.Code, tc.status)
			}
			if tc.printed == "" && out.Len() > 0 {
				t.Errorf("printed %q for a delivery it did not take", out.String())
			}
			if !strings.Contains(out.String(), tc.printed) {
				t.Errorf("printed %q, want %q in it", out.String(), tc.printed)
			}
		})
	}
}

// TestReceiverHeaders checks that --headers prints a delivery's webhook
// headers and body verbatim, so that what it prints verifies, and that the
// relay verify command it prints gives the shell the same body back.
func TestReceiverHeaders(t *testing.T) {
	key, err := webhook.ParseSecret(demoSecret)
	if err != nil {
		t.Fatal(err)
	}
	body := `{"type":"email.open","data":{"id":"a1","contact":{"email":"ann@example.com"},"attributes":{"note":"it's 100% \"done\"\\n","n":1.50}}}`
	ts := time.Now()
	for _, status := range []int{http.StatusNoContent, http.StatusUnauthorized} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			var out bytes.Buffer
			h := newHandler(demoSecret, 0, &out)
			h.headers = true
			sig := webhook.Sign([][]byte{key}, "a1", ts, []byte(body))
			if status == http.StatusUnauthorized { // printed all the same, to see why
				sig = "v1,bm90IHRoZSBzaWduYXR1cmU="
			}
			req := httptest.NewRequest(http.MethodPost, "/webhook", strings.NewReader(body))
			req.Header.Set("webhook-id", "a1")
			req.Header.Set("webhook-timestamp", strconv.FormatInt(ts.Unix(), 10))
			req.Header.Set("webhook-signature", sig)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != status {
				t.Fatalf("status %d, want %d", rec.Code, status)
			}
			printed := map[string]string{}
			for line := range strings.Lines(out.String()) {
				k, v, _ := strings.Cut(strings.TrimSuffix(line, "\n"), ": ")
				printed[k] = v
			}
			if printed["webhook-id"] != "a1" || printed["webhook-timestamp"] != strconv.FormatInt(ts.Unix(), 10) || printed["webhook-signature"] != sig || printed["body"] != body {
				t.Fatalf("printed %q", out.String())
			}
			hdr := http.Header{}
			for _, k := range []string{"webhook-id", "webhook-timestamp", "webhook-signature"} {
				hdr.Set(k, printed[k])
			}
			if err := webhook.VerifyRequest(demoSecret, hdr, []byte(printed["body"]), ts); (err == nil) != (status == http.StatusNoContent) {
				t.Errorf("the printed delivery verifies: %v", err)
			}
			cmd, _, ok := strings.Cut(printed["verify"], " | relay verify ")
			if !ok || !strings.HasSuffix(printed["verify"], " --id 'a1' --timestamp '"+printed["webhook-timestamp"]+"' --signature '"+sig+"'") {
				t.Fatalf("verify line %q", printed["verify"])
			}
			got, err := exec.Command("sh", "-c", cmd).Output()
			if err != nil || string(got) != body {
				t.Errorf("the printed command gives the body %q (%v), want %q", got, err, body)
			}
			if strings.Contains(out.String(), demoSecret) {
				t.Errorf("the secret is printed: %q", out.String())
			}
		})
	}
}

// TestReceiverHelpHidesSecret: --help shows where the secret comes from,
// never the secret in $RELAY_WEBHOOK_SECRET; without --secret that
// variable is the secret.
func TestReceiverHelpHidesSecret(t *testing.T) {
	const secret = "whsec_c2VjcmV0LWZyb20tdGhlLWVudmlyb25tZW50"
	t.Setenv("RELAY_WEBHOOK_SECRET", secret)
	var help bytes.Buffer
	if _, err := parseOptions([]string{"--help"}, &help); !errors.Is(err, flag.ErrHelp) || strings.Contains(help.String(), secret) || strings.Contains(help.String(), "c2VjcmV0") || !strings.Contains(help.String(), "$RELAY_WEBHOOK_SECRET") {
		t.Errorf("--help: %v\n%s", err, help.String())
	}
	o, err := parseOptions(nil, &help)
	if err != nil || o.secret != secret {
		t.Errorf("without --secret: %v, secret %.12s…", err, o.secret)
	}
	t.Setenv("RELAY_WEBHOOK_SECRET", "")
	if o, _ := parseOptions(nil, &help); o.secret != demoSecret {
		t.Errorf("without either: secret %.12s…, want the demo secret", o.secret)
	}
}
