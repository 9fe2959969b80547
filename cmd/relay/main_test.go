package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/relaydev/relay/connectors/webhook"
)

// apiStub stands in for Relay's API to test the client side of commands:
// it checks each request and answers as the real API does.
type apiStub struct {
	t      *testing.T
	method string
	path   string
	token  string
	body   map[string]any
	status int
	answer string
}

func (s *apiStub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.method, s.path = r.Method, r.URL.RequestURI()
	s.token = strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	data, _ := io.ReadAll(r.Body)
	s.body = nil
	if len(data) > 0 {
		if err := json.Unmarshal(data, &s.body); err != nil {
			s.t.Errorf("request body is not JSON: %q", data)
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(s.status)
	io.WriteString(w, s.answer)
}

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestClientCommands(t *testing.T) {
	stub := &apiStub{t: t}
	srv := httptest.NewServer(stub)
	defer srv.Close()
	noConfig := filepath.Join(t.TempDir(), "none.yaml")
	tests := []struct {
		name       string
		args       []string
		status     int
		answer     string
		wantCode   int
		wantMethod string
		wantPath   string
		wantBody   string // a fragment of the JSON request body
		wantOut    string
	}{
		{"send canonical", []string{"send", "--activity", "email.open", "--email", "ann@example.com", "--attr", "campaign=bf", "--attr", "total=12.5"},
			202, `{"accepted":1,"ids":["01ABC"]}`, 0, "POST", "/v1/activities", `"name":"email.open"`, "accepted 01ABC"},
		{"send Ortto name", []string{"send", "--activity", "Opened email", "--phone", "+1555"},
			202, `{"accepted":1,"ids":["01ABD"]}`, 0, "POST", "/v1/activities", `"activity":"Opened email"`, "accepted 01ABD"},
		{"send refused", []string{"send", "--activity", "email.teleport"},
			422, `{"error":"unknown activity","details":[{"index":0,"field":"name","message":"unknown activity \"email.teleport\""}]}`, 1, "POST", "/v1/activities", "", ""},
		{"deadletters", []string{"deadletters", "--destination", "crm"},
			200, `{"deadletters":[{"id":"a1","destination":"crm","activity":{"name":"email.open"},"attempts":[{"at":"2026-11-22T10:00:00Z","status":503,"error":"status 503: down","latency_ms":3}],"dead_at":"2026-11-22T10:01:00Z"}],"next_cursor":""}`,
			0, "GET", "/v1/deadletters?destination=crm&limit=1000", "", "a1  crm          email.open"},
		{"replay", []string{"replay", "--destination", "crm", "--activity", "email.*", "--id", "a1", "--id", "a2", "--since", "2026-11-22T00:00:00Z"},
			200, `{"replayed":2}`, 0, "POST", "/v1/replay", `"ids":["a1","a2"]`, "replayed 2"},
		{"replay history", []string{"replay", "--destination", "crm", "--history"},
			200, `{"replayed":7}`, 0, "POST", "/v1/replay", `"history":true`, "replayed 7"},
		{"pause", []string{"pause", "crm"}, 200, `{"name":"crm","state":"paused"}`, 0, "POST", "/v1/destinations/crm/pause", "", "crm: paused"},
		{"resume unknown", []string{"resume", "nope"}, 404, `{"error":"unknown destination \"nope\""}`, 1, "POST", "/v1/destinations/nope/resume", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			stub.status, stub.answer = tc.status, tc.answer
			args := append(tc.args, "-c", noConfig, "--server", srv.URL, "--token", "tok")
			code, out, errOut := runCLI(t, args...)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d; stderr %s", code, tc.wantCode, errOut)
			}
			if stub.method != tc.wantMethod || stub.path != tc.wantPath || stub.token != "tok" {
				t.Errorf("request %s %s token %q, want %s %s tok", stub.method, stub.path, stub.token, tc.wantMethod, tc.wantPath)
			}
			body, _ := json.Marshal(stub.body)
			if !strings.Contains(string(body), tc.wantBody) {
				t.Errorf("request body %s, want %s in it", body, tc.wantBody)
			}
			if !strings.Contains(out, tc.wantOut) {
				t.Errorf("stdout %q, want %q", out, tc.wantOut)
			}
			if tc.wantCode != 0 && !strings.Contains(errOut, "server said") {
				t.Errorf("stderr %q does not explain the failure", errOut)
			}
		})
	}
}

func TestReplayNeedsDestination(t *testing.T) {
	code, _, errOut := runCLI(t, "replay", "--server", "http://127.0.0.1:1")
	if code != 1 || !strings.Contains(errOut, "--destination is required") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
}

func TestVerify(t *testing.T) {
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	key, _ := webhook.ParseSecret(secret)
	body := `{"test": 2432232314}`
	now := time.Now()
	fresh := webhook.Sign([][]byte{key}, "msg_1", now, []byte(body))
	ts := strconv.FormatInt(now.Unix(), 10)
	tests := []struct {
		name, id, body, ts, sig string
		code                    int
		out                     string
	}{
		{"valid", "msg_1", body, ts, fresh, 0, "valid"},
		{"tampered body", "msg_1", body + " ", ts, fresh, 1, "invalid: no matching v1 signature"},
		{"reference vector, now too old", "msg_p5jXN8AQM9LWM0D4loKWxJek", body, "1614265330", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", 1, "invalid: webhook-timestamp is too old"},
		{"missing signature", "msg_1", body, ts, "", 1, "invalid: missing"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			stdin = strings.NewReader(tc.body)
			code, out, errOut := runCLI(t, "verify", "--secret", secret, "--id", tc.id, "--timestamp", tc.ts, "--signature", tc.sig)
			if code != tc.code || !strings.Contains(out+errOut, tc.out) {
				t.Errorf("exit %d, out %q, err %q; want %d and %q", code, out, errOut, tc.code, tc.out)
			}
		})
	}
}

func TestActivitiesJSON(t *testing.T) {
	code, out, _ := runCLI(t, "activities", "--json")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	var entries []struct {
		Name    string   `json:"name"`
		Action  string   `json:"action"`
		Aliases []string `json:"aliases"`
	}
	if err := json.Unmarshal([]byte(out), &entries); err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for _, e := range entries {
		if e.Name == "email.open" && len(e.Aliases) > 0 && e.Aliases[0] == "Opened email" {
			found["email.open"] = true
		}
		if e.Name == "pageview" && e.Action == "" {
			found["pageview"] = true
		}
	}
	if !found["email.open"] || !found["pageview"] {
		t.Errorf("catalog JSON lacks email.open with alias Opened email, or pageview: %v", found)
	}
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "relay.yaml")
	os.WriteFile(bad, []byte("ingest: {tokens: [t]}\nadmin: {token: a}\ndestinations:\n  - {name: a, type: webhook, url: 'https://x.example', secrets: ['whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'], include: ['emial.*'], when: 'activity.'}\n"), 0o600)
	code, _, errOut := runCLI(t, "validate", "-c", bad)
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	for _, want := range []string{bad + ":4:", `destinations[0].include[0]: pattern "emial.*" matches no known activity`, "destinations[0].when: invalid CEL expression"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr %q lacks %q", errOut, want)
		}
	}
	code, out, _ := runCLI(t, "validate", "-c", filepath.Join("..", "..", "relay.yaml"))
	if code != 0 || !strings.Contains(out, "ok (1 destinations)") {
		t.Errorf("shipped relay.yaml: exit %d, %q", code, out)
	}
}
