package e2e

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The second hostile pass (issue #20): probes TestHostileInput sends
// besides its first list, and sibling tests for what needs a relay of its
// own: expression budgets (with byte-exact source values and history
// replays over the same relay) and a burst of wrong tokens.

// gz is s gzipped.
func gz(s string) string {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	_, _ = io.WriteString(zw, s)
	_ = zw.Close()
	return b.String()
}

// sourcePost posts body to one of the source routes with its own
// credentials: ODP's x-api-key, Ortto's Basic auth (the ingest token as
// the password). header pairs are set after them ("" deletes).
func sourcePost(path, body string, header ...string) func(string) *http.Request {
	return func(base string) *http.Request {
		req, _ := http.NewRequest("POST", base+path, strings.NewReader(body))
		if path == "/v3/events" {
			req.Header.Set("x-api-key", ingestToken)
		} else {
			req.SetBasicAuth("ortto", ingestToken)
		}
		req.Header.Set("Content-Type", "application/json")
		for i := 0; i+1 < len(header); i += 2 {
			if header[i+1] == "" {
				req.Header.Del(header[i])
			} else {
				req.Header.Set(header[i], header[i+1])
			}
		}
		return req
	}
}

// withoutLength sends a request's body chunked (no Content-Length).
func withoutLength(build func(string) *http.Request) func(string) *http.Request {
	return func(base string) *http.Request {
		req := build(base)
		req.Body = io.NopCloser(io.MultiReader(req.Body))
		req.ContentLength = -1
		req.GetBody = nil
		return req
	}
}

// says checks that an answer's body holds every one of parts.
func says(parts ...string) func(answer) error {
	return func(a answer) error {
		for _, p := range parts {
			if !strings.Contains(string(a.body), p) {
				return fmt.Errorf("the answer does not say %q: %s", p, clipName(string(a.body)))
			}
		}
		return nil
	}
}

// goTypeWords are Go's own words, which no answer may show a sender.
var goTypeWords = []string{"json.Number", "<nil>", "map[", "interface", "Go value", "Go struct", "float64", "int64",
	"time.Time", "time.Duration", "TimeArg", "ReplayRequest", "json.RawMessage", "struct {", "[]string", "cannot unmarshal"}

// speaksJSON checks that an answer names fields and says no Go type name.
func speaksJSON(parts ...string) func(answer) error {
	return func(a answer) error {
		if err := says(parts...)(a); err != nil {
			return err
		}
		for _, w := range goTypeWords {
			if strings.Contains(string(a.body), w) {
				return fmt.Errorf("the answer speaks of Go's %q: %s", w, a.body)
			}
		}
		return nil
	}
}

// answersOnceAndCloses checks a smuggling probe: its connection closed
// right after one answer, nothing after it.
func answersOnceAndCloses(a answer) error {
	if len(a.rest) > 0 {
		return fmt.Errorf("the server sent more after its answer (the hidden request was read): %q", clipName(string(a.rest)))
	}
	if !a.closed {
		return fmt.Errorf("the connection was left open after the answer")
	}
	if !a.connClose {
		return fmt.Errorf("the answer does not say Connection: close")
	}
	return nil
}

// dashSession signs in to the dashboard once, when a probe first needs
// it, and keeps the session cookie.
type dashSession struct {
	mu     sync.Mutex
	cookie *http.Cookie
	err    error
}

// signInRequest is POST /login with the admin token and a next.
func signInRequest(base, token, next string) *http.Request {
	form := url.Values{"token": {token}, "next": {next}}
	req, _ := http.NewRequest("POST", base+"/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return req
}

func (s *dashSession) get(base string) *http.Cookie {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cookie != nil || s.err != nil {
		return s.cookie
	}
	client := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(signInRequest(base, adminToken, "/"))
	if err != nil {
		s.err = err
		return nil
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	for _, c := range resp.Cookies() {
		if c.Value != "" && resp.StatusCode == http.StatusSeeOther {
			s.cookie = c
			return c
		}
	}
	s.err = fmt.Errorf("signing in: status %d, cookies %v", resp.StatusCode, resp.Cookies())
	return nil
}

// onSite says why a redirect's Location would lead a browser off the
// site, or nil: it must be a path on the site in printable ASCII without
// spaces or backslashes, and stay on the site read as a browser reads it
// (WHATWG URL: C0 controls and spaces trimmed, tabs and newlines dropped,
// backslashes taken for slashes).
func onSite(loc string) error {
	if !strings.HasPrefix(loc, "/") || strings.HasPrefix(loc, "//") || strings.HasPrefix(loc, "/\\") {
		return fmt.Errorf("Location %q is not a path on the site", loc)
	}
	for i := 0; i < len(loc); i++ {
		if c := loc[i]; c <= ' ' || c >= 0x7f || c == '\\' {
			return fmt.Errorf("Location %q holds %q, which a browser drops or reads as a slash", loc, c)
		}
	}
	read := strings.TrimFunc(loc, func(r rune) bool { return r <= ' ' })
	read = strings.NewReplacer("\t", "", "\n", "", "\r", "", "\\", "/").Replace(read)
	site, _ := url.Parse("http://relay.site.invalid/login")
	u, err := site.Parse(read)
	if err != nil || u.Scheme != site.Scheme || u.Host != site.Host || u.User != nil {
		return fmt.Errorf("Location %q leads off the site (%v, %v)", loc, u, err)
	}
	return nil
}

// staysOnSite checks a sign-in redirect: a 303 whose Location is on the
// site (and is want, when want is set). Another status is left to the
// probe's want.
func staysOnSite(sess *dashSession, want string) func(answer) error {
	return func(a answer) error {
		sess.mu.Lock()
		err := sess.err
		sess.mu.Unlock()
		if err != nil {
			return err
		}
		if a.status != http.StatusSeeOther {
			return nil
		}
		loc := a.header.Get("Location")
		if want != "" && loc != want {
			return fmt.Errorf("Location %q, want %q", loc, want)
		}
		return onSite(loc)
	}
}

// secondPassProbes are the probes of issue #20's classes that one relay
// with the hostile config can take in turn: source routes (ODP, Ortto),
// body encodings, a Content-Length with a Transfer-Encoding smuggling a
// second request, replay bodies, and the redirect after sign-in.
func secondPassProbes() []probe {
	const (
		bad         = http.StatusBadRequest
		large       = http.StatusRequestEntityTooLarge
		unsupported = http.StatusUnsupportedMediaType
		ok          = http.StatusAccepted
	)
	var ps []probe
	add := func(p probe) { ps = append(ps, p) }

	// ODP /v3/events.
	ident := `"identifiers":{"email":"ann@example.com"}`
	data := func(id string, more ...string) string {
		return `"data":` + act(append([]string{`"idempotence_id":"` + id + `"`}, more...)...)
	}
	odp := func(name string, want int, body string, check func(answer) error, ids ...string) {
		add(probe{name: "ODP: " + name, build: sourcePost("/v3/events", body), want: []int{want}, ids: ids, check: check})
	}
	dup := says("duplicate")
	odp("duplicate type and action", bad, act(okType, `"type":"order","action":"purchase"`, ident, data("odp-d1")), dup, "odp-d1")
	odp("duplicate type and action, catalog one last", bad, act(`"type":"order","action":"purchase"`, okType, ident, data("odp-d2")), dup, "odp-d2")
	odp("duplicate type spelled with an escape", bad, act(okType, `"\u0074ype":"order"`, ident, data("odp-d3")), dup, "odp-d3")
	odp("duplicate identifier", bad, act(okType, `"identifiers":{"email":"a@example.com","email":"b@example.com"}`, data("odp-d4")), dup, "odp-d4")
	odp("duplicate identifiers member", bad, act(okType, ident, ident, data("odp-d5")), dup, "odp-d5")
	odp("duplicate deep in data", bad, act(okType, ident, data("odp-d6", `"items":[{"sku":"a","q":{"n":1,"n":2}}]`)), dup, "odp-d6")
	odp("duplicate in data by escape", bad, act(okType, ident, data("odp-d7", `"k":1`, `"\u006b":2`)), dup, "odp-d7")
	odp("duplicate idempotence_id", bad, act(okType, ident, `"data":{"idempotence_id":"odp-d8a","idempotence_id":"odp-d8b"}`), dup, "odp-d8a", "odp-d8b")
	odp("duplicate data member", bad, act(okType, ident, data("odp-d9a"), data("odp-d9b")), dup, "odp-d9a", "odp-d9b")
	odp("duplicate in the second event", bad, batch(act(okType, ident, data("odp-d10a")), act(okType, ident, data("odp-d10b", `"type":"order"`, `"type":"x"`))), dup, "odp-d10a", "odp-d10b")
	for i, m := range []string{`"Type":"order"`, `"TYPE":"email"`, `"Action":"open"`, `"IDENTIFIERS":{"email":"a@example.com"}`, `"Data":{"x":1}`, `"identifiers ":{}`} {
		odp(fmt.Sprintf("a member in another case %d: %s", i, m), bad, act(okType, ident, data(fmt.Sprintf("odp-c%d", i)), m), nil, fmt.Sprintf("odp-c%d", i))
	}
	odp("Idempotence_ID in data", bad, act(okType, ident, `"data":{"Idempotence_ID":"odp-c10"}`), nil, "odp-c10")
	odp("TS beside idempotence_id in data", bad, act(okType, ident, data("odp-c11", `"TS":1795860000`)), nil, "odp-c11")
	odp("Type alone", bad, act(`"Type":"email"`, `"action":"open"`, ident, data("odp-c12")), nil, "odp-c12")
	for i, s := range []string{"\xff", "\xc3\x28", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80"} {
		id := fmt.Sprintf("odp-u%d", i)
		odp(fmt.Sprintf("invalid UTF-8 %d in an identifier", i), bad, act(okType, `"identifiers":{"email":"a`+s+`@example.com"}`, data(id+"i")), nil, id+"i")
		odp(fmt.Sprintf("invalid UTF-8 %d in a data value", i), bad, act(okType, ident, data(id+"v", `"k":"v`+s+`"`)), nil, id+"v")
		odp(fmt.Sprintf("invalid UTF-8 %d in a data name", i), bad, act(okType, ident, data(id+"k", `"k`+s+`":1`)), nil, id+"k")
		odp(fmt.Sprintf("invalid UTF-8 %d in action", i), bad, act(`"type":"email"`, `"action":"open`+s+`"`, ident, data(id+"a")), nil, id+"a")
	}
	odp("a lone surrogate in data", bad, act(okType, ident, data("odp-s1", `"k":"\udc00"`)), nil, "odp-s1")
	for i, ws := range []string{"\u00a0", "\u2028", "\v", "\f", "\u3000", "\ufeff"} {
		id := fmt.Sprintf("odp-w%d", i)
		odp(fmt.Sprintf("%q between tokens", ws), bad, act(okType, ident, `"data":{"idempotence_id":"`+id+`",`+ws+`"k":1}`), nil, id)
	}
	odp("an empty array", bad, "[]", nil)
	odp("an array of an empty array", bad, "[[]]", nil)
	odp("null", bad, "null", nil)
	odp("an empty object", bad, "{}", nil)
	odp("a valid event", ok, act(okType, ident, data("odp-ok-1", `"html":"<a href=\"x\">&amp;</a>"`)), nil)
	odp("two valid events", ok, batch(act(okType, ident, data("odp-ok-2")), act(`"type":"pageview"`, ident, data("odp-ok-3"))), nil)

	// Ortto /v1/sources/ortto.
	contact := `"contact":{"str::email":"ann@example.com"}`
	ortto := func(name string, want int, body string, check func(answer) error, ids ...string) {
		add(probe{name: "Ortto: " + name, build: sourcePost("/v1/sources/ortto", body), want: []int{want}, ids: ids, check: check})
	}
	oid := func(id string) string { return `"id":"` + id + `"` }
	ortto("duplicate field_id", bad, act(`"activity":{"field_id":"act::o","field_id":"act::c"}`, contact, oid("ortto-d1")), dup, "ortto-d1")
	ortto("duplicate field_id, the mapped one last", bad, act(`"activity":{"field_id":"act:cm:nope","field_id":"act::o","id":"ortto-d2"}`, contact), dup, "ortto-d2")
	ortto("duplicate field_id spelled with an escape", bad, act(`"activity":{"field_id":"act::o","field\u005fid":"act::c"}`, contact, oid("ortto-d3")), dup, "ortto-d3")
	ortto("duplicate id", bad, act(`"activity":{"field_id":"act::o"}`, contact, oid("ortto-d4a"), oid("ortto-d4b")), dup, "ortto-d4a", "ortto-d4b")
	ortto("duplicate activity", bad, act(`"activity":{"field_id":"act::o"}`, `"activity":{"field_id":"act::c"}`, contact, oid("ortto-d5")), dup, "ortto-d5")
	ortto("duplicate in contact", bad, act(`"activity":{"field_id":"act::o"}`, `"contact":{"str::email":"a@example.com","str::email":"b@example.com"}`, oid("ortto-d6")), dup, "ortto-d6")
	ortto("duplicate deep in attr", bad, act(`"activity":{"field_id":"act::o","attr":{"obj::x":{"a":[{"b":1,"b":2}]}}}`, contact, oid("ortto-d7")), dup, "ortto-d7")
	ortto("duplicate in the second payload", bad, batch(act(`"activity":{"field_id":"act::o"}`, contact, oid("ortto-d8a")), act(`"activity":{"field_id":"act::o","id":"x","id":"y"}`, contact, oid("ortto-d8b"))), dup, "ortto-d8a", "ortto-d8b")
	for i, m := range []string{`"Activity":{"field_id":"act::o"}`, `"activity":{"Field_ID":"act::o","field_id":"act::o"}`, `"activity":{"FIELD_ID":"act::o"}`, `"ID":"x"`, `"Contact":{}`, `"activity":{"field_id":"act::o","Attr":{}}`} {
		body := act(m, contact, oid(fmt.Sprintf("ortto-c%d", i)))
		if !strings.Contains(m, `"activity"`) && !strings.Contains(m, `"Activity"`) {
			body = act(`"activity":{"field_id":"act::o"}`, m, contact, oid(fmt.Sprintf("ortto-c%d", i)))
		}
		ortto(fmt.Sprintf("a member in another case %d: %s", i, m), bad, body, nil, fmt.Sprintf("ortto-c%d", i))
	}
	for i, s := range []string{"\xff", "\xc3\x28", "\xed\xa0\x80"} {
		id := fmt.Sprintf("ortto-u%d", i)
		ortto(fmt.Sprintf("invalid UTF-8 %d in contact", i), bad, act(`"activity":{"field_id":"act::o"}`, `"contact":{"str::first":"A`+s+`"}`, oid(id+"c")), nil, id+"c")
		ortto(fmt.Sprintf("invalid UTF-8 %d in an attr name", i), bad, act(`"activity":{"field_id":"act::o","attr":{"str::`+s+`":1}}`, contact, oid(id+"a")), nil, id+"a")
		ortto(fmt.Sprintf("invalid UTF-8 %d in field_id", i), bad, act(`"activity":{"field_id":"act::o`+s+`"}`, contact, oid(id+"f")), nil, id+"f")
	}
	needs := says("activity")
	ortto("no activity", bad, act(contact, oid("ortto-n1")), needs, "ortto-n1")
	ortto("activity null", bad, act(`"activity":null`, contact, oid("ortto-n2")), needs, "ortto-n2")
	ortto("no activity, Ortto's other members", bad, act(oid("ortto-n3"), `"time":"2026-11-22T10:00:00Z"`, `"webhook_id":"w-1"`, contact), needs, "ortto-n3")
	ortto("an empty object", bad, "{}", needs)
	ortto("an array with a payload without activity", bad, batch(act(`"activity":{"field_id":"act::o"}`, contact, oid("ortto-n5a")), act(contact, oid("ortto-n5b"))), needs, "ortto-n5a", "ortto-n5b")
	ortto("an empty array", bad, "[]", nil)
	ortto("an array of an empty array", bad, "[[]]", nil)
	ortto("null", bad, "null", nil)
	ortto("a valid payload", ok, act(`"activity":{"field_id":"act::o","attr":{"str::url":"https://example.com/?a=1&b=<2>"}}`, contact, oid("ortto-ok-1")), nil)
	add(probe{name: "Ortto: the test delivery", build: sourcePost("/v1/sources/ortto", act(`"activity":{"field_id":"act::test_webhook"}`, contact, oid("ortto-test-1"))),
		want: []int{http.StatusOK}, hidden: []string{"ortto-test-1"}, check: says(`"stored":false`)})

	// Encodings and content types, on every ingest route.
	valid := func(id string) string { return act(okType, `"id":"`+id+`"`, `"contact":{"email":"enc@example.com"}`) }
	enc := func(name string, want int, build func(string) *http.Request, check func(answer) error, ids ...string) {
		add(probe{name: "encoding: " + name, build: build, want: []int{want}, ids: ids, check: check})
	}
	ce := func(v string) []string { return []string{"Content-Encoding", v} }
	enc("gzip", ok, ingestPost(gz(valid("enc-ok-1")), ce("gzip")...), nil)
	enc("GZIP in capitals", ok, ingestPost(gz(valid("enc-ok-2")), ce("GZIP")...), nil)
	enc("x-gzip", ok, ingestPost(gz(valid("enc-ok-3")), ce("x-gzip")...), nil)
	enc("a gzipped batch", ok, ingestPost(gz(batch(valid("enc-ok-4"), valid("enc-ok-5"))), ce("gzip")...), nil)
	enc("gzip, chunked", ok, withoutLength(ingestPost(gz(valid("enc-ok-6")), ce("gzip")...)), nil)
	enc("gzip unpacking to just under max_body", ok, ingestPost(gz("["+strings.Repeat(" ", 4<<20)+valid("enc-ok-7")+"]"), ce("gzip")...), nil)
	enc("gzip to ODP", ok, sourcePost("/v3/events", gz(act(okType, ident, data("enc-ok-8"))), ce("gzip")...), nil)
	enc("gzip to Ortto", ok, sourcePost("/v1/sources/ortto", gz(act(`"activity":{"field_id":"act::o"}`, contact, oid("enc-ok-9"))), ce("gzip")...), nil)
	notGzip := says("gzip")
	enc("a plain body labelled gzip", bad, ingestPost(valid("enc-b1"), ce("gzip")...), notGzip, "enc-b1")
	enc("a plain batch labelled x-gzip", bad, ingestPost(batch(valid("enc-b2a"), valid("enc-b2b")), ce("x-gzip")...), notGzip, "enc-b2a", "enc-b2b")
	enc("gzip cut short", bad, ingestPost(gz(valid("enc-b3"))[:20], ce("gzip")...), notGzip, "enc-b3")
	corrupt := []byte(gz(valid("enc-b4")))
	corrupt[len(corrupt)-6] ^= 0xff // the CRC-32 in the trailer
	enc("two gzip members, each a whole activity", bad, ingestPost(gz(valid("enc-m1a"))+gz(valid("enc-m1b")), ce("gzip")...), nil, "enc-m1a", "enc-m1b")
	enc("a gzip member, then a second batch member", bad, ingestPost(gz(batch(valid("enc-m2a")))+gz(batch(valid("enc-m2b"))), ce("gzip")...), nil, "enc-m2a", "enc-m2b")
	enc("a gzip member, then plain bytes", bad, ingestPost(gz(valid("enc-m3"))+valid("enc-m3b"), ce("gzip")...), nil, "enc-m3", "enc-m3b")
	enc("gzip with a wrong checksum", bad, ingestPost(string(corrupt), ce("gzip")...), notGzip, "enc-b4")
	enc("a plain body labelled gzip, to ODP", bad, sourcePost("/v3/events", act(okType, ident, data("enc-b5")), ce("gzip")...), notGzip, "enc-b5")
	enc("a plain body labelled gzip, to Ortto", bad, sourcePost("/v1/sources/ortto", act(`"activity":{"field_id":"act::o"}`, contact, oid("enc-b6")), ce("gzip")...), notGzip, "enc-b6")
	for i, c := range []string{"br", "deflate", "compress", "zstd", "gzip, gzip", "gzip, br", "BR"} {
		id := fmt.Sprintf("enc-c%d", i)
		body := valid(id)
		if strings.HasPrefix(c, "gzip") {
			body = gz(body)
		}
		enc("Content-Encoding "+c, unsupported, ingestPost(body, ce(c)...), says(strings.ToLower(strings.Fields(strings.TrimSuffix(c, ","))[0])), id)
	}
	enc("br to ODP", unsupported, sourcePost("/v3/events", act(okType, ident, data("enc-c10")), ce("br")...), says("br"), "enc-c10")
	ct := func(v string) []string { return []string{"Content-Type", v} }
	for i, c := range []string{"text/plain", "text/plain; charset=utf-8", "application/x-www-form-urlencoded", "multipart/form-data; boundary=b", "application/json; charset=utf-16", "text/json", "application/xml", "application/json, text/plain"} {
		id := fmt.Sprintf("enc-t%d", i)
		body := valid(id)
		if strings.HasPrefix(c, "application/x-www") {
			body = "type=email&action=open&id=" + id
		}
		enc("Content-Type "+c, unsupported, ingestPost(body, ct(c)...), nil, id)
	}
	enc("text/plain to ODP", unsupported, sourcePost("/v3/events", act(okType, ident, data("enc-t10")), ct("text/plain")...), says("text/plain"), "enc-t10")
	enc("a form to Ortto", unsupported, sourcePost("/v1/sources/ortto", "activity=act::o&id=enc-t11", ct("application/x-www-form-urlencoded")...), says("application/x-www-form-urlencoded"), "enc-t11")
	spaces := strings.Repeat(" ", 10<<20) // 10 MiB of spaces, about 10 KiB packed
	bomb := says("max_body")
	enc("a gzip bomb", large, ingestPost(gz("["+spaces+"]"), ce("gzip")...), bomb)
	enc("a gzip bomb around an activity", large, ingestPost(gz("["+valid("enc-g2")+spaces+"]"), ce("gzip")...), bomb, "enc-g2")
	enc("a gzip bomb, chunked", large, withoutLength(ingestPost(gz("["+valid("enc-g3")+","+spaces+valid("enc-g3b")+"]"), ce("gzip")...)), bomb, "enc-g3", "enc-g3b")
	enc("a gzip bomb to ODP", large, sourcePost("/v3/events", gz("["+act(okType, ident, data("enc-g4"))+spaces+"]"), ce("gzip")...), bomb, "enc-g4")
	enc("a gzip bomb to Ortto", large, sourcePost("/v1/sources/ortto", gz("["+act(`"activity":{"field_id":"act::o"}`, contact, oid("enc-g5"))+spaces+"]"), ce("gzip")...), bomb, "enc-g5")

	// A Content-Length beside a Transfer-Encoding, hiding a second request
	// after the chunked body: one answer, the connection closed, the
	// hidden activity never stored.
	smuggle := func(name string, want int, first func(chunked, second string) []string, proto, chunked string, hidden ...string) {
		add(probe{name: "smuggling: " + name, want: []int{want}, closes: true, hidden: hidden, check: answersOnceAndCloses,
			raw: func(host string) []byte {
				var second string
				for _, id := range hidden {
					h := valid(id)
					second += fmt.Sprintf("POST /v1/activities HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", host, ingestToken, len(h), h)
				}
				return rawPost(proto, first(chunked, second), chunked+second, false)(host)
			}})
	}
	chunk := func(body string) string { return fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(body), body) }
	clOf := func(s string) string { return fmt.Sprintf("Content-Length: %d", len(s)) }
	te := "Transfer-Encoding: chunked"
	smuggle("an empty chunked body", bad, func(c, _ string) []string { return []string{clOf(c), te} }, "HTTP/1.1", "0\r\n\r\n", "smug-1")
	smuggle("an activity in the chunked body", ok, func(c, _ string) []string { return []string{clOf(c), te} }, "HTTP/1.1", chunk(valid("smug-ok-2")), "smug-2")
	smuggle("Chunked in capitals", bad, func(c, _ string) []string { return []string{clOf(c), "Transfer-Encoding: Chunked"} }, "HTTP/1.1", "0\r\n\r\n", "smug-3")
	smuggle("Transfer-Encoding before Content-Length", ok, func(c, _ string) []string { return []string{"transfer-encoding: chunked", clOf(c)} }, "HTTP/1.1", chunk(valid("smug-ok-4")), "smug-4")
	smuggle("a Content-Length that covers the hidden request", ok, func(c, s string) []string { return []string{clOf(c + s), te} }, "HTTP/1.1", chunk(valid("smug-ok-5")), "smug-5")
	smuggle("Content-Length 0", ok, func(string, string) []string { return []string{"Content-Length: 0", te} }, "HTTP/1.1", chunk(valid("smug-ok-6")), "smug-6")
	smuggle("two hidden requests", ok, func(c, _ string) []string { return []string{clOf(c), te} }, "HTTP/1.1", chunk(valid("smug-ok-7")), "smug-7a", "smug-7b")
	smuggle("chunked alone, a request after it", ok, func(string, string) []string { return []string{te} }, "HTTP/1.1", chunk(valid("smug-ok-8")), "smug-8")
	smuggle("HTTP/1.0 with both", bad, func(c, _ string) []string { return []string{clOf(c), te} }, "HTTP/1.0", "0\r\n\r\n", "smug-9")

	// Replay bodies: an empty id list is not "every dead letter"; times
	// and types are refused naming the field in JSON's words.
	replay := func(name, body string, check func(answer) error) {
		add(probe{name: "admin: replay " + name, admin: true, want: []int{bad}, check: check,
			build: adminReq("POST", "/v1/replay", body, "Content-Type", "application/json")})
	}
	for _, extra := range []string{"", `,"history":true`, `,"dry_run":true`, `,"since":"1h"`} {
		replay(`ids [] `+extra, `{"destination":"sink","ids":[]`+extra+`}`, speaksJSON("ids"))
	}
	replay("ids null", `{"destination":"sink","ids":null}`, speaksJSON("ids"))
	replay(`ids [""]`, `{"destination":"sink","ids":[""]}`, speaksJSON("ids"))
	replay(`ids ["a",""]`, `{"destination":"sink","ids":["a",""]}`, speaksJSON("ids"))
	replay(`ids [null]`, `{"destination":"sink","ids":[null]}`, speaksJSON("ids[0]", "null"))
	replay(`ids ["a",7]`, `{"destination":"sink","ids":["a",7]}`, speaksJSON("ids[1]", "number"))
	replay(`ids "a"`, `{"destination":"sink","ids":"a"}`, speaksJSON("ids", "string"))
	for _, field := range []string{"since", "until"} {
		for _, v := range []string{`"yesterday"`, `"-5h"`, `""`, `"-1m"`, `"5 hours"`, `"P1D"`, `"−5h"`, `"2026-13-01T00:00:00Z"`} {
			replay(fmt.Sprintf("%s %s", field, v), `{"destination":"sink",`+strconv.Quote(field)+`:`+v+`}`, speaksJSON(field))
			replay(fmt.Sprintf("history, %s %s", field, v), `{"destination":"sink","history":true,`+strconv.Quote(field)+`:`+v+`}`, speaksJSON(field))
		}
		for v, kind := range map[string]string{"5": "number", "true": "boolean", "{}": "object", `["5h"]`: "array"} {
			replay(fmt.Sprintf("%s %s", field, v), `{"destination":"sink",`+strconv.Quote(field)+`:`+v+`}`, speaksJSON(field, kind))
		}
	}
	replay("history a string", `{"destination":"sink","history":"yes"}`, speaksJSON("history", "string"))

	// The redirect after sign-in stays on the site.
	sess := &dashSession{}
	login := func(name, query, want string) {
		add(probe{name: "sign-in redirect: next=" + name, admin: true, want: []int{http.StatusSeeOther}, check: staysOnSite(sess, want),
			build: func(base string) *http.Request {
				req, _ := http.NewRequest("GET", base+"/login", nil)
				req.URL.RawQuery = "next=" + query
				if c := sess.get(base); c != nil {
					req.AddCookie(c)
				}
				return req
			}})
	}
	for _, q := range []string{"/%09/evil.example/pwned", "/%0a/evil.example/pwned", "/%0d/evil.example/pwned", "/%0d%0a/evil.example",
		`/\evil.example`, `/\\evil.example`, `/\/evil.example`, "/%5cevil.example", "/%5C%5Cevil.example", "//evil.example", "///evil.example",
		"%2f%2fevil.example", "/%2f/evil.example", "/%20/evil.example", "%20//evil.example", "%09//evil.example", "https:evil.example",
		"https://evil.example/", "http:/evil.example", "HTTPS:%2f%2fevil.example", "javascript:alert(1)", "/%00/evil.example",
		"/%7f/evil.example", "/%E2%80%A8/evil.example", "/%C2%A0/evil.example", "/%E3%80%80/evil.example", "//evil.example%2f..",
		"/.%09/evil.example", "evil.example", "@evil.example", "", "/..//evil.example", "/.//evil.example", "/%252F%252Fevil.example",
		"/.%2F%2Fevil.example", "/?//evil.example", "/#//evil.example", "/%23/%2F/evil.example"} {
		login(q, q, "")
	}
	login("/destinations/sink (a path on the site)", "/destinations/sink", "/destinations/sink")
	login("/activities (a path on the site)", "/activities", "/activities")
	for _, next := range []string{"/\t/evil.example/pwned", "//evil.example", `/\evil.example`} {
		add(probe{name: fmt.Sprintf("sign-in POST with next %q", next), admin: true, want: []int{http.StatusSeeOther}, check: staysOnSite(sess, "/"),
			build: func(base string) *http.Request { return signInRequest(base, adminToken, next) }})
	}
	rawLogin := func(target string) {
		add(probe{name: fmt.Sprintf("sign-in redirect, raw: next=%q", target), admin: true, server: true,
			want: []int{http.StatusSeeOther, bad}, check: staysOnSite(sess, ""),
			raw: func(host string) []byte {
				cookie := ""
				if c := sess.get("http://" + host); c != nil {
					cookie = "Cookie: " + c.Name + "=" + c.Value + "\r\n"
				}
				return []byte("GET /login?next=" + target + " HTTP/1.1\r\nHost: " + host + "\r\n" + cookie + "Connection: close\r\n\r\n")
			}})
	}
	for _, target := range []string{"/\t/evil.example/pwned", "\t//evil.example", `/\\evil.example`, "/\x0b/evil.example", "/\x7f/evil.example"} {
		rawLogin(target)
	}
	return ps
}

// appendConfig adds text to the end of the relay.yaml at path (after its
// destinations list: more destinations).
func appendConfig(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
}

// webhookDest is a destination of relay.yaml's list, with extra keys.
func webhookDest(name, url, extra string) string {
	return fmt.Sprintf(`  - name: %s
    type: webhook
    url: %s
    allow_private_network: true
    secrets: [%q]
    timeout: 2s
    retry: {schedule: [100ms, 200ms, 500ms]}
%s`, name, url, secret, extra)
}

// postIngest posts body to an ingest route and returns the ids of its
// 202, failing the test on any other answer.
func postIngest(t *testing.T, build func(string) *http.Request, ingest string) []string {
	t.Helper()
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(build(ingest))
	if err != nil {
		t.Fatalf("posting: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var out struct {
		IDs []string `json:"ids"`
	}
	if resp.StatusCode != http.StatusAccepted || json.Unmarshal(body, &out) != nil {
		t.Fatalf("posting: %d %s", resp.StatusCode, body[:min(len(body), 500)])
	}
	return out.IDs
}

// deadLetterReasons maps each dead letter of dest to its last attempt's
// error.
func deadLetterReasons(admin, dest string) (map[string]string, error) {
	code, body, err := adminDo("GET", admin+"/v1/deadletters?limit=1000&destination="+dest)
	if err != nil {
		return nil, err
	}
	var out struct {
		DeadLetters []struct {
			ID       string `json:"id"`
			Attempts []struct {
				Error string `json:"error"`
			} `json:"attempts"`
		} `json:"deadletters"`
	}
	if code != http.StatusOK || json.Unmarshal(body, &out) != nil {
		return nil, fmt.Errorf("dead letters of %s: %d %s", dest, code, clipName(string(body)))
	}
	reasons := map[string]string{}
	for _, dl := range out.DeadLetters {
		reason := ""
		if n := len(dl.Attempts); n > 0 {
			reason = dl.Attempts[n-1].Error
		}
		reasons[dl.ID] = reason
	}
	return reasons, nil
}

// metricValue reads the first series of name whose labels hold every one
// of labels ("destination=\"bomb\"") from /metrics; -1 when there is none.
func metricValue(t *testing.T, admin, name string, labels ...string) float64 {
	t.Helper()
	code, body, err := adminDo("GET", admin+"/metrics")
	if err != nil || code != http.StatusOK {
		t.Fatalf("metrics: %d %v", code, err)
	}
	for line := range strings.SplitSeq(string(body), "\n") {
		if !strings.HasPrefix(line, name+"{") {
			continue
		}
		all := true
		for _, l := range labels {
			all = all && strings.Contains(line, l)
		}
		if !all {
			continue
		}
		fields := strings.Fields(line)
		v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		return v
	}
	return -1
}

// replayAnswer is what POST /v1/replay answered.
type replayAnswer struct {
	status   int
	Replayed int      `json:"replayed"`
	IDs      []string `json:"ids"`
	Error    string   `json:"error"`
}

func postReplay(t *testing.T, admin, body string) replayAnswer {
	t.Helper()
	code, out, err := adminReqDo(admin, "POST", "/v1/replay", body)
	if err != nil {
		t.Fatalf("replay %s: %v", body, err)
	}
	a := replayAnswer{status: code}
	if err := json.Unmarshal(out, &a); err != nil {
		t.Fatalf("replay %s: %d %s", body, code, out)
	}
	return a
}

func adminReqDo(admin, method, path, body string) (int, []byte, error) {
	req := adminReq(method, path, body, "Content-Type", "application/json")(admin)
	resp, err := (&http.Client{Timeout: 60 * time.Second}).Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	return resp.StatusCode, out, err
}

// rssSampler reads a process's VmRSS every 50 ms until stopped and keeps
// the largest.
type rssSampler struct {
	stop chan struct{}
	done chan struct{}
	peak int // KiB
}

func sampleRSS(pid int) *rssSampler {
	s := &rssSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			if kb, err := memKB(pid, "VmRSS"); err == nil && kb > s.peak {
				s.peak = kb
			}
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

// peakMB stops the sampler and returns the largest VmRSS it read, in MB.
func (s *rssSampler) peakMB() float64 {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
	return float64(s.peak) / 1024
}

// TestHostileExpressionBudgets runs one relay whose destinations hold
// expressions that would cost without bound over a 20,000-character
// string and a 400-element list: a body that multiplies the string with
// replace() (with and without a count), and `when` rules of loops nested
// three deep or maps of maps over the list; fed by the fan-out or, with
// `order: contact`, in order per contact. Each such activity becomes a
// dead letter for each of them whose reason names the budget (counted as
// relay_rule_errors_total{reason=budget}), none of their receivers gets
// anything, the relay's RSS stays low, and a plain destination beside them
// gets every activity. Over the same relay: ODP and Ortto values with <,
// >, &, U+2028 and odd spacing reach the plain receiver byte for byte, and
// history replays count exactly what each destination takes (its include,
// exclude and when; a when over its budget takes nothing).
func TestHostileExpressionBudgets(t *testing.T) {
	bin := binary(t, "./cmd/relay")
	plain, plainURL := newRecorder(t)
	never := newSink(t)
	picky := newSink(t)
	cfg, ingest, admin := hostileConfig(t, t.TempDir(), plainURL+"/hook", "")
	budgetDests := []string{"bomb", "bombcount", "loops", "maps", "bomb-ordered", "loops-ordered"}
	appendConfig(t, cfg,
		webhookDest("bomb", never.srv.URL+"/bomb", `    include: [order.purchase]
    body: '{"x": activity.attributes.s.replace("a", activity.attributes.s)}'
`)+webhookDest("bombcount", never.srv.URL+"/bombcount", `    include: [order.purchase]
    body: '{"x": activity.attributes.s.replace("a", activity.attributes.s, 1000)}'
`)+webhookDest("loops", never.srv.URL+"/loops", `    include: [order.purchase]
    when: 'activity.attributes.l.all(a, activity.attributes.l.all(b, activity.attributes.l.all(c, c != -1)))'
`)+webhookDest("maps", never.srv.URL+"/maps", `    include: [order.purchase]
    when: 'size(activity.attributes.l.map(a, activity.attributes.l.map(b, activity.attributes.l))) > 0'
`)+webhookDest("bomb-ordered", never.srv.URL+"/bomb-ordered", `    include: [order.purchase]
    order: contact
    body: '{"x": activity.attributes.s.replace("a", activity.attributes.s)}'
`)+webhookDest("loops-ordered", never.srv.URL+"/loops-ordered", `    include: [order.purchase]
    order: contact
    when: 'activity.attributes.l.all(a, activity.attributes.l.all(b, activity.attributes.l.all(c, c != -1)))'
`)+webhookDest("picky", picky.srv.URL+"/picky", `    include: ["email.*"]
    exclude: [email.click]
    when: 'has(activity.attributes.keep) && activity.attributes.keep == "yes"'
`))
	relay := start(t, bin, "serve", "-c", cfg)
	waitHTTP(t, admin+"/readyz", 60*time.Second, relay)
	if os.Getenv("RELAY_E2E_LOG") != "" {
		t.Cleanup(func() { t.Logf("relay output:\n%s", relay.out) })
	}
	rss := sampleRSS(relay.cmd.Process.Pid)
	began := time.Now()

	// Activities over the budgets: a long string of a's and a long list,
	// in variants; and ordinary ones between them.
	list := func(n int, format string) string {
		items := make([]string, n)
		for i := range items {
			items[i] = fmt.Sprintf(format, i)
		}
		return "[" + strings.Join(items, ",") + "]"
	}
	variants := []struct{ s, l string }{
		{strings.Repeat("a", 20_000), list(400, "%d")},
		{strings.Repeat("a", 20_000), list(400, "%d.5")},
		{strings.Repeat("ab", 10_000), list(400, "%d")},
		{strings.Repeat("a", 40_000), list(800, "%d")},
		{strings.Repeat("a", 19_999) + "é", list(400, "1%012d")},
	}
	var overBudget, accepted []string
	budgetAct := func(i int) string {
		v := variants[i%len(variants)]
		id := fmt.Sprintf("budget-%d", i)
		overBudget = append(overBudget, id)
		return act(`"type":"order","action":"purchase"`, `"id":"`+id+`"`, `"contact":{"email":"b@example.com"}`,
			`"attributes":{"s":"`+v.s+`","l":`+v.l+`}`)
	}
	var pickyWants []string
	ordinary := func(i int) string {
		id := fmt.Sprintf("plain-%d", i)
		name := []string{okType, `"type":"email","action":"click"`, `"type":"pageview"`}[i%3]
		keep := []string{"yes", "no"}[i%2]
		if i%3 == 0 && keep == "yes" {
			pickyWants = append(pickyWants, id)
		}
		return act(name, `"id":"`+id+`"`, `"contact":{"email":"p@example.com"}`, `"attributes":{"keep":"`+keep+`","n":`+strconv.Itoa(i)+`}`)
	}
	var first, second []string
	for i := range 5 {
		first = append(first, budgetAct(i))
	}
	accepted = append(accepted, postIngest(t, ingestPost(batch(first...)), ingest)...)
	for i := range 12 {
		second = append(second, ordinary(i))
	}
	accepted = append(accepted, postIngest(t, ingestPost(batch(second...)), ingest)...)
	for i := 5; i < 10; i++ {
		accepted = append(accepted, postIngest(t, ingestPost(budgetAct(i)), ingest)...)
		accepted = append(accepted, postIngest(t, ingestPost(ordinary(2*i)), ingest)...)
		accepted = append(accepted, postIngest(t, ingestPost(ordinary(2*i+1)), ingest)...)
	}
	accepted = unique(accepted)
	sent := time.Now()
	if !waitFor(60*time.Second, func() bool { return len(reckon(plain.sink, accepted, nil).missing) == 0 }) {
		t.Fatalf("the plain destination did not get every activity within 60s: missing %v", reckon(plain.sink, accepted, nil).missing)
	}
	plainTook := time.Since(sent)
	t.Logf("the plain destination got all %d activities (%d over the budgets of the others) %s after the last was accepted",
		len(accepted), len(overBudget), plainTook.Round(time.Millisecond))

	// Every activity over a budget is a dead letter of each budget
	// destination, saying why; their receivers get nothing.
	budgetDead := 0
	for _, dest := range budgetDests {
		var reasons map[string]string
		var err error
		if !waitFor(60*time.Second, func() bool {
			reasons, err = deadLetterReasons(admin, dest)
			return err == nil && len(reasons) >= len(overBudget)
		}) {
			t.Errorf("%s: %d of %d activities over its budget are dead letters after 60s (%v): %v", dest, len(reasons), len(overBudget), err, reasons)
			continue
		}
		for _, id := range overBudget {
			switch reason, ok := reasons[id]; {
			case !ok:
				t.Errorf("%s: %s is not a dead letter", dest, id)
			case !strings.Contains(reason, "budget"):
				t.Errorf("%s: the dead letter %s does not name the budget: %q", dest, id, reason)
			default:
				budgetDead++
			}
		}
		for id := range reasons {
			if !slices.Contains(overBudget, id) {
				t.Errorf("%s: %s is a dead letter, but was not over any budget: %q", dest, id, reasons[id])
			}
		}
		t.Logf("%s: %d dead letters, e.g. %q", dest, len(reasons), reasons[overBudget[0]])
		if got := metricValue(t, admin, "relay_rule_errors_total", `destination="`+dest+`"`, `reason="budget"`); got != float64(len(overBudget)) {
			t.Errorf("%s: relay_rule_errors_total{reason=budget} = %v, want %d", dest, got, len(overBudget))
		}
	}
	if n := never.received(); n != 0 {
		t.Errorf("the receiver of the budget destinations got %d activities: %v", n, never.snapshot())
	}

	// ODP and Ortto values reach the receiver byte for byte.
	ls, ps := "\u2028", "\u2029"
	type exact struct{ id, contact, attributes string }
	var exacts []exact
	odpEvent := func(id, identifiers, data string) string {
		exacts = append(exacts, exact{id, identifiers, data})
		return `{"type":"email","action":"open","identifiers":` + identifiers + `,"data":` + data + `}`
	}
	events := []string{
		odpEvent("odp-exact-1", `{"email":"ann+<1>&co@example.com"}`,
			`{"idempotence_id":"odp-exact-1","html":"<b>a & b</b> > c <script>x</script>","keep":"yes"}`),
		odpEvent("odp-exact-2", "{ \"email\" :\t\"b@example.com\" ,\r\n \"vuid\":\"v<2>\" }",
			"{\"idempotence_id\":\"odp-exact-2\",\r\n  \"sep\" :\t\"x"+ls+"y"+ps+"z\" ,\n\"esc\":\"\\u003c\\u0026\\u003e\\u2028\\/\" ,  \"keep\":\"yes\"\t}"),
		odpEvent("odp-exact-3", `{"customer_id":"c&3"}`,
			"{\n\t\"idempotence_id\" : \"odp-exact-3\",\n\t\"ws\": \"\u00a0\u3000\u200b\ufeff\u0085\\t \",\n\t\"n\": 1.50, \"big\": 12345678901234567891, \"tiny\": 1e-999,\n\t\"keep\": \"yes\", \"nested\": { \"a\" : [ 1 , \"<&>\" , { } , [ ] ] }\n}"),
		odpEvent("odp-exact-4", `{"email":"d@example.com"}`,
			`{"idempotence_id":"odp-exact-4","amp":"&amp;&lt;&gt;","ls":"`+ls+ls+`","keep":"no","ts":1795860000}`),
	}
	for _, id := range []string{"odp-exact-1", "odp-exact-2", "odp-exact-3"} {
		pickyWants = append(pickyWants, id)
	}
	accepted = append(accepted, postIngest(t, sourcePost("/v3/events", events[0]), ingest)...)
	accepted = append(accepted, postIngest(t, sourcePost("/v3/events", batch(events[1:]...)), ingest)...)
	orttoContact := "{\"str::email\":\"o<5>&co@example.com\", \"str::first\" : \"A" + ls + "B\"}"
	orttoAttr := "{ \"str::url\":\"https://example.com/?a=1&b=<2>\",\t\"keep\":\"yes\" }"
	exacts = append(exacts, exact{"ortto-exact-5", orttoContact, orttoAttr})
	pickyWants = append(pickyWants, "ortto-exact-5")
	accepted = append(accepted, postIngest(t, sourcePost("/v1/sources/ortto",
		`{"activity":{"field_id":"act::o","attr":`+orttoAttr+`},"contact":`+orttoContact+`,"id":"ortto-exact-5"}`), ingest)...)
	accepted = unique(accepted)
	if !waitFor(30*time.Second, func() bool { return len(reckon(plain.sink, accepted, nil).missing) == 0 }) {
		t.Fatalf("the source activities were not delivered within 30s: %v", reckon(plain.sink, accepted, nil).missing)
	}
	for _, e := range exacts {
		body := plain.body(e.id)
		for _, m := range []struct{ field, want string }{{"contact", e.contact}, {"attributes", e.attributes}} {
			got, found, err := member(body, "data", m.field)
			if err != nil || !found || string(got) != m.want {
				t.Errorf("%s: data.%s arrived as %q (found %v, %v), want byte for byte %q", e.id, m.field, got, found, err, m.want)
			}
		}
	}

	// History replays count what the destination takes.
	slices.Sort(pickyWants)
	if !waitFor(30*time.Second, func() bool { return picky.received() >= len(pickyWants) }) {
		t.Errorf("picky got %d of %d activities within 30s", picky.received(), len(pickyWants))
	}
	if got := slices.Sorted(func(yield func(string) bool) {
		for id := range picky.snapshot() {
			if !yield(id) {
				return
			}
		}
	}); !slices.Equal(got, pickyWants) {
		t.Errorf("picky got %v, want %v", got, pickyWants)
	}
	for _, c := range []struct {
		name, body string
		want       int
	}{
		{"plain, history", `{"destination":"sink","history":true,"dry_run":true}`, len(accepted)},
		{"picky, history", `{"destination":"picky","history":true,"dry_run":true,"since":"1h"}`, len(pickyWants)},
		{"picky, history of email.open", `{"destination":"picky","history":true,"dry_run":true,"activity":"email.open"}`, len(pickyWants)},
		{"picky, history of email.click", `{"destination":"picky","history":true,"dry_run":true,"activity":"email.click"}`, 0},
		{"bomb, history", `{"destination":"bomb","history":true,"dry_run":true}`, len(overBudget)},
		{"bombcount, history", `{"destination":"bombcount","history":true,"dry_run":true,"since":"1h"}`, len(overBudget)},
		{"loops (a when over its budget), history", `{"destination":"loops","history":true,"dry_run":true}`, 0},
		{"maps (a when over its budget), history", `{"destination":"maps","history":true,"dry_run":true}`, 0},
		{"bomb, dead letters", `{"destination":"bomb","dry_run":true}`, len(overBudget)},
		{"loops, dead letters", `{"destination":"loops","dry_run":true}`, 0},
	} {
		a := postReplay(t, admin, c.body)
		if a.status != http.StatusOK || a.Replayed != c.want || len(a.IDs) != c.want {
			t.Errorf("dry run %s: %d, replayed %d with %d ids, want %d: %s", c.name, a.status, a.Replayed, len(a.IDs), c.want, a.Error)
		}
	}
	a := postReplay(t, admin, `{"destination":"picky","history":true,"since":"1h"}`)
	if a.status != http.StatusOK || a.Replayed != len(pickyWants) {
		t.Errorf("history replay to picky: %d, replayed %d, want %d: %s", a.status, a.Replayed, len(pickyWants), a.Error)
	}
	twice := func() bool {
		got := picky.snapshot()
		for _, id := range pickyWants {
			if got[id] < 2 {
				return false
			}
		}
		return true
	}
	if !waitFor(30*time.Second, twice) {
		t.Errorf("picky did not get the %d replayed activities within 30s: %v", len(pickyWants), picky.snapshot())
	}
	if got := picky.snapshot(); len(got) != len(pickyWants) {
		t.Errorf("the replay to picky delivered what it does not take: %v", got)
	}
	if n := never.received(); n != 0 {
		t.Errorf("the receiver of the budget destinations got %d activities: %v", n, never.snapshot())
	}

	tl := settle(t, "hostile budgets", plain.sink, accepted, func() []string { return deadLetters(t, admin, "sink") }, 30*time.Second)
	peak := rss.peakMB()
	hwm := rssMB(t, relay, "VmHWM")
	t.Logf("relay RSS: peak sampled %.0f MB, VmHWM %.0f MB", peak, hwm)
	if peak >= 500 {
		t.Errorf("the relay's RSS reached %.0f MB, want under 500 MB", peak)
	}
	select {
	case <-relay.done:
		t.Fatalf("the relay exited:\n%s", relay.out)
	default:
	}
	report(t, "hostile budgets", tl, fmt.Sprintf("over_budget=%d budget_dead_letters=%d plain_took=%s rss_peak_mb=%.0f picky_replayed=%d took=%s",
		len(overBudget), budgetDead, plainTook.Round(time.Millisecond), peak, a.Replayed, time.Since(began).Round(time.Millisecond)))
	relay.stop(t)
	if out := relay.out.String(); strings.Contains(out, "panic") {
		t.Errorf("the relay's output shows a panic:\n%s", tail(out, 8000))
	}
}

// TestHostileWrongTokens sends one relay a burst of wrong admin tokens
// from one client, in several shapes and behind forged forwarding
// headers: once past the allowance every request of that client is a 429
// with Retry-After, the right token too, while ingest counts apart; the
// same holds over the three ingest routes and for dashboard sign-ins; once
// Retry-After has passed the right token works again and nothing was lost.
func TestHostileWrongTokens(t *testing.T) {
	bin := binary(t, "./cmd/relay")
	s := newSink(t)
	cfg, ingest, admin := hostileConfig(t, t.TempDir(), s.srv.URL+"/hook", "")
	relay := start(t, bin, "serve", "-c", cfg)
	waitHTTP(t, admin+"/readyz", 60*time.Second, relay)
	client := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	do := func(req *http.Request) answer {
		t.Helper()
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return answer{status: resp.StatusCode, header: resp.Header, body: body}
	}
	limitedWell := func(what string, a answer) {
		t.Helper()
		if s, err := strconv.Atoi(a.header.Get("Retry-After")); err != nil || s < 1 {
			t.Errorf("%s: 429 with Retry-After %q", what, a.header.Get("Retry-After"))
		}
		if !strings.HasPrefix(a.header.Get("Content-Type"), "application/json") || !strings.Contains(string(a.body), `"error"`) || len(a.body) > 2<<10 {
			t.Errorf("%s: 429 answer %q %s", what, a.header.Get("Content-Type"), clipName(string(a.body)))
		}
	}
	accepted := postIngest(t, ingestPost(act(okType, `"id":"wt-before"`)), ingest)

	// The admin API: wrong tokens of many shapes.
	shapes := []func(i int, req *http.Request){
		func(i int, req *http.Request) { req.Header.Set("Authorization", fmt.Sprintf("Bearer guess-%d", i)) },
		func(_ int, req *http.Request) { req.Header.Set("Authorization", "Bearer "+adminToken+"x") },
		func(_ int, req *http.Request) { req.Header.Set("Authorization", "Bearer "+ingestToken) },
		func(_ int, req *http.Request) { req.Header.Del("Authorization") },
		func(_ int, req *http.Request) { req.SetBasicAuth("admin", adminToken) },
		func(_ int, req *http.Request) {
			req.Header.Set("Authorization", "Bearer "+adminToken[:len(adminToken)-1])
		},
	}
	paths := []string{"/v1/destinations", "/v1/deadletters?destination=sink", "/metrics", "/v1/activities/wt-before"}
	counts := map[int]int{}
	first429 := -1
	var limited answer
	began := time.Now()
	for i := range 400 {
		req := adminReq("GET", paths[i%len(paths)], "")(admin)
		shapes[i%len(shapes)](i, req)
		if i%2 == 1 { // forged forwarding headers change nothing
			req.Header.Set("X-Forwarded-For", fmt.Sprintf("203.0.113.%d", i%250))
			req.Header.Set("X-Real-IP", fmt.Sprintf("198.51.100.%d", i%250))
		}
		a := do(req)
		counts[a.status]++
		if a.status == http.StatusTooManyRequests && first429 < 0 {
			first429, limited = i, a
		}
		if a.status != http.StatusUnauthorized && a.status != http.StatusTooManyRequests {
			t.Fatalf("wrong admin token %d: %d %s", i, a.status, clipName(string(a.body)))
		}
	}
	burst := time.Since(began)
	t.Logf("400 wrong admin tokens in %s: %v, the first 429 at request %d", burst.Round(time.Millisecond), counts, first429)
	if first429 < 0 {
		t.Fatalf("no 429 after 400 wrong admin tokens: %v", counts)
	}
	if first429 < 250 {
		t.Errorf("limited after only %d wrong tokens", first429)
	}
	limitedWell("a wrong admin token past the burst", limited)
	if counts[http.StatusTooManyRequests] < 50 {
		t.Errorf("only %d of 400 wrong admin tokens limited", counts[http.StatusTooManyRequests])
	}
	// The right token right after a limited one is limited too, so a guess
	// learns nothing (tried a few times: the allowance refills at 10 a
	// second, and this machine may be slow to send the next request).
	rightLimited := false
	for range 3 {
		wrong := adminReq("GET", "/v1/destinations", "", "Authorization", "Bearer guess")(admin)
		if do(wrong).status != http.StatusTooManyRequests {
			continue
		}
		if a := do(adminReq("GET", "/v1/destinations", "")(admin)); a.status == http.StatusTooManyRequests {
			limitedWell("the right admin token while limited", a)
			rightLimited = true
			break
		}
	}
	if !rightLimited {
		t.Errorf("the right admin token was never limited right after a limited wrong one")
	}
	// Ingest keeps its own count.
	accepted = append(accepted, postIngest(t, ingestPost(act(okType, `"id":"wt-while-admin-limited"`)), ingest)...)
	waitHTTP(t, admin+"/readyz", 5*time.Second, relay)

	// Dashboard sign-ins have their own, smaller allowance.
	signIns := map[int]int{}
	var signInLimited answer
	for i := range 12 {
		a := do(signInRequest(admin, fmt.Sprintf("guess-%d", i), "/"))
		signIns[a.status]++
		if a.status == http.StatusTooManyRequests {
			signInLimited = a
		}
	}
	t.Logf("12 wrong sign-ins: %v", signIns)
	if signIns[http.StatusTooManyRequests] == 0 || signIns[http.StatusUnauthorized] == 0 || len(signIns) != 2 {
		t.Errorf("12 wrong sign-ins answered %v, want 401s then 429s", signIns)
	} else if s, err := strconv.Atoi(signInLimited.header.Get("Retry-After")); err != nil || s < 1 {
		t.Errorf("a limited sign-in has Retry-After %q", signInLimited.header.Get("Retry-After"))
	}

	// The three ingest routes share one count.
	routes := []struct {
		path string
		set  func(*http.Request)
	}{
		{"/v1/activities", func(r *http.Request) { r.Header.Set("Authorization", "Bearer guess") }},
		{"/v3/events", func(r *http.Request) { r.Header.Set("x-api-key", "guess") }},
		{"/v1/sources/ortto", func(r *http.Request) { r.SetBasicAuth("ortto", "guess") }},
	}
	seen := map[int]int{}
	var ingestLimited answer
	for i := range 400 {
		r := routes[i%len(routes)]
		req, _ := http.NewRequest("POST", ingest+r.path, strings.NewReader(act(okType, fmt.Sprintf(`"id":"wt-wrong-%d"`, i))))
		req.Header.Set("Content-Type", "application/json")
		r.set(req)
		a := do(req)
		seen[a.status]++
		if a.status == http.StatusTooManyRequests {
			ingestLimited = a
		}
	}
	t.Logf("400 wrong ingest keys over the three routes: %v", seen)
	if seen[http.StatusTooManyRequests] < 50 || seen[http.StatusUnauthorized] == 0 || len(seen) != 2 {
		t.Errorf("400 wrong ingest keys answered %v, want 401s then 429s", seen)
	} else {
		limitedWell("a wrong ingest key past the burst", ingestLimited)
	}

	// Once Retry-After has passed, the right tokens work again.
	wait, _ := strconv.Atoi(limited.header.Get("Retry-After"))
	time.Sleep(time.Duration(wait) * time.Second)
	waitFor(10*time.Second, func() bool {
		code, _, err := adminDo("GET", admin+"/v1/destinations")
		return err == nil && code == http.StatusOK
	})
	if code, body, err := adminDo("GET", admin+"/v1/destinations"); err != nil || code != http.StatusOK {
		t.Errorf("the right admin token after Retry-After: %d %v %s", code, err, clipName(string(body)))
	}
	waitFor(10*time.Second, func() bool {
		resp, err := client.Do(ingestPost(act(okType, `"id":"wt-after-probe"`))(ingest))
		if err != nil {
			return false
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusAccepted {
			accepted = append(accepted, "wt-after-probe")
		}
		return resp.StatusCode == http.StatusAccepted
	})
	accepted = append(accepted, postIngest(t, ingestPost(act(okType, `"id":"wt-after"`)), ingest)...)
	tl := settle(t, "hostile wrong tokens", s, unique(accepted), func() []string { return deadLetters(t, admin, "sink") }, 30*time.Second)
	for id := range s.snapshot() {
		if strings.HasPrefix(id, "wt-wrong-") {
			t.Errorf("%s, sent with a wrong key, was delivered", id)
		}
	}
	report(t, "hostile wrong tokens", tl, fmt.Sprintf("admin=%v ingest=%v sign_ins=%v first_429=%d", counts, seen, signIns, first429))
	relay.stop(t)
}
