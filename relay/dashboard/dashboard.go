// Package dashboard serves Relay's web dashboard on the admin listener: a
// sign-in form taking the admin token, server-side sessions, and pages that
// read and change state through the admin API itself.
//
// The pages are HTML rendered with html/template plus a little JavaScript
// that calls /v1/... with the session cookie; Wrap turns such a request into
// an API call with the admin bearer token set on the server, after a
// cross-site request forgery check. Everything is embedded: no build step,
// no CDN.
package dashboard

import (
	"crypto/sha256"
	"embed"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/relaydev/relay/relay/clientlimit"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed assets
var assetFS embed.FS

// DefaultSessionTTL is how long a sign-in lasts when Options.SessionTTL is 0.
const DefaultSessionTTL = 12 * time.Hour

// Options configure a Dashboard.
type Options struct {
	// Token returns the current admin token. It is called on every sign-in
	// and every request of a session, so a rotated token takes effect at
	// once: sessions signed in with the old one stop working.
	Token func() string
	// SessionTTL is how long a session lasts after sign-in; 0 means
	// DefaultSessionTTL.
	SessionTTL time.Duration
	// LoginRate and LoginBurst bound sign-in attempts per client address;
	// 0 means one every two seconds with a burst of 5.
	LoginRate  rate.Limit
	LoginBurst int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives sign-in and sign-out events; nil discards them.
	Logger *slog.Logger
}

// Dashboard is the web UI. Build it with New and serve it with Wrap.
type Dashboard struct {
	token    func() string
	now      func() time.Time
	log      *slog.Logger
	sessions *sessions
	logins   *clientlimit.PerClient
	pages    *pages
	assets   http.Handler
	cop      *http.CrossOriginProtection
}

// New builds a Dashboard.
func New(opts Options) *Dashboard {
	if opts.SessionTTL <= 0 {
		opts.SessionTTL = DefaultSessionTTL
	}
	if opts.LoginRate == 0 {
		opts.LoginRate = rate.Every(2 * time.Second)
	}
	if opts.LoginBurst == 0 {
		opts.LoginBurst = 5
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Token == nil {
		opts.Token = func() string { return "" }
	}
	sub, err := fs.Sub(assetFS, "assets")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusForbidden, "cross-site request refused: the dashboard only accepts changes from its own pages")
	}))
	return &Dashboard{
		token:    opts.Token,
		now:      opts.Now,
		log:      opts.Logger,
		sessions: newSessions(opts.SessionTTL, opts.Now),
		logins:   clientlimit.New(opts.LoginRate, opts.LoginBurst),
		pages:    mustParsePages(),
		assets:   assetServer(sub),
		cop:      cop,
	}
}

// assetServer serves the embedded assets, files only: a folder is not
// listed, and what is not there is a JSON 404 like every other error.
func assetServer(fsys fs.FS) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, "/assets/")
		st, err := fs.Stat(fsys, name)
		if name == "" || !fs.ValidPath(name) || err != nil || !st.Mode().IsRegular() {
			writeError(w, http.StatusNotFound, "no such asset")
			return
		}
		http.ServeFileFS(w, r, fsys, name)
	})
}

// Wrap serves the dashboard in front of the admin API handler api. A request
// with an Authorization header goes to api unchanged; a /v1/ request with a
// valid session is checked against cross-site forgery and then passed to api
// with the admin bearer token set; everything else not the dashboard's own
// goes to api as it is.
func (d *Dashboard) Wrap(api http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", d.destinationsPage)
	mux.HandleFunc("GET /destinations/{name}", d.destinationPage)
	mux.HandleFunc("GET /activities", d.activityPage)
	mux.HandleFunc("GET /contacts", d.contactPage)
	mux.HandleFunc("GET /login", d.loginPage)
	mux.HandleFunc("POST /login", d.login)
	mux.HandleFunc("POST /logout", d.logout)
	mux.Handle("GET /assets/", withHeaders(d.assets, "public, max-age=300"))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			api.ServeHTTP(w, r)
			return
		}
		if strings.HasPrefix(r.URL.Path, "/v1/") {
			d.proxy(api, w, r)
			return
		}
		if _, pattern := mux.Handler(r); pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		api.ServeHTTP(w, r)
	})
}

// proxy passes a /v1/ request to api with the admin token when it carries a
// valid session and, for a change, passes the forgery checks. Without a
// session the request goes on as it is and api answers 401.
func (d *Dashboard) proxy(api http.Handler, w http.ResponseWriter, r *http.Request) {
	token := d.token()
	s, ok := d.sessions.get(r, tokenHash(token))
	if !ok {
		api.ServeHTTP(w, r)
		return
	}
	if !safeMethod(r.Method) {
		if err := d.cop.Check(r); err != nil {
			writeError(w, http.StatusForbidden, "cross-site request refused: the dashboard only accepts changes from its own pages")
			return
		}
		if !s.csrfMatches(r.Header.Get(csrfHeader)) {
			writeError(w, http.StatusForbidden, "missing or invalid "+csrfHeader+" header: reload the page and try again")
			return
		}
	}
	r2 := r.Clone(r.Context())
	r2.Header.Set("Authorization", "Bearer "+token)
	r2.Header.Del("Cookie")
	api.ServeHTTP(w, r2)
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

func tokenHash(token string) [32]byte { return sha256.Sum256([]byte(token)) }

func withHeaders(h http.Handler, cache string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", cache)
		w.Header().Set("X-Content-Type-Options", "nosniff")
		h.ServeHTTP(w, r)
	})
}
