package dashboard

import "net/http"

// contactPage is a person's page: their channel states, newest activities
// and erasure (assets/contact.js, through /v1/contacts).
func (d *Dashboard) contactPage(w http.ResponseWriter, r *http.Request) {
	d.signedIn(w, r, "contact", pageData{Title: "Person", Nav: "contacts"})
}
