package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relaydev/relay/config"
	"github.com/relaydev/relay/connectors/netguard"
	"github.com/relaydev/relay/relay/activity"
	"github.com/relaydev/relay/relay/sink"
)

const secondSecret = "whsec_ZGVtby1zZWNyZXQtZm9yLXRoZS1leGFtcGxlLXJlY2VpdmVy"

// clock is a fake Options.Now, safe to read from the sink's goroutines.
var clock = time.Date(2026, 11, 22, 10, 0, 5, 0, time.UTC)

func dest(url string, secrets ...string) config.Destination {
	d := config.Destination{Name: "t", Type: "webhook", URL: url, AllowPrivateNetwork: true,
		Timeout: config.Duration(time.Second), MaxInFlight: 4}
	for _, s := range secrets {
		d.Secrets = append(d.Secrets, config.Secret(s))
	}
	return d
}

func delivery(t testing.TB, attempt int) *sink.Delivery {
	t.Helper()
	a := &activity.Activity{ID: "act-1", Name: "email.open", Type: "email", Action: "open", Activity: "Opened email",
		OccurredAt: time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC), ReceivedAt: time.Date(2026, 11, 22, 10, 0, 1, 0, time.UTC),
		Contact: json.RawMessage(`{"email":"ann@example.com"}`)}
	raw, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	return &sink.Delivery{Activity: a, Raw: raw, Attempt: attempt}
}

func newSink(t *testing.T, d config.Destination, opts Options) *Sink {
	t.Helper()
	s, err := New(d, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// received is what a test receiver saw of one request.
type received struct {
	header http.Header
	body   []byte
}

// recorder is a receiver answering status and passing on what it got.
func recorder(t *testing.T, status int) (*httptest.Server, <-chan received) {
	t.Helper()
	got := make(chan received, 8)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		select {
		case got <- received{r.Header.Clone(), body}:
		default:
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(srv.Close)
	return srv, got
}

func next(t *testing.T, got <-chan received) received {
	t.Helper()
	select {
	case r := <-got:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("the receiver got nothing")
		return received{}
	}
}

func TestDeliverSignsStandardWebhook(t *testing.T) {
	tests := []struct {
		name    string
		secrets []string
	}{
		{"one secret", []string{vectorSecret}},
		{"two secrets during a rotation", []string{vectorSecret, secondSecret}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv, got := recorder(t, http.StatusNoContent)
			d := dest(srv.URL, tc.secrets...)
			d.Headers = map[string]string{"X-Tenant": "acme"}
			del := delivery(t, 1)
			at := newSink(t, d, Options{Now: func() time.Time { return clock }}).Deliver(context.Background(), del)
			if at.Err != nil || at.Status != http.StatusNoContent || !at.At.Equal(clock) {
				t.Fatalf("attempt = %+v", at)
			}
			r := next(t, got)
			for _, secret := range tc.secrets {
				if err := VerifyRequest(secret, r.header, r.body, clock); err != nil {
					t.Errorf("verify with secret %s: %v", config.Secret(secret), err)
				}
			}
			if n := len(strings.Fields(r.header.Get("webhook-signature"))); n != len(tc.secrets) {
				t.Errorf("%d signatures for %d secrets", n, len(tc.secrets))
			}
			wantHeaders := map[string]string{"webhook-id": "act-1", "webhook-timestamp": strconv.FormatInt(clock.Unix(), 10),
				"content-type": "application/json", "user-agent": "Relay/1", "x-tenant": "acme"}
			for k, v := range wantHeaders {
				if r.header.Get(k) != v {
					t.Errorf("%s = %q, want %q", k, r.header.Get(k), v)
				}
			}
			want := `{"type":"email.open","timestamp":"2026-11-22T10:00:00Z","data":` + string(del.Raw) + `}`
			if string(r.body) != want {
				t.Errorf("body = %s\nwant %s", r.body, want)
			}
		})
	}
}

// TestDeliverSendsTraceContext: the delivery's traceparent and tracestate
// go out as headers; a delivery without one sends none.
func TestDeliverSendsTraceContext(t *testing.T) {
	srv, got := recorder(t, http.StatusNoContent)
	s := newSink(t, dest(srv.URL, vectorSecret), Options{})
	tests := []struct{ parent, state string }{
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "vendor=abc"},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", ""},
		{"", ""},
	}
	for _, tc := range tests {
		d := delivery(t, 1)
		d.TraceParent, d.TraceState = tc.parent, tc.state
		if at := s.Deliver(context.Background(), d); at.Err != nil {
			t.Fatal(at.Err)
		}
		h := next(t, got).header
		if h.Get("traceparent") != tc.parent || h.Get("tracestate") != tc.state || len(h.Values("traceparent")) > 1 {
			t.Errorf("sent traceparent %q tracestate %q, want %q %q", h.Values("traceparent"), h.Get("tracestate"), tc.parent, tc.state)
		}
	}
}

func TestDeliverSameIDNewTimestampEachAttempt(t *testing.T) {
	srv, got := recorder(t, http.StatusOK)
	var now atomic.Int64
	now.Store(clock.Unix())
	s := newSink(t, dest(srv.URL, vectorSecret), Options{Now: func() time.Time { return time.Unix(now.Load(), 0) }})
	var ids, stamps []string
	for attempt := 1; attempt <= 2; attempt++ {
		if at := s.Deliver(context.Background(), delivery(t, attempt)); at.Err != nil {
			t.Fatalf("attempt %d: %v", attempt, at.Err)
		}
		r := next(t, got)
		ids, stamps = append(ids, r.header.Get("webhook-id")), append(stamps, r.header.Get("webhook-timestamp"))
		now.Add(30)
	}
	if ids[0] != "act-1" || ids[1] != ids[0] {
		t.Errorf("webhook-ids %q, want act-1 on every attempt", ids)
	}
	if stamps[0] == stamps[1] {
		t.Errorf("webhook-timestamps %q, want the time of each attempt", stamps)
	}
}

func TestDeliverClassifies(t *testing.T) {
	tests := []struct {
		name       string
		handler    http.HandlerFunc
		status     int
		kind       sink.Kind
		retryAfter time.Duration
		errHas     string // "" = delivered
	}{
		{"200", func(w http.ResponseWriter, r *http.Request) {}, 200, 0, 0, ""},
		{"410 pauses", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(410) }, 410, sink.Gone, 0, "status 410: receiver asked to stop"},
		{"429 honours Retry-After seconds", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "120")
			w.WriteHeader(429)
		}, 429, sink.Retry, 2 * time.Minute, "status 429"},
		{"429 honours a Retry-After date", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", clock.Add(90*time.Second).Format(http.TimeFormat))
			w.WriteHeader(429)
		}, 429, sink.Retry, 90 * time.Second, "status 429"},
		{"503 with a capped Retry-After", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "86400")
			w.WriteHeader(503)
		}, 503, sink.Retry, time.Hour, "status 503"},
		{"500 says what the receiver said", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(500)
			io.WriteString(w, "database\non fire")
		}, 500, sink.Retry, 0, "status 500: response: database on fire"},
		{"404 retries", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(404) }, 404, sink.Retry, 0, "status 404: empty response"},
		{"302 is not followed", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "http://169.254.169.254/latest/meta-data", http.StatusFound)
		}, 302, sink.Retry, 0, "status 302: redirect to http://169.254.169.254/latest/meta-data not followed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.handler)
			defer srv.Close()
			at := newSink(t, dest(srv.URL, vectorSecret), Options{Now: func() time.Time { return clock }}).Deliver(context.Background(), delivery(t, 1))
			if at.Status != tc.status {
				t.Errorf("status = %d, want %d", at.Status, tc.status)
			}
			if tc.errHas == "" {
				if at.Err != nil || at.Error != "" {
					t.Fatalf("err = %v", at.Err)
				}
				return
			}
			kind, after := sink.Classify(at.Err)
			if kind != tc.kind || after != tc.retryAfter {
				t.Errorf("kind %v after %v, want %v %v (%v)", kind, after, tc.kind, tc.retryAfter, at.Err)
			}
			if !strings.Contains(at.Error, tc.errHas) {
				t.Errorf("error %q lacks %q", at.Error, tc.errHas)
			}
		})
	}
}

func TestDeliverBoundedByTimeout(t *testing.T) {
	tests := []struct {
		name    string
		handler func(w http.ResponseWriter, hang func())
		status  int
		errHas  string
	}{
		{"no headers", func(w http.ResponseWriter, hang func()) { hang() }, 0, "no response within 1s"},
		{"endless body", func(w http.ResponseWriter, hang func()) {
			w.WriteHeader(500)
			io.WriteString(w, "partial")
			w.(http.Flusher).Flush()
			hang()
		}, 500, "status 500"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			release := make(chan struct{})
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				tc.handler(w, func() {
					select { // until the client gives up or the test ends
					case <-r.Context().Done():
					case <-release:
					}
				})
			}))
			defer srv.Close()
			defer close(release)
			at := newSink(t, dest(srv.URL, vectorSecret), Options{}).Deliver(context.Background(), delivery(t, 1))
			if at.Status != tc.status || at.Err == nil || !strings.Contains(at.Err.Error(), tc.errHas) {
				t.Fatalf("attempt = %+v, want status %d and %q", at, tc.status, tc.errHas)
			}
			if at.Latency > 3*time.Second {
				t.Errorf("attempt took %s with a 1s timeout", at.Latency)
			}
		})
	}
}

func TestDeliverDoesNotReadHugeBodies(t *testing.T) {
	var written atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(500)
		chunk := bytes.Repeat([]byte("x"), 64<<10)
		for range (1 << 30) / len(chunk) { // 1 GiB, unless the client hangs up
			if _, err := w.Write(chunk); err != nil {
				return
			}
			written.Add(int64(len(chunk)))
		}
	}))
	defer srv.Close()
	at := newSink(t, dest(srv.URL, vectorSecret), Options{}).Deliver(context.Background(), delivery(t, 1))
	if at.Status != 500 || at.Err == nil || strings.Contains(at.Error, "no response within") {
		t.Fatalf("attempt = %+v", at)
	}
	if at.Latency >= time.Second {
		t.Errorf("attempt ran into its timeout (%s): the body was being read", at.Latency)
	}
	if n := written.Load(); n > 64<<20 {
		t.Errorf("server wrote %d bytes before the client stopped reading", n)
	}
	if len(at.Error) > 300 {
		t.Errorf("error is %d bytes long", len(at.Error))
	}
}

func TestDeliverDoesNotRetryStatusInsideAttempt(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.WriteHeader(503)
	}))
	defer srv.Close()
	at := newSink(t, dest(srv.URL, vectorSecret), Options{}).Deliver(context.Background(), delivery(t, 1))
	if at.Status != 503 || calls.Load() != 1 {
		t.Errorf("attempt = %+v after %d calls, want one call", at, calls.Load())
	}
}

func TestDeliverRefusesPrivateAddress(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { calls.Add(1) }))
	defer srv.Close()
	d := dest(srv.URL, vectorSecret)
	d.AllowPrivateNetwork = false
	at := newSink(t, d, Options{}).Deliver(context.Background(), delivery(t, 1))
	var blocked *netguard.BlockedError
	if kind, _ := sink.Classify(at.Err); kind != sink.Permanent || !errors.As(at.Err, &blocked) {
		t.Fatalf("err = %v, want a permanent BlockedError", at.Err)
	}
	if at.Status != 0 || !strings.Contains(at.Error, "127.0.0.1 is loopback; set allow_private_network: true") {
		t.Errorf("attempt = %+v", at)
	}
	if calls.Load() != 0 {
		t.Errorf("the receiver was reached %d times", calls.Load())
	}
}

// TestNoSecretsInErrors fails a delivery to a URL carrying a token and
// checks neither the token nor the signing secret shows up.
func TestNoSecretsInErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens: connection refused
	d := dest("http://user:pw-token@"+addr+"/hook?token=query-token", vectorSecret)
	at := newSink(t, d, Options{}).Deliver(context.Background(), delivery(t, 1))
	if at.Err == nil || at.Status != 0 || !strings.Contains(at.Error, "refused") {
		t.Fatalf("attempt = %+v, want connection refused", at)
	}
	for _, secret := range []string{"pw-token", "query-token", vectorSecret, vectorSecret[6:]} {
		if strings.Contains(at.Error, secret) {
			t.Errorf("%q leaked: %s", secret, at.Error)
		}
	}
}

// TestOneConnectionPerAttempt: an attempt whose connection fails is one
// connection and one failure; the durable schedule retries, not the HTTP
// client within the attempt. Each case's receiver takes the connection
// and fails it its own way.
func TestOneConnectionPerAttempt(t *testing.T) {
	tests := []struct {
		name string
		fail func(net.Conn)
	}{
		{"closed at once", func(c net.Conn) { c.Close() }},
		{"closed after reading the request", func(c net.Conn) {
			_, _ = c.Read(make([]byte, 64<<10))
			c.Close()
		}},
		{"reset", func(c net.Conn) {
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetLinger(0)
			}
			c.Close()
		}},
		{"garbage answer", func(c net.Conn) {
			_, _ = c.Read(make([]byte, 64<<10))
			_, _ = c.Write([]byte("NOT HTTP\r\n\r\n"))
			c.Close()
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			var conns atomic.Int32
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					conns.Add(1)
					go tc.fail(c)
				}
			}()
			at := newSink(t, dest("http://"+ln.Addr().String()+"/hook", vectorSecret), Options{}).Deliver(context.Background(), delivery(t, 1))
			if at.Err == nil || at.Status != 0 {
				t.Fatalf("attempt = %+v, want a transport failure", at)
			}
			if kind, _ := sink.Classify(at.Err); kind != sink.Retry {
				t.Errorf("kind = %v, want retry on the schedule", kind)
			}
			if n := conns.Load(); n != 1 {
				t.Errorf("the attempt opened %d connections, want 1", n)
			}
		})
	}
}

// TestSharedTransports: destinations given one pool use its connections,
// one transport per kind of dialing, and a sink's Close leaves the pool's
// connections to the others.
func TestSharedTransports(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	pool := NewTransports(4, nil)
	defer pool.Close()
	if pool.For(true) != pool.For(true) || pool.For(true) == pool.For(false) {
		t.Fatal("want one transport per kind of dialing")
	}
	var sinks []*Sink
	for i := range 10 {
		d := dest(fmt.Sprintf("%s/d%d", srv.URL, i), vectorSecret)
		sinks = append(sinks, newSink(t, d, Options{Transports: pool}))
	}
	for round := range 3 {
		for i, s := range sinks {
			if at := s.Deliver(context.Background(), delivery(t, 1)); at.Err != nil {
				t.Fatalf("round %d, d%d: %v", round, i, at.Err)
			}
		}
		sinks[0].Close() // its own pool is the shared one: nothing to drop
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("10 destinations delivering one at a time opened %d connections, want 1 shared", n)
	}
}

func TestNewRejects(t *testing.T) {
	const leak = "whsec_not!base64-but-secret"
	tests := []struct {
		name    string
		d       config.Destination
		wantErr string
	}{
		{"bad secret", dest("http://127.0.0.1/", vectorSecret, leak), "secrets[1]: webhook secret must be whsec_ followed by base64"},
		{"no secret", dest("http://127.0.0.1/"), "secrets: at least one is needed to sign with"},
		{"no scheme", dest("127.0.0.1/hook?token=x", vectorSecret), "url: want an absolute http or https URL"},
		{"other scheme", dest("ftp://127.0.0.1/?token=x", vectorSecret), "url: want an absolute http or https URL"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.d, Options{})
			if err == nil || err.Error() != tc.wantErr {
				t.Fatalf("New = %v, want %q", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), "secret!") || strings.Contains(err.Error(), "token") {
				t.Errorf("error leaks a secret: %v", err)
			}
		})
	}
}

func TestBody(t *testing.T) {
	at := time.Date(2026, 11, 22, 10, 0, 0, 500, time.FixedZone("CET", 3600))
	tests := []struct {
		name string
		a    activity.Activity
		raw  string
		want string
	}{
		{"raw kept byte for byte", activity.Activity{Name: "email.open", OccurredAt: at}, `{"id": "x",  "n": 1.50}`,
			`{"type":"email.open","timestamp":"2026-11-22T09:00:00.0000005Z","data":{"id": "x",  "n": 1.50}}`},
		{"name needing escapes", activity.Activity{Name: "odd \"name\"\n", OccurredAt: at}, `{}`,
			`{"type":"odd \"name\"\n","timestamp":"2026-11-22T09:00:00.0000005Z","data":{}}`},
		{"no raw", activity.Activity{Name: "pageview", OccurredAt: at}, ``,
			`{"type":"pageview","timestamp":"2026-11-22T09:00:00.0000005Z","data":null}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Body(&tc.a, []byte(tc.raw))
			if string(got) != tc.want {
				t.Errorf("Body = %s\nwant   %s", got, tc.want)
			}
			if !json.Valid(got) {
				t.Errorf("Body is not JSON: %s", got)
			}
		})
	}
}

func BenchmarkBody(b *testing.B) {
	d := delivery(b, 1)
	raw := append(bytes.Repeat([]byte(" "), 1024), d.Raw...)
	b.ReportAllocs()
	for b.Loop() {
		Body(d.Activity, raw)
	}
}

// BenchmarkRequest builds one signed request, as every attempt does.
func BenchmarkRequest(b *testing.B) {
	d := dest("http://127.0.0.1:1/hook", vectorSecret)
	d.Headers = map[string]string{"X-Tenant": "acme"}
	s, err := New(d, Options{})
	if err != nil {
		b.Fatal(err)
	}
	del := delivery(b, 1)
	body := Body(del.Activity, del.Raw)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.request(ctx, del, body); err != nil {
			b.Fatal(err)
		}
	}
}
