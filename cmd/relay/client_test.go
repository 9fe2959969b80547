package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/relaydev/relay/relay/api"
)

// noConfig runs the test where the default ./relay.yaml does not exist
// and $RELAY_CONFIG is unset, so defaults come from flags alone.
func noConfig(t *testing.T) {
	t.Helper()
	t.Chdir(t.TempDir())
	t.Setenv("RELAY_CONFIG", "")
}

const deadLetterA1 = `{"id":"a1","destination":"crm","activity":{"id":"a1","name":"email.open"},"attempts":[{"at":"2026-11-22T10:00:00Z","status":503,"error":"status 503:\nreceiver down","latency_ms":3},{"at":"2026-11-22T10:00:02Z","status":503,"error":"status 503: still down","latency_ms":2}],"dead_at":"2026-11-22T10:01:00Z"}`
const deadLetterA2 = `{"id":"a2","destination":"crm","activity":{"id":"a2","name":"sms.delivered"},"attempts":[{"at":"2026-11-22T11:00:00Z","status":0,"error":"dial tcp: connection refused","latency_ms":1}],"dead_at":"2026-11-22T11:01:00Z"}`

func TestClientCommands(t *testing.T) {
	clock := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	now = func() time.Time { return clock }
	t.Cleanup(func() { now = time.Now })
	tests := []struct {
		name      string
		args      []string
		exchanges []exchange
		code      int
		stdout    []string // each must be in stdout
		stderr    string   // must be in stderr; "" means stderr stays empty
	}{
		{"send canonical name with attributes",
			[]string{"send", "--activity", "email.open", "--email", "ann@example.com", "--attr", "campaign=bf", "--attr", "total=12.5", "--attr", "vip=true", "--attr", "zip=02134"},
			[]exchange{{"POST", "/v1/activities", `{"type":"email","action":"open","contact":{"email":"ann@example.com"},"attributes":{"campaign":"bf","total":12.5,"vip":true,"zip":"02134"}}`, 202, `{"accepted":1,"ids":["01ABC"]}`}},
			0, []string{"accepted 01ABC\n"}, ""},
		{"send Ortto name",
			[]string{"send", "--activity", "Opened email", "--phone", "+15550100"},
			[]exchange{{"POST", "/v1/activities", `{"activity":"Opened email","contact":{"phone":"+15550100"}}`, 202, `{"accepted":1,"ids":["01ABD"]}`}},
			0, []string{"accepted 01ABD\n"}, ""},
		{"send type without action, id and time",
			[]string{"send", "--activity", "pageview", "--contact-id", "c_1", "--id", "x1", "--occurred-at", "2026-11-22T10:00:00Z", "--json"},
			[]exchange{{"POST", "/v1/activities", `{"type":"pageview","id":"x1","occurred_at":"2026-11-22T10:00:00Z","contact":{"id":"c_1"}}`, 202, `{"accepted":1,"ids":["x1"]}`}},
			0, []string{`"accepted": 1`, `"x1"`}, ""},
		{"send unknown activity",
			[]string{"send", "--activity", "email.teleport"},
			[]exchange{{"POST", "/v1/activities", `{"type":"email","action":"teleport"}`, 422, `{"error":"unknown activity","details":[{"index":0,"field":"type","message":"unknown activity \"email.teleport\""}]}`}},
			1, nil, "relay: server said 422: items[0].type: unknown activity \"email.teleport\"\n"},
		{"send with several problems",
			[]string{"send", "--activity", "email.open", "--id", "x y"},
			[]exchange{{"POST", "/v1/activities", `{"type":"email","action":"open","id":"x y"}`, 400, `{"error":"invalid activity","details":[{"index":0,"field":"id","message":"bad id"},{"message":"and more"}]}`}},
			1, nil, "relay: server said 400: invalid activity\n  items[0].id: bad id\n  and more\n"},
		{"send with a wrong token",
			[]string{"send", "--activity", "email.open"},
			[]exchange{{"POST", "/v1/activities", `{"type":"email","action":"open"}`, 401, `{"error":"missing or invalid bearer token"}`}},
			1, nil, "relay: server said 401: missing or invalid bearer token (check --token)\n"},
		{"send through a proxy that fails",
			[]string{"send", "--activity", "email.open"},
			[]exchange{{"POST", "/v1/activities", `{"type":"email","action":"open"}`, 502, "<html>Bad Gateway</html>\n"}},
			1, nil, "relay: server said 502: <html>Bad Gateway</html>\n"},
		{"send with a bad --occurred-at", []string{"send", "--activity", "email.open", "--occurred-at", "yesterday"},
			nil, 2, nil, `relay send: --occurred-at: want an RFC 3339 time`},
		{"send without --activity", []string{"send", "--email", "a@b"}, nil, 2, nil, "relay send: --activity is required"},
		{"deadletters over two pages",
			[]string{"deadletters", "--destination", "crm"},
			[]exchange{
				{"GET", "/v1/deadletters?destination=crm&limit=1000", "", 200, `{"deadletters":[` + deadLetterA1 + `],"next_cursor":"7"}`},
				{"GET", "/v1/deadletters?cursor=7&destination=crm&limit=1000", "", 200, `{"deadletters":[` + deadLetterA2 + `],"next_cursor":""}`},
			},
			0, []string{"ID  DESTINATION  ACTIVITY       ATTEMPTS  LAST ERROR", "a1  crm          email.open     2         status 503: still down        2026-11-22T10:01:00Z", "a2  crm          sms.delivered  1         dial tcp: connection refused", "2 dead letters"}, ""},
		{"deadletters up to a limit",
			[]string{"deadletters", "--limit", "1"},
			[]exchange{{"GET", "/v1/deadletters?limit=1", "", 200, `{"deadletters":[` + deadLetterA1 + `,` + deadLetterA2 + `],"next_cursor":"7"}`}},
			0, []string{"a1  crm", "\nfirst 1 dead letter (--limit 1; there may be more, --limit 0 lists all)\n"}, ""},
		{"deadletters of an unknown destination",
			[]string{"deadletters", "--destination", "nope"},
			[]exchange{{"GET", "/v1/deadletters?destination=nope&limit=1000", "", 404, `{"error":"unknown destination \"nope\""}`}},
			1, nil, "relay: server said 404: unknown destination \"nope\"\n"},
		{"deadletters from a server that repeats its cursor",
			[]string{"deadletters"},
			[]exchange{
				{"GET", "/v1/deadletters?limit=1000", "", 200, `{"deadletters":[],"next_cursor":"7"}`},
				{"GET", "/v1/deadletters?cursor=7&limit=1000", "", 200, `{"deadletters":[],"next_cursor":"7"}`},
			},
			1, nil, `the server returned cursor "7" twice`},
		{"replay dead letters, filtered",
			[]string{"replay", "--destination", "crm", "--since", "2h", "--until", "2026-11-22T11:30:00Z", "--activity", "email.*", "--id", "a1", "--id", "a2"},
			[]exchange{{"POST", "/v1/replay", `{"destination":"crm","since":"2026-11-22T10:00:00Z","until":"2026-11-22T11:30:00Z","activity":"email.*","ids":["a1","a2"]}`, 200, `{"replayed":2}`}},
			0, []string{"replayed 2\n"}, ""},
		{"replay history",
			[]string{"replay", "--destination", "crm", "--history", "--json"},
			[]exchange{{"POST", "/v1/replay", `{"destination":"crm","history":true}`, 200, `{"replayed":7}`}},
			0, []string{`"replayed": 7`}, ""},
		{"replay with a bad --since", []string{"replay", "--destination", "crm", "--since", "last week"}, nil, 2, nil, `relay replay: --since: want a duration like 2h or an RFC 3339 time, got "last week"`},
		{"replay without --destination", []string{"replay", "--since", "2h"}, nil, 2, nil, "relay replay: --destination is required\n"},
		{"pause",
			[]string{"pause", "crm"},
			[]exchange{{"POST", "/v1/destinations/crm/pause", "", 200, `{"name":"crm","state":"paused"}`}},
			0, []string{"crm: paused\n"}, ""},
		{"resume",
			[]string{"resume", "crm"},
			[]exchange{{"POST", "/v1/destinations/crm/resume", "", 200, `{"name":"crm","state":"active"}`}},
			0, []string{"crm: active\n"}, ""},
		{"resume an unknown destination",
			[]string{"resume", "nope"},
			[]exchange{{"POST", "/v1/destinations/nope/resume", "", 404, `{"error":"unknown destination \"nope\""}`}},
			1, nil, "relay: server said 404: unknown destination \"nope\"\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := newFakeAPI(t, "tok", tc.exchanges...)
			noConfig(t)
			args := append(tc.args, "--server", srv.URL+"/", "--token", "tok")
			code, out, errOut := runCLI(t, args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d; stderr %q", code, tc.code, errOut)
			}
			for _, want := range tc.stdout {
				if !strings.Contains(out, want) {
					t.Errorf("stdout %q lacks %q", out, want)
				}
			}
			if tc.stderr == "" && errOut != "" || !strings.Contains(errOut, tc.stderr) {
				t.Errorf("stderr %q, want %q", errOut, tc.stderr)
			}
		})
	}
}

func TestDeadLettersJSON(t *testing.T) {
	srv := newFakeAPI(t, "tok",
		exchange{"GET", "/v1/deadletters?limit=1000", "", 200, `{"deadletters":[` + deadLetterA1 + `],"next_cursor":"9"}`},
		exchange{"GET", "/v1/deadletters?cursor=9&limit=1000", "", 200, `{"deadletters":[` + deadLetterA2 + `],"next_cursor":""}`})
	noConfig(t)
	code, out, errOut := runCLI(t, "deadletters", "--json", "--server", srv.URL, "--token", "tok")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var doc struct {
		DeadLetters []struct {
			ID       string         `json:"id"`
			Activity map[string]any `json:"activity"`
			Attempts []api.Attempt  `json:"attempts"`
		} `json:"deadletters"`
	}
	dec := json.NewDecoder(strings.NewReader(out))
	if err := dec.Decode(&doc); err != nil || dec.More() {
		t.Fatalf("stdout is not one JSON document (%v): %s", err, out)
	}
	if len(doc.DeadLetters) != 2 || doc.DeadLetters[1].ID != "a2" || doc.DeadLetters[0].Activity["name"] != "email.open" || len(doc.DeadLetters[0].Attempts) != 2 {
		t.Errorf("got %+v", doc)
	}
}

// TestClientDefaults checks where the server and token come from when
// --server or --token is not given: the config, else the environment.
func TestClientDefaults(t *testing.T) {
	ingest := newFakeAPI(t, "cfg-ingest",
		exchange{"POST", "/v1/activities", `{"type":"email","action":"open"}`, 202, `{"accepted":1,"ids":["i1"]}`},
		exchange{"POST", "/v1/activities", `{"type":"email","action":"open"}`, 202, `{"accepted":1,"ids":["i2"]}`})
	admin := newFakeAPI(t, "cfg-admin",
		exchange{"POST", "/v1/destinations/crm/pause", "", 200, `{"state":"paused"}`})
	flagToken := newFakeAPI(t, "flag-token",
		exchange{"POST", "/v1/destinations/crm/resume", "", 200, `{"state":"active"}`})
	envToken := newFakeAPI(t, "env-admin",
		exchange{"POST", "/v1/destinations/crm/resume", "", 200, `{"state":"active"}`})
	cfg := filepath.Join(t.TempDir(), "relay.yaml")
	yaml := "ingest: {listen: " + strings.TrimPrefix(ingest.URL, "http://") + ", tokens: [cfg-ingest]}\n" +
		"admin: {listen: " + strings.TrimPrefix(admin.URL, "http://") + ", token: cfg-admin}\n" +
		"destinations:\n  - {name: crm, type: webhook, url: 'https://crm.example/hook', secrets: ['whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'], include: ['email.*']}\n"
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("RELAY_ADMIN_TOKEN", "env-admin")
	t.Chdir(t.TempDir()) // no ./relay.yaml
	tests := []struct {
		name string
		env  string // $RELAY_CONFIG
		args []string
		out  string
	}{
		{"send: ingest address and first token from -c", "", []string{"send", "--activity", "email.open", "-c", cfg}, "accepted i1"},
		{"send: config from $RELAY_CONFIG", cfg, []string{"send", "--activity", "email.open"}, "accepted i2"},
		{"pause: admin address and token from the config", cfg, []string{"pause", "crm"}, "crm: paused"},
		{"--token wins over the config", cfg, []string{"resume", "crm", "--server", flagToken.URL, "--token", "flag-token"}, "crm: active"},
		{"no config: token from $RELAY_ADMIN_TOKEN", "", []string{"resume", "crm", "--server", envToken.URL}, "crm: active"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("RELAY_CONFIG", tc.env)
			code, out, errOut := runCLI(t, tc.args...)
			if code != 0 || !strings.Contains(out, tc.out) || errOut != "" {
				t.Errorf("exit %d, stdout %q, stderr %q; want %q", code, out, errOut, tc.out)
			}
		})
	}
}

func TestBrokenConfigIsReported(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "relay.yaml")
	if err := os.WriteFile(cfg, []byte("ingest: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := newFakeAPI(t, "tok", exchange{"POST", "/v1/destinations/crm/pause", "", 200, `{"state":"paused"}`})
	code, _, errOut := runCLI(t, "pause", "crm", "-c", cfg, "--server", srv.URL, "--token", "tok")
	if code != 0 || errOut != "" {
		t.Errorf("with --server and --token the config is not needed: exit %d, stderr %q", code, errOut)
	}
	t.Setenv("RELAY_ADMIN_TOKEN", "tok")
	srv = newFakeAPI(t, "tok", exchange{"POST", "/v1/destinations/crm/pause", "", 200, `{"state":"paused"}`})
	code, _, errOut = runCLI(t, "pause", "crm", "-c", cfg, "--server", srv.URL)
	if code != 0 || !strings.Contains(errOut, "relay: not using "+cfg+" for the server and token: "+cfg+":") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
}

func TestUnreachableServer(t *testing.T) {
	srv := newFakeAPI(t, "tok")
	addr := srv.URL
	srv.Close() // nothing listens there now
	noConfig(t)
	code, _, errOut := runCLI(t, "pause", "crm", "--server", addr, "--token", "tok")
	if code != 1 || !strings.Contains(errOut, `relay: Post "`+addr+`/v1/destinations/crm/pause"`) || !strings.Contains(errOut, "is relay serve running there?") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
}

func TestDialAddr(t *testing.T) {
	tests := []struct{ listen, want string }{
		{":8080", "127.0.0.1:8080"},
		{"0.0.0.0:8081", "127.0.0.1:8081"},
		{"[::]:8081", "127.0.0.1:8081"},
		{"127.0.0.1:9", "127.0.0.1:9"},
		{"relay.internal:8080", "relay.internal:8080"},
		{"[::1]:8080", "[::1]:8080"},
	}
	for _, tc := range tests {
		t.Run(tc.listen, func(t *testing.T) {
			if got := dialAddr(tc.listen); got != tc.want {
				t.Errorf("dialAddr(%q) = %q, want %q", tc.listen, got, tc.want)
			}
		})
	}
}
