package config

import (
	"errors"
	"strings"
	"testing"
)

const valuesHead = "ingest: {tokens: [t]}\nadmin: {token: a}\n"

// valuesWebhook is a valid webhook destination; extra lines follow it.
const valuesWebhook = "destinations:\n  - name: a\n    type: webhook\n    url: https://x.example\n    secrets: [whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw]\n"

// valuesSalesforce is a valid Salesforce destination; extra lines follow it.
const valuesSalesforce = "destinations:\n  - name: s\n    type: salesforce\n    instance_url: https://x.example\n    auth: {token_url: https://x.example/t, client_id: c, client_secret: s}\n    object: O\n    external_id_field: E\n    fields: {E: id}\n"

// valuesAlerts is a valid alerts block; extra lines follow it.
const valuesAlerts = "alerts:\n  url: https://x.example\n  secrets: [whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw]\n"

// webhookURL is valuesWebhook with another url.
func webhookURL(u string) string {
	return strings.Replace(valuesWebhook, "url: https://x.example", "url: \""+u+"\"", 1)
}

// parseOne parses a config and returns its only error, or "" when it is
// valid; more than one error fails the test.
func parseOne(t *testing.T, yaml string, vars map[string]string) string {
	t.Helper()
	_, err := Parse("relay.yaml", []byte(yaml), env(vars))
	if err == nil {
		return ""
	}
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("error = %v, want Errors", err)
	}
	if len(errs) != 1 {
		t.Fatalf("want one error, got:\n%v", err)
	}
	return errs[0].Error()
}

// TestValidateHeaderValues: a header name or value Go's HTTP client would
// refuse at every delivery ("invalid header field") is refused at validate,
// at its line and column, for destinations and alerts alike; so is a name
// Relay or the client sets anyway and one given twice (header names are
// case-insensitive), which would be silently replaced.
func TestValidateHeaderValues(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       string // "" = valid
	}{
		{"plain", valuesWebhook + "    headers: {X-Tenant: acme, Authorization: \"Bearer a b\"}\n", ""},
		{"tab and obs-text in value", valuesWebhook + "    headers: {X-A: \"a\\tb é\"}\n", ""},
		{"empty value", valuesWebhook + "    headers: {X-A: \"\"}\n", ""},
		{"CRLF in value", valuesWebhook + "    headers: {X-A: \"a\\r\\nX-Injected: 1\"}\n",
			`relay.yaml:8:20: destinations[0].headers.X-A: header value has a control character (CR at byte 1): HTTP forbids CR, LF and other control characters in a header value`},
		{"LF in value", valuesWebhook + "    headers: {X-A: \"a\\nb\"}\n",
			`relay.yaml:8:20: destinations[0].headers.X-A: header value has a control character (LF at byte 1)`},
		{"block scalar value ends in a newline", valuesWebhook + "    headers:\n      X-A: |\n        token\n",
			`relay.yaml:9:12: destinations[0].headers.X-A: header value has a control character (LF at byte 5)`},
		{"NUL in value", valuesWebhook + "    headers: {X-A: \"a\\0b\"}\n",
			`destinations[0].headers.X-A: header value has a control character (0x00 at byte 1)`},
		{"DEL in value", valuesWebhook + "    headers: {X-A: \"a\\x7fb\"}\n",
			`destinations[0].headers.X-A: header value has a control character (0x7f at byte 1)`},
		{"CR in value from the environment", valuesWebhook + "    headers: {X-A: \"${V}\"}\n",
			`relay.yaml:8:20: destinations[0].headers.X-A: header value has a control character (CR at byte 3)`},
		{"space in name", valuesWebhook + "    headers: {\"X A\": b}\n",
			`relay.yaml:8:22: destinations[0].headers."X A": invalid header name "X A": a name is letters, digits and !#$%&'*+-.^_` + "`" + `|~ only`},
		{"colon in name", valuesWebhook + "    headers: {\"X:A\": b}\n", `invalid header name "X:A"`},
		{"LF in name", valuesWebhook + "    headers: {\"X\\nA\": b}\n", `destinations[0].headers."X\nA": invalid header name "X\nA"`},
		{"non-ASCII name", valuesWebhook + "    headers: {\"X-É\": b}\n", `invalid header name "X-É"`},
		{"empty name", valuesWebhook + "    headers: {\"\": b}\n", `invalid header name "": a header name cannot be empty`},
		{"same name twice, other case", valuesWebhook + "    headers: {X-A: a, x-a: b}\n",
			`header "x-a" is given twice (as "X-A" too): header names are case-insensitive`},
		{"user-agent is Relay's", valuesWebhook + "    headers: {User-Agent: me}\n", `header "User-Agent" is set by Relay and cannot be overridden`},
		{"host is the URL's", valuesWebhook + "    headers: {Host: other.example}\n", `header "Host" is set by Relay and cannot be overridden`},
		{"content-length", valuesWebhook + "    headers: {Content-Length: \"1\"}\n", `header "Content-Length" is set by Relay and cannot be overridden`},
		{"alerts CRLF", valuesAlerts + "  headers: {X-A: \"a\\r\\n\"}\n",
			`relay.yaml:6:18: alerts.headers.X-A: header value has a control character (CR at byte 1)`},
		{"alerts bad name", valuesAlerts + "  headers: {\"X(A)\": b}\n", `alerts.headers."X(A)": invalid header name "X(A)"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := parseOne(t, valuesHead+tc.yaml, map[string]string{"V": "abc\rdef"})
			if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
				t.Errorf("error = %q\nwant  %q", got, tc.want)
			}
		})
	}
}

// TestValidateURLHost: a URL without a host (http://:18490/x, which
// net/http refuses at every delivery with "no Host in request URL") or
// with a port no connection can use is refused, for a webhook's url, the
// alerts' and a Salesforce destination's URLs.
func TestValidateURLHost(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       string
	}{
		{"host and port", webhookURL("http://h.example:18490/x") + "    allow_private_network: true\n", ""},
		{"port only", webhookURL("http://:18490/x") + "    allow_private_network: true\n",
			`relay.yaml:6:10: destinations[0].url: the URL has no host, got "http://:18490/x"`},
		{"empty port only", webhookURL("http://:/x"), `destinations[0].url: the URL has no host`},
		{"user but no host", webhookURL("http://u:p@:80/x"), `destinations[0].url: the URL has no host, got "http://<redacted>@:80/x"`},
		{"empty IPv6 brackets", webhookURL("http://[]:80/x"), `destinations[0].url: want an absolute http:// or https:// URL`},
		{"port 0", webhookURL("http://h.example:0/x"), `destinations[0].url: port 0 is out of range: want 1 to 65535`},
		{"port too large", webhookURL("http://h.example:70000/x"), `destinations[0].url: port 70000 is out of range: want 1 to 65535`},
		{"alerts no host", valuesAlerts[:len("alerts:\n")] + "  url: https://:443/hook\n  secrets: [whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw]\n", `alerts.url: the URL has no host`},
		{"salesforce instance no host", strings.Replace(valuesSalesforce, "instance_url: https://x.example", "instance_url: https://:443", 1), `destinations[0].instance_url: the URL has no host`},
		{"salesforce token no host", strings.Replace(valuesSalesforce, "token_url: https://x.example/t", "token_url: https://:443/t", 1), `destinations[0].auth.token_url: the URL has no host`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := parseOne(t, valuesHead+tc.yaml, nil)
			if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
				t.Errorf("error = %q\nwant  %q", got, tc.want)
			}
		})
	}
}

// TestValidateWrittenZero: a numeric or duration key written as zero is
// refused, saying why and what the default is, instead of silently
// becoming the default (timeout: 0s was 10s, breaker.failures: 0 was 20).
// Left out, or written empty (~), the key still takes its default. Every
// such key of nats, ingest, admin, log, alerts and a destination is
// covered; relate.cache_ttl is the exception, where 0s documents "no
// cache".
func TestValidateWrittenZero(t *testing.T) {
	ingest := func(kv string) string { return "ingest: {tokens: [t], " + kv + "}\nadmin: {token: a}\n" }
	admin := func(kv string) string { return "ingest: {tokens: [t]}\nadmin: {token: a, " + kv + "}\n" }
	tests := []struct {
		name, yaml string
		want       string // "" = valid
	}{
		{"timeout 0s", valuesHead + valuesWebhook + "    timeout: 0s\n",
			`relay.yaml:8:14: destinations[0].timeout: must be positive, got 0s (0 is not "no timeout"; leave the key out for the default, 10s)`},
		{"timeout 0", valuesHead + valuesWebhook + "    timeout: 0\n", `destinations[0].timeout: must be positive, got 0s`},
		{"timeout 0ms quoted", valuesHead + valuesWebhook + "    timeout: \"0ms\"\n", `destinations[0].timeout: must be positive, got 0s`},
		{"timeout -0s", valuesHead + valuesWebhook + "    timeout: -0s\n", `destinations[0].timeout: must be positive, got 0s`},
		{"timeout 0 from the environment", valuesHead + valuesWebhook + "    timeout: ${ZERO}\n", `destinations[0].timeout: must be positive, got 0s`},
		{"timeout default from the environment", valuesHead + valuesWebhook + "    timeout: ${UNSET:-0s}\n", `destinations[0].timeout: must be positive, got 0s`},
		{"timeout ~ is the default", valuesHead + valuesWebhook + "    timeout: ~\n", ""},
		{"timeout empty is the default", valuesHead + valuesWebhook + "    timeout:\n", ""},
		{"timeout 1ms", valuesHead + valuesWebhook + "    timeout: 1ms\n", ""},
		{"max_in_flight 0", valuesHead + valuesWebhook + "    max_in_flight: 0\n",
			`relay.yaml:8:20: destinations[0].max_in_flight: must be from 1 to 10000, got 0 (leave the key out for the default, 64)`},
		{"max_in_flight 00", valuesHead + valuesWebhook + "    max_in_flight: 00\n", `destinations[0].max_in_flight: must be from 1 to 10000, got 0`},
		{"breaker.failures 0", valuesHead + valuesWebhook + "    breaker: {failures: 0}\n",
			`relay.yaml:8:25: destinations[0].breaker.failures: must be at least 1, got 0 (to turn the breaker off write breaker: off; leave the key out for the default, 20)`},
		{"breaker.window 0s", valuesHead + valuesWebhook + "    breaker: {window: 0s}\n", `destinations[0].breaker.window: must be positive, got 0s (leave the key out for the default, 5m0s)`},
		{"breaker.probe_every 0s", valuesHead + valuesWebhook + "    breaker:\n      probe_every: 0s\n", `relay.yaml:9:20: destinations[0].breaker.probe_every: must be positive, got 0s (leave the key out for the default, 30s)`},
		{"breaker off", valuesHead + valuesWebhook + "    breaker: off\n", ""},
		{"retry.max_age 0s", valuesHead + valuesWebhook + "    retry: {max_age: 0s}\n", `destinations[0].retry.max_age: must be positive, got 0s (leave the key out for the default, 72h0m0s)`},
		{"rate_limit 0/s", valuesHead + valuesWebhook + "    rate_limit: 0/s\n", `destinations[0].rate_limit: expected a rate like 200/s`},
		{"max_body 0", valuesHead + valuesWebhook + "    max_body: 0\n", `destinations[0].max_body: expected a size like 5MiB, got "0"`},
		{"batch_size 0", valuesHead + valuesSalesforce + "    batch_size: 0\n", `destinations[0].batch_size: must be from 1 to 200 (the API's maximum), got 0 (leave the key out for the default, 200)`},
		{"batch_wait 0s", valuesHead + valuesSalesforce + "    batch_wait: 0s\n", `destinations[0].batch_wait: must be positive, got 0s (leave the key out for the default, 1s)`},
		{"api_budget.max_share 0", valuesHead + valuesSalesforce + "    api_budget: {max_share: 0}\n", `destinations[0].api_budget.max_share: must be above 0 and at most 1, got 0 (leave the key out for the default, 0.25)`},
		{"api_budget.reserve 0 leaves none", valuesHead + valuesSalesforce + "    api_budget: {reserve: 0}\n", ""},
		{"max_concurrent_calls 0", valuesHead + valuesSalesforce + "    max_concurrent_calls: 0\n", `destinations[0].max_concurrent_calls: must be from 1 to 25 (the org's limit on long requests), got 0 (leave the key out for the default, 4)`},
		{"bulk_threshold 0", valuesHead + valuesSalesforce + "    bulk_threshold: 0\n", `destinations[0].bulk_threshold: must be at least 1, got 0 (leave the key out for the default, 2000)`},
		{"relate.cache_ttl 0s is no cache", valuesHead + valuesSalesforce + "    relate: {field: WhoId, cache_ttl: 0s}\n", ""},
		{"second destination", valuesHead + valuesWebhook + "  - name: b\n    type: webhook\n    url: https://y.example\n    secrets: [whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw]\n    timeout: 0s\n",
			`relay.yaml:12:14: destinations[1].timeout: must be positive, got 0s`},
		{"nats.replicas 0", "nats: {replicas: 0}\n" + valuesHead, `relay.yaml:1:18: nats.replicas: must be from 1 to 5, got 0 (leave the key out for the default, 1)`},
		{"nats.retention 0s", "nats: {retention: 0s}\n" + valuesHead, `nats.retention: must be positive, got 0s (leave the key out for the default, 168h0m0s)`},
		{"nats.duplicate_window 0s", "nats: {duplicate_window: 0s}\n" + valuesHead, `nats.duplicate_window: must be positive, got 0s (leave the key out for the default, 2m0s)`},
		{"ingest.max_batch 0", ingest("max_batch: 0"), `relay.yaml:1:34: ingest.max_batch: must be at least 1, got 0 (leave the key out for the default, 1000)`},
		{"ingest.max_body 0", ingest("max_body: 0"), `ingest.max_body: expected a size like 5MiB, got "0"`},
		{"ingest.max_activity 0", ingest("max_activity: 0"), `ingest.max_activity: expected a size like 5MiB, got "0"`},
		{"ingest.max_inflight_bytes 0", ingest("max_inflight_bytes: 0"), `ingest.max_inflight_bytes: expected a size like 5MiB, got "0"`},
		{"admin.session_ttl 0s", admin("session_ttl: 0s"), `admin.session_ttl: must be at least 1m, got 0s (leave the key out for the default, 12h0m0s)`},
		{"log.retention 0s", valuesHead + "log: {retention: 0s}\n", `log.retention: must be positive, got 0s (leave the key out for the default, 72h0m0s)`},
		{"log.max_bytes 0", valuesHead + "log: {max_bytes: 0}\n", `log.max_bytes: expected a size like 5MiB, got "0"`},
		{"alerts.timeout 0s", valuesHead + valuesAlerts + "  timeout: 0s\n", `relay.yaml:6:12: alerts.timeout: must be positive, got 0s (0 is not "no timeout"; leave the key out for the default, 10s)`},
		{"alerts.deadletter_every 0s", valuesHead + valuesAlerts + "  deadletter_every: 0s\n", `alerts.deadletter_every: must be positive, got 0s (leave the key out for the default, 1m0s)`},
		{"alerts.retry.max_age 0s", valuesHead + valuesAlerts + "  retry: {max_age: 0s}\n", `alerts.retry.max_age: must be positive, got 0s (leave the key out for the default, 72h0m0s)`},
		{"negative still refused", valuesHead + valuesWebhook + "    timeout: -1s\n", `destinations[0].timeout: must be positive`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := parseOne(t, tc.yaml, map[string]string{"ZERO": "0s"})
			if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
				t.Errorf("error = %q\nwant  %q", got, tc.want)
			}
		})
	}
}

// TestValidateSalesforceAPIUse: the keys bounding a Salesforce
// destination's use of the org's API are checked where they are written.
func TestValidateSalesforceAPIUse(t *testing.T) {
	tests := []struct {
		name, kv, want string
	}{
		{"all valid", "api_budget: {max_share: 0.1, reserve: 100}\n    max_concurrent_calls: 25\n    bulk_threshold: 5000\n    duplicate_rules: allow_save", ""},
		{"share above 1", "api_budget: {max_share: 1.5}", `relay.yaml:11:29: destinations[0].api_budget.max_share: must be above 0 and at most 1 (a share of the org's daily API allowance), got 1.5`},
		{"negative reserve", "api_budget: {reserve: -1}", `destinations[0].api_budget.reserve: must be 0 or more API calls, got -1`},
		{"26 concurrent calls", "max_concurrent_calls: 26", `relay.yaml:11:27: destinations[0].max_concurrent_calls: must be from 1 to 25 (the org's limit on long requests), got 26`},
		{"negative threshold", "bulk_threshold: -5", `destinations[0].bulk_threshold: must be at least 1, got -5`},
		{"unknown duplicate rule mode", "duplicate_rules: ignore", `relay.yaml:11:22: destinations[0].duplicate_rules: must be block or allow_save, got "ignore"`},
		{"not for a webhook", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := parseOne(t, valuesHead+valuesSalesforce+"    "+tc.kv+"\n", nil)
			if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
				t.Errorf("error = %q\nwant  %q", got, tc.want)
			}
		})
	}
	got := parseOne(t, valuesHead+valuesWebhook+"    bulk_threshold: 10\n", nil)
	if !strings.Contains(got, `"bulk_threshold" is not valid for a webhook destination`) {
		t.Errorf("bulk_threshold on a webhook: %q", got)
	}
}
