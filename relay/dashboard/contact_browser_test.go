package dashboard_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/relaydev/relay/connectors/salesforce/sftest"
)

// TestPersonPageInBrowser: in headless Chromium against a real Relay, the
// People page shows a person's email state (opted out, by which activity)
// and their activities with each destination's status; erasing them from
// the page answers with the counts, and the API then knows none of their
// activities.
func TestPersonPageInBrowser(t *testing.T) {
	ok, billing, down := newReceiver(t), newReceiver(t), newReceiver(t)
	sf := sftest.New(t, sftest.WithClient("client-id", sfSecret))
	b := newBrowser(t)
	admin, ingest := startRelay(t, ok, billing, down, sf)
	ids := send(t, ingest,
		map[string]any{"type": "consent", "action": "opt-out", "contact": map[string]any{"email": "fay@example.com"}},
		map[string]any{"type": "email", "action": "open", "contact": map[string]any{"email": "Fay@Example.com"}},
		map[string]any{"type": "email", "action": "open", "contact": map[string]any{"email": "gus@example.com"}},
	)
	b.do("sign in", chromedp.Navigate(admin+"/login?next=%2Fcontacts%3Fby%3Demail%26q%3Dfay%2540example.com"), chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), adminToken), chromedp.Click(chromedp.CSS("form.form button[type=submit]")))
	b.waitJS("the email channel shows opted out", fmt.Sprintf(`(() => { const r = document.querySelector('#contact-channels tr[data-channel="email"]'); return r && r.textContent.includes('opted_out') && r.textContent.includes(%q); })()`, ids[0]))
	b.waitJS("both of fay's activities are listed", fmt.Sprintf(`document.querySelectorAll('#contact-activities tr.row').length === 2 && document.querySelector('#contact-activities tr[data-id=%q]') !== null`, ids[1]))
	if strings.Contains(b.eval(`document.querySelector('#contact-activities').textContent`), ids[2]) {
		t.Error("another person's activity is on fay's page")
	}
	b.checkPage("person page")
	b.shot("person")

	b.eval(`window.confirm = () => true; 'ok'`)
	b.do("erase fay", chromedp.Click(chromedp.CSS("#erase")))
	b.waitJS("the erasure is reported", `document.querySelector('#contact').textContent.includes('Erased 2 activities')`)
	b.shot("person-erased")
	status, body := call(t, http.DefaultClient, "GET", admin+"/v1/contacts?email=fay%40example.com", adminToken, "")
	if status != http.StatusOK || !strings.Contains(string(body), `"activities":[]`) {
		t.Errorf("after the erasure: %d %s", status, body)
	}
	if status, _ := call(t, http.DefaultClient, "GET", admin+"/v1/activities/"+ids[1], adminToken, ""); status != http.StatusNotFound {
		t.Errorf("trace of an erased activity: %d", status)
	}
}
