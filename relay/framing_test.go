package relay_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// rawExchange writes raw bytes to addr and returns everything the server
// answers until it closes the connection or goes quiet for a second.
func rawExchange(t *testing.T, addr, raw string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	r := bufio.NewReader(c)
	for {
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		b, err := r.ReadByte()
		if err != nil {
			return out.String()
		}
		out.WriteByte(b)
	}
}

// TestSmugglingClosesTheConnection: a request carrying both Content-Length
// and Transfer-Encoding (whatever its spelling) is answered once and its
// connection closed, so a second request hidden after its chunked body is
// never read, let alone stored; plain keep-alive requests still share a
// connection.
func TestSmugglingClosesTheConnection(t *testing.T) {
	n := startRelay(t, baseYAML(t.TempDir()))
	activity := `[{"type":"email","action":"open","id":"smuggled-%d"}]`
	request := func(headers, body string) string {
		return "POST /v1/activities HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer " + ingestToken +
			"\r\nContent-Type: application/json\r\n" + headers + "\r\n" + body
	}
	for i, tc := range []struct{ name, te, chunked string }{
		{"empty chunked body", "Transfer-Encoding: chunked", "0\r\n\r\n"},
		{"activity in the chunked body", "Transfer-Encoding: chunked", fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(fmt.Sprintf(activity, 100)), fmt.Sprintf(activity, 100))},
		{"upper case", "Transfer-Encoding: Chunked", "0\r\n\r\n"},
		{"transfer-encoding after content-length", "transfer-encoding: chunked", "0\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hidden := fmt.Sprintf(activity, i)
			second := request(fmt.Sprintf("Content-Length: %d\r\n", len(hidden)), hidden)
			first := request(fmt.Sprintf("Content-Length: %d\r\n%s\r\n", len(tc.chunked), tc.te), tc.chunked+second)
			out := rawExchange(t, strings.TrimPrefix(n.ingest, "http://"), first)
			if got := strings.Count(out, "HTTP/1.1 "); got != 1 {
				t.Fatalf("%d answers on one connection, want 1 (the hidden request was read):\n%s", got, out)
			}
			if !strings.Contains(strings.ToLower(out), "connection: close") {
				t.Errorf("the answer does not close the connection:\n%s", out)
			}
			status, _ := n.adminDo("GET", fmt.Sprintf("/v1/activities/smuggled-%d/trace", i), "")
			if status == http.StatusOK {
				t.Errorf("the hidden activity smuggled-%d was stored", i)
			}
		})
	}
	t.Run("keep-alive unchanged", func(t *testing.T) {
		a, b := fmt.Sprintf(activity, 200), fmt.Sprintf(activity, 201)
		out := rawExchange(t, strings.TrimPrefix(n.ingest, "http://"),
			request(fmt.Sprintf("Content-Length: %d\r\n", len(a)), a)+request(fmt.Sprintf("Content-Length: %d\r\n", len(b)), b))
		if got := strings.Count(out, "HTTP/1.1 202"); got != 2 {
			t.Fatalf("%d of 2 pipelined requests accepted:\n%s", got, out)
		}
	})
}

// TestBodyEncodings: a gzipped body is read (bounded by max_body once
// unpacked, so a gzip bomb is refused), a body labelled gzip that is not
// is a 400, other encodings and content types that are not JSON are a 415
// naming them; every refusal stores nothing.
func TestBodyEncodings(t *testing.T) {
	n := startRelay(t, strings.Replace(baseYAML(t.TempDir()), "ingest: {", "ingest: {max_body: 64KiB, ", 1))
	gz := func(s string) string {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		_, _ = io.WriteString(zw, s)
		_ = zw.Close()
		return b.String()
	}
	valid := `[{"type":"email","action":"open"}]`
	bomb := gz("[" + strings.Repeat(" ", 10<<20) + "]") // 10 MiB of spaces, a few KiB packed
	tests := []struct {
		name, body string
		header     map[string]string
		status     int
		says       string
	}{
		{"gzip", gz(valid), map[string]string{"Content-Encoding": "gzip"}, 202, ""},
		{"GZIP in capitals", gz(valid), map[string]string{"Content-Encoding": "GZIP"}, 202, ""},
		{"identity", valid, map[string]string{"Content-Encoding": "identity"}, 202, ""},
		{"json with charset", valid, map[string]string{"Content-Type": "application/json; charset=utf-8"}, 202, ""},
		{"no content type", valid, map[string]string{"Content-Type": ""}, 202, ""},
		{"vendor json", valid, map[string]string{"Content-Type": "application/vnd.relay+json"}, 202, ""},
		{"plain body labelled gzip", valid, map[string]string{"Content-Encoding": "gzip"}, 400, "not gzip"},
		{"gzip cut short", gz(valid)[:20], map[string]string{"Content-Encoding": "gzip"}, 400, "gzip"},
		{"gzip bomb", bomb, map[string]string{"Content-Encoding": "gzip"}, 413, "max_body"},
		{"br", valid, map[string]string{"Content-Encoding": "br"}, 415, "br"},
		{"deflate", valid, map[string]string{"Content-Encoding": "deflate"}, 415, "deflate"},
		{"gzip twice", gz(gz(valid)), map[string]string{"Content-Encoding": "gzip, gzip"}, 415, "gzip"},
		{"two gzip members, two activities", gz(valid) + gz(valid), map[string]string{"Content-Encoding": "gzip"}, 400, "malformed JSON"},
		{"a gzip member, then plain bytes", gz(valid) + valid, map[string]string{"Content-Encoding": "gzip"}, 400, "gzip"},
		{"text/plain", valid, map[string]string{"Content-Type": "text/plain"}, 415, "text/plain"},
		{"form", "type=email&action=open", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, 415, "application/x-www-form-urlencoded"},
		{"multipart", "--b--\r\n", map[string]string{"Content-Type": "multipart/form-data; boundary=b"}, 415, "multipart/form-data"},
		{"utf-16", "\xff\xfe{\x00}\x00", map[string]string{"Content-Type": "application/json; charset=utf-16"}, 415, "utf-16"},
	}
	for _, route := range []struct{ path, auth string }{{"/v1/activities", "Authorization"}, {"/v3/events", "x-api-key"}} {
		for _, tc := range tests {
			if route.path == "/v3/events" && tc.status == 202 {
				continue // ODP's own body shape: the refusals are what is shared
			}
			t.Run(route.path+" "+tc.name, func(t *testing.T) {
				h := http.Header{"Content-Type": {"application/json"}}
				if route.auth == "Authorization" {
					h.Set("Authorization", "Bearer "+ingestToken)
				} else {
					h.Set(route.auth, ingestToken)
				}
				for k, v := range tc.header {
					if v == "" {
						h.Del(k)
					} else {
						h.Set(k, v)
					}
				}
				res := doRaw(t, "POST", n.ingest+route.path, h, tc.body)
				if res.status != tc.status {
					t.Fatalf("status %d, want %d: %s", res.status, tc.status, res.body)
				}
				if tc.says != "" && !strings.Contains(string(res.body), tc.says) {
					t.Errorf("answer does not say %q: %s", tc.says, res.body)
				}
				if tc.status >= 400 && !strings.HasPrefix(res.header.Get("Content-Type"), "application/json") {
					t.Errorf("a refusal in %q", res.header.Get("Content-Type"))
				}
			})
		}
	}
}
