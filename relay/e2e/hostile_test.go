package e2e

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// hostileConfig writes a relay.yaml for one relay process with the
// embedded nats-server, custom activities allowed and the default limits,
// delivering everything to sinkURL. It returns its path and the ingest and
// admin base URLs.
func hostileConfig(t *testing.T, dir, sinkURL, ingestExtra string) (string, string, string) {
	t.Helper()
	ingest, admin := freePort(t), freePort(t)
	cfg := fmt.Sprintf(`nats: {url: embedded, data_dir: %q}
ingest: {listen: "127.0.0.1:%d", tokens: [%q], allow_custom: true%s}
admin: {listen: "127.0.0.1:%d", token: %q}
destinations:
  - name: sink
    type: webhook
    url: %s
    allow_private_network: true
    secrets: [%q]
    timeout: 2s
    retry: {schedule: [100ms, 200ms, 500ms, 1s, 1s]}
`, filepath.Join(dir, "data"), ingest, ingestToken, ingestExtra, admin, adminToken, sinkURL, secret)
	path := filepath.Join(dir, "relay.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, fmt.Sprintf("http://127.0.0.1:%d", ingest), fmt.Sprintf("http://127.0.0.1:%d", admin)
}

// probe is one hostile request. It is sent either as an http.Request
// (build) or as raw bytes on a new connection (raw), whose write side is
// closed after them when cut is set.
type probe struct {
	name  string
	admin bool // sent to the admin API rather than ingest
	build func(base string) *http.Request
	raw   func(host string) []byte
	cut   bool
	want  []int // acceptable statuses
	// server marks requests Go's HTTP server refuses before any handler
	// runs: its answer is a short text/plain body, not Relay's JSON.
	server bool
	// ids are ids the probe carries that must never be stored when it is
	// refused (nothing of a refused batch is accepted).
	ids []string
	// hidden are ids that must never be stored whatever the answer (a
	// request smuggled after the probe's body, a test delivery).
	hidden []string
	// closes marks a raw probe whose connection must be closed after its
	// one answer: what else the server sends is read into answer.rest.
	closes bool
	// check, when set, is what else the answer must satisfy.
	check func(a answer) error
}

// act is an activity object from raw JSON members: act(`"id":"x"`, …).
func act(members ...string) string { return "{" + strings.Join(members, ",") + "}" }

func batch(items ...string) string { return "[" + strings.Join(items, ",") + "]" }

// okType is a catalog activity every valid probe uses.
const okType = `"type":"email","action":"open"`

func ingestPost(body string, header ...string) func(string) *http.Request {
	return func(base string) *http.Request {
		req, _ := http.NewRequest("POST", base+"/v1/activities", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+ingestToken)
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

// chunked posts body with no Content-Length, so it goes chunked.
func chunked(body string) func(string) *http.Request {
	return func(base string) *http.Request {
		req, _ := http.NewRequest("POST", base+"/v1/activities", io.MultiReader(strings.NewReader(body)))
		req.Header.Set("Authorization", "Bearer "+ingestToken)
		req.ContentLength = -1
		return req
	}
}

func adminReq(method, path, body string, header ...string) func(string) *http.Request {
	return func(base string) *http.Request {
		var r io.Reader
		if body != "" {
			r = strings.NewReader(body)
		}
		req, _ := http.NewRequest(method, base+path, r)
		req.Header.Set("Authorization", "Bearer "+adminToken)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		return req
	}
}

// rawPost is a raw HTTP/1.x request to ingest: request line, head lines
// (Host and Authorization added unless noHost), then body as is.
func rawPost(proto string, head []string, body string, noHost bool) func(string) []byte {
	return func(host string) []byte {
		var b strings.Builder
		fmt.Fprintf(&b, "POST /v1/activities %s\r\n", proto)
		if !noHost {
			fmt.Fprintf(&b, "Host: %s\r\n", host)
		}
		fmt.Fprintf(&b, "Authorization: Bearer %s\r\n", ingestToken)
		for _, h := range head {
			b.WriteString(h + "\r\n")
		}
		b.WriteString("\r\n")
		b.WriteString(body)
		return []byte(b.String())
	}
}

func nest(open, close string, depth int, inner string) string {
	return strings.Repeat(open, depth) + inner + strings.Repeat(close, depth)
}

func manyKeys(n int) string {
	var b strings.Builder
	b.WriteString("{")
	for i := range n {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `"k%d":%d`, i, i)
	}
	b.WriteString("}")
	return b.String()
}

func hostileProbes() []probe {
	const (
		bad    = http.StatusBadRequest
		large  = http.StatusRequestEntityTooLarge
		unauth = http.StatusUnauthorized
		ok     = http.StatusAccepted
	)
	valid := act(okType, `"contact":{"email":"h@example.com"}`)
	long := func(n int) string { return strings.Repeat("a", n) }
	mb := strings.Repeat("x", 1<<20)
	bigNumber := "1" + strings.Repeat("2", 1<<20)
	var ps []probe
	add := func(name string, want []int, build func(string) *http.Request, ids ...string) {
		ps = append(ps, probe{name: name, build: build, want: want, ids: ids})
	}
	in := func(name string, want int, body string, ids ...string) {
		add(name, []int{want}, ingestPost(body), ids...)
	}

	// Malformed JSON of many kinds.
	for i, body := range []string{
		"", "   \n\t ", "{", "[", "[{}", "}", "]", `{"type":"email",}`, `{'type':'email'}`,
		`{"type":"email" "action":"open"}`, `{"type":"email","action":"open"`, "NaN", "[NaN]",
		act(okType, `"attributes":{"x":NaN}`), act(okType, `"attributes":{"x":Infinity}`),
		act(okType, `"attributes":{"x":-Infinity}`), act(okType, `"attributes":{"x":01}`),
		act(okType, `"attributes":{"x":1.}`), act(okType, `"attributes":{"x":.5}`),
		act(okType, `"attributes":{"x":+1}`), act(okType, `"attributes":{"x":0x10}`),
		act(okType, `"attributes":{"x":1e}`), act(okType, `"attributes":{"x":--1}`),
		act(okType, `"attributes":{"x":tru}`), act(okType, `"attributes":{"x":undefined}`),
		valid + valid, valid + " garbage", valid + ",", "[" + valid + "]]", "[" + valid + ",]",
		"null", "true", `"email.open"`, "42", "[]", "[null]", "[1,2]", "[[]]", `[[` + valid + `]]`,
		`{/*c*/"type":"email","action":"open"}`, "// c\n" + valid,
		"\xef\xbb\xbf" + valid, `{"type":"email"` + "\x00" + `}`, "{\"type\":\"em\nail\",\"action\":\"open\"}",
		"{\"type\":\"em\tail\",\"action\":\"open\"}", act(okType, `"attributes":{"x":"\x"}`),
		act(okType, `"attributes":{"x":"\u12"}`), act(okType, `"attributes":{"x":"\uZZZZ"}`),
		act(okType, `"attributes":"not an object"`), act(okType, `"contact":[1,2]`),
		act(okType, `"contact":"c_1"`), act(okType, `"attributes":42`), act(`"type":1`),
		act(`"type":["email"]`, `"action":"open"`), act(okType, `"bogus":1`), act(`"Type":"email"`, `"action":"open"`),
		act(okType, `"contact":{"a":1}`, `"identifiers":{"b":2}`), act(okType, `"attributes":{}`, `"data":{}`),
		act(`"action":"open"`), act(), act(okType, `"id":5`), act(okType, `"id":null`, `"id":"x"`),
		act(okType, `"occurred_at":1700000000`), `{"":1}`, `{"type":"email","action":"open",` + strings.Repeat(" ", 1000),
	} {
		in(fmt.Sprintf("malformed JSON %d", i), bad, body)
	}

	// Invalid UTF-8 in ids, keys and values, and in names.
	for i, s := range []string{"\xff", "\xfe", "\xc0\xaf", "\xed\xa0\x80", "\xe2\x82", "\xf4\x90\x80\x80", "\x80"} {
		id := fmt.Sprintf("inv-%d", i)
		in(fmt.Sprintf("invalid UTF-8 %d in id", i), bad, act(okType, `"id":"`+id+s+`"`))
		in(fmt.Sprintf("invalid UTF-8 %d in an attribute key", i), bad, act(okType, `"id":"`+id+`k"`, `"attributes":{"k`+s+`":1}`), id+"k")
		in(fmt.Sprintf("invalid UTF-8 %d in an attribute value", i), bad, act(okType, `"id":"`+id+`v"`, `"attributes":{"k":"v`+s+`"}`), id+"v")
		in(fmt.Sprintf("invalid UTF-8 %d in a contact value", i), bad, act(okType, `"id":"`+id+`c"`, `"contact":{"email":"a`+s+`@example.com"}`), id+"c")
		in(fmt.Sprintf("invalid UTF-8 %d in type", i), bad, act(`"id":"`+id+`t"`, `"type":"email`+s+`"`, `"action":"open"`), id+"t")
	}
	// Lone surrogate escapes (and one valid pair).
	for i, s := range []string{`\ud800`, `\udc00`, `\ud800\u0041`, `\udc00\ud800`, `\uDBFF`, `\ud800\ud800`} {
		id := fmt.Sprintf("sur-%d", i)
		in(fmt.Sprintf("lone surrogate %d in id", i), bad, act(okType, `"id":"`+id+s+`"`))
		in(fmt.Sprintf("lone surrogate %d in a key", i), bad, act(okType, `"id":"`+id+`k"`, `"attributes":{"`+s+`":1}`), id+"k")
		in(fmt.Sprintf("lone surrogate %d in a value", i), bad, act(okType, `"id":"`+id+`v"`, `"contact":{"name":"x`+s+`"}`), id+"v")
	}
	in("a valid surrogate pair", ok, act(okType, `"attributes":{"smile":"\ud83d\ude00"}`))
	// Duplicate names.
	in("duplicate top-level key", bad, `{"id":"dup-1","type":"email","type":"email","action":"open"}`, "dup-1")
	in("duplicate id key", bad, `{"id":"dup-2a","id":"dup-2b",`+okType+`}`, "dup-2a", "dup-2b")
	in("duplicate attribute key", bad, act(okType, `"id":"dup-3"`, `"attributes":{"a":1,"a":2}`), "dup-3")
	in("duplicate attribute key by escape", bad, act(okType, `"id":"dup-4"`, `"attributes":{"a":1,"\u0061":2}`), "dup-4")
	in("duplicate nested key", bad, act(okType, `"id":"dup-5"`, `"attributes":{"x":[{"y":{"a":1,"a":1}}]}`), "dup-5")
	in("duplicate contact key", bad, act(okType, `"id":"dup-6"`, `"contact":{"email":"a@x","email":"b@x"}`), "dup-6")
	in("duplicate key in the second item", bad, batch(act(okType, `"id":"dup-7a"`), act(okType, `"id":"dup-7b"`, `"attributes":{"a":1,"a":1}`)), "dup-7a", "dup-7b")

	// Names: long, and with subject and header characters.
	for _, n := range []int{65, 130, 4100, 100_000} {
		id := fmt.Sprintf("name-%d", n)
		in(fmt.Sprintf("type of %d bytes", n), bad, act(`"id":"`+id+`t"`, `"type":"`+long(n)+`"`), id+"t")
		in(fmt.Sprintf("action of %d bytes", n), bad, act(`"id":"`+id+`a"`, `"type":"email"`, `"action":"`+long(n)+`"`), id+"a")
		in(fmt.Sprintf("name of %d bytes", n), bad, act(`"id":"`+id+`n"`, `"name":"`+long(n)+`"`), id+"n")
	}
	for _, n := range []int{257, 4100, 100_000} {
		id := fmt.Sprintf("display-%d", n)
		in(fmt.Sprintf("activity display name of %d bytes", n), bad, act(`"id":"`+id+`"`, `"activity":"`+long(n)+`"`), id)
	}
	in("custom type of 64 bytes", ok, act(`"type":"`+long(64)+`"`, `"action":"`+long(64)+`"`))
	for i, s := range []string{".", "*", ">", " ", `\r\n`, `\r`, `\n`, `\u0000`, `\t`, "é", `\u00e9`, "Email", "a.b.c", "$SYS", "a\u2028b", "\u202eopen", "a/b", "%2e", "*.>", ">.*"} {
		id := fmt.Sprintf("chr-%d", i)
		in(fmt.Sprintf("type with %q", s), bad, act(`"id":"`+id+`t"`, `"type":"x`+s+`y"`, `"action":"open"`), id+"t")
		in(fmt.Sprintf("action with %q", s), bad, act(`"id":"`+id+`a"`, `"type":"email"`, `"action":"x`+s+`y"`), id+"a")
		if s != "." { // "x.y" is a valid custom name
			in(fmt.Sprintf("name with %q", s), bad, act(`"id":"`+id+`n"`, `"name":"x`+s+`y"`), id+"n")
		}
	}
	in("type alone a wildcard", bad, act(`"id":"chr-w1"`, `"type":"*"`), "chr-w1")
	in("type alone a tail wildcard", bad, act(`"id":"chr-w2"`, `"type":">"`), "chr-w2")
	in("empty type with an action", bad, act(`"id":"chr-w3"`, `"type":""`, `"action":"open"`), "chr-w3")
	in("activity naming another activity than type", bad, act(`"id":"chr-w4"`, okType, `"activity":"Clicked email"`), "chr-w4")

	// Ids.
	for i, s := range []string{`a\r\nX-Injected: 1`, `a\nb`, `a\rb`, `a\u0000b`, `a b`, `a\tb`, " a", `\u2028`, `a\u0085b`, `a\u00a0b`, long(129), long(4100), mb} {
		in(fmt.Sprintf("id %d with %q", i, clipName(s)), bad, act(okType, `"id":"`+s+`"`))
	}
	in("id of 128 bytes", ok, act(okType, `"id":"`+long(127)+`z"`))
	in("id with subject characters", ok, act(okType, `"id":"h-id.*>$"`))
	in("id with unicode", ok, act(okType, `"id":"h-ünïcødé-✓"`))

	// Times.
	for i, s := range []string{"9999-12-31T23:59:59-23:59", "0000-01-01T00:00:00Z", "0001-01-01T00:00:00+01:00",
		"10000-01-01T00:00:00Z", "+10000-01-01T00:00:00Z", "-0001-01-01T00:00:00Z", "2026-02-30T00:00:00Z",
		"2026-11-22T10:00:00", "2026-11-22 10:00:00Z", "yesterday", "2026-11-22T25:00:00Z", "2026-11-22T10:00:00+24:00", "2026-11-22T10:00:00-24:00", "2026-11-22T10:00:00+23:60", "2026-11-22T10:00:00+00:60",
		mb} {
		id := fmt.Sprintf("time-%d", i)
		in(fmt.Sprintf("occurred_at %q", clipName(s)), bad, act(okType, `"id":"`+id+`"`, `"occurred_at":"`+s+`"`), id)
	}
	add("occurred_at a leap second", []int{ok, bad}, ingestPost(act(okType, `"occurred_at":"2016-12-31T23:59:60Z"`)))
	in("occurred_at 9999-12-31T23:59:59Z", ok, act(okType, `"occurred_at":"9999-12-31T23:59:59Z"`))
	in("occurred_at 0001-01-01T00:00:00Z", ok, act(okType, `"occurred_at":"0001-01-01T00:00:00Z"`))

	// Big values.
	in("a 1 MB attribute string", large, act(okType, `"id":"big-1"`, `"attributes":{"s":"`+mb+`"}`), "big-1")
	in("a 1 MB attribute key", large, act(okType, `"id":"big-2"`, `"attributes":{"`+mb+`":1}`), "big-2")
	in("a 1 MB number literal in attributes", large, act(okType, `"id":"big-3"`, `"attributes":{"n":`+bigNumber+`}`), "big-3")
	in("a 1 MB number literal as type", bad, act(`"id":"big-4"`, `"type":`+bigNumber), "big-4")
	in("a 1 MB number literal as id", bad, act(okType, `"id":`+bigNumber))
	in("a 1 MB number literal as occurred_at", bad, act(okType, `"id":"big-5"`, `"occurred_at":`+bigNumber), "big-5")
	in("a 1 MB string as the whole body", bad, `"`+mb+`"`)
	in("a 1 MB number as the whole body", bad, bigNumber)
	in("nesting 10,000 deep", bad, act(okType, `"id":"deep-1"`, `"attributes":{"a":`+nest("[", "]", 10_000, "1")+`}`), "deep-1")
	in("nesting 100,000 deep", bad, act(okType, `"id":"deep-2"`, `"attributes":{"a":`+nest(`{"a":`, "}", 100_000, "1")+`}`), "deep-2")
	in("nesting 100,000 deep, unclosed", bad, nest("[", "", 100_000, ""))
	add("nesting just under the decoder's limit", []int{ok, bad}, ingestPost(act(okType, `"attributes":{"a":`+nest("[", "]", 9_990, "1")+`}`)))
	in("100,000 keys", large, act(okType, `"id":"keys-1"`, `"attributes":`+manyKeys(100_000)), "keys-1")
	add("30,000 keys", []int{ok, bad}, ingestPost(act(okType, `"attributes":`+manyKeys(30_000))))

	// Sizes.
	in("a body just over max_body", large, act(okType, `"id":"size-1"`, `"attributes":{"s":"`+strings.Repeat("x", 5<<20)+`"}`), "size-1")
	add("a chunked body just over max_body", []int{large}, chunked(act(okType, `"id":"size-2"`, `"attributes":{"s":"`+strings.Repeat("x", 5<<20)+`"}`)), "size-2")
	in("an activity just over max_activity", large, act(okType, `"id":"size-3"`, `"attributes":{"s":"`+strings.Repeat("x", 512<<10)+`"}`), "size-3")
	in("a batch with an item over max_activity", large, batch(act(okType, `"id":"size-4a"`), act(okType, `"id":"size-4b"`, `"attributes":{"s":"`+strings.Repeat("x", 512<<10)+`"}`), act(okType, `"id":"size-4c"`)), "size-4a", "size-4b", "size-4c")
	in("a batch with one bad item", bad, batch(act(okType, `"id":"size-5a"`), act(okType, `"id":"size-5b"`, `"occurred_at":"never"`), act(okType, `"id":"size-5c"`)), "size-5a", "size-5b", "size-5c")
	items := make([]string, 1001)
	for i := range items {
		items[i] = act(okType, fmt.Sprintf(`"id":"many-%d"`, i))
	}
	in("a batch of 1,001 items", large, batch(items...), "many-0", "many-500", "many-1000")
	in("a batch repeating an id", ok, batch(act(okType, `"id":"h-rep"`), act(okType, `"id":"h-rep"`)))

	// Content types and encodings.
	add("content type text/plain", []int{ok, http.StatusUnsupportedMediaType}, ingestPost(valid, "Content-Type", "text/plain"))
	add("no content type", []int{ok, http.StatusUnsupportedMediaType}, ingestPost(valid, "Content-Type", ""))
	add("a form body", []int{bad, http.StatusUnsupportedMediaType}, ingestPost("type=email&action=open", "Content-Type", "application/x-www-form-urlencoded"))
	add("a multipart body", []int{bad, http.StatusUnsupportedMediaType}, ingestPost("--b\r\nContent-Disposition: form-data; name=\"type\"\r\n\r\nemail\r\n--b--\r\n", "Content-Type", "multipart/form-data; boundary=b"))
	add("a UTF-16 body", []int{bad, http.StatusUnsupportedMediaType}, ingestPost("\xff\xfe{\x00}\x00", "Content-Type", "application/json; charset=utf-16"))
	add("a gzip content encoding", []int{bad, http.StatusUnsupportedMediaType}, ingestPost("\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff", "Content-Encoding", "gzip"))

	// Authorization.
	add("lowercase bearer", []int{ok}, ingestPost(valid, "Authorization", "bearer "+ingestToken))
	add("uppercase BEARER", []int{ok}, ingestPost(valid, "Authorization", "BEARER "+ingestToken))
	add("an empty bearer", []int{unauth}, ingestPost(valid, "Authorization", "Bearer "))
	add("a bare Bearer", []int{unauth}, ingestPost(valid, "Authorization", "Bearer"))
	add("no Authorization", []int{unauth}, ingestPost(valid, "Authorization", ""))
	add("Basic credentials", []int{unauth}, ingestPost(valid, "Authorization", "Basic ZTJlOmUyZQ=="))
	add("a token with a suffix", []int{unauth}, ingestPost(valid, "Authorization", "Bearer "+ingestToken+"x"))
	add("a token with a trailing word", []int{unauth}, ingestPost(valid, "Authorization", "Bearer "+ingestToken+" x"))
	add("a token prefix", []int{unauth}, ingestPost(valid, "Authorization", "Bearer "+ingestToken[:5]))
	add("the admin token at ingest", []int{unauth}, ingestPost(valid, "Authorization", "Bearer "+adminToken))
	add("a 60 KB token", []int{unauth}, ingestPost(valid, "Authorization", "Bearer "+long(60<<10)))
	add("a token in the query string", []int{unauth}, func(base string) *http.Request {
		req := ingestPost(valid, "Authorization", "")(base)
		req.URL.RawQuery = "token=" + ingestToken + "&access_token=" + ingestToken
		return req
	})
	add("a wrong token before the right one", []int{unauth, bad}, func(base string) *http.Request {
		req := ingestPost(valid, "Authorization", "Bearer wrong")(base)
		req.Header.Add("Authorization", "Bearer "+ingestToken)
		return req
	})

	// Methods and paths.
	add("GET /v1/activities", []int{http.StatusMethodNotAllowed}, func(base string) *http.Request {
		req, _ := http.NewRequest("GET", base+"/v1/activities", nil)
		return req
	})
	add("DELETE /v1/activities", []int{http.StatusMethodNotAllowed}, func(base string) *http.Request {
		req, _ := http.NewRequest("DELETE", base+"/v1/activities", nil)
		return req
	})
	add("a long unknown path", []int{http.StatusNotFound}, func(base string) *http.Request {
		req, _ := http.NewRequest("POST", base+"/v1/"+long(10_000), strings.NewReader(valid))
		return req
	})
	add("an encoded CR LF in the path", []int{http.StatusNotFound}, func(base string) *http.Request {
		req, _ := http.NewRequest("POST", base+"/v1/activities%0d%0aX-Injected:%201", strings.NewReader(valid))
		return req
	})
	add("a dot-dot path", []int{http.StatusNotFound, http.StatusMovedPermanently, http.StatusTemporaryRedirect, http.StatusPermanentRedirect}, func(base string) *http.Request {
		req, _ := http.NewRequest("POST", base+"/v1/x/../activities", strings.NewReader(valid))
		req.URL.Opaque = "/v1/x/../activities"
		return req
	})

	// Transfer: chunked, HTTP/1.0, cut short, header tricks.
	add("a chunked body", []int{ok}, chunked(valid))
	raw := func(name string, want []int, server bool, cut bool, r func(string) []byte) {
		ps = append(ps, probe{name: name, raw: r, want: want, server: server, cut: cut})
	}
	cl := func(body string) string { return fmt.Sprintf("Content-Length: %d", len(body)) }
	raw("HTTP/1.0", []int{ok}, false, false, rawPost("HTTP/1.0", []string{cl(valid)}, valid, false))
	raw("HTTP/1.0 without Host", []int{ok}, false, false, rawPost("HTTP/1.0", []string{cl(valid)}, valid, true))
	raw("HTTP/1.0 without Content-Length", []int{bad, http.StatusLengthRequired}, false, true, rawPost("HTTP/1.0", nil, valid, false))
	raw("HTTP/1.1 without Host", []int{bad}, true, false, rawPost("HTTP/1.1", []string{cl(valid)}, valid, true))
	raw("HTTP/2.0 request line on HTTP/1", []int{bad, http.StatusHTTPVersionNotSupported}, true, false, rawPost("HTTP/2.0", []string{cl(valid)}, valid, false))
	raw("HTTP/9.9", []int{bad, http.StatusHTTPVersionNotSupported}, true, false, rawPost("HTTP/9.9", []string{cl(valid)}, valid, false))
	raw("a body cut mid-stream", []int{bad}, false, true, rawPost("HTTP/1.1", []string{"Content-Length: 1000"}, valid[:20], false))
	raw("a chunked body cut mid-stream", []int{bad}, false, true, rawPost("HTTP/1.1", []string{"Transfer-Encoding: chunked"}, "400\r\n"+valid[:20], false))
	raw("bad chunk framing", []int{bad}, false, true, rawPost("HTTP/1.1", []string{"Transfer-Encoding: chunked"}, "zz\r\n"+valid+"\r\n0\r\n\r\n", false))
	raw("a chunk size overflow", []int{bad}, false, true, rawPost("HTTP/1.1", []string{"Transfer-Encoding: chunked"}, "ffffffffffffffffff\r\n"+valid+"\r\n0\r\n\r\n", false))
	raw("Content-Length and chunked together", []int{bad, ok}, true, false, rawPost("HTTP/1.1", []string{cl(valid), "Transfer-Encoding: chunked"}, fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(valid), valid), false))
	raw("two Content-Lengths", []int{bad}, true, false, rawPost("HTTP/1.1", []string{cl(valid), "Content-Length: 3"}, valid, false))
	raw("a negative Content-Length", []int{bad}, true, false, rawPost("HTTP/1.1", []string{"Content-Length: -5"}, valid, false))
	raw("an unknown transfer encoding", []int{bad, http.StatusNotImplemented}, true, false, rawPost("HTTP/1.1", []string{"Transfer-Encoding: gzip, chunked"}, "0\r\n\r\n", false))
	raw("a bare CR in a header", []int{bad}, true, false, rawPost("HTTP/1.1", []string{"X-A: b\rX-Injected: 1", cl(valid)}, valid, false))
	raw("a bare LF in a header", []int{ok, bad}, true, false, rawPost("HTTP/1.1", []string{"X-A: b\nX-Injected: 1", cl(valid)}, valid, false))
	raw("a folded header", []int{bad, ok}, true, false, rawPost("HTTP/1.1", []string{"X-A: b", " X-Injected: 1", cl(valid)}, valid, false))
	raw("a header name with a space", []int{bad}, true, false, rawPost("HTTP/1.1", []string{"X A: b", cl(valid)}, valid, false))
	raw("a NUL in a header", []int{bad}, true, false, rawPost("HTTP/1.1", []string{"X-A: b\x00c", cl(valid)}, valid, false))
	raw("a header over 64 KiB", []int{bad, http.StatusRequestHeaderFieldsTooLarge}, true, false, rawPost("HTTP/1.1", []string{"X-A: " + long(70<<10), cl(valid)}, valid, false))
	raw("Expect 100-continue", []int{ok}, false, false, rawPost("HTTP/1.1", []string{"Expect: 100-continue", cl(valid)}, valid, false))
	raw("an unknown Expect", []int{http.StatusExpectationFailed}, true, false, rawPost("HTTP/1.1", []string{"Expect: 200-ok", cl(valid)}, valid, false))
	raw("garbage request line", []int{bad}, true, false, func(string) []byte { return []byte("\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n") })

	// Admin.
	adm := func(name string, want []int, build func(string) *http.Request) {
		ps = append(ps, probe{name: "admin: " + name, admin: true, build: build, want: want})
	}
	adm("no token", []int{unauth}, adminReq("GET", "/v1/deadletters?destination=sink", "", "Authorization", ""))
	adm("lowercase bearer", []int{http.StatusOK}, adminReq("GET", "/v1/destinations", "", "Authorization", "bearer "+adminToken))
	adm("the ingest token", []int{unauth}, adminReq("GET", "/v1/destinations", "", "Authorization", "Bearer "+ingestToken))
	adm("an empty bearer", []int{unauth}, adminReq("GET", "/v1/destinations", "", "Authorization", "Bearer "))
	for _, q := range []string{"destination=%ff", "destination=" + long(10_000), "destination=sink&limit=abc", "destination=sink&limit=-1",
		"destination=sink&limit=100000000000000000000", "destination=sink&limit=" + long(10_000), "destination=sink&cursor=" + long(5000), "destination=sink&cursor=%00%ff", "destination=sink%0d%0aX:1"} {
		adm("dead letters ?"+clipName(q), []int{bad, http.StatusNotFound}, adminReq("GET", "/v1/deadletters?"+q, ""))
	}
	for i, body := range []string{"", "{", `{"destination":"sink","destination":"sink"}`, "{\"destination\":\"sink\xff\"}",
		`{"destination":"sink","ids":["\ud800"]}`, `{"destination":"sink","since":"9999-12-31T23:59:59-23:59"}`,
		`{"destination":"sink","bogus":1}`, `{"destination":"` + long(100_000) + `"}`, `{"destination":"sink","activity":"` + long(4100) + `"}`,
		`{"destination":"sink","activity":"a b\r\nc"}`, `{"destination":"sink","ids":` + nest("[", "]", 100_000, "") + `}`,
		`{"destination":"sink","limit":` + bigNumber + `}`, `{"destination":` + bigNumber[:900_000] + `}`, `{"destination":"sink","since":"` + long(900_000) + `"}`, `[` + strings.Repeat(`"x",`, 300_000) + `"x"]`} {
		want := []int{bad, http.StatusNotFound, large}
		if strings.Contains(body, "9999-12-31") { // valid, if far: replays nothing
			want = append(want, http.StatusOK)
		}
		adm(fmt.Sprintf("replay body %d", i), want, adminReq("POST", "/v1/replay", body, "Content-Type", "application/json"))
	}
	for _, name := range []string{long(10_000), "sink%0d%0aX-Injected:%201", "%2e%2e", "sink.*", "%ff"} {
		adm("pause "+clipName(name), []int{http.StatusNotFound, bad}, adminReq("POST", "/v1/destinations/"+name+"/pause", ""))
	}
	// The second pass (issue #20): source routes, encodings, smuggling,
	// replay bodies and the sign-in redirect (hostile2_test.go).
	return append(ps, secondPassProbes()...)
}

func clipName(s string) string {
	if len(s) > 40 {
		return fmt.Sprintf("%s…(%d bytes)", s[:40], len(s))
	}
	return s
}

// socketAddr matches an IPv4 or IPv6 socket address, which no error
// answer may reveal.
var socketAddr = regexp.MustCompile(`\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}:\d+|\[[0-9a-fA-F:]+\]:\d+|127\.0\.0\.1|localhost`)

// answer is what a probe got back.
type answer struct {
	status int
	header http.Header
	body   []byte
	// For a probe that closes: what came after the answer, and whether the
	// server closed the connection (rather than leave it open).
	rest   []byte
	closed bool
	// connClose is whether the answer said Connection: close.
	connClose bool
}

func send(client *http.Client, base string, p probe) (answer, error) {
	if p.build != nil {
		resp, err := client.Do(p.build(base))
		if err != nil {
			return answer{}, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return answer{status: resp.StatusCode, header: resp.Header, body: body}, err
	}
	u, _ := url.Parse(base)
	conn, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
	if err != nil {
		return answer{}, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	// Write in the background: a server that answers early may stop reading.
	written := make(chan error, 1)
	go func() {
		_, err := conn.Write(p.raw(u.Host))
		if err == nil && p.cut {
			err = conn.(*net.TCPConn).CloseWrite()
		}
		written <- err
	}()
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	for err == nil && resp.StatusCode < 200 { // 100 Continue: the answer follows
		resp, err = http.ReadResponse(br, nil)
	}
	if err != nil {
		return answer{}, fmt.Errorf("reading the answer: %w (write: %v)", err, <-written)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	a := answer{status: resp.StatusCode, header: resp.Header, body: body, connClose: resp.Close}
	if err == nil && p.closes {
		// Whatever follows the answer, until the server closes the
		// connection (EOF, or a reset for the bytes it left unread) or
		// goes quiet.
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		var rerr error
		a.rest, rerr = io.ReadAll(io.LimitReader(br, 1<<20))
		a.closed = rerr == nil || errors.Is(rerr, syscall.ECONNRESET)
	}
	return a, err
}

// TestHostileInput sends a real relay serve process a long list of
// malformed, oversized and hostile requests. Each one is refused with a
// short JSON error that echoes neither the input nor a socket address (or
// accepted, where it is valid); after each the relay is still ready and
// still delivers a normal activity. At the end every accepted id was
// delivered, nothing of a refused request was, and the process is alive.
func TestHostileInput(t *testing.T) {
	bin := binary(t, "./cmd/relay")
	s := newSink(t)
	cfg, ingest, admin := hostileConfig(t, t.TempDir(), s.srv.URL+"/hook", "")
	relay := start(t, bin, "serve", "-c", cfg)
	waitHTTP(t, admin+"/readyz", 60*time.Second, relay)
	if os.Getenv("RELAY_E2E_LOG") != "" {
		t.Cleanup(func() { t.Logf("relay output:\n%s", relay.out) })
	}
	client := &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	var accepted, refused []string
	began := time.Now()
	probes := hostileProbes()
	for i, p := range probes {
		base := ingest
		if p.admin {
			base = admin
		}
		a, err := send(client, base, p)
		if err != nil {
			t.Errorf("probe %q: no answer: %v", p.name, err)
		} else {
			accepted = append(accepted, checkAnswer(t, p, a)...)
			if a.status >= 400 {
				refused = append(refused, p.ids...)
			}
			if p.check != nil {
				if err := p.check(a); err != nil {
					t.Errorf("probe %q: status %d: %v", p.name, a.status, err)
				}
			}
		}
		refused = append(refused, p.hidden...)
		select {
		case <-relay.done:
			t.Fatalf("the relay exited after probe %q:\n%s", p.name, relay.out)
		default:
		}
		// The relay still works: ready, and a normal activity is delivered.
		waitHTTP(t, admin+"/readyz", 10*time.Second, relay)
		id := fmt.Sprintf("h-ok-%d", i)
		postOne(t, ingest, act(okType, `"id":"`+id+`"`, `"contact":{"email":"ok@example.com"}`))
		accepted = append(accepted, id)
		waitDelivered(t, s, id, 15*time.Second, p.name)
	}
	tl := settle(t, "hostile", s, unique(accepted), func() []string { return deadLetters(t, admin, "sink") }, 30*time.Second)
	got := s.snapshot()
	for _, id := range refused {
		if got[id] > 0 {
			t.Errorf("id %q of a refused request was delivered", id)
		}
		// Nor stored: the trace of an id never stored is a 404.
		if code, body, err := adminDo("GET", admin+"/v1/activities/"+url.PathEscape(id)); err != nil || code != http.StatusNotFound {
			t.Errorf("id %q of a refused request: its trace answers %d (%v), want 404: %s", id, code, err, clipName(string(body)))
		}
	}
	select {
	case <-relay.done:
		t.Fatalf("the relay exited:\n%s", relay.out)
	default:
	}
	waitHTTP(t, ingest+"/healthz", 5*time.Second, relay)
	report(t, "hostile", tl, fmt.Sprintf("probes=%d took=%s", len(probes), time.Since(began).Round(time.Millisecond)))
	relay.stop(t)
	// Read once the process has exited, so its output is complete.
	if out := relay.out.String(); strings.Contains(out, "panic") || strings.Contains(out, "maximum control line") || strings.Contains(out, "connection closed") {
		t.Errorf("the relay's output shows a panic or a broken bus connection:\n%s", tail(out, 8000))
	}
}

// tail is the last n bytes of s.
func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// checkAnswer holds a probe's answer to the rules and returns the ids a
// 202 acknowledged.
func checkAnswer(t *testing.T, p probe, a answer) []string {
	t.Helper()
	if !slices.Contains(p.want, a.status) {
		t.Errorf("probe %q: status %d, want one of %v; body %s", p.name, a.status, p.want, clipName(string(a.body)))
	}
	if loc := socketAddr.Find(a.body); loc != nil {
		t.Errorf("probe %q: the answer reveals a socket address %q: %s", p.name, loc, clipName(string(a.body)))
	}
	if len(a.body) >= 2<<10 && a.status != http.StatusOK {
		t.Errorf("probe %q: answer of %d bytes, want under 2 KiB (no echo of the input): %s…", p.name, len(a.body), a.body[:200])
	}
	if a.status == http.StatusServiceUnavailable && a.header.Get("Retry-After") == "" {
		t.Errorf("probe %q: 503 without Retry-After", p.name)
	}
	if p.server && a.status >= 400 && !strings.HasPrefix(a.header.Get("Content-Type"), "application/json") {
		return nil // Go's HTTP server refused it before Relay saw it
	}
	if a.status >= 300 && a.status < 400 {
		return nil
	}
	if ct := a.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("probe %q: status %d with content type %q, want JSON: %s", p.name, a.status, ct, clipName(string(a.body)))
		return nil
	}
	var out struct {
		Error      string   `json:"error"`
		IDs        []string `json:"ids"`
		Duplicates []string `json:"duplicates"`
	}
	if err := json.Unmarshal(a.body, &out); err != nil {
		t.Errorf("probe %q: answer is not JSON: %v: %s", p.name, err, clipName(string(a.body)))
		return nil
	}
	switch {
	case a.status >= 400 && out.Error == "":
		t.Errorf("probe %q: status %d without an error message: %s", p.name, a.status, a.body)
	case a.status == http.StatusAccepted && !p.admin:
		if len(out.IDs) == 0 {
			t.Errorf("probe %q: 202 without ids: %s", p.name, a.body)
		}
		if out.Duplicates == nil {
			t.Errorf("probe %q: 202 without a duplicates list: %s", p.name, a.body)
		}
		return out.IDs
	}
	return nil
}

// postOne posts one valid activity and fails the test unless it gets 202.
func postOne(t *testing.T, ingest, body string) {
	t.Helper()
	req := ingestPost(body)(ingest)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("posting a normal activity: %v", err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("a normal activity got %d: %s", resp.StatusCode, out)
	}
}

// waitDelivered waits until the sink has received id.
func waitDelivered(t *testing.T, s *sink, id string, within time.Duration, after string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for s.snapshot()[id] == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("a normal activity (%s) was not delivered within %s after probe %q", id, within, after)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
