package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
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

func TestUsage(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		code     int
		inStdout string
		inStderr string
	}{
		{"no args", nil, 2, "", "deadletters [--destination D]"},
		{"help", []string{"help"}, 0, "verify --secret S", ""},
		{"help for a command", []string{"help", "replay"}, 0, "", "-destination"},
		{"unknown command", []string{"frobnicate"}, 2, "", `relay: unknown command "frobnicate"`},
		{"unknown flag", []string{"activities", "--bogus"}, 2, "", "flag provided but not defined: -bogus"},
		{"pause without a name", []string{"pause"}, 2, "", "name one destination"},
		{"pause two names", []string{"pause", "a", "b"}, 2, "", "name one destination, not several"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, tc.args...)
			if code != tc.code || !strings.Contains(out, tc.inStdout) || !strings.Contains(errOut, tc.inStderr) {
				t.Errorf("exit %d, stdout %q, stderr %q; want %d, %q, %q", code, out, errOut, tc.code, tc.inStdout, tc.inStderr)
			}
			if strings.Contains(errOut, "relay: usage") || strings.Count(errOut, "flag provided") > 1 {
				t.Errorf("a usage error is reported twice: %q", errOut)
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
