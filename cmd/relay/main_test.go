package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
)

// runCLI runs relay with args as main does and returns the exit status,
// stdout and stderr.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// exchange is one request a client command must make and the answer the
// fake API gives it.
type exchange struct {
	method string
	path   string // with the query, keys sorted
	body   string // the JSON the request must carry (compared as JSON); "" for none
	status int
	answer string
}

// fakeAPI stands in for Relay's API to test the client side of commands:
// it checks each request against the next exchange, in order, and answers
// as the real API would. Every exchange must be used by the end of the test.
type fakeAPI struct {
	t     *testing.T
	token string

	mu        sync.Mutex
	exchanges []exchange
}

func newFakeAPI(t *testing.T, token string, exchanges ...exchange) *httptest.Server {
	api := &fakeAPI{t: t, token: token, exchanges: exchanges}
	srv := httptest.NewServer(api)
	t.Cleanup(func() {
		srv.Close()
		if len(api.exchanges) > 0 {
			t.Errorf("the command never made %d expected requests, first %s %s", len(api.exchanges), api.exchanges[0].method, api.exchanges[0].path)
		}
	})
	return srv
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.exchanges) == 0 {
		f.t.Errorf("unexpected request %s %s", r.Method, r.URL.RequestURI())
		http.Error(w, "unexpected", http.StatusTeapot)
		return
	}
	want := f.exchanges[0]
	f.exchanges = f.exchanges[1:]
	if r.Method != want.method || r.URL.RequestURI() != want.path {
		f.t.Errorf("request %s %s, want %s %s", r.Method, r.URL.RequestURI(), want.method, want.path)
	}
	if got := r.Header.Get("Authorization"); got != "Bearer "+f.token {
		f.t.Errorf("Authorization %q, want Bearer %s", got, f.token)
	}
	body, _ := io.ReadAll(r.Body)
	if !sameJSON(body, want.body) {
		f.t.Errorf("request body %s, want %s", body, want.body)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(want.status)
	io.WriteString(w, want.answer)
}

// sameJSON reports whether got is the JSON document want ("" for none).
func sameJSON(got []byte, want string) bool {
	if want == "" || len(got) == 0 {
		return want == "" && len(got) == 0
	}
	var g, w any
	if json.Unmarshal(got, &g) != nil || json.Unmarshal([]byte(want), &w) != nil {
		return false
	}
	return reflect.DeepEqual(g, w)
}

// TestExitCodes covers how every command fails: usage errors (a missing
// required flag or argument, an extra argument, a bad value) exit 2, help
// exits 0, a config named with -c or $RELAY_CONFIG must exist (exit 1).
// No request reaches the server in any of these cases.
func TestExitCodes(t *testing.T) {
	noConfig(t)
	t.Setenv("RELAY_WEBHOOK_SECRET", "")
	absent := filepath.Join(t.TempDir(), "absent.yaml")
	srv := newFakeAPI(t, "tok") // any request fails the test
	client := []string{"--server", srv.URL, "--token", "tok"}
	with := func(args ...string) []string { return append(args, client...) }
	tests := []struct {
		name     string
		env      string // $RELAY_CONFIG
		args     []string
		code     int
		inStdout string
		inStderr string
	}{
		{"no command", "", nil, 2, "", "usage: relay COMMAND [flags]"},
		{"help", "", []string{"help"}, 0, "  trace ID [--json]", ""},
		{"-h", "", []string{"-h"}, 0, "  log [--destination D]", ""},
		{"--help", "", []string{"--help"}, 0, "  status [--json]", ""},
		{"help for a command", "", []string{"help", "replay"}, 0, "-dry-run", ""},
		{"help for an unknown command", "", []string{"help", "frobnicate"}, 2, "", `relay: help frobnicate: want one of these commands`},
		{"a command's -h", "", []string{"log", "-h"}, 0, "", "-follow"},
		{"unknown command", "", []string{"frobnicate"}, 2, "", `relay: unknown command "frobnicate"`},
		{"unknown flag", "", []string{"activities", "--bogus"}, 2, "", "flag provided but not defined: -bogus"},
		{"flag without its value", "", []string{"log", "--destination"}, 2, "", "flag needs an argument: -destination"},
		{"flag value of the wrong type", "", with("log", "--limit", "ten"), 2, "", `invalid value "ten" for flag -limit`},

		{"send without --activity", "", with("send", "--email", "a@b"), 2, "", "relay send: --activity is required"},
		{"replay without --destination", "", with("replay", "--since", "2h"), 2, "", "relay replay: --destination is required"},
		{"trace without an id", "", with("trace"), 2, "", "relay trace: name one activity id"},
		{"pause without a name", "", with("pause"), 2, "", "relay pause: name one destination"},
		{"verify without a secret", "", []string{"verify", "--id", "x", "--timestamp", "1", "--signature", "v1,x"}, 2, "", "relay verify: the secret is missing: give --secret whsec_… or set $RELAY_WEBHOOK_SECRET"},

		{"status with an argument", "", with("status", "crm"), 2, "", `relay status: unexpected argument "crm"`},
		{"log with an argument", "", with("log", "crm"), 2, "", `relay log: unexpected argument "crm"`},
		{"deadletters with an argument", "", with("deadletters", "crm"), 2, "", `relay deadletters: unexpected argument "crm"`},
		{"replay with an argument", "", with("replay", "--destination", "crm", "a1"), 2, "", `relay replay: unexpected argument "a1"`},
		{"send with an argument", "", with("send", "--activity", "email.open", "extra"), 2, "", `relay send: unexpected argument "extra"`},
		{"activities with an argument", "", []string{"activities", "email"}, 2, "", `relay activities: unexpected argument "email"`},
		{"validate with an argument", "", []string{"validate", "relay.yaml"}, 2, "", `relay validate: unexpected argument "relay.yaml"`},
		{"serve with an argument", "", []string{"serve", "now"}, 2, "", `relay serve: unexpected argument "now"`},
		{"verify with an argument", "", []string{"verify", "--secret", "whsec_x", "body.json"}, 2, "", `relay verify: unexpected argument "body.json"`},
		{"trace of two ids", "", with("trace", "a1", "a2"), 2, "", "relay trace: name one activity id, not several"},
		{"pause two names", "", with("pause", "a", "b"), 2, "", "relay pause: name one destination, not several"},

		{"log with a bad --outcome", "", with("log", "--outcome", "ok"), 2, "", `relay log: --outcome: want delivered, failed, dead_letter or suppressed, got "ok"`},
		{"log with a bad --since", "", with("log", "--since", "yesterday"), 2, "", `relay log: --since: want a duration like 2h or an RFC 3339 time, got "yesterday"`},
		{"log with a negative --limit", "", with("log", "--limit", "-1"), 2, "", "relay log: --limit: want 0 (all) or more, got -1"},
		{"log --follow with --until", "", with("log", "--follow", "--until", "1h"), 2, "", "relay log: --until and --follow do not go together"},
		{"deadletters with a bad --until", "", with("deadletters", "--until", "soon"), 2, "", `relay deadletters: --until: want a duration like 2h or an RFC 3339 time, got "soon"`},
		{"deadletters with a negative --limit", "", with("deadletters", "--limit", "-5"), 2, "", "relay deadletters: --limit: want 0 (all) or more, got -5"},
		{"replay with a bad --since", "", with("replay", "--destination", "crm", "--since", "last week"), 2, "", `relay replay: --since: want a duration like 2h or an RFC 3339 time, got "last week"`},
		{"send with a bad --occurred-at", "", with("send", "--activity", "email.open", "--occurred-at", "today"), 2, "", `relay send: --occurred-at: want an RFC 3339 time`},
		{"send with a bad --attr", "", with("send", "--activity", "email.open", "--attr", "novalue"), 2, "", `want key=value, got "novalue"`},

		{"status: -c names a missing file", "", with("status", "-c", absent), 1, "", "relay: config " + absent + " (named by -c) does not exist\n"},
		{"status: $RELAY_CONFIG names a missing file", absent, with("status"), 1, "", "relay: config " + absent + " (named by $RELAY_CONFIG) does not exist\n"},
		{"trace: -c names a missing file", "", with("trace", "a1", "-c", absent), 1, "", "(named by -c) does not exist"},
		{"log: -c names a missing file", "", with("log", "-c", absent), 1, "", "(named by -c) does not exist"},
		{"send: -c names a missing file", "", with("send", "--activity", "email.open", "-c", absent), 1, "", "(named by -c) does not exist"},
		{"deadletters: $RELAY_CONFIG names a missing file", absent, with("deadletters"), 1, "", "(named by $RELAY_CONFIG) does not exist"},
		{"replay: -c names a missing file", "", with("replay", "--destination", "crm", "-c", absent), 1, "", "(named by -c) does not exist"},
		{"pause: -c names a missing file", "", with("pause", "crm", "-c", absent), 1, "", "(named by -c) does not exist"},
		{"resume: $RELAY_CONFIG names a missing file", absent, with("resume", "crm"), 1, "", "(named by $RELAY_CONFIG) does not exist"},
		{"validate: -c names a missing file", "", []string{"validate", "-c", absent}, 1, "", "relay: config " + absent + " (named by -c) does not exist\n"},
		{"serve: $RELAY_CONFIG names a missing file", absent, []string{"serve"}, 1, "", "relay: read config: open " + absent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("RELAY_CONFIG", tc.env)
			code, out, errOut := runCLI(t, tc.args...)
			if code != tc.code || !strings.Contains(out, tc.inStdout) || !strings.Contains(errOut, tc.inStderr) {
				t.Errorf("exit %d, stdout %q, stderr %q; want %d, %q, %q", code, out, errOut, tc.code, tc.inStdout, tc.inStderr)
			}
			if strings.Contains(errOut, "relay: usage") || strings.Count(errOut, "flag provided") > 1 {
				t.Errorf("a usage error is reported twice: %q", errOut)
			}
			if tc.code == 2 && len(tc.args) > 0 && !strings.Contains(errOut, "-") {
				t.Errorf("a usage error without the command's flags: %q", errOut)
			}
		})
	}
	_, out, _ := runCLI(t, "help")
	for _, name := range order {
		if _, ok := commands[name]; !ok || !strings.Contains(out, "  "+name+" ") {
			t.Errorf("usage lacks %s", name)
		}
	}
	if len(order) != len(commands) {
		t.Errorf("usage lists %d commands, there are %d", len(order), len(commands))
	}
}

// TestHelpSaysWhatACommandDoes: relay help COMMAND (and -h) prints the
// same header for every command: its usage line, then what it does, then
// its flags.
func TestHelpSaysWhatACommandDoes(t *testing.T) {
	for _, name := range order {
		t.Run(name, func(t *testing.T) {
			code, out, _ := runCLI(t, "help", name)
			lines := strings.Split(out, "\n")
			if code != 0 || len(lines) < 5 || !strings.HasPrefix(lines[0], "usage: relay "+name) || lines[1] != "" || !strings.HasSuffix(lines[2], ".") || lines[2] == "." {
				t.Errorf("relay help %s: exit %d\n%s", name, code, out)
			}
		})
	}
}
