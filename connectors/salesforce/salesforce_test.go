package salesforce

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/relaydev/relay/config"
	"github.com/relaydev/relay/connectors/salesforce/sftest"
	"github.com/relaydev/relay/relay/activity"
	"github.com/relaydev/relay/relay/sink"
)

const clientSecret = "sf-client-secret-DO-NOT-LEAK"

// newFake starts the fake with this test's client secret.
func newFake(t *testing.T, opts ...sftest.Option) *sftest.Server {
	return sftest.New(t, append([]sftest.Option{sftest.WithClient("client-id", clientSecret)}, opts...)...)
}

func destination(fake *sftest.Server) config.Destination {
	return config.Destination{
		Name: "sf", Type: "salesforce", InstanceURL: "https://configured.invalid", AllowPrivateNetwork: true,
		Auth:       config.Auth{TokenURL: fake.TokenURL(), ClientID: "client-id", ClientSecret: clientSecret},
		APIVersion: "v61.0", Object: "Activity__c", ExternalIDField: "Relay_Id__c",
		Fields: map[string]string{"Relay_Id__c": "id", "Type__c": "name", "Email__c": "contact.email",
			"Occurred_At__c": "occurred_at", "Campaign__c": "attributes.campaign", "Total__c": "attributes.order.total"},
		BatchSize: 200, BatchWait: config.Duration(time.Second), Timeout: config.Duration(5 * time.Second),
	}
}

func newSink(t *testing.T, d config.Destination, log *slog.Logger) *Sink {
	t.Helper()
	s, err := New(d, Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func deliveries(ids ...string) []*sink.Delivery {
	var out []*sink.Delivery
	for _, id := range ids {
		a := &activity.Activity{ID: id, Name: "email.open", Type: "email", Action: "open",
			OccurredAt: time.Date(2026, 11, 22, 10, 0, 0, 123e6, time.FixedZone("CET", 3600)),
			Contact:    json.RawMessage(`{"email":"` + id + `@example.com"}`),
			Attributes: json.RawMessage(`{"campaign":"bf","order":{"total":12.5}}`)}
		out = append(out, &sink.Delivery{Activity: a, Attempt: 1})
	}
	return out
}

func kinds(ats []sink.Attempt) []string {
	var out []string
	for _, at := range ats {
		if at.Err == nil {
			out = append(out, "ok")
			continue
		}
		k, _ := sink.Classify(at.Err)
		out = append(out, k.String())
	}
	return out
}

// TestCallsCarryTraceparent: each call sends the traceparent of the
// batch's first activity that has one, and its tracestate.
func TestCallsCarryTraceparent(t *testing.T) {
	fake := newFake(t)
	s := newSink(t, destination(fake), nil)
	ds := deliveries("t1", "t2")
	ds[0].TraceParent, ds[0].TraceState = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "p=1"
	ds[1].TraceParent = "00-11111111111111111111111111111111-2222222222222222-00"
	if ats := s.DeliverBatch(context.Background(), ds); ats[0].Err != nil || ats[1].Err != nil {
		t.Fatal(ats[0].Err, ats[1].Err)
	}
	s.DeliverBatch(context.Background(), deliveries("t3")) // none: none sent
	got := fake.TraceParents()
	want := []string{ds[0].TraceParent, ""}
	if !slices.Equal(got, want) {
		t.Errorf("calls carried %q, want %q", got, want)
	}
}

func TestUpsertMapsValues(t *testing.T) {
	fake := newFake(t)
	ats := newSink(t, destination(fake), nil).DeliverBatch(context.Background(), deliveries("a1"))
	if ats[0].Err != nil {
		t.Fatal(ats[0].Err)
	}
	rec := fake.Records()["a1"]
	want := map[string]any{"Relay_Id__c": "a1", "Type__c": "email.open", "Email__c": "a1@example.com",
		"Occurred_At__c": "2026-11-22T09:00:00.123Z", "Campaign__c": "bf", "Total__c": 12.5}
	for k, v := range want {
		if rec[k] != v {
			t.Errorf("%s = %#v, want %#v", k, rec[k], v)
		}
	}
}

func TestValueMapping(t *testing.T) {
	a := &activity.Activity{ID: "x", Name: "pageview", Type: "pageview",
		Attributes: json.RawMessage(`{"n":12345678901234567890,"f":1.5,"b":false,"s":"v","obj":{"k":[1.0,"two"]},"null":null}`)}
	tests := []struct {
		path string
		want any
		ok   bool
	}{
		{"id", "x", true}, {"action", nil, false}, {"activity", nil, false}, {"occurred_at", nil, false},
		{"attributes.n", json.Number("12345678901234567890"), true}, {"attributes.f", json.Number("1.5"), true},
		{"attributes.b", false, true}, {"attributes.s", "v", true},
		{"attributes.obj", `{"k":[1.0,"two"]}`, true}, {"attributes.obj.k", `[1.0,"two"]`, true},
		{"attributes.null", nil, false}, {"attributes.missing", nil, false}, {"attributes.s.deeper", nil, false},
		{"contact.email", nil, false},
	}
	for _, tc := range tests {
		src, err := compileSource(tc.path)
		if err != nil {
			t.Fatal(err)
		}
		got, ok, err := src.value(&input{a: a})
		if err != nil || ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("value(%s) = %#v %v, want %#v %v", tc.path, got, ok, tc.want, tc.ok)
		}
	}
}

func TestMixedBatch(t *testing.T) {
	fake := newFake(t, sftest.WithMaxLength("Email__c", 20))
	fake.LockRecord("locked", 1)
	ds := deliveries("good", "locked", "a-very-long-id-for-a-long-email")
	d := destination(fake)
	d.Fields["Unknown__c"] = "type"
	ds2 := deliveries("bad-field")
	s := newSink(t, destination(fake), nil)
	ats := s.DeliverBatch(context.Background(), ds)
	if got := strings.Join(kinds(ats), ","); got != "ok,retry,permanent" {
		t.Fatalf("kinds = %s, want ok,retry,permanent (%v)", got, ats)
	}
	if !strings.Contains(ats[2].Err.Error(), "STRING_TOO_LONG") {
		t.Errorf("permanent error %q lacks Salesforce's status code", ats[2].Err)
	}
	ats = newSink(t, d, nil).DeliverBatch(context.Background(), ds2)
	if k := kinds(ats); k[0] != "permanent" || !strings.Contains(ats[0].Err.Error(), "INVALID_FIELD") {
		t.Errorf("unknown field: %v %v", k, ats[0].Err)
	}
	// The locked record succeeds when retried.
	if ats := s.DeliverBatch(context.Background(), ds[1:2]); ats[0].Err != nil {
		t.Errorf("retry of locked record: %v", ats[0].Err)
	}
}

func TestTokenExpiryMidRun(t *testing.T) {
	fake := newFake(t)
	s := newSink(t, destination(fake), nil)
	if ats := s.DeliverBatch(context.Background(), deliveries("a1")); ats[0].Err != nil {
		t.Fatal(ats[0].Err)
	}
	fake.ExpireTokens()
	if ats := s.DeliverBatch(context.Background(), deliveries("a2")); ats[0].Err != nil {
		t.Fatalf("after expiry: %v", ats[0].Err)
	}
	if fake.TokenRequests() != 2 || fake.Calls() != 3 {
		t.Errorf("token requests %d, calls %d; want 2 and 3 (one refused call retried once)", fake.TokenRequests(), fake.Calls())
	}
}

func TestRequestLimitThrottlesDestination(t *testing.T) {
	fake := newFake(t)
	fake.FailNext(1, http.StatusForbidden, "REQUEST_LIMIT_EXCEEDED")
	ats := newSink(t, destination(fake), nil).DeliverBatch(context.Background(), deliveries("a1", "a2"))
	for _, at := range ats {
		kind, after := sink.Classify(at.Err)
		if kind != sink.Throttle || after != 0 || at.Status != http.StatusForbidden {
			t.Errorf("attempt %+v: kind %v after %v, want throttle (no Retry-After: the schedule decides)", at, kind, after)
		}
	}
	fake.FailNext(1, http.StatusInternalServerError, "UNKNOWN_EXCEPTION")
	ats = newSink(t, destination(fake), nil).DeliverBatch(context.Background(), deliveries("a1"))
	if k := kinds(ats); k[0] != "retry" {
		t.Errorf("500: %v", k)
	}
}

func TestRedeliveryMakesNoSecondRecord(t *testing.T) {
	fake := newFake(t)
	s := newSink(t, destination(fake), nil)
	for range 3 {
		if ats := s.DeliverBatch(context.Background(), deliveries("same")); ats[0].Err != nil {
			t.Fatal(ats[0].Err)
		}
	}
	if n := len(fake.Records()); n != 1 {
		t.Errorf("records = %d, want 1", n)
	}
}

func TestThousandActivitiesInBatches(t *testing.T) {
	fake := newFake(t)
	s := newSink(t, destination(fake), nil)
	size, _ := s.Batch()
	var ids []string
	for i := range 1000 {
		ids = append(ids, fmt.Sprintf("act-%04d", i))
	}
	all := deliveries(ids...)
	for i := 0; i < len(all); i += size {
		for j, at := range s.DeliverBatch(context.Background(), all[i:min(i+size, len(all))]) {
			if at.Err != nil {
				t.Fatalf("record %d: %v", i+j, at.Err)
			}
		}
	}
	if n := len(fake.Records()); n != 1000 || fake.MaxBatch() > 200 || fake.Calls() != 5 {
		t.Errorf("records %d, max batch %d, calls %d; want 1000, ≤200, 5", n, fake.MaxBatch(), fake.Calls())
	}
	// The fake refuses what Salesforce refuses: more than 200 records in
	// one collections call (DeliverBatch sends a Bulk job instead).
	big := newSink(t, destination(fake), nil)
	ats := big.deliverCollections(context.Background(), all[:201])
	if k, _ := sink.Classify(ats[0].Err); k != sink.Permanent || !strings.Contains(ats[0].Err.Error(), "EXCEEDED_ID_LIMIT") {
		t.Errorf("201 records: %v", ats[0].Err)
	}
}

func TestJWTBearer(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	fake := newFake(t, sftest.WithJWT(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), "integration@acme.example"))
	keyFile := filepath.Join(t.TempDir(), "server.key")
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600)
	d := destination(fake)
	d.Auth.ClientSecret, d.Auth.Username, d.Auth.PrivateKeyFile, d.Auth.Audience = "", "integration@acme.example", keyFile, "https://login.salesforce.com"
	if ats := newSink(t, d, nil).DeliverBatch(context.Background(), deliveries("j1")); ats[0].Err != nil {
		t.Fatalf("JWT flow: %v", ats[0].Err)
	}
	d.Auth.Username = "someone-else@acme.example"
	ats := newSink(t, d, nil).DeliverBatch(context.Background(), deliveries("j2"))
	if ats[0].Err == nil || !strings.Contains(ats[0].Err.Error(), "invalid_grant") {
		t.Errorf("wrong user: %v", ats[0].Err)
	}
}

func TestSecretsNeverLeak(t *testing.T) {
	fake := newFake(t, sftest.WithClient("client-id", "the-real-one"))
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ats := newSink(t, destination(fake), log).DeliverBatch(context.Background(), deliveries("a1"))
	if ats[0].Err == nil {
		t.Fatal("want a refused token")
	}
	out, _ := json.Marshal(ats)
	for _, text := range []string{ats[0].Err.Error(), string(out), logs.String()} {
		if strings.Contains(text, clientSecret) || strings.Contains(text, "the-real-one") {
			t.Errorf("secret leaked: %s", text)
		}
	}
	if !strings.Contains(ats[0].Err.Error(), "invalid_client") {
		t.Errorf("error %q does not say why", ats[0].Err)
	}
}
