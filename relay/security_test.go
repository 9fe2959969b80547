package relay_test

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relaydev/relay/connectors/salesforce/sftest"
	"github.com/relaydev/relay/relay/api"
	"github.com/relaydev/relay/relay/store"
)

// rawResponse is what one HTTP request got back, byte for byte.
type rawResponse struct {
	status int
	header http.Header
	body   []byte
}

func doRaw(t *testing.T, method, url string, header http.Header, body string) rawResponse {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the answer: %v", method, url, err)
	}
	return rawResponse{resp.StatusCode, resp.Header, data}
}

// TestAuthRefusals: every authenticated route of both APIs refuses a
// request without the right bearer token in the Authorization header, with
// one and the same answer whatever was wrong, and does nothing for it.
func TestAuthRefusals(t *testing.T) {
	r := newReceiver(t, secretA)
	n := startRelay(t, baseYAML(t.TempDir())+"destinations:\n"+destYAML("hook", r.srv.URL, secretA, ""))
	activityBody := `{"type":"pageview"}`
	routes := []struct {
		name, method, url, body, token string
	}{
		{"ingest", "POST", n.ingest + "/v1/activities", activityBody, ingestToken},
		{"destinations", "GET", n.admin + "/v1/destinations", "", adminToken},
		{"pause", "POST", n.admin + "/v1/destinations/hook/pause", "", adminToken},
		{"resume", "POST", n.admin + "/v1/destinations/hook/resume", "", adminToken},
		{"deadletters", "GET", n.admin + "/v1/deadletters", "", adminToken},
		{"replay", "POST", n.admin + "/v1/replay", `{"destination":"hook","history":true}`, adminToken},
		{"metrics", "GET", n.admin + "/metrics", "", adminToken},
	}
	other := map[string]string{ingestToken: adminToken, adminToken: ingestToken}
	var first *rawResponse
	for _, rt := range routes {
		cases := []struct {
			name   string
			header http.Header
			query  string
		}{
			{"no Authorization", nil, ""},
			{"wrong token", http.Header{"Authorization": {"Bearer wrong-" + rt.token}}, ""},
			{"the other API's token", http.Header{"Authorization": {"Bearer " + other[rt.token]}}, ""},
			{"a prefix of the token", http.Header{"Authorization": {"Bearer " + rt.token[:len(rt.token)-1]}}, ""},
			{"the token and more", http.Header{"Authorization": {"Bearer " + rt.token + "x"}}, ""},
			{"Bearer with an empty token", http.Header{"Authorization": {"Bearer "}}, ""},
			{"Bearer alone", http.Header{"Authorization": {"Bearer"}}, ""},
			{"Basic scheme", http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte("relay:"+rt.token))}}, ""},
			{"Basic with the bare token", http.Header{"Authorization": {"Basic " + rt.token}}, ""},
			{"the token without a scheme", http.Header{"Authorization": {rt.token}}, ""},
			{"token in another header", http.Header{"X-Api-Key": {rt.token}, "Token": {rt.token}}, ""},
			{"?token=", nil, "?token=" + rt.token},
			{"?access_token=", nil, "?access_token=" + rt.token},
			{"?access_token= and an empty Bearer", http.Header{"Authorization": {"Bearer "}}, "?access_token=" + rt.token},
		}
		for _, tc := range cases {
			t.Run(rt.name+"/"+tc.name, func(t *testing.T) {
				got := doRaw(t, rt.method, rt.url+tc.query, tc.header, rt.body)
				if got.status != http.StatusUnauthorized {
					t.Fatalf("status %d: %s", got.status, got.body)
				}
				if got.header.Get("WWW-Authenticate") != `Bearer realm="relay"` {
					t.Errorf("WWW-Authenticate = %q", got.header.Get("WWW-Authenticate"))
				}
				if first == nil {
					first = &got
					return
				}
				if !bytes.Equal(got.body, first.body) || got.header.Get("Content-Type") != first.header.Get("Content-Type") {
					t.Errorf("answer %q differs from the first refusal's %q", got.body, first.body)
				}
			})
		}
	}
	if first == nil || !strings.Contains(string(first.body), "bearer token") {
		t.Fatalf("refusal body = %v", first)
	}
	// Nothing was ingested, paused, replayed: the right token still works
	// and finds a clean slate.
	d := n.destinations()["hook"]
	if d.State != store.StateActive || d.Pending != 0 || d.Delivered != 0 {
		t.Errorf("after the refusals: %+v", d)
	}
	if got := r.delivered(); len(got) != 0 {
		t.Errorf("the receiver got %v", got)
	}
	for _, rt := range routes {
		if rt.name == "pause" {
			continue // leave the destination running
		}
		got := doRaw(t, rt.method, rt.url, http.Header{"Authorization": {"Bearer " + rt.token}}, rt.body)
		if got.status >= 300 {
			t.Errorf("%s with the right token: %d %s", rt.name, got.status, got.body)
		}
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if got := doRaw(t, "GET", n.admin+path, nil, ""); got.status != http.StatusOK {
			t.Errorf("%s without a token: %d", path, got.status)
		}
	}
}

// Recognisable secrets: none of them, nor their key material, may appear
// in an API answer or a log line.
var (
	leakWebhookKey = "LEAKCANARY-webhook-signing-key-1"
	leakWebhook    = "whsec_" + base64.StdEncoding.EncodeToString([]byte(leakWebhookKey))
	leakRotated    = "whsec_" + base64.StdEncoding.EncodeToString([]byte("LEAKCANARY-webhook-signing-key-2"))
	leakSF         = "LEAKCANARY-salesforce-client-secret"
	leakIngest     = "LEAKCANARY-ingest-token"
	leakAdmin      = "LEAKCANARY-admin-token"
	leakURLUser    = "LEAKCANARY-url-password"
	leakURLQuery   = "LEAKCANARY-url-query-token"
	leakHeader     = "LEAKCANARY-custom-header"
)

// syncBuffer is a log destination safe for concurrent writers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestNoSecretLeaks runs Relay with recognisable secrets everywhere
// (webhook secrets, a Salesforce client secret, both API tokens, a URL's
// password and query token, a custom header), makes every delivery fail
// until it is a dead letter, calls every admin route and error path, and
// finds none of the secrets in any answer or in the debug log.
func TestNoSecretLeaks(t *testing.T) {
	t.Setenv("LEAK_SF_SECRET", leakSF)
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
		io.WriteString(w, "receiver is down")
	}))
	defer failing.Close()
	// A receiver that takes everything: its deliveries are what the
	// debug log records of each attempt.
	accepting := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}))
	defer accepting.Close()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close() // nothing listens: connection refused
	org := sftest.New(t, sftest.WithClient("client-id", "the-real-secret"))
	yaml := fmt.Sprintf(`nats: {url: embedded, data_dir: %q}
ingest: {listen: "127.0.0.1:0", tokens: [%q]}
admin: {listen: "127.0.0.1:0", token: %q}
destinations:
  - name: hook
    type: webhook
    url: %s/hook
    allow_private_network: true
    secrets: [%q, %q]
    headers: {Authorization: "Bearer %s"}
    timeout: 2s
    retry: {schedule: [10ms]}
  - name: accepted
    type: webhook
    url: %s/hook?token=%s
    allow_private_network: true
    secrets: [%q]
    headers: {Authorization: "Bearer %s"}
  - name: refused
    type: webhook
    url: "http://relay:%s@%s/hook?token=%s"
    allow_private_network: true
    secrets: [%q]
    timeout: 2s
    retry: {schedule: [10ms]}
  - name: sf
    type: salesforce
    allow_private_network: true
    instance_url: %s
    auth: {token_url: %s, client_id: client-id, client_secret: "${LEAK_SF_SECRET}"}
    object: Activity__c
    external_id_field: Relay_Id__c
    fields: {Relay_Id__c: id, Type__c: name}
    batch_wait: 20ms
    retry: {schedule: [10ms]}
  - name: sf-unreachable
    type: salesforce
    allow_private_network: true
    instance_url: "http://relay:%s@%s"
    auth: {token_url: "http://relay:%s@%s/token?key=%s", client_id: client-id, client_secret: "${LEAK_SF_SECRET}"}
    object: Activity__c
    external_id_field: Relay_Id__c
    fields: {Relay_Id__c: id}
    batch_wait: 20ms
    retry: {schedule: [10ms]}
`, t.TempDir(), leakIngest, leakAdmin, failing.URL, leakWebhook, leakRotated, leakHeader,
		accepting.URL, leakURLQuery, leakWebhook, leakHeader,
		leakURLUser, closedAddr, leakURLQuery, leakWebhook, org.URL, org.TokenURL(),
		leakURLUser, closedAddr, leakURLUser, closedAddr, leakURLQuery)
	var logs syncBuffer
	n := startLogged(t, yaml, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))

	var answers []string
	call := func(method, url, token, body string) rawResponse {
		t.Helper()
		h := http.Header{"Content-Type": {"application/json"}}
		if token != "" {
			h.Set("Authorization", "Bearer "+token)
		}
		got := doRaw(t, method, url, h, body)
		answers = append(answers, fmt.Sprintf("%s %s -> %d %v %s", method, strings.Split(url, "?")[0], got.status, got.header, got.body))
		return got
	}
	if got := call("POST", n.ingest+"/v1/activities", leakIngest, `[{"type":"email","action":"open"},{"type":"pageview"}]`); got.status != http.StatusAccepted {
		t.Fatalf("ingest: %d %s", got.status, got.body)
	}
	waitFor(t, 60*time.Second, "every delivery to be a dead letter", func() bool {
		ds := n.destinationsWith(leakAdmin)
		return ds["hook"].DeadLettered == 2 && ds["refused"].DeadLettered == 2 && ds["sf"].DeadLettered == 2 && ds["sf-unreachable"].DeadLettered == 2
	})
	admin := func(method, path, body string) rawResponse {
		t.Helper()
		return call(method, n.admin+path, leakAdmin, body)
	}
	wantStatus := []struct {
		method, path, body string
		status             int
	}{
		{"GET", "/v1/destinations", "", 200},
		{"GET", "/v1/deadletters", "", 200},
		{"GET", "/v1/deadletters?destination=hook&limit=1", "", 200},
		{"GET", "/v1/deadletters?destination=refused", "", 200},
		{"GET", "/v1/deadletters?destination=sf", "", 200},
		{"GET", "/v1/deadletters?destination=nope", "", 404},
		{"GET", "/v1/deadletters?limit=lots", "", 400},
		{"GET", "/v1/deadletters?cursor=" + leakAdmin, "", 400},
		{"POST", "/v1/destinations/hook/pause", "", 200},
		{"POST", "/v1/destinations/hook/resume", "", 200},
		{"POST", "/v1/destinations/nope/pause", "", 404},
		{"POST", "/v1/replay", `{`, 400},
		{"POST", "/v1/replay", `{"destination":"hook","secret":"x"}`, 400},
		{"POST", "/v1/replay", `{}`, 400},
		{"POST", "/v1/replay", `{"destination":"nope"}`, 404},
		{"POST", "/v1/replay", `{"destination":"hook","activity":"Not A Pattern"}`, 400},
		{"POST", "/v1/replay", `{"destination":"sf","since":"soon"}`, 400},
		{"POST", "/v1/replay", `{"destination":"refused"}`, 200},
		{"POST", "/v1/replay", `{"destination":"sf","history":true}`, 200},
		{"GET", "/metrics", "", 200},
		{"GET", "/healthz", "", 200},
		{"GET", "/readyz", "", 200},
		{"GET", "/v1/nothing-here", "", 404},
	}
	for _, w := range wantStatus {
		if got := admin(w.method, w.path, w.body); got.status != w.status {
			t.Errorf("%s %s: %d %s, want %d", w.method, w.path, got.status, got.body, w.status)
		}
	}
	for _, bad := range []string{`{"type":"email","action":"teleport"}`, `{"type":`, `[]`} {
		call("POST", n.ingest+"/v1/activities", leakIngest, bad)
	}
	call("POST", n.ingest+"/v1/activities", "", `{"type":"pageview"}`)
	call("GET", n.admin+"/v1/destinations", leakIngest, "")
	waitFor(t, 60*time.Second, "the replayed dead letters to fail again", func() bool {
		ds := n.destinationsWith(leakAdmin)
		return ds["refused"].DeadLettered == 2 && ds["refused"].Pending == 0 && ds["sf"].DeadLettered == 2 && ds["sf"].Pending == 0
	})
	dls := admin("GET", "/v1/deadletters", "")
	for _, want := range []string{"status 500", "receiver is down", "refused", "get token"} {
		if !strings.Contains(string(dls.body), want) {
			t.Errorf("dead letters lack %q, so the failures were not what this test means: %s", want, dls.body)
		}
	}
	n.stop()
	out := strings.Join(answers, "\n") + "\n" + logs.String()
	if !strings.Contains(logs.String(), "level=DEBUG") {
		t.Errorf("the debug log is empty: %s", logs.String())
	}
	for _, secret := range []string{leakWebhook, leakWebhook[6:], leakWebhookKey, leakRotated, leakRotated[6:], leakSF, leakIngest, leakAdmin, leakURLUser, leakURLQuery, leakHeader, "LEAKCANARY"} {
		if i := strings.Index(out, secret); i >= 0 {
			t.Errorf("%q appears: …%s…", secret, out[max(0, i-200):min(len(out), i+len(secret)+50)])
		}
	}
}

// destinationsWith is node.destinations with another admin token.
func (n *node) destinationsWith(token string) map[string]api.DestinationStatus {
	n.t.Helper()
	status, out := doJSON(n.t, "GET", n.admin+"/v1/destinations", token, "")
	if status != http.StatusOK {
		n.t.Fatalf("destinations: %d %v", status, out)
	}
	var list struct {
		Destinations []api.DestinationStatus `json:"destinations"`
	}
	remarshal(n.t, out, &list)
	m := map[string]api.DestinationStatus{}
	for _, d := range list.Destinations {
		m[d.Name] = d
	}
	return m
}

// limitsYAML is baseYAML with ingest.max_body set.
func limitsYAML(t *testing.T, r *receiver, maxBody string) string {
	base := strings.Replace(baseYAML(t.TempDir()), "]}", "], max_body: "+maxBody+"}", 1)
	return base + "destinations:\n" + destYAML("hook", r.srv.URL, secretA, "")
}

// TestSlowClientsCut: a client that trickles its request line and headers
// a byte at a time has its connection closed by the server once the header
// timeout (5s) passes, on both APIs; the trickle would last far longer.
func TestSlowClientsCut(t *testing.T) {
	r := newReceiver(t, secretA)
	n := startRelay(t, baseYAML(t.TempDir())+"destinations:\n"+destYAML("hook", r.srv.URL, secretA, ""))
	for name, addr := range map[string]string{"ingest": n.ingest, "admin": n.admin} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			conn, err := net.Dial("tcp", strings.TrimPrefix(addr, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			closed := make(chan error, 1)
			go func() {
				_, err := io.Copy(io.Discard, conn) // returns once the server closes
				closed <- err
			}()
			request := "POST /v1/activities HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer " + ingestToken + "\r\nX-Slow: " + strings.Repeat("a", 200)
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			start := time.Now()
			for i := 0; ; i++ {
				if i == len(request) {
					t.Fatalf("the server read a %d-byte trickle over %s without closing", i, time.Since(start))
				}
				select {
				case <-closed:
					took := time.Since(start)
					t.Logf("closed after %s and %d bytes", took, i)
					if took > 15*time.Second {
						t.Errorf("closed only after %s", took)
					}
					return
				case <-tick.C:
					if _, err := conn.Write([]byte{request[i]}); err != nil {
						return // closed under us: what we wanted
					}
				}
			}
		})
	}
}

// TestOversizedHeaders: more than 64 KiB of headers is refused with 431 on
// both APIs, before any handler runs.
func TestOversizedHeaders(t *testing.T) {
	r := newReceiver(t, secretA)
	n := startRelay(t, baseYAML(t.TempDir())+"destinations:\n"+destYAML("hook", r.srv.URL, secretA, ""))
	tests := []struct {
		name, url, token string
	}{
		{"ingest", n.ingest + "/v1/activities", ingestToken},
		{"admin", n.admin + "/v1/replay", adminToken},
	}
	for _, tc := range tests {
		for _, size := range []int{80 << 10, 1 << 20} {
			t.Run(fmt.Sprintf("%s/%dKiB", tc.name, size>>10), func(t *testing.T) {
				h := http.Header{"Authorization": {"Bearer " + tc.token}, "X-Pad": {strings.Repeat("p", size)}}
				got := doRaw(t, "POST", tc.url, h, `{"type":"pageview"}`)
				if got.status != http.StatusRequestHeaderFieldsTooLarge {
					t.Errorf("status = %d %s, want 431", got.status, got.body)
				}
			})
		}
	}
	if d := n.destinations()["hook"]; d.Pending != 0 || len(r.delivered()) != 0 {
		t.Errorf("an activity got through: %+v", d)
	}
}

// endless is an endless JSON-looking body, at most limit bytes, counting
// what was read from it.
type endless struct {
	limit int64
	n     atomic.Int64
}

func (e *endless) Read(p []byte) (int, error) {
	left := e.limit - e.n.Load()
	if left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > left {
		p = p[:left]
	}
	for i := range p {
		p[i] = ' '
	}
	e.n.Add(int64(len(p)))
	return len(p), nil
}

// TestOversizedBodiesCut: a body far over the limit is not read whole: the
// 413 (or the 401, without a token) arrives while the client is still
// sending, and the client cannot push more than the limit plus what socket
// buffers hold before the server hangs up. Both a declared length and a
// chunked body, to ingest and to the admin replay route.
func TestOversizedBodiesCut(t *testing.T) {
	r := newReceiver(t, secretA)
	n := startRelay(t, limitsYAML(t, r, "64KiB"))
	const gib = 1 << 30
	tests := []struct {
		name, addr, path, token string
		chunked                 bool
		status                  int
	}{
		{"ingest, Content-Length", n.ingest, "/v1/activities", ingestToken, false, http.StatusRequestEntityTooLarge},
		{"ingest, chunked", n.ingest, "/v1/activities", ingestToken, true, http.StatusRequestEntityTooLarge},
		{"ingest without a token", n.ingest, "/v1/activities", "", false, http.StatusUnauthorized},
		{"admin replay, Content-Length", n.admin, "/v1/replay", adminToken, false, http.StatusRequestEntityTooLarge},
		{"admin replay, chunked", n.admin, "/v1/replay", adminToken, true, http.StatusRequestEntityTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", strings.TrimPrefix(tc.addr, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			head := "POST " + tc.path + " HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\n"
			if tc.token != "" {
				head += "Authorization: Bearer " + tc.token + "\r\n"
			}
			body := &endless{limit: gib}
			var src io.Reader = body
			if tc.chunked {
				head += "Transfer-Encoding: chunked\r\n\r\n"
				src = &chunker{r: body}
			} else {
				head += fmt.Sprintf("Content-Length: %d\r\n\r\n", gib)
			}
			if _, err := io.WriteString(conn, head); err != nil {
				t.Fatal(err)
			}
			sent := make(chan error, 1)
			go func() {
				_, err := io.Copy(conn, src) // until the server hangs up, or 1 GiB
				sent <- err
			}()
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatalf("no answer while sending: %v (after %d bytes)", err, body.n.Load())
			}
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Errorf("status = %d, want %d", resp.StatusCode, tc.status)
			}
			conn.(*net.TCPConn).CloseRead()
			select {
			case err := <-sent:
				if err == nil {
					t.Errorf("the whole 1 GiB body was sent")
				}
			case <-time.After(30 * time.Second):
				t.Fatalf("still sending after 30s: %d bytes", body.n.Load())
			}
			if got := body.n.Load(); got > 64<<20 {
				t.Errorf("the client pushed %d bytes past a 64 KiB limit", got)
			} else {
				t.Logf("the client pushed %d bytes before the server hung up", got)
			}
		})
	}
	if len(r.delivered()) != 0 {
		t.Errorf("something was delivered: %v", r.delivered())
	}
}

// chunker writes what it reads as HTTP/1.1 chunks of 32 KiB.
type chunker struct {
	r    io.Reader
	buf  []byte
	done bool
}

func (c *chunker) Read(p []byte) (int, error) {
	if len(c.buf) == 0 {
		if c.done {
			return 0, io.EOF
		}
		chunk := make([]byte, 32<<10)
		n, err := io.ReadFull(c.r, chunk)
		if n > 0 {
			c.buf = fmt.Appendf(nil, "%x\r\n%s\r\n", n, chunk[:n])
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			c.done = true
			c.buf = append(c.buf, "0\r\n\r\n"...)
		} else if err != nil {
			return 0, err
		}
	}
	n := copy(p, c.buf)
	c.buf = c.buf[n:]
	return n, nil
}

// TestMalformedBodiesRefused: bodies the fast decoder once let through
// (trailing bytes after the JSON) are refused like any malformed body.
func TestMalformedBodiesRefused(t *testing.T) {
	r := newReceiver(t, secretA)
	n := startRelay(t, baseYAML(t.TempDir())+"destinations:\n"+destYAML("hook", r.srv.URL, secretA, ""))
	for _, body := range []string{`{"type":"pageview"}}`, `[{"type":"pageview"}]]`, `{"type":"pageview"}]`, `[{"type":"pageview"}]}`, `{"type":"pageview"} {"type":"pageview"}`} {
		t.Run(body, func(t *testing.T) {
			status, out := n.post(body, ingestToken)
			if status != http.StatusBadRequest || !strings.Contains(fmt.Sprint(out["error"]), "malformed JSON") {
				t.Errorf("%d %v, want 400 malformed JSON", status, out)
			}
		})
	}
	if d := n.destinations()["hook"]; d.Pending != 0 || len(r.delivered()) != 0 {
		t.Errorf("a malformed body was accepted: %+v", d)
	}
}
