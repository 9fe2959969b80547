package dashboard

import (
	"crypto/tls"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

const testToken = "admin-token-for-dashboard-tests"

// apiRecorder stands where the admin API goes: it answers 401 without the
// bearer token, as the real one does, and keeps what reached it.
type apiRecorder struct {
	mu    sync.Mutex
	token func() string
	got   []*http.Request
}

func (a *apiRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	a.got = append(a.got, r)
	a.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer "+a.token() {
		writeError(w, http.StatusUnauthorized, "missing or invalid bearer token")
		return
	}
	writeJSON(w, map[string]any{"path": r.URL.Path})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func (a *apiRecorder) last(t *testing.T) *http.Request {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.got) == 0 {
		t.Fatal("nothing reached the API")
	}
	return a.got[len(a.got)-1]
}

// clock is a settable time source, so expiry is tested without waiting.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type fixture struct {
	t       *testing.T
	h       http.Handler
	api     *apiRecorder
	clock   *clock
	tokenMu sync.Mutex
	token   string
}

func newFixture(t *testing.T, opts Options) *fixture {
	f := &fixture{t: t, clock: &clock{t: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)}, token: testToken}
	f.api = &apiRecorder{token: f.currentToken}
	opts.Token = f.currentToken
	opts.Now = f.clock.now
	f.h = New(opts).Wrap(f.api)
	return f
}

func (f *fixture) currentToken() string { f.tokenMu.Lock(); defer f.tokenMu.Unlock(); return f.token }
func (f *fixture) rotate(token string)  { f.tokenMu.Lock(); f.token = token; f.tokenMu.Unlock() }

// do serves one request; headers come as "Name: value" pairs.
func (f *fixture) do(method, target, body string, cookie *http.Cookie, headers ...string) *httptest.ResponseRecorder {
	f.t.Helper()
	r := httptest.NewRequest(method, target, strings.NewReader(body))
	if strings.HasPrefix(body, "token=") || strings.HasPrefix(body, "csrf=") || strings.HasPrefix(body, "next=") {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if cookie != nil {
		r.AddCookie(cookie)
	}
	for _, kv := range headers {
		k, v, _ := strings.Cut(kv, ": ")
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, r)
	return w
}

// signIn posts the admin token and returns the session cookie and the
// page's CSRF token.
func (f *fixture) signIn() (*http.Cookie, string) {
	f.t.Helper()
	w := f.do("POST", "/login", "token="+url.QueryEscape(f.currentToken()), nil)
	if w.Code != http.StatusSeeOther {
		f.t.Fatalf("sign-in answered %d: %s", w.Code, w.Body)
	}
	var c *http.Cookie
	for _, k := range w.Result().Cookies() {
		if k.Name == cookieName {
			c = k
		}
	}
	if c == nil || c.Value == "" {
		f.t.Fatal("sign-in set no session cookie")
	}
	page := f.do("GET", "/", "", c)
	if page.Code != http.StatusOK {
		f.t.Fatalf("GET / after sign-in answered %d", page.Code)
	}
	_, rest, ok := strings.Cut(page.Body.String(), `<meta name="csrf-token" content="`)
	if !ok {
		f.t.Fatal("signed-in page has no CSRF token")
	}
	csrf, _, _ := strings.Cut(rest, `"`)
	return c, csrf
}

func TestSignIn(t *testing.T) {
	tests := []struct {
		name       string
		token      string
		tls        bool
		next       string
		wantStatus int
		wantTo     string
	}{
		{name: "right token", token: testToken, wantStatus: http.StatusSeeOther, wantTo: "/"},
		{name: "right token, back to the page asked for", token: testToken, next: "/destinations/crm", wantStatus: http.StatusSeeOther, wantTo: "/destinations/crm"},
		{name: "right token, next on another site is ignored", token: testToken, next: "//evil.example/x", wantStatus: http.StatusSeeOther, wantTo: "/"},
		{name: "right token over TLS", token: testToken, tls: true, wantStatus: http.StatusSeeOther, wantTo: "/"},
		{name: "surrounding spaces from a paste are ignored", token: "  " + testToken + "\n", wantStatus: http.StatusSeeOther, wantTo: "/"},
		{name: "wrong token", token: "not-the-token", wantStatus: http.StatusUnauthorized},
		{name: "prefix of the token", token: testToken[:10], wantStatus: http.StatusUnauthorized},
		{name: "empty token", token: "", wantStatus: http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, Options{})
			form := url.Values{"token": {tt.token}, "next": {tt.next}}.Encode()
			r := httptest.NewRequest("POST", "/login", strings.NewReader(form))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if tt.tls {
				r.TLS = &tls.ConnectionState{}
			}
			w := httptest.NewRecorder()
			f.h.ServeHTTP(w, r)
			if w.Code != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", w.Code, tt.wantStatus, w.Body)
			}
			cookies := w.Result().Cookies()
			if tt.wantStatus != http.StatusSeeOther {
				if len(cookies) != 0 {
					t.Fatalf("a refused sign-in set cookies: %v", cookies)
				}
				if !strings.Contains(w.Body.String(), "not the admin token") {
					t.Fatalf("the page does not say why: %s", w.Body)
				}
				return
			}
			if got := w.Header().Get("Location"); got != tt.wantTo {
				t.Fatalf("redirect to %q, want %q", got, tt.wantTo)
			}
			if len(cookies) != 1 {
				t.Fatalf("cookies %v, want one", cookies)
			}
			c := cookies[0]
			if c.Name != cookieName || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Secure != tt.tls || c.Path != "/" {
				t.Fatalf("cookie %+v: want HttpOnly, SameSite=Strict, Path=/, Secure=%v", c, tt.tls)
			}
			if !c.Expires.Equal(f.clock.now().Add(DefaultSessionTTL).Truncate(time.Second)) {
				t.Fatalf("cookie expires %v, want the session's end", c.Expires)
			}
			if strings.Contains(c.Value, testToken) {
				t.Fatal("the cookie carries the admin token")
			}
		})
	}
}

// TestSessionReachesAPI: with a session, a page's /v1 call reaches the API
// with the admin token set on the server and without the cookie; without
// one it reaches the API as it is and is refused there.
func TestSessionReachesAPI(t *testing.T) {
	f := newFixture(t, Options{})
	if w := f.do("GET", "/v1/destinations", "", nil); w.Code != http.StatusUnauthorized {
		t.Fatalf("without a session: %d, want the API's 401", w.Code)
	}
	if got := f.api.last(t).Header.Get("Authorization"); got != "" {
		t.Fatalf("a request without a session reached the API with %q", got)
	}
	c, _ := f.signIn()
	if w := f.do("GET", "/v1/destinations", "", c); w.Code != http.StatusOK {
		t.Fatalf("with a session: %d %s", w.Code, w.Body)
	}
	r := f.api.last(t)
	if r.Header.Get("Authorization") != "Bearer "+testToken || r.Header.Get("Cookie") != "" {
		t.Fatalf("API saw Authorization %q, Cookie %q", r.Header.Get("Authorization"), r.Header.Get("Cookie"))
	}
	// A bearer request goes through untouched, session or not.
	w := f.do("POST", "/v1/destinations/a/pause", "", c, "Authorization: Bearer "+testToken, "Sec-Fetch-Site: cross-site")
	if w.Code != http.StatusOK {
		t.Fatalf("bearer request: %d %s", w.Code, w.Body)
	}
	if w := f.do("GET", "/v1/destinations", "", c, "Authorization: Bearer wrong"); w.Code != http.StatusUnauthorized {
		t.Fatalf("a wrong bearer token with a session cookie: %d, want 401", w.Code)
	}
}

func TestPagesNeedSession(t *testing.T) {
	f := newFixture(t, Options{})
	c, _ := f.signIn()
	for _, path := range []string{"/", "/destinations/crm-hook", "/activities", "/activities?id=01ABC", "/contacts", "/contacts?by=email&q=ann%40example.com"} {
		t.Run(path, func(t *testing.T) {
			w := f.do("GET", path, "", nil)
			if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/login?next="+url.QueryEscape(path) {
				t.Fatalf("without a session: %d to %q", w.Code, w.Header().Get("Location"))
			}
			w = f.do("GET", path, "", c)
			if w.Code != http.StatusOK || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/html") {
				t.Fatalf("with a session: %d %s", w.Code, w.Header().Get("Content-Type"))
			}
			if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
				t.Fatalf("CSP %q", csp)
			}
		})
	}
	// The sign-in page itself needs nothing, and sends a signed-in person on.
	if w := f.do("GET", "/login", "", nil); w.Code != http.StatusOK {
		t.Fatalf("GET /login: %d", w.Code)
	}
	if w := f.do("GET", "/login?next=/activities", "", c); w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/activities" {
		t.Fatalf("GET /login signed in: %d to %q", w.Code, w.Header().Get("Location"))
	}
}

func TestSignOut(t *testing.T) {
	f := newFixture(t, Options{})
	c, csrf := f.signIn()
	// Without the CSRF token, or from another site, sign-out is refused
	// and the session lives on.
	if w := f.do("POST", "/logout", "", c); w.Code != http.StatusForbidden {
		t.Fatalf("sign-out without CSRF token: %d", w.Code)
	}
	if w := f.do("POST", "/logout", "csrf="+csrf, c, "Sec-Fetch-Site: cross-site"); w.Code != http.StatusForbidden {
		t.Fatalf("cross-site sign-out: %d", w.Code)
	}
	if w := f.do("GET", "/", "", c); w.Code != http.StatusOK {
		t.Fatalf("session ended by a refused sign-out: %d", w.Code)
	}
	w := f.do("POST", "/logout", "csrf="+csrf, c, "Sec-Fetch-Site: same-origin")
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/login" {
		t.Fatalf("sign-out: %d to %q", w.Code, w.Header().Get("Location"))
	}
	cleared := w.Result().Cookies()
	if len(cleared) != 1 || cleared[0].MaxAge >= 0 || cleared[0].Value != "" {
		t.Fatalf("sign-out did not clear the cookie: %v", cleared)
	}
	// The old cookie is dead on the server, not only in the browser.
	if w := f.do("GET", "/", "", c); w.Code != http.StatusSeeOther {
		t.Fatalf("page with the signed-out cookie: %d", w.Code)
	}
	if w := f.do("GET", "/v1/destinations", "", c); w.Code != http.StatusUnauthorized {
		t.Fatalf("API with the signed-out cookie: %d", w.Code)
	}
}

func TestSessionExpiry(t *testing.T) {
	tests := []struct {
		name  string
		ttl   time.Duration
		after time.Duration
		alive bool
	}{
		{name: "default, just before 12h", after: DefaultSessionTTL - time.Second, alive: true},
		{name: "default, at 12h", after: DefaultSessionTTL, alive: false},
		{name: "configured 30m, after 29m", ttl: 30 * time.Minute, after: 29 * time.Minute, alive: true},
		{name: "configured 30m, after 31m", ttl: 30 * time.Minute, after: 31 * time.Minute, alive: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, Options{SessionTTL: tt.ttl})
			c, csrf := f.signIn()
			f.clock.add(tt.after)
			page := f.do("GET", "/", "", c)
			call := f.do("POST", "/v1/destinations/a/pause", "", c, "X-CSRF-Token: "+csrf, "Sec-Fetch-Site: same-origin")
			if tt.alive {
				if page.Code != http.StatusOK || call.Code != http.StatusOK {
					t.Fatalf("live session: page %d, API %d", page.Code, call.Code)
				}
				return
			}
			if page.Code != http.StatusSeeOther || call.Code != http.StatusUnauthorized {
				t.Fatalf("expired session: page %d, API %d", page.Code, call.Code)
			}
			if got := f.api.last(t).Header.Get("Authorization"); got != "" {
				t.Fatalf("an expired session reached the API with %q", got)
			}
		})
	}
}

// TestTokenRotation: a session signed in with the old admin token stops
// working once the token changes; the new token signs in.
func TestTokenRotation(t *testing.T) {
	f := newFixture(t, Options{})
	c, _ := f.signIn()
	f.rotate("the-new-admin-token")
	if w := f.do("GET", "/", "", c); w.Code != http.StatusSeeOther {
		t.Fatalf("page after rotation: %d", w.Code)
	}
	if w := f.do("GET", "/v1/destinations", "", c); w.Code != http.StatusUnauthorized {
		t.Fatalf("API after rotation: %d", w.Code)
	}
	if w := f.do("POST", "/login", "token="+testToken, nil); w.Code != http.StatusUnauthorized {
		t.Fatalf("old token after rotation: %d", w.Code)
	}
	c2, _ := f.signIn()
	if w := f.do("GET", "/v1/destinations", "", c2); w.Code != http.StatusOK {
		t.Fatalf("new session: %d", w.Code)
	}
}

func TestCSRF(t *testing.T) {
	f := newFixture(t, Options{})
	c, csrf := f.signIn()
	other, otherCSRF := f.signIn()
	_ = other
	tests := []struct {
		name    string
		method  string
		headers []string
		want    int
	}{
		{name: "no CSRF token", method: "POST", headers: []string{"Sec-Fetch-Site: same-origin"}, want: http.StatusForbidden},
		{name: "wrong CSRF token", method: "POST", headers: []string{"X-CSRF-Token: nope", "Sec-Fetch-Site: same-origin"}, want: http.StatusForbidden},
		{name: "another session's CSRF token", method: "POST", headers: []string{"X-CSRF-Token: " + otherCSRF, "Sec-Fetch-Site: same-origin"}, want: http.StatusForbidden},
		{name: "right token, cross-site fetch", method: "POST", headers: []string{"X-CSRF-Token: " + csrf, "Sec-Fetch-Site: cross-site"}, want: http.StatusForbidden},
		{name: "right token, same-site other origin", method: "POST", headers: []string{"X-CSRF-Token: " + csrf, "Sec-Fetch-Site: same-site"}, want: http.StatusForbidden},
		{name: "right token, foreign Origin", method: "POST", headers: []string{"X-CSRF-Token: " + csrf, "Origin: https://evil.example"}, want: http.StatusForbidden},
		{name: "right token, foreign Origin on DELETE", method: "DELETE", headers: []string{"X-CSRF-Token: " + csrf, "Origin: https://evil.example"}, want: http.StatusForbidden},
		{name: "right token, same origin", method: "POST", headers: []string{"X-CSRF-Token: " + csrf, "Sec-Fetch-Site: same-origin"}, want: http.StatusOK},
		{name: "right token, Origin is the host", method: "POST", headers: []string{"X-CSRF-Token: " + csrf, "Origin: http://example.com"}, want: http.StatusOK},
		{name: "read needs no token", method: "GET", want: http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.api.mu.Lock()
			before := len(f.api.got)
			f.api.mu.Unlock()
			w := f.do(tt.method, "/v1/destinations/a/pause", "", c, tt.headers...)
			if w.Code != tt.want {
				t.Fatalf("status %d, want %d: %s", w.Code, tt.want, w.Body)
			}
			f.api.mu.Lock()
			reached := len(f.api.got) > before
			f.api.mu.Unlock()
			if reached != (tt.want == http.StatusOK) {
				t.Fatalf("reached the API: %v", reached)
			}
			if tt.want == http.StatusForbidden {
				var body map[string]any
				if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body["error"] == "" {
					t.Fatalf("refusal is not a JSON error: %s", w.Body)
				}
			}
		})
	}
}

func TestLoginRateLimit(t *testing.T) {
	f := newFixture(t, Options{LoginRate: rate.Every(time.Hour), LoginBurst: 3})
	for i := range 3 {
		if w := f.do("POST", "/login", "token=wrong", nil); w.Code != http.StatusUnauthorized {
			t.Fatalf("attempt %d: %d", i+1, w.Code)
		}
	}
	w := f.do("POST", "/login", "token="+testToken, nil)
	if w.Code != http.StatusTooManyRequests || len(w.Result().Cookies()) != 0 {
		t.Fatalf("fourth attempt, right token: %d %v", w.Code, w.Result().Cookies())
	}
	if !strings.Contains(w.Body.String(), "Too many sign-in attempts") {
		t.Fatalf("the page does not say why: %s", w.Body)
	}
	// Another address has its own allowance.
	r := httptest.NewRequest("POST", "/login", strings.NewReader("token="+testToken))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.RemoteAddr = "192.0.2.7:4000"
	w = httptest.NewRecorder()
	f.h.ServeHTTP(w, r)
	if w.Code != http.StatusSeeOther {
		t.Fatalf("another address: %d", w.Code)
	}
}

func TestLoginCrossSite(t *testing.T) {
	f := newFixture(t, Options{})
	w := f.do("POST", "/login", "token="+testToken, nil, "Sec-Fetch-Site: cross-site")
	if w.Code != http.StatusForbidden || len(w.Result().Cookies()) != 0 {
		t.Fatalf("cross-site sign-in: %d %v", w.Code, w.Result().Cookies())
	}
}

// TestNoSecretInPages: no page, asset or error the dashboard serves itself
// holds the admin token, signed in or not.
func TestNoSecretInPages(t *testing.T) {
	f := newFixture(t, Options{})
	c, csrf := f.signIn()
	var assets []string
	err := fs.WalkDir(assetFS, "assets", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			assets = append(assets, "/"+p)
		}
		return err
	})
	if err != nil || len(assets) < 3 {
		t.Fatalf("assets %v: %v", assets, err)
	}
	type req struct {
		method, path, body string
		cookie             *http.Cookie
	}
	reqs := []req{
		{"GET", "/login", "", nil},
		{"POST", "/login", "token=wrong-guess", nil},
		{"GET", "/", "", c},
		{"GET", "/destinations/crm-hook", "", c},
		{"GET", "/activities?id=01JD3Y6Q4W8ZKX2N5V7B9C1DEF", "", c},
		{"GET", "/activities", "", c},
		{"GET", "/contacts?by=email&q=ann%40example.com", "", c},
		{"GET", "/assets/contact.js", "", c},
		{"POST", "/v1/replay", "", c},
		{"POST", "/logout", "", c},
	}
	for _, a := range assets {
		reqs = append(reqs, req{"GET", a, "", nil})
	}
	for _, q := range reqs {
		t.Run(q.method+" "+q.path, func(t *testing.T) {
			w := f.do(q.method, q.path, q.body, q.cookie)
			if w.Code >= 500 {
				t.Fatalf("%d", w.Code)
			}
			all := w.Body.String()
			for k, v := range w.Header() {
				all += k + ": " + strings.Join(v, ",") + "\n"
			}
			if strings.Contains(all, testToken) {
				t.Fatalf("the admin token appears in %s %s", q.method, q.path)
			}
			if strings.HasPrefix(q.path, "/assets/") && strings.Contains(all, csrf) {
				t.Fatal("an asset holds a session's CSRF token")
			}
		})
	}
}

func TestAssets(t *testing.T) {
	f := newFixture(t, Options{})
	for _, tt := range []struct{ path, ctype string }{
		{"/assets/app.css", "text/css"},
		{"/assets/app.js", "text/javascript"},
		{"/assets/favicon.svg", "image/svg+xml"},
	} {
		w := f.do("GET", tt.path, "", nil)
		body, _ := io.ReadAll(w.Body)
		if w.Code != http.StatusOK || !strings.HasPrefix(w.Header().Get("Content-Type"), tt.ctype) || len(body) == 0 {
			t.Errorf("%s: %d %q (%d bytes)", tt.path, w.Code, w.Header().Get("Content-Type"), len(body))
		}
	}
	// What is neither the dashboard's nor /v1 goes to the API as it is.
	if w := f.do("GET", "/metrics", "", nil); w.Code != http.StatusUnauthorized || f.api.last(t).URL.Path != "/metrics" {
		t.Fatalf("/metrics: %d", w.Code)
	}
}

func TestSafeNext(t *testing.T) {
	for in, want := range map[string]string{
		"":                                 "/",
		"/":                                "/",
		"/destinations/a?x=1":              "/destinations/a?x=1",
		"//evil.example":                   "/",
		"/\\evil.example":                  "/",
		"https://evil.example/":            "/",
		"javascript:alert(1)":              "/",
		"/a\r\nSet-Cookie: x":              "/",
		"/\t/evil.example/pwned":           "/",
		"/\n/evil.example":                 "/",
		"/\r/evil.example":                 "/",
		"/ /evil.example":                  "/",
		"/\x00/evil.example":               "/",
		"/\x7f/evil.example":               "/",
		"/\u00a0/evil.example":             "/",
		"/\t\\evil.example":                "/",
		"\t//evil.example":                 "/",
		"/a/\\evil":                        "/",
		"/%2F/evil.example":                "/", // refused too: decoded, it starts with //
		"/deadletters?destination=a&x=%09": "/deadletters?destination=a&x=%09",
	} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestSessionStoreBounded: a flood of sign-ins never grows the store past
// its bound, and expired sessions are dropped when new ones start.
func TestSessionStoreBounded(t *testing.T) {
	c := &clock{t: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)}
	ss := newSessions(time.Hour, c.now)
	for range maxSessions + 50 {
		ss.create(tokenHash("t"))
	}
	if n := ss.len(); n > maxSessions {
		t.Fatalf("%d sessions kept, bound is %d", n, maxSessions)
	}
	c.add(2 * time.Hour)
	ss.create(tokenHash("t"))
	if n := ss.len(); n != 1 {
		t.Fatalf("%d sessions after all expired and one new, want 1", n)
	}
}

// TestAssetsFilesOnly: the assets folder is not listed, and an asset that
// is not there is a JSON 404; the assets themselves are served.
func TestAssetsFilesOnly(t *testing.T) {
	f := newFixture(t, Options{})
	for _, tc := range []struct {
		path   string
		status int
	}{
		{"/assets/", http.StatusNotFound},
		{"/assets/nope.js", http.StatusNotFound},
		{"/assets/app.js/", http.StatusNotFound},
		{"/assets/app.js", http.StatusOK},
		{"/assets/app.css", http.StatusOK},
		{"/assets/favicon.svg", http.StatusOK},
	} {
		w := f.do("GET", tc.path, "", nil)
		if w.Code != tc.status {
			t.Errorf("%s: %d, want %d", tc.path, w.Code, tc.status)
			continue
		}
		if tc.status == http.StatusNotFound {
			if ct := w.Header().Get("Content-Type"); ct != "application/json" || strings.Contains(w.Body.String(), "<a href") {
				t.Errorf("%s: %q %s", tc.path, ct, w.Body.String())
			}
		}
	}
}
