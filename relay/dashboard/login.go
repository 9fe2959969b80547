package dashboard

import (
	"crypto/subtle"
	"net/http"
	"net/url"
	"strings"
)

// maxForm bounds the body of the sign-in and sign-out forms.
const maxForm = 16 << 10

// limiters holds one rate limiter per client address for sign-in attempts.
func (d *Dashboard) loginPage(w http.ResponseWriter, r *http.Request) {
	if _, ok := d.sessions.get(r, tokenHash(d.token())); ok {
		http.Redirect(w, r, safeNext(r.URL.Query().Get("next")), http.StatusSeeOther)
		return
	}
	d.pages.render(w, http.StatusOK, "login", pageData{Title: "Sign in", Next: safeNext(r.URL.Query().Get("next"))})
}

// login checks the admin token from the form, in constant time and at a
// bounded rate per client, and starts a session.
func (d *Dashboard) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	next := safeNext(r.FormValue("next"))
	data := pageData{Title: "Sign in", Next: next}
	if err := d.cop.Check(r); err != nil {
		data.Error = "This sign-in came from another site and was refused. Open the dashboard directly and sign in there."
		d.pages.render(w, http.StatusForbidden, "login", data)
		return
	}
	if !d.logins.Allow(r.RemoteAddr) {
		w.Header().Set("Retry-After", "2")
		data.Error = "Too many sign-in attempts. Wait a few seconds, then try again."
		d.pages.render(w, http.StatusTooManyRequests, "login", data)
		return
	}
	current := d.token()
	given := tokenHash(strings.TrimSpace(r.PostFormValue("token")))
	want := tokenHash(current)
	if current == "" || subtle.ConstantTimeCompare(given[:], want[:]) != 1 {
		d.log.Warn("dashboard sign-in refused", "remote", r.RemoteAddr)
		data.Error = "That token is not the admin token. Check admin.token in relay.yaml and try again."
		d.pages.render(w, http.StatusUnauthorized, "login", data)
		return
	}
	id, s := d.sessions.create(want)
	setCookie(w, r, id, s.expires)
	d.log.Info("dashboard sign-in", "remote", r.RemoteAddr, "expires", s.expires)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// logout ends the session. It is a form POST carrying the CSRF token, so
// another site cannot sign a person out.
func (d *Dashboard) logout(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := d.cop.Check(r); err != nil {
		writeError(w, http.StatusForbidden, "cross-site request refused: the dashboard only accepts changes from its own pages")
		return
	}
	if s, ok := d.sessions.get(r, tokenHash(d.token())); ok {
		if !s.csrfMatches(r.PostFormValue("csrf")) {
			writeError(w, http.StatusForbidden, "missing or invalid CSRF token: reload the page and try again")
			return
		}
		d.sessions.delete(r)
		d.log.Info("dashboard sign-out", "remote", r.RemoteAddr)
	}
	setCookie(w, r, "", d.now())
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// safeNext keeps a post-sign-in redirect on this site: only a local path.
// Browsers drop tabs and newlines from a URL and read a backslash as a
// slash, so "/\t/evil.example" or "/\\evil.example" would lead off the
// site: anything but printable ASCII without spaces or backslashes is
// refused, and what is left must parse as a path with no scheme or host.
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") {
		return "/"
	}
	for i := 0; i < len(next); i++ {
		if c := next[i]; c <= ' ' || c >= 0x7f || c == '\\' {
			return "/"
		}
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" || strings.HasPrefix(u.Path, "//") {
		return "/"
	}
	return next
}
