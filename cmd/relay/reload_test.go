package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReloadCommand(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		answer exchange
		code   int
		out    string // in stdout when code is 0, else in stderr
	}{
		{"applied", nil,
			exchange{"POST", "/v1/reload", "", 200, `{"added":["new"],"changed":["crm"],"removed":[],"restart_required":[]}`},
			0, "reloaded: added new, changed crm, removed none\n"},
		{"a key only a restart applies", nil,
			exchange{"POST", "/v1/reload", "", 200, `{"added":[],"changed":[],"removed":["old"],"restart_required":["ingest.listen"]}`},
			0, "reloaded: added none, changed none, removed old\nchanged but applied only at the next start: ingest.listen\n"},
		{"json", []string{"--json"},
			exchange{"POST", "/v1/reload", "", 200, `{"added":["new"],"changed":[],"removed":[],"restart_required":[]}`},
			0, `"added": [`},
		{"invalid config", nil,
			exchange{"POST", "/v1/reload", "", 422, `{"error":"invalid config: 2 problems; nothing changed","details":[{"message":"relay.yaml:3:5: ingest.tokens: at least one token is required"},{"message":"relay.yaml:9:14: destinations[0].include[0]: unknown activity pattern"}]}`},
			1, "relay: server said 422: invalid config: 2 problems; nothing changed\n  relay.yaml:3:5: ingest.tokens: at least one token is required\n  relay.yaml:9:14: destinations[0].include[0]: unknown activity pattern\n"},
		{"a variable the server's environment lacks", nil,
			exchange{"POST", "/v1/reload", "", 422, `{"error":"invalid config: 1 problems; nothing changed","details":[{"message":"relay.yaml:7:14: destinations[0].secrets[0]: environment variable SLACK_HOOK_SECRET is not set"}]}`},
			1, "environment variable SLACK_HOOK_SECRET is not set\nnote: the server reads the file and its ${VAR}s with its own environment"},
		{"other keys applied", nil,
			exchange{"POST", "/v1/reload", "", 200, `{"added":[],"changed":[],"removed":[],"applied":["sources.ortto"],"restart_required":[]}`},
			0, "reloaded: added none, changed none, removed none\nalso applied: sources.ortto\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := newFakeAPI(t, "tok", tc.answer)
			noConfig(t)
			args := append([]string{"reload", "--server", srv.URL, "--token", "tok"}, tc.args...)
			code, out, errOut := runCLI(t, args...)
			got := out
			if tc.code != 0 {
				got = errOut
			}
			if code != tc.code || !strings.Contains(got, tc.out) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit %d and %q", code, out, errOut, tc.code, tc.out)
			}
		})
	}
}

// TestReloadWithAnInvalidFile: the address and token still come from a
// config whose errors are elsewhere, so relay reload reaches the server
// that reports them.
func TestReloadWithAnInvalidFile(t *testing.T) {
	srv := newFakeAPI(t, "cfg-admin", exchange{"POST", "/v1/reload", "", 422,
		`{"error":"invalid config: 1 problems; nothing changed","details":[{"message":"relay.yaml:4:40: destinations[0].colour: unknown key \"colour\""}]}`})
	cfg := filepath.Join(t.TempDir(), "relay.yaml")
	yaml := "ingest: {tokens: [t]}\nadmin: {listen: " + strings.TrimPrefix(srv.URL, "http://") + ", token: cfg-admin}\ndestinations:\n" +
		"  - {name: crm, type: webhook, url: 'https://crm.example/hook', secrets: ['whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'], colour: blue}\n"
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, "reload", "-c", cfg)
	if code != 1 || errOut != "relay: server said 422: relay.yaml:4:40: destinations[0].colour: unknown key \"colour\"\n" {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}
