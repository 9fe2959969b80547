package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relaydev/relay/config"
	"github.com/relaydev/relay/connectors/netguard"
	"github.com/relaydev/relay/relay"
	"github.com/relaydev/relay/relay/activity"
)

func dest(url string, secrets ...string) config.Destination {
	d := config.Destination{Name: "t", Type: "webhook", URL: url, AllowPrivateNetwork: true,
		Timeout: config.Duration(time.Second), MaxInFlight: 4}
	for _, s := range secrets {
		d.Secrets = append(d.Secrets, config.Secret(s))
	}
	return d
}

func delivery(t *testing.T) *relay.Delivery {
	t.Helper()
	a := &activity.Activity{ID: "act-1", Name: "email.open", Type: "email", Action: "open", Activity: "Opened email",
		OccurredAt: time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC), ReceivedAt: time.Date(2026, 11, 22, 10, 0, 1, 0, time.UTC),
		Contact: map[string]any{"email": "ann@example.com"}}
	raw, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	return &relay.Delivery{Activity: a, Raw: raw, Attempt: 1}
}

func newSink(t *testing.T, d config.Destination) *Sink {
	t.Helper()
	s, err := New(d, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func TestDeliverSignsStandardWebhook(t *testing.T) {
	const second = "whsec_ZGVtby1zZWNyZXQtZm9yLXRoZS1leGFtcGxlLXJlY2VpdmVy"
	var got struct {
		h    http.Header
		body []byte
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.h = r.Header.Clone()
		got.body, _ = io.ReadAll(r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	d := delivery(t)
	at := newSink(t, dest(srv.URL, vectorSecret, second)).Deliver(context.Background(), d)
	if at.Err != nil || at.Status != http.StatusNoContent {
		t.Fatalf("attempt = %+v", at)
	}
	for _, secret := range []string{vectorSecret, second} {
		if err := VerifyRequest(secret, got.h, got.body, time.Now()); err != nil {
			t.Errorf("verify with %s: %v", secret[:10], err)
		}
	}
	if got.h.Get("webhook-id") != "act-1" || got.h.Get("content-type") != "application/json" {
		t.Errorf("headers = %v", got.h)
	}
	want := `{"type":"email.open","timestamp":"2026-11-22T10:00:00Z","data":` + string(d.Raw) + `}`
	if string(got.body) != want {
		t.Errorf("body = %s\nwant %s", got.body, want)
	}
	var parsed map[string]any
	if err := json.Unmarshal(got.body, &parsed); err != nil {
		t.Errorf("body is not JSON: %v", err)
	}
}

func TestDeliverClassifies(t *testing.T) {
	tests := []struct {
		name       string
		handler    http.HandlerFunc
		kind       relay.Kind
		ok         bool
		retryAfter time.Duration
		errHas     string
	}{
		{"200", func(w http.ResponseWriter, r *http.Request) {}, 0, true, 0, ""},
		{"410 pauses", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(410) }, relay.Gone, false, 0, "gone"},
		{"429 honours Retry-After", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "120")
			w.WriteHeader(429)
		}, relay.Retry, false, 2 * time.Minute, "status 429"},
		{"503 with a capped Retry-After", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "86400")
			w.WriteHeader(503)
		}, relay.Retry, false, time.Hour, "status 503"},
		{"500 says what the receiver said", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(500)
			io.WriteString(w, "database on fire")
		}, relay.Retry, false, 0, "database on fire"},
		{"404 retries", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(404) }, relay.Retry, false, 0, "status 404"},
		{"302 is not followed", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "http://169.254.169.254/latest/meta-data", http.StatusFound)
		}, relay.Retry, false, 0, "not followed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.handler)
			defer srv.Close()
			at := newSink(t, dest(srv.URL, vectorSecret)).Deliver(context.Background(), delivery(t))
			if tc.ok {
				if at.Err != nil {
					t.Fatalf("err = %v", at.Err)
				}
				return
			}
			kind, after := relay.Classify(at.Err)
			if kind != tc.kind || after != tc.retryAfter {
				t.Errorf("kind %v after %v, want %v %v (%v)", kind, after, tc.kind, tc.retryAfter, at.Err)
			}
			if !strings.Contains(at.Err.Error(), tc.errHas) {
				t.Errorf("error %q lacks %q", at.Err, tc.errHas)
			}
		})
	}
}

func TestDeliverBoundedByTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select { // hang until the client gives up or the test ends
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	start := time.Now()
	at := newSink(t, dest(srv.URL, vectorSecret)).Deliver(context.Background(), delivery(t))
	if at.Err == nil || !strings.Contains(at.Err.Error(), "no response within 1s") {
		t.Fatalf("err = %v, want a timeout", at.Err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("attempt took %s with a 1s timeout", took)
	}
}

func TestDeliverDoesNotReadHugeBodies(t *testing.T) {
	var written atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(500)
		chunk := bytes.Repeat([]byte("x"), 64<<10)
		for i := 0; i < (1<<30)/len(chunk); i++ { // up to 1 GiB, until the client hangs up
			if _, err := w.Write(chunk); err != nil {
				return
			}
			written.Add(int64(len(chunk)))
		}
	}))
	defer srv.Close()
	at := newSink(t, dest(srv.URL, vectorSecret)).Deliver(context.Background(), delivery(t))
	if at.Status != 500 || at.Err == nil {
		t.Fatalf("attempt = %+v", at)
	}
	srv.CloseClientConnections()
	if n := written.Load(); n > 64<<20 {
		t.Errorf("server wrote %d bytes before the client stopped reading", n)
	}
	if len(at.Err.Error()) > 400 {
		t.Errorf("error is %d bytes long", len(at.Err.Error()))
	}
}

func TestDeliverRetriesResetInsideAttempt(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.(*net.TCPConn).SetLinger(0)
			conn.Close() // connection reset before any response
			return
		}
		w.WriteHeader(200)
	}))
	defer srv.Close()
	at := newSink(t, dest(srv.URL, vectorSecret)).Deliver(context.Background(), delivery(t))
	if at.Err != nil || calls.Load() != 2 {
		t.Errorf("attempt = %+v after %d calls, want success on the second", at, calls.Load())
	}
}

func TestDeliverRefusesPrivateAddress(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { calls.Add(1) }))
	defer srv.Close()
	d := dest(srv.URL, vectorSecret)
	d.AllowPrivateNetwork = false
	at := newSink(t, d).Deliver(context.Background(), delivery(t))
	var blocked *netguard.BlockedError
	if kind, _ := relay.Classify(at.Err); kind != relay.Permanent || !errors.As(at.Err, &blocked) {
		t.Errorf("err = %v, want a permanent BlockedError", at.Err)
	}
	if calls.Load() != 0 {
		t.Errorf("the receiver was reached %d times", calls.Load())
	}
}

func BenchmarkBody(b *testing.B) {
	a := &activity.Activity{ID: "act-1", Name: "email.open", OccurredAt: time.Now()}
	raw := bytes.Repeat([]byte("x"), 1024)
	b.ReportAllocs()
	for b.Loop() {
		Body(a, raw)
	}
}
