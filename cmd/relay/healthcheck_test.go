package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/relaydev/relay/internal/testpki"
)

// readyz stands in for the admin API's /readyz: 200 when ready, else 503
// with the API's error body; any other path is 404. It records the
// requests it gets.
type readyz struct {
	ready bool
	delay time.Duration
	got   chan *http.Request
}

func (z *readyz) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	z.got <- r
	time.Sleep(z.delay)
	w.Header().Set("Content-Type", "application/json")
	switch {
	case r.URL.Path != "/readyz":
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"error":"not found"}`)
	case z.ready:
		io.WriteString(w, `{"status":"ready"}`)
	default:
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, `{"error":"not ready: bus, streams or consumers are still starting"}`)
	}
}

// healthConfig writes a relay.yaml whose admin API listens on listen,
// with tls when pair is not nil, and returns its path.
func healthConfig(t *testing.T, listen string, pair *testpki.Pair) string {
	t.Helper()
	yaml := fmt.Sprintf("ingest: {tokens: [t]}\nadmin:\n  listen: %q\n  token: tok\n", listen)
	if pair != nil {
		yaml += fmt.Sprintf("  tls: {cert_file: %s, key_file: %s}\n", pair.CertFile, pair.KeyFile)
	}
	path := filepath.Join(t.TempDir(), "relay.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestHealthcheck(t *testing.T) {
	ca := testpki.NewCA(t, "relay-test")
	serverPair := ca.Server(t, "relay")
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close() // nothing listens there any more
	tests := []struct {
		name   string
		ready  bool
		delay  time.Duration
		tls    bool
		args   func(srv *httptest.Server) []string
		code   int
		path   string // the path asked; "" when no request must arrive
		stdout string // in stdout
		stderr string // in stderr; "" means stderr stays empty
	}{
		{"ready, --url", true, 0, false,
			func(srv *httptest.Server) []string { return []string{"--url", srv.URL + "/readyz"} },
			0, "/readyz", "ready: http://127.0.0.1:", ""},
		{"starting, --url", false, 0, false,
			func(srv *httptest.Server) []string { return []string{"--url", srv.URL + "/readyz"} },
			1, "/readyz", "", "/readyz answered 503: not ready: bus, streams or consumers are still starting\n"},
		{"--url is taken as it is", true, 0, false,
			func(srv *httptest.Server) []string { return []string{"--url", srv.URL + "/elsewhere"} },
			1, "/elsewhere", "", "/elsewhere answered 404: not found\n"},
		{"ready, the admin address from -c", true, 0, false,
			func(srv *httptest.Server) []string {
				return []string{"-c", healthConfig(t, srv.Listener.Addr().String(), nil)}
			},
			0, "/readyz", "/readyz\n", ""},
		{"starting, the admin address from -c", false, 0, false,
			func(srv *httptest.Server) []string {
				return []string{"-c", healthConfig(t, srv.Listener.Addr().String(), nil)}
			},
			1, "/readyz", "", "answered 503: not ready"},
		{"a config listening on 0.0.0.0 is asked on 127.0.0.1", true, 0, false,
			func(srv *httptest.Server) []string {
				_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
				return []string{"-c", healthConfig(t, "0.0.0.0:"+port, nil)}
			},
			0, "/readyz", "ready: http://127.0.0.1:", ""},
		{"https from the config, trusting its cert_file", true, 0, true,
			func(srv *httptest.Server) []string {
				return []string{"-c", healthConfig(t, srv.Listener.Addr().String(), &serverPair)}
			},
			0, "/readyz", "ready: https://127.0.0.1:", ""},
		{"https trusting nothing", true, 0, true,
			func(srv *httptest.Server) []string { return []string{"--url", srv.URL + "/readyz"} },
			1, "", "", "certificate signed by unknown authority"},
		{"no answer in time", true, 500 * time.Millisecond, false,
			func(srv *httptest.Server) []string {
				return []string{"--url", srv.URL + "/readyz", "--timeout", "50ms"}
			},
			1, "/readyz", "", "/readyz: no answer within 50ms\n"},
		{"nothing listening", true, 0, false,
			func(*httptest.Server) []string { return []string{"--url", closed.URL + "/readyz"} },
			1, "", "", "connection refused"},
		{"an argument (exit 1: Docker reserves 2)", true, 0, false,
			func(*httptest.Server) []string { return []string{"now"} },
			1, "", "", `relay healthcheck: unexpected argument "now"`},
		{"a zero --timeout", true, 0, false,
			func(*httptest.Server) []string { return []string{"--timeout", "0s"} },
			1, "", "", "relay healthcheck: --timeout: want a positive duration, not 0s"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			noConfig(t)
			z := &readyz{ready: tc.ready, delay: tc.delay, got: make(chan *http.Request, 10)}
			srv := httptest.NewUnstartedServer(z)            // on 127.0.0.1
			srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake
			if tc.tls {
				srv.TLS = &tls.Config{Certificates: []tls.Certificate{serverPair.TLSCert(t)}}
				srv.StartTLS()
			} else {
				srv.Start()
			}
			defer srv.Close()
			args := tc.args(srv)
			code, out, errOut := runCLI(t, append([]string{"healthcheck"}, args...)...)
			if code != tc.code || !strings.Contains(out, tc.stdout) || !strings.Contains(errOut, tc.stderr) || (tc.stderr == "") != (errOut == "") {
				t.Errorf("exit %d, stdout %q, stderr %q; want %d, %q, %q", code, out, errOut, tc.code, tc.stdout, tc.stderr)
			}
			wrongUse := strings.HasPrefix(errOut, "relay healthcheck: ") // with the flags
			if code == 1 && !wrongUse && strings.Count(errOut, "\n") != 1 {
				t.Errorf("stderr %q: want one line", errOut)
			}
			checkProbe(t, z.got, tc.path)
		})
	}
}

// checkProbe checks that one GET of path arrived, with no token, or none
// when path is "".
func checkProbe(t *testing.T, got chan *http.Request, path string) {
	t.Helper()
	select {
	case r := <-got:
		if path == "" || r.Method != http.MethodGet || r.URL.Path != path || r.Header.Get("Authorization") != "" {
			t.Errorf("request %s %s (Authorization %q), want GET %q without a token", r.Method, r.URL.Path, r.Header.Get("Authorization"), path)
		}
	default:
		if path != "" {
			t.Errorf("no request arrived, want GET %s", path)
		}
	}
}
