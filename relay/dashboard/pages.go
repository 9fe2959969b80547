package dashboard

import (
	"bytes"
	"encoding/json"
	"html/template"
	"net/http"
	"net/url"
)

// pageData is what every template sees. It never holds a secret: the CSRF
// token is per session and worthless to another site without the cookie.
type pageData struct {
	Title       string
	Page        string // body data-page: which script runs
	Nav         string // which top navigation item is current
	CSRF        string
	Destination string
	ActivityID  string
	Next        string
	Error       string
}

// pages holds one template set per page, each the layout plus its content.
type pages struct {
	sets map[string]*template.Template
}

func mustParsePages() *pages {
	p := &pages{sets: map[string]*template.Template{}}
	for _, name := range []string{"login", "destinations", "destination", "activity", "contact"} {
		p.sets[name] = template.Must(template.New(name).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html"))
	}
	return p
}

// render executes a page into a buffer first, so a template error is a
// clean 500 rather than half a page.
func (p *pages) render(w http.ResponseWriter, status int, name string, data pageData) {
	var buf bytes.Buffer
	if err := p.sets[name].ExecuteTemplate(&buf, "layout", data); err != nil {
		http.Error(w, "the dashboard could not render this page", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	w.WriteHeader(status)
	_, _ = buf.WriteTo(w)
}

// signedIn renders a page for a person with a session, or sends them to
// the sign-in form and back here afterwards.
func (d *Dashboard) signedIn(w http.ResponseWriter, r *http.Request, name string, data pageData) {
	s, ok := d.sessions.get(r, tokenHash(d.token()))
	if !ok {
		http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
		return
	}
	data.CSRF = s.csrf
	data.Page = name
	d.pages.render(w, http.StatusOK, name, data)
}

func (d *Dashboard) destinationsPage(w http.ResponseWriter, r *http.Request) {
	d.signedIn(w, r, "destinations", pageData{Title: "Destinations", Nav: "destinations"})
}

func (d *Dashboard) destinationPage(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	d.signedIn(w, r, "destination", pageData{Title: name, Nav: "destinations", Destination: name})
}

func (d *Dashboard) activityPage(w http.ResponseWriter, r *http.Request) {
	d.signedIn(w, r, "activity", pageData{Title: "Activity trace", Nav: "activities", ActivityID: r.URL.Query().Get("id")})
}

// writeError answers in the admin API's error shape.
func writeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}
