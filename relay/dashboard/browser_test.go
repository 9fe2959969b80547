package dashboard_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/relaydev/relay/config"
	"github.com/relaydev/relay/connectors/salesforce"
	"github.com/relaydev/relay/connectors/salesforce/sftest"
	"github.com/relaydev/relay/connectors/webhook"
	"github.com/relaydev/relay/relay"
	"github.com/relaydev/relay/relay/sink"
)

const (
	adminToken  = "dashboard-admin-token-4f1c9a"
	ingestToken = "dashboard-ingest-token"
	hookSecret  = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	hookSecret2 = "whsec_ZGVtby1zZWNyZXQtZm9yLXRoZS1leGFtcGxlLXJlY2VpdmVy"
	sfSecret    = "sf-client-secret-7d2e5b"
)

// secrets are the values no page, asset or API answer may show.
var secrets = []string{adminToken, ingestToken, hookSecret, hookSecret2, sfSecret,
	strings.TrimPrefix(hookSecret, "whsec_"), strings.TrimPrefix(hookSecret2, "whsec_")}

// receiver is a webhook endpoint on 127.0.0.1 that answers 503 while
// failing is set and keeps the webhook-id of what it accepted.
type receiver struct {
	*httptest.Server
	failing atomic.Bool
	mu      sync.Mutex
	got     map[string]int
}

func newReceiver(t *testing.T) *receiver {
	rc := &receiver{got: map[string]int{}}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if rc.failing.Load() {
			http.Error(w, "receiver is down for maintenance", http.StatusServiceUnavailable)
			return
		}
		rc.mu.Lock()
		rc.got[r.Header.Get("webhook-id")]++
		rc.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) has(id string) bool {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.got[id] > 0
}

// startRelay runs a real Relay (embedded NATS, random ports) with five
// destinations: two webhooks that work, one whose receiver fails, one
// whose receiver is down and whose breaker opens after two failures, and
// a Salesforce org.
func startRelay(t *testing.T, ok, billing, down *receiver, sf *sftest.Server) (adminURL, ingestURL string) {
	t.Helper()
	return startRelayOn(t, fmt.Sprintf("{url: embedded, data_dir: %q}", t.TempDir()), ok, billing, down, sf)
}

// startRelayOn is startRelay on the NATS nats (relay.yaml's nats: value).
func startRelayOn(t *testing.T, nats string, ok, billing, down *receiver, sf *sftest.Server) (adminURL, ingestURL string) {
	t.Helper()
	yaml := fmt.Sprintf(`nats: %s
ingest: {listen: "127.0.0.1:0", tokens: [%q]}
admin: {listen: "127.0.0.1:0", token: %q}
destinations:
  - name: crm-hook
    type: webhook
    url: %s/crm
    secrets: [%q, %q]
    allow_private_network: true
    include: ["email.*"]
  - name: analytics
    type: webhook
    url: %s/analytics
    secrets: [%q]
    allow_private_network: true
  - name: billing
    type: webhook
    url: %s/billing
    secrets: [%q]
    allow_private_network: true
    include: ["order.*"]
    retry: {schedule: [50ms]}
  - name: ledger
    type: webhook
    url: %s/ledger
    secrets: [%q]
    allow_private_network: true
    include: ["order.*", "sms.*"]
    retry: {schedule: [1h]}
    breaker: {failures: 2, window: 1m, probe_every: 1h}
  - name: salesforce
    type: salesforce
    allow_private_network: true
    instance_url: %s
    auth: {token_url: %s, client_id: client-id, client_secret: %q}
    object: Activity__c
    external_id_field: Relay_Id__c
    fields: {Relay_Id__c: id, Type__c: name, Email__c: contact.email, Occurred_At__c: occurred_at}
    include: ["email.open"]
    batch_wait: 100ms
`, nats, ingestToken, adminToken, ok.URL, hookSecret, hookSecret2, ok.URL, hookSecret, billing.URL, hookSecret, down.URL, hookSecret, sf.URL, sf.TokenURL(), sfSecret)
	cfg, err := config.Parse("relay.yaml", []byte(yaml), os.LookupEnv)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	sinks := map[string]sink.Connector{}
	for _, d := range cfg.Destinations {
		switch d.Type {
		case "salesforce":
			s, err := salesforce.New(d, salesforce.Options{Logger: log})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(s.Close)
			sinks[d.Name] = sink.Batched(s)
		default:
			s, err := webhook.New(d, webhook.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(s.Close)
			sinks[d.Name] = sink.One(s)
		}
	}
	r, err := relay.New(cfg, relay.Options{Sinks: sinks, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("relay did not stop in 30s")
		}
	})
	select {
	case <-r.Started():
	case err := <-done:
		t.Fatalf("relay stopped at start: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("relay did not start in 30s")
	}
	return "http://" + r.AdminAddr(), "http://" + r.IngestAddr()
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// call makes one HTTP request and returns status and body.
func call(t *testing.T, c *http.Client, method, u, token, body string, headers ...string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, data
}

func send(t *testing.T, ingest string, items ...map[string]any) []string {
	t.Helper()
	b, _ := json.Marshal(items)
	status, body := call(t, http.DefaultClient, "POST", ingest+"/v1/activities", ingestToken, string(b), "Content-Type", "application/json")
	if status != http.StatusAccepted {
		t.Fatalf("ingest answered %d: %s", status, body)
	}
	var out struct{ IDs []string }
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatal(err)
	}
	return out.IDs
}

// seriesSums adds up a series' points by outcome.
func seriesSums(t *testing.T, admin, path string) map[string]int {
	t.Helper()
	status, body := call(t, http.DefaultClient, "GET", admin+path, adminToken, "")
	if status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, status, body)
	}
	var s struct {
		Points []map[string]any `json:"points"`
	}
	if err := json.Unmarshal(body, &s); err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, p := range s.Points {
		for _, k := range []string{"delivered", "failed", "dead_letter"} {
			n, _ := p[k].(float64)
			out[k] += int(n)
		}
	}
	return out
}

// seriesOpenSpans is how many open periods of the breaker a series lists.
func seriesOpenSpans(t *testing.T, admin, path string) int {
	t.Helper()
	status, body := call(t, http.DefaultClient, "GET", admin+path, adminToken, "")
	if status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, status, body)
	}
	var s struct {
		BreakerOpen []map[string]any `json:"breaker_open"`
	}
	if err := json.Unmarshal(body, &s); err != nil {
		t.Fatal(err)
	}
	return len(s.BreakerOpen)
}

// apiMissing says whether this Relay lacks an API route: the mux's
// plain-text 404 or the API's "no such endpoint".
func apiMissing(t *testing.T, admin, path string) bool {
	status, body := call(t, http.DefaultClient, "GET", admin+path, adminToken, "")
	return status == http.StatusNotFound && (!bytes.HasPrefix(bytes.TrimSpace(body), []byte("{")) || bytes.Contains(body, []byte(`"no such endpoint`)))
}

func assertNoSecret(t *testing.T, where string, text string) {
	t.Helper()
	for _, s := range secrets {
		if strings.Contains(text, s) {
			t.Errorf("%s shows a secret (%.6s…)", where, s)
		}
	}
}

// browserPath finds a Chromium to drive: $CHROME_PATH, else the usual names.
func browserPath() string {
	if p := os.Getenv("CHROME_PATH"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// noBrowser fails the test under CI and skips it elsewhere.
func noBrowser(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("no browser can start under CI: %s (install chromium)", why)
	}
	t.Skipf("no browser: %s (install chromium to run this test)", why)
}

// browser drives one headless Chromium tab for a test.
type browser struct {
	t     *testing.T
	ctx   context.Context
	shots string
	n     int
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	path := browserPath()
	if path == "" {
		noBrowser(t, "no chromium, chromium-browser or google-chrome on PATH")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.WindowSize(1280, 900),
		chromedp.Flag("force-device-scale-factor", "1"),
		chromedp.Flag("lang", "en-US"),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		noBrowser(t, "starting "+path+": "+err.Error())
	}
	dir := os.Getenv("RELAY_SCREENSHOTS")
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "relay-dashboard-screenshots-"); err != nil {
			t.Fatal(err)
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots of every page are written to %s", dir)
	return &browser{t: t, ctx: ctx, shots: dir}
}

func (b *browser) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, steps...); err != nil {
		b.shot("failed")
		b.t.Fatalf("%s: %v", what, err)
	}
}

// waitJS waits until the JavaScript expression is truthy in the page. It
// asks again every 100 ms, also across a navigation the step started.
func (b *browser) waitJS(what, expr string) {
	b.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		ok, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](`(() => { try { return !!(`+expr+`); } catch (e) { return false; } })()`))
		if err == nil && ok {
			return
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	b.shot("failed")
	text, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string](`document.querySelector('main') ? document.querySelector('main').innerText : ''`))
	b.t.Fatalf("waiting until %s: not so after 30s (last error %v)\npage text:\n%s", what, last, text)
}

func (b *browser) eval(expr string) string {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](expr))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return s
}

// shot writes a PNG of the whole page.
func (b *browser) shot(name string) {
	b.n++
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return
	}
	p := filepath.Join(b.shots, fmt.Sprintf("%02d-%s.png", b.n, name))
	if err := os.WriteFile(p, png, 0o644); err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
	}
}

// shotOf writes a PNG of the element css selects.
func (b *browser) shotOf(name, css string) {
	b.n++
	png, err := chromedp.Run(b.ctx, chromedp.Screenshot(chromedp.CSS(css)))
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return
	}
	p := filepath.Join(b.shots, fmt.Sprintf("%02d-%s.png", b.n, name))
	if err := os.WriteFile(p, png, 0o644); err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
	}
}

// checkPage fails if the rendered page shows a secret.
func (b *browser) checkPage(where string) {
	b.t.Helper()
	assertNoSecret(b.t, where, b.eval(`document.documentElement.outerHTML`))
}

// TestDashboardInBrowser drives the dashboard of a real Relay in headless
// Chromium: sign in, every destination listed, pause seen live without a
// reload (its backlog waiting, then delivered on resume), a dead letter
// opened and replayed until delivered, the attempts filtered by outcome, an
// activity traced by id, sign-out; a screenshot of each page.
func TestDashboardInBrowser(t *testing.T) {
	ok, billing, down := newReceiver(t), newReceiver(t), newReceiver(t)
	billing.failing.Store(true)
	down.failing.Store(true)
	sf := sftest.New(t, sftest.WithClient("client-id", sfSecret))
	b := newBrowser(t)
	admin, ingest := startRelay(t, ok, billing, down, sf)

	emails := send(t, ingest,
		map[string]any{"type": "email", "action": "open", "contact": map[string]any{"email": "ann@example.com"}, "attributes": map[string]any{"campaign": "black-friday"}},
		map[string]any{"type": "email", "action": "click", "contact": map[string]any{"email": "bob@example.com"}},
		map[string]any{"type": "sms", "action": "delivered", "contact": map[string]any{"phone": "+15550100"}},
	)
	order := send(t, ingest, map[string]any{"type": "order", "action": "purchase", "contact": map[string]any{"email": "ann@example.com"}, "attributes": map[string]any{"total": json.Number("129.90"), "points": json.Number("12345678901234567891")}})[0]

	// Sign in.
	b.do("open the dashboard", chromedp.Navigate(admin+"/"), chromedp.WaitVisible(chromedp.CSS("#token")))
	if loc := b.eval(`location.pathname`); loc != "/login" {
		t.Fatalf("signed out, / went to %q, want /login", loc)
	}
	b.checkPage("sign-in page")
	b.do("type a wrong token", chromedp.SendKeys(chromedp.CSS("#token"), "not-the-token"), chromedp.Click(chromedp.CSS("form.form button[type=submit]")))
	b.waitJS("the sign-in page says the token is wrong", `document.querySelector('#login-error') && document.querySelector('#login-error').textContent.includes('not the admin token')`)
	b.shot("sign-in")
	b.do("sign in", chromedp.SendKeys(chromedp.CSS("#token"), adminToken), chromedp.Click(chromedp.CSS("form.form button[type=submit]")))

	// Every configured destination is listed.
	b.waitJS("every destination is listed", `document.querySelectorAll('#destinations-body tr.row').length === 5`)
	for _, name := range []string{"crm-hook", "analytics", "billing", "ledger", "salesforce"} {
		if b.eval(fmt.Sprintf(`document.querySelector('tr[data-name=%q]') ? 'yes' : 'no'`, name)) != "yes" {
			t.Errorf("destination %s is not listed", name)
		}
	}
	b.waitJS("deliveries show in the table", `Number(document.querySelector('tr[data-name="billing"] td:nth-child(9)').textContent) === 1`)
	b.checkPage("destinations page")
	// The summary does not call a destination with dead letters healthy.
	if text := b.eval(`document.querySelector('#summary').textContent`); strings.Contains(text, "all delivering") || !strings.Contains(text, "1 with dead letters") {
		t.Errorf("summary with a dead letter says %q", text)
	}
	// Each row's chart of the last hour draws what GET /v1/series says.
	sums := seriesSums(t, admin, "/v1/destinations/billing/series?window=1h")
	if sums["dead_letter"] != 1 || sums["failed"] != 1 {
		t.Fatalf("billing's series: %v, want 1 failed attempt and 1 dead letter", sums)
	}
	b.waitJS("billing's chart shows its attempts", fmt.Sprintf(`(() => { const s = document.querySelector('tr[data-name="billing"] svg.spark'); return s && s.dataset.failed === '%d' && s.dataset.deadLetter === '%d' && s.dataset.delivered === '%d' && s.querySelector('rect.bar-dead_letter') !== null; })()`, sums["failed"], sums["dead_letter"], sums["delivered"]))
	if title := b.eval(`document.querySelector('tr[data-name="billing"] svg.spark title').textContent`); !strings.Contains(title, "1 failed, 1 dead-lettered") {
		t.Errorf("billing's chart title for screen readers: %q", title)
	}
	// ledger's breaker opened after its receiver failed two activities: the
	// series says when (sampled every 10 s), and its chart shades it.
	deadline := time.Now().Add(30 * time.Second)
	for seriesOpenSpans(t, admin, "/v1/destinations/ledger/series?window=1h") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("ledger's series shows no open breaker after 30s")
		}
		time.Sleep(200 * time.Millisecond)
	}
	b.waitJS("ledger's chart shades its open breaker", `document.querySelector('tr[data-name="ledger"] svg.spark rect.breaker-band') !== null && document.querySelector('#summary').textContent.includes('1 breaker open')`)
	if title := b.eval(`document.querySelector('tr[data-name="ledger"] svg.spark title').textContent`); !strings.Contains(title, "breaker open 1 time") {
		t.Errorf("ledger's chart title: %q", title)
	}
	// The toggle shows each destination's day instead.
	day := seriesSums(t, admin, "/v1/destinations/billing/series?window=24h")
	b.do("show the last 24 h", chromedp.Click(chromedp.CSS(`#spark-window button[data-window="24h"]`)))
	b.waitJS("billing's chart shows its day", fmt.Sprintf(`(() => { const s = document.querySelector('tr[data-name="billing"] svg.spark'); return s && s.dataset.window === '24h' && s.dataset.failed === '%d' && s.dataset.deadLetter === '%d'; })()`, day["failed"], day["dead_letter"]))
	b.do("back to the last hour", chromedp.Click(chromedp.CSS(`#spark-window button[data-window="1h"]`)))
	b.waitJS("the charts show the hour again", `document.querySelector('tr[data-name="billing"] svg.spark[data-window="1h"]') !== null`)

	// Pause one: "Paused" appears without a reload, and the API agrees.
	b.eval(`window.__samePage = 'yes'; 'ok'`)
	b.do("pause analytics", chromedp.Click(chromedp.CSS(`button[data-action="pause"][data-name="analytics"]`)))
	b.waitJS("analytics shows Paused", `document.querySelector('tr[data-name="analytics"]').dataset.state === 'paused' && document.querySelector('tr[data-name="analytics"] .state-cell').textContent.trim() === 'Paused'`)
	if b.eval(`window.__samePage || 'reloaded'`) != "yes" {
		t.Fatal("the page reloaded to show the pause")
	}
	status, body := call(t, http.DefaultClient, "GET", admin+"/v1/destinations", adminToken, "")
	if status != http.StatusOK || !strings.Contains(string(body), `"name":"analytics","type":"webhook","state":"paused"`) {
		t.Fatalf("GET /v1/destinations after pausing: %d %s", status, body)
	}
	// While paused its activities wait, and the figures say so live.
	var more []map[string]any
	for i := range 20 {
		more = append(more, map[string]any{"type": "email", "action": []string{"open", "click"}[i%2], "contact": map[string]any{"email": fmt.Sprintf("c%d@example.com", i)}})
	}
	send(t, ingest, more...)
	b.waitJS("the table fits 1280 px", `document.querySelector('#destinations').scrollWidth <= document.querySelector('#destinations').parentElement.clientWidth + 1`)
	b.waitJS("analytics shows its 20 waiting activities", `document.querySelector('tr[data-name="analytics"] td:nth-child(4)').textContent === '20' && document.querySelector('tr[data-name="analytics"] td:nth-child(5)').textContent.endsWith(' s')`)
	b.eval(`document.getElementById('toast').hidden = true; 'ok'`) // the notice has been seen; keep it out of the picture
	b.shot("destinations")
	b.do("laptop width", chromedp.EmulateViewport(1024, 720))
	b.shot("destinations-1024px")
	// At 800 px nothing of the table is cut off: the pause buttons and
	// every header show without scrolling.
	fits := `(() => { const t = document.querySelector('#destinations'); const w = t.parentElement; const btn = document.querySelector('button[data-name="crm-hook"]').getBoundingClientRect(); return t.scrollWidth <= w.clientWidth + 1 && btn.right <= window.innerWidth; })()`
	b.waitJS("the table fits 1024 px", fits)
	b.do("narrow width", chromedp.EmulateViewport(800, 720))
	b.waitJS("the table fits 800 px", fits)
	b.shot("destinations-800px")
	b.do("back to desktop width", chromedp.EmulateViewport(1280, 900))

	// Resume it: the waiting activities are delivered, and the table shows it.
	b.do("resume analytics", chromedp.Click(chromedp.CSS(`button[data-action="resume"][data-name="analytics"]`)))
	b.waitJS("analytics is active and its backlog delivered", `document.querySelector('tr[data-name="analytics"]').dataset.state === 'active' && document.querySelector('tr[data-name="analytics"] td:nth-child(4)').textContent === '0'`)
	if b.eval(`window.__samePage || 'reloaded'`) != "yes" {
		t.Fatal("the page reloaded to show the resume")
	}

	// Open billing's dead letter.
	b.do("open billing", chromedp.Click(chromedp.CSS(`tr[data-name="billing"] a.dest-link`)))
	b.waitJS("billing's dead letter is listed", fmt.Sprintf(`document.querySelector('tr.deadletter[data-id=%q]') !== null`, order))
	b.do("open the dead letter", chromedp.Click(chromedp.CSS(fmt.Sprintf(`tr.deadletter[data-id=%q] .row-toggle`, order))))
	b.waitJS("the dead letter's attempts show", fmt.Sprintf(`(() => { const d = document.querySelector('tr.detail[data-id=%q]'); return d && d.textContent.includes('503') && d.textContent.includes('order.purchase'); })()`, order))
	// The payload shows the producer's number literals as sent.
	if detail := b.eval(fmt.Sprintf(`document.querySelector('tr.detail[data-id=%q] pre').textContent`, order)); !strings.Contains(detail, `"points": 12345678901234567891`) || !strings.Contains(detail, `"total": 129.90`) {
		t.Errorf("the dead letter's payload does not show the numbers as sent:\n%s", detail)
	}
	if last := b.eval(fmt.Sprintf(`document.querySelector('tr.deadletter[data-id=%q] .error-cell').textContent`, order)); !strings.Contains(last, "503") {
		t.Errorf("last error column says %q, want the receiver's 503", last)
	}
	b.checkPage("destination page")
	b.shot("destination-deadletter")

	// The destination's charts: attempts by outcome, latency and backlog
	// per minute, each with a table of the numbers GET …/series gives.
	sums = seriesSums(t, admin, "/v1/destinations/billing/series?window=1h")
	b.waitJS("billing's charts are drawn", fmt.Sprintf(`(() => { const sum = (k) => [...document.querySelectorAll('#chart-attempts-table td[data-key="' + k + '"]')].reduce((a, td) => a + Number(td.textContent), 0); return document.querySelectorAll('#chart-attempts-table tbody tr').length === 60 && sum('failed') === %d && sum('dead_letter') === %d && sum('delivered') === %d && document.querySelector('#chart-attempts rect.bar-failed') && document.querySelector('#chart-latency path.line-p99_ms') && document.querySelector('#chart-pending path.line-pending'); })()`, sums["failed"], sums["dead_letter"], sums["delivered"]))
	if title := b.eval(`document.querySelector('#chart-attempts svg title').textContent`); !strings.Contains(title, "1 failed, 1 dead-lettered") {
		t.Errorf("the attempts chart's title: %q", title)
	}
	b.do("show the day", chromedp.Click(chromedp.CSS(`#chart-window button[data-window="24h"]`)))
	b.waitJS("the day's charts are drawn", `document.querySelector('#chart-attempts[data-window="24h"]') && document.querySelectorAll('#chart-attempts-table tbody tr').length === 144`)
	b.do("back to the hour", chromedp.Click(chromedp.CSS(`#chart-window button[data-window="1h"]`)))
	b.waitJS("the hour's charts are drawn", `document.querySelector('#chart-attempts[data-window="1h"]') !== null`)
	b.shot("destination-charts")
	b.do("laptop width", chromedp.EmulateViewport(1024, 720))
	b.waitJS("the charts fit 1024 px", `(() => { const c = document.querySelector('#charts'); return c.scrollWidth <= c.clientWidth + 1 && [...document.querySelectorAll('#charts svg.chart-svg')].every((s) => s.getBoundingClientRect().width >= 300); })()`)
	b.shot("destination-charts-1024px")
	b.do("back to desktop width", chromedp.EmulateViewport(1280, 900))
	// ledger's page marks the breaker's open period on every chart.
	b.do("open ledger", chromedp.Navigate(admin+"/destinations/ledger"))
	b.waitJS("ledger's charts shade the open breaker", `document.querySelectorAll('#charts rect.breaker-band').length === 3 && document.querySelector('#chart-attempts svg title').textContent.includes('breaker open 1 time') && document.querySelector('#chart-attempts .legend').textContent.includes('Breaker open')`)
	b.eval(`document.getElementById('toast').hidden = true; 'ok'`)
	b.shot("destination-breaker")
	b.do("back to billing", chromedp.Navigate(admin+"/destinations/billing"))
	b.waitJS("billing's dead letter is listed again", fmt.Sprintf(`document.querySelector('tr.deadletter[data-id=%q]') !== null`, order))

	// Replay it: the confirmation says how many; then it is delivered.
	billing.failing.Store(false)
	b.do("select and replay", chromedp.Click(chromedp.CSS(fmt.Sprintf(`tr.deadletter[data-id=%q] input[type=checkbox]`, order))), chromedp.Click(chromedp.CSS("#replay-selected")))
	b.waitJS("the confirmation opens", `!document.querySelector('#confirm').hidden`)
	if text := b.eval(`document.querySelector('#confirm-text').textContent`); !strings.HasPrefix(text, "Replay 1 dead letter to billing?") {
		t.Errorf("confirmation says %q", text)
	}
	b.shot("replay-confirmation")
	b.do("confirm", chromedp.Click(chromedp.CSS("#confirm-ok")))
	b.waitJS("the dead letter list empties", `document.querySelector('#deadletters-body').textContent.includes('No dead letters — everything was delivered')`)
	deadline = time.Now().Add(30 * time.Second)
	for !billing.has(order) {
		if time.Now().After(deadline) {
			t.Fatal("the replayed activity did not reach billing's receiver in 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.waitJS("the page shows billing delivered", `(() => { for (const s of document.querySelectorAll('.stat')) if (s.textContent.startsWith('Delivered in total')) return s.textContent.endsWith('1'); return false; })()`)
	if apiMissing(t, admin, "/v1/deliveries?destination=billing") {
		t.Log("GET /v1/deliveries is not served by this Relay: the attempts table shows its worded notice")
		b.waitJS("the attempts table says the log is missing", `document.querySelector('#attempts-body').textContent.includes('does not keep a delivery log')`)
	} else {
		b.waitJS("the delivered attempt is listed", fmt.Sprintf(`document.querySelector('tr.attempt[data-id=%q][data-outcome="delivered"]') !== null`, order))
		b.do("filter failed", chromedp.Click(chromedp.CSS(`#outcome-filter button[data-outcome="failed"]`)))
		b.waitJS("only failed attempts are listed", fmt.Sprintf(`document.querySelector('tr.attempt[data-id=%q][data-outcome="failed"]') !== null && document.querySelector('tr.attempt[data-outcome="delivered"]') === null`, order))
	}
	b.shot("destination-replayed")

	// Trace the activity by id from the search box.
	b.do("open the trace page", chromedp.Click(chromedp.CSS(`nav.nav a[href="/activities"]`)), chromedp.WaitVisible(chromedp.CSS("#trace-id")))
	b.do("search", chromedp.SendKeys(chromedp.CSS("#trace-id"), order), chromedp.Click(chromedp.CSS("#trace-form button[type=submit]")))
	if apiMissing(t, admin, "/v1/activities/"+url.PathEscape(order)) {
		t.Log("GET /v1/activities/{id} is not served by this Relay: the trace page shows its worded notice")
		b.waitJS("the trace page says traces are missing", `document.querySelector('#trace-error') && document.querySelector('#trace-error').textContent.includes('does not serve activity traces')`)
	} else {
		b.waitJS("the trace is shown", `document.querySelectorAll('#trace-table tr.trace-row').length === 5`)
		// billing's attempts: 1 and 2 failed, then the replay's 1; the
		// replay is marked where the count starts again.
		if got := b.eval(`[...document.querySelectorAll('tr.trace-row[data-destination="billing"] + tr.detail tr')].map((tr) => tr.classList.contains('replay-mark') ? 'R' : (tr.dataset.attempt || '')).filter(Boolean).join(',')`); got != "1,2,R,1" {
			t.Errorf("billing's attempts in the trace: %q, want 1,2,R,1", got)
		}
		for name, want := range map[string]string{"billing": "delivered", "analytics": "", "crm-hook": "not_selected", "salesforce": "not_selected"} {
			got := b.eval(fmt.Sprintf(`document.querySelector('tr.trace-row[data-destination=%q]').dataset.status`, name))
			if want != "" && got != want {
				t.Errorf("trace: %s is %q, want %q", name, got, want)
			}
		}
		if text := b.eval(`document.querySelector('tr.trace-row[data-destination="crm-hook"]').textContent`); !strings.Contains(text, "Not selected") {
			t.Errorf("trace row for crm-hook: %q", text)
		}
		if tid := b.eval(`(document.querySelector('#trace-trace-id') || {}).textContent || ''`); !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(tid) {
			t.Errorf("the trace page shows trace id %q, want the W3C trace id", tid)
		}
	}
	b.checkPage("activity page")
	b.shot("activity-trace")
	_ = emails

	// A destination that does not exist: the banner says so, and nothing
	// waits, claims to be live or offers a replay.
	b.do("open a destination that does not exist", chromedp.Navigate(admin+"/destinations/nope"))
	b.waitJS("the banner says there is no such destination", `!document.querySelector('#banner').hidden && document.querySelector('#banner').textContent.includes('no destination named')`)
	b.waitJS("nothing else is shown", `document.querySelector('#deadletters-section').hidden && document.querySelector('#live').offsetParent === null && document.querySelector('#replay-all').offsetParent === null && ![...document.querySelectorAll('.spinner')].some((s) => s.offsetParent !== null)`)
	b.shot("destination-unknown")

	// A missing activity is worded for a person.
	b.do("trace an unknown id", chromedp.Navigate(admin+"/activities?id=01JD3Y6Q4W8ZKX2N5V7B9C1DEF"), chromedp.WaitVisible(chromedp.CSS("#trace-error")))
	b.shot("activity-unknown")

	// Sign out: the pages and the API refuse the old session.
	b.do("sign out", chromedp.Click(chromedp.CSS("form.signout button")), chromedp.WaitVisible(chromedp.CSS("#token")))
	b.do("back to the destinations", chromedp.Navigate(admin+"/"), chromedp.WaitVisible(chromedp.CSS("#token")))
}

// TestDashboardShowsNoSecret signs in over plain HTTP to a real Relay and
// reads every page, asset and API answer the dashboard uses: none holds the
// admin or ingest token, a webhook secret or the Salesforce client secret.
func TestDashboardShowsNoSecret(t *testing.T) {
	ok, billing, down := newReceiver(t), newReceiver(t), newReceiver(t)
	billing.failing.Store(true)
	down.failing.Store(true)
	sf := sftest.New(t, sftest.WithClient("client-id", sfSecret))
	admin, ingest := startRelay(t, ok, billing, down, sf)
	order := send(t, ingest, map[string]any{"type": "order", "action": "purchase", "contact": map[string]any{"email": "ann@example.com"}})[0]

	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	status, page := call(t, c, "POST", admin+"/login", "", url.Values{"token": {adminToken}}.Encode(), "Content-Type", "application/x-www-form-urlencoded")
	if status != http.StatusOK || !strings.Contains(string(page), `data-page="destinations"`) {
		t.Fatalf("sign-in: %d", status)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, body := call(t, c, "GET", admin+"/v1/deadletters?destination=billing", "", "")
		if strings.Contains(string(body), order) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no dead letter for billing in 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, path := range []string{
		"/login", "/", "/destinations/billing", "/destinations/salesforce", "/activities", "/activities?id=" + order,
		"/assets/app.js", "/assets/app.css", "/assets/favicon.svg",
		"/v1/destinations", "/v1/deadletters", "/v1/deadletters?destination=billing",
		"/v1/deliveries?destination=billing", "/v1/deliveries", "/v1/activities/" + order,
	} {
		status, body := call(t, c, "GET", admin+path, "", "")
		if status >= 500 {
			t.Errorf("GET %s: %d", path, status)
		}
		assertNoSecret(t, "GET "+path, string(body))
	}
	// The session reaches the API; without it the API still wants the token.
	if status, _ := call(t, http.DefaultClient, "GET", admin+"/v1/destinations", "", ""); status != http.StatusUnauthorized {
		t.Fatalf("/v1/destinations without session or token: %d", status)
	}
	if status, _ := call(t, c, "POST", admin+"/v1/destinations/billing/pause", "", ""); status != http.StatusForbidden {
		t.Fatalf("a session's change without the CSRF token: %d, want 403", status)
	}
}
