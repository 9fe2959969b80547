package config

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

func env(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
}

var fullEnv = env(map[string]string{
	"RELAY_INGEST_TOKEN": "tok-1", "RELAY_ADMIN_TOKEN": "adm-1",
	"CRM_HOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "SF_SECRET": "sf-very-secret",
})

func TestParseFull(t *testing.T) {
	data, err := os.ReadFile("testdata/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse("full.yaml", data, fullEnv)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	d := cfg.Destinations[0]
	if d.Secrets[0].Value() != "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" || cfg.Ingest.Tokens[0].Value() != "tok-1" {
		t.Errorf("env not expanded: %q %q", d.Secrets[0].Value(), cfg.Ingest.Tokens[0].Value())
	}
	if d.RateLimit.PerSecond() != 200 || time.Duration(d.Retry.Schedule[2]) != 5*time.Minute || d.MaxInFlight != 64 {
		t.Errorf("destination = %+v", d)
	}
	if pos := d.Pos["include[1]"]; pos.Line != 17 || pos.Col != 26 {
		t.Errorf("include[1] at %+v, want 17:26", pos)
	}
	if pos := d.Pos["when"]; pos.Line != 19 {
		t.Errorf("when at %+v, want line 19", pos)
	}
	sf := cfg.Destinations[1]
	if sf.BatchSize != 200 || time.Duration(sf.BatchWait) != time.Second || sf.APIVersion != "v61.0" || sf.Fields["Email__c"] != "contact.email" {
		t.Errorf("salesforce defaults = %+v", sf)
	}
	if cfg.Ingest.MaxBody != 5<<20 || cfg.Ingest.MaxBatch != 1000 || cfg.NATS.Replicas != 1 {
		t.Errorf("ingest defaults = %+v", cfg.Ingest)
	}
}

func TestParseReportsEveryError(t *testing.T) {
	data, err := os.ReadFile("testdata/bad.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Parse("bad.yaml", data, env(nil))
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("error = %v, want Errors", err)
	}
	want := []string{
		`bad.yaml:2:8: nats.url: want embedded or nats://host:port (comma-separated for a cluster), got "http://nats:4222"`,
		`bad.yaml:3:13: nats.replicas: must be from 1 to 5, got 9`,
		`bad.yaml:5:11: ingest.tokens: at least one token is required`,
		`bad.yaml:6:13: ingest.max_body: expected a size like 5MiB, got "lots"`,
		`bad.yaml:8:10: admin.token: environment variable NOT_SET_ANYWHERE is not set`,
		`bad.yaml:10:11: destinations[0].name: invalid name "Crm Hook"`,
		`bad.yaml:12:10: destinations[0].url: host 10.0.0.5 is a private address; set allow_private_network: true to allow it`,
		`bad.yaml:13:15: destinations[0].secrets[0]: secret must start with whsec_`,
		`bad.yaml:14:5: destinations[0].retyr: unknown key "retyr"`,
		`bad.yaml:15:14: destinations[0].timeout: expected a duration like 30s, got "soon"`,
		`bad.yaml:16:17: destinations[0].rate_limit: expected a rate like 200/s, 30/m or 1000/h, got "fast"`,
		`bad.yaml:17:13: destinations[0].object: "object" is not valid for a webhook destination`,
		`bad.yaml:21:11: destinations[1].auth: give client_secret, or username and private_key_file`,
		`bad.yaml:23:24: destinations[1].external_id_field: "Relay_Id__c" must be mapped in fields (usually to id)`,
		`bad.yaml:24:23: destinations[1].fields.Type__c: unknown activity path "nome"`,
		`bad.yaml:25:17: destinations[1].batch_size: must be from 1 to 200 (the API's maximum), got 500`,
		`bad.yaml:26:11: destinations[2].name: destination "sf" is defined twice (first on line 18)`,
		`bad.yaml:27:11: destinations[2].type: unknown type "carrier-pigeon": want webhook or salesforce`,
	}
	got := strings.Split(errs.Error(), "\n")
	for _, w := range want {
		found := false
		for _, g := range got {
			if strings.HasPrefix(g, w) {
				found = true
			}
		}
		if !found {
			t.Errorf("missing error %q", w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("got %d errors, want %d:\n%s", len(got), len(want), errs.Error())
	}
}

func TestParseSnippets(t *testing.T) {
	head := "ingest: {tokens: [t]}\nadmin: {token: a}\n"
	tests := []struct {
		name, yaml, want string
	}{
		{"yaml syntax", "nats: [\n", "x.yaml:1:1: (file): invalid YAML"},
		{"mapping expected", head + "nats: 3\n", "x.yaml:3:7: nats: expected a mapping of keys, got \"3\""},
		{"list expected", head + "destinations: {name: x}\n", "x.yaml:3:15: destinations: expected a list, got a mapping"},
		{"bool", "admin: {token: a}\ningest: {tokens: [t], allow_custom: maybe}\n", "x.yaml:2:37: ingest.allow_custom: expected true or false"},
		{"duplicate key", head + "nats: {replicas: 1, replicas: 2}\n", `nats.replicas: key "replicas" given twice`},
		{"reserved header", head + "destinations: [{name: a, type: webhook, url: 'https://x.example', secrets: ['whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'], headers: {Webhook-Id: x}}]\n", `header "Webhook-Id" is set by Relay`},
		{"localhost", head + "destinations: [{name: a, type: webhook, url: 'http://localhost:9/x', secrets: ['whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw']}]\n", "host localhost is a loopback address"},
		{"mapped ipv6", head + "destinations: [{name: a, type: webhook, url: 'http://[::ffff:127.0.0.1]/x', secrets: ['whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw']}]\n", "host ::ffff:127.0.0.1 is a loopback address"},
		{"short secret", head + "destinations: [{name: a, type: webhook, url: 'https://x.example', secrets: ['whsec_c2hvcnQ=']}]\n", "secret is too short"},
		{"not a mapping", "hello\n", `x.yaml:1:1: (file): expected a mapping of keys, got "hello"`},
		{"list as a key", "? [a]\n: b\n", "x.yaml:1:3: (file): a key must be a plain name, got a list"},
		{"mapping as a map key", head + "destinations: [{name: a, type: webhook, url: 'https://x.example', secrets: ['whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'], headers: {? {a: b} : c}}]\n", "destinations[0].headers: a key must be a plain name, got a mapping"},
		{"order value", head + "destinations: [{name: a, type: webhook, url: 'https://x.example', secrets: ['whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'], order: email}]\n", `x.yaml:3:127: destinations[0].order: want contact or none, got "email"`},
		{"order key path", head + "destinations: [{name: a, type: webhook, url: 'https://x.example', secrets: ['whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'], order: contact, order_key: contact}]\n", `x.yaml:3:147: destinations[0].order_key: want contact.<key> or attributes.<key>[.<key>…], got "contact"`},
		{"consent channel", head + "destinations: [{name: a, type: webhook, url: 'https://x.example', secrets: ['whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'], consent: push}]\n", `x.yaml:3:129: destinations[0].consent: want email or sms, got "push"`},
		{"order key alone", head + "destinations: [{name: a, type: webhook, url: 'https://x.example', secrets: ['whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'], order_key: contact.id}]\n", `destinations[0].order_key: order_key needs order: contact`},
		{"bad custom name", head + "activities: [{name: Loyalty.Tier}]\n", `activities[0].name: invalid activity name "Loyalty.Tier"`},
		{"session too short", "ingest: {tokens: [t]}\nadmin: {token: a, session_ttl: 30s}\n", "admin.session_ttl: must be at least 1m"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("x.yaml", []byte(tc.yaml), env(nil))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestEnvExpansion(t *testing.T) {
	lookup := env(map[string]string{"A": "1", "EMPTY": ""})
	tests := []struct {
		in, want string
		missing  []string
	}{
		{"${A}", "1", nil},
		{"x${A}y${A}", "x1y1", nil},
		{"${B:-two}", "two", nil},
		{"${EMPTY:-d}", "", nil},
		{"$$5 and $${A}", "$5 and ${A}", nil},
		{"${B}", "", []string{"B"}},
		{"plain", "plain", nil},
	}
	for _, tc := range tests {
		got, missing := expandEnv(tc.in, lookup)
		if got != tc.want || strings.Join(missing, ",") != strings.Join(tc.missing, ",") {
			t.Errorf("expandEnv(%q) = %q %v, want %q %v", tc.in, got, missing, tc.want, tc.missing)
		}
	}
}

func TestSecretsNeverPrint(t *testing.T) {
	secret := "whsec_c3VwZXItc2VjcmV0LWtleS1tYXRlcmlhbA=="
	yaml := "ingest: {tokens: [t]}\nadmin: {token: a}\ndestinations: [{name: a, type: webhook, url: 'http://10.1.1.1/x', secrets: ['" + secret + "', 'whsec_" + "!!!']}]\n"
	_, err := Parse("x.yaml", []byte(yaml), env(nil))
	if err == nil {
		t.Fatal("want errors")
	}
	if strings.Contains(err.Error(), "c3VwZXIt") || strings.Contains(err.Error(), "!!!") {
		t.Errorf("error leaks a secret: %v", err)
	}
	s := Secret(secret)
	for _, out := range []string{s.String(), string(must(s.MarshalJSON())), s.LogValue().String()} {
		if strings.Contains(out, "c3VwZXIt") || !strings.HasPrefix(strings.Trim(out, `"`), "whsec_…") {
			t.Errorf("secret printed as %q", out)
		}
	}
	if got := Secret("client-secret").String(); got != "<secret>" {
		t.Errorf("String() = %q, want <secret>", got)
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

func TestRedactURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"nats://a:4222", "nats://a:4222"},
		{"nats://user:pass@a:4222,nats://b:4222", "nats://<redacted>@a:4222,nats://b:4222"},
		{"tls://token@x:4222", "tls://<redacted>@x:4222"},
	}
	for _, tc := range tests {
		if got := RedactURL(tc.in); got != tc.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
