package config

import (
	"encoding/base64"
	"fmt"
	"math"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/relaydev/relay/iprange"
)

var (
	destName     = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)
	namePart     = `[a-z0-9_-]+`
	activityName = regexp.MustCompile(`^` + namePart + `(\.` + namePart + `)?$`)
	fieldPathRE  = regexp.MustCompile(`^(id|name|type|action|activity|occurred_at|received_at|contact\.[A-Za-z0-9_-]+|attributes(\.[A-Za-z0-9_-]+)+)$`)
)

// dottedName is what a path looks like: names joined by dots.
var dottedName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*$`)

// IsFieldExpr reports whether a Salesforce field's value is a CEL
// expression rather than an activity path: anything that is not a dotted
// name, or that starts with "activity." (a path never does).
func IsFieldExpr(v string) bool {
	return strings.HasPrefix(v, "activity.") || !dottedName.MatchString(v)
}

// ValidFieldPath reports whether a Salesforce field can map from this
// activity path: id, name, type, action, activity, occurred_at,
// received_at, contact.<key> or attributes.<key>[.<key>…].
func ValidFieldPath(path string) bool { return fieldPathRE.MatchString(path) }

// keys only one destination type may use.
var (
	webhookOnly    = []string{"url", "secrets", "headers", "body"}
	salesforceOnly = []string{"instance_url", "auth", "api_version", "object", "external_id_field", "fields", "batch_size", "batch_wait", "relate",
		"api_budget", "max_concurrent_calls", "bulk_threshold", "duplicate_rules"}
)

// validate checks the parsed config, recording every problem found.
func (p *parser) validate() {
	c := p.cfg
	p.validateNATS()
	p.validateEngine()
	p.validateOrtto()
	p.checkListen("ingest.listen", c.Ingest.Listen)
	p.checkListen("admin.listen", c.Admin.Listen)
	p.validateTLS("ingest.tls", c.Ingest.TLS)
	p.validateTLS("admin.tls", c.Admin.TLS)
	p.validateIngest()
	p.validateAdmin()
	p.validateActivities()
	p.validateLog()
	p.validateTelemetry()
	names := map[string]int{}
	for i := range c.Destinations {
		p.validateDestination(i, names)
	}
	p.validateAlerts()
	p.validateWrittenZeros()
}

// validateIngest checks ingest's tokens and limits.
func (p *parser) validateIngest() {
	in := p.cfg.Ingest
	if len(in.Tokens) == 0 {
		p.errPath("ingest.tokens", "at least one token is required")
	}
	for i, t := range in.Tokens {
		if t.Value() == "" {
			p.errPath(fmt.Sprintf("ingest.tokens[%d]", i), "token is empty")
		}
	}
	if in.MaxBatch < 1 {
		p.errPath("ingest.max_batch", "must be at least 1")
	}
	if in.MaxActivity > MaxActivityLimit {
		p.errPath("ingest.max_activity", "must be at most %d bytes (32 MiB): the bus carries one activity in one message", MaxActivityLimit)
	}
	if in.MaxInflightBytes < in.MaxBody {
		p.errPath("ingest.max_inflight_bytes", "must be at least ingest.max_body (%d bytes), or no request of the largest size could be read", in.MaxBody)
	}
}

// validateAdmin checks the admin API's token and session lifetime.
func (p *parser) validateAdmin() {
	a := p.cfg.Admin
	if a.Token.Value() == "" {
		p.errPath("admin.token", "a token is required")
	}
	if a.SessionTTL < Duration(time.Minute) {
		p.errPath("admin.session_ttl", "must be at least 1m")
	}
}

// validateActivities checks the declared activities' names, each valid
// and declared once.
func (p *parser) validateActivities() {
	seen := map[string]int{}
	for i, a := range p.cfg.Activities {
		path := fmt.Sprintf("activities[%d].name", i)
		switch {
		case !activityName.MatchString(a.Name):
			p.errPath(path, "invalid activity name %q: want type or type.action in lowercase a-z 0-9 _ -", a.Name)
		case seen[a.Name] > 0:
			p.errPath(path, "activity %q is declared twice (first on line %d)", a.Name, seen[a.Name])
		default:
			seen[a.Name] = p.at(path).Line
		}
	}
}

// validateLog checks the log's level, format and retention.
func (p *parser) validateLog() {
	l := p.cfg.Log
	switch l.Level {
	case "debug", "info", "warn", "error":
	default:
		p.errPath("log.level", "want debug, info, warn or error, got %q", l.Level)
	}
	if l.Format != "text" && l.Format != "json" {
		p.errPath("log.format", "want text or json, got %q", l.Format)
	}
	if l.Retention <= 0 {
		p.errPath("log.retention", "must be positive")
	}
}

// validateTelemetry checks the OTLP endpoint, protocol, sample ratio and
// export headers.
func (p *parser) validateTelemetry() {
	t := p.cfg.Telemetry
	if t.OTLPEndpoint != "" {
		u, err := url.Parse(t.OTLPEndpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			p.errPath("telemetry.otlp_endpoint", "want a URL such as http://collector:4318, got %q", redactURLParts(t.OTLPEndpoint))
		}
	}
	if t.Protocol != "" && t.Protocol != "http" && t.Protocol != "grpc" {
		p.errPath("telemetry.protocol", "want http or grpc, got %q", t.Protocol)
	}
	if r := t.SampleRatio; r != nil && (math.IsNaN(*r) || *r < 0 || *r > 1) {
		p.errPath("telemetry.sample_ratio", "want a number from 0 to 1, got %v", *r)
	}
	for k, v := range t.Headers {
		path := "telemetry.headers." + k
		switch {
		case !isToken(k):
			p.errPath(path, "invalid header name %q: a name is letters, digits and !#$%%&'*+-.^_`|~ only", k)
		case v.Value() == "":
			p.errPath(path, "header value is empty")
		default:
			if i, b, bad := headerValueCtl(v.Value()); bad {
				p.errPath(path, "header value has a control character (%s at byte %d)", ctlName(b), i)
			}
		}
	}
}

// validateWrittenZeros refuses a numeric or duration key written as zero
// (0, 0s, or an environment variable that is). Defaults fills a key left
// out (or written empty, ~) and could not tell a written zero from it, so
// timeout: 0s became 10s and breaker.failures: 0 became 20; a zero is
// not "no timeout" or "no breaker", so it is refused, naming the default.
// relate.cache_ttl is not here: its 0s turns the cache off.
func (p *parser) validateWrittenZeros() {
	c := p.cfg
	const noTimeout = `0 is not "no timeout"; `
	zeros := p.writtenZeros()
	if len(zeros) == 0 {
		return
	}
	check := func(path, rule string, def any, note ...string) {
		if !zeros[path] {
			return
		}
		var got string
		switch def.(type) {
		case Duration:
			got = "0s"
		default:
			got = "0"
		}
		p.errPath(path, "%s, got %s (%sleave the key out for the default, %v)", rule, got, strings.Join(note, ""), def)
	}
	check("nats.replicas", "must be from 1 to 5", c.NATS.Replicas)
	check("nats.retention", "must be positive", c.NATS.Retention)
	check("nats.duplicate_window", "must be positive", c.NATS.DuplicateWindow)
	check("ingest.max_batch", "must be at least 1", c.Ingest.MaxBatch)
	check("engine.max_in_flight", "must be from 1 to 100000", c.Engine.MaxInFlight)
	check("deadletters.max_age", "must be at least 1m", c.DeadLetters.MaxAge)
	check("admin.session_ttl", "must be at least 1m", c.Admin.SessionTTL)
	check("log.retention", "must be positive", c.Log.Retention)
	if c.Alerts.Enabled() {
		check("alerts.timeout", "must be positive", c.Alerts.Timeout, noTimeout)
		check("alerts.deadletter_every", "must be positive", c.Alerts.DeadLetterEvery)
		check("alerts.retry.max_age", "must be positive", c.Alerts.Retry.MaxAge)
	}
	for i, d := range c.Destinations {
		path := func(key string) string { return fmt.Sprintf("destinations[%d].%s", i, key) }
		check(path("timeout"), "must be positive", d.Timeout, noTimeout)
		check(path("max_in_flight"), "must be from 1 to 10000", d.MaxInFlight)
		check(path("retry.max_age"), "must be positive", d.Retry.MaxAge)
		if !d.Breaker.Off {
			check(path("breaker.failures"), "must be at least 1", d.Breaker.Failures, "to turn the breaker off write breaker: off; ")
			check(path("breaker.window"), "must be positive", d.Breaker.Window)
			check(path("breaker.probe_every"), "must be positive", d.Breaker.ProbeEvery)
		}
		if d.Type == "salesforce" {
			check(path("batch_size"), "must be from 1 to 200 (the API's maximum)", d.BatchSize)
			check(path("batch_wait"), "must be positive", d.BatchWait)
			check(path("api_budget.max_share"), "must be above 0 and at most 1", d.APIBudget.MaxShare)
			check(path("max_concurrent_calls"), "must be from 1 to 25 (the org's limit on long requests)", d.MaxConcurrentCalls)
			check(path("bulk_threshold"), "must be at least 1", d.BulkThreshold)
		}
	}
}

// writtenZeros returns the paths of the scalars written in the file whose
// value, after ${VAR} expansion, reads as a zero number or duration. It
// reads the file again: the parsed config holds the defaults by now.
func (p *parser) writtenZeros() map[string]bool {
	var root yaml.Node
	if err := yaml.Unmarshal([]byte(strings.Join(p.lines, "\n")), &root); err != nil || len(root.Content) == 0 {
		return nil
	}
	out := map[string]bool{}
	var walk func(n *yaml.Node, path string, depth int)
	walk = func(n *yaml.Node, path string, depth int) {
		if n.Kind == yaml.AliasNode {
			n = n.Alias
		}
		if n == nil || depth > 8 { // every key checked is at most 4 deep
			return
		}
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				walk(n.Content[i+1], join(path, n.Content[i].Value), depth+1)
			}
		case yaml.SequenceNode:
			for i, item := range n.Content {
				walk(item, fmt.Sprintf("%s[%d]", path, i), depth+1)
			}
		case yaml.ScalarNode:
			if n.Tag == "!!null" {
				return
			}
			v, missing := expandEnv(n.Value, p.env)
			if len(missing) > 0 {
				return
			}
			v = strings.TrimSpace(v)
			if i, err := strconv.ParseInt(v, 10, 64); err == nil && i == 0 {
				out[path] = true
			} else if d, err := time.ParseDuration(v); err == nil && d == 0 {
				out[path] = true
			}
		}
	}
	walk(root.Content[0], "", 0)
	return out
}

// validateAlerts checks alerts: as a webhook destination, and its events.
func (p *parser) validateAlerts() {
	a := p.cfg.Alerts
	for i, d := range p.cfg.Destinations {
		if d.Name == AlertsDestination {
			p.errPath(fmt.Sprintf("destinations[%d].name", i), "the name %q is Relay's own, for alerts", d.Name)
		}
	}
	if !a.Enabled() {
		if _, set := p.pos["alerts"]; set && len(p.cfg.Alerts.Secrets)+len(p.cfg.Alerts.Include) > 0 {
			p.errPath("alerts.url", "a url is required")
		}
		return
	}
	d := a.Destination()
	path := func(key string) string { return "alerts." + key }
	p.validateWebhook(&d, path)
	p.validateRetry(d.Retry, path)
	if a.Timeout <= 0 {
		p.errPath(path("timeout"), "must be positive")
	}
	if a.DeadLetterEvery <= 0 {
		p.errPath(path("deadletter_every"), "must be positive")
	}
	for i, e := range a.Include {
		if !slices.Contains(AlertEvents, e) {
			p.errPath(fmt.Sprintf("alerts.include[%d]", i), "unknown event %q: want one of %s", e, strings.Join(AlertEvents, ", "))
		}
	}
}

func (p *parser) validateNATS() {
	n := p.cfg.NATS
	if !n.Embedded() {
		for _, u := range strings.Split(n.URL, ",") {
			parsed, err := url.Parse(strings.TrimSpace(u))
			if err != nil || (parsed.Scheme != "nats" && parsed.Scheme != "tls") || parsed.Host == "" {
				p.errPath("nats.url", "want embedded or nats://host:port (comma-separated for a cluster), got %q", RedactURL(u))
			}
		}
	}
	if n.Replicas < 1 || n.Replicas > 5 {
		p.errPath("nats.replicas", "must be from 1 to 5, got %d", n.Replicas)
	}
	if n.Retention <= 0 {
		p.errPath("nats.retention", "must be positive")
	}
	if n.DuplicateWindow <= 0 || n.DuplicateWindow > n.Retention {
		p.errPath("nats.duplicate_window", "must be positive and no longer than retention")
	}
	p.validateNATSSecurity()
}

// RedactURL hides the user and password of each URL of a comma-separated
// list, for messages and logs.
func RedactURL(list string) string {
	parts := strings.Split(list, ",")
	for i, u := range parts {
		if at := strings.LastIndex(u, "@"); at >= 0 {
			if j := strings.Index(u, "://"); j >= 0 && j < at {
				parts[i] = u[:j+3] + "<redacted>" + u[at:]
			}
		}
	}
	return strings.Join(parts, ",")
}

func (p *parser) checkListen(path, addr string) {
	if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
		p.errPath(path, "want host:port, got %q", addr)
	}
}

// validateRetry checks a retry schedule, a destination's or the alerts'.
// An empty schedule is valid: one attempt, no retry (N delays, N+1
// attempts); an omitted one is the default.
func (p *parser) validateRetry(r Retry, path func(string) string) {
	if len(r.Schedule) > MaxSchedule {
		p.errPath(path("retry.schedule"), "at most %d delays (it has %d): every attempt is kept with a dead letter", MaxSchedule, len(r.Schedule))
	}
	for j, s := range r.Schedule {
		if s <= 0 {
			p.errPath(path(fmt.Sprintf("retry.schedule[%d]", j)), "delay must be positive")
		}
	}
	if r.MaxAge <= 0 {
		p.errPath(path("retry.max_age"), "must be positive")
	}
}

func (p *parser) validateDestination(i int, names map[string]int) {
	d := &p.cfg.Destinations[i]
	path := func(key string) string { return fmt.Sprintf("destinations[%d].%s", i, key) }
	switch {
	case d.Name == "":
		p.errPath(path("name"), "a name is required")
	case !destName.MatchString(d.Name):
		p.errPath(path("name"), "invalid name %q: want lowercase a-z 0-9 _ -, starting with a letter or digit, at most 64 characters", d.Name)
	case names[d.Name] > 0:
		p.errPath(path("name"), "destination %q is defined twice (first on line %d)", d.Name, names[d.Name])
	default:
		names[d.Name] = p.at(path("name")).Line
	}
	var other []string
	switch d.Type {
	case "webhook":
		other = salesforceOnly
		p.validateWebhook(d, path)
	case "salesforce":
		other = webhookOnly
		p.validateSalesforce(d, path)
	case "":
		p.errPath(path("type"), "a type is required: webhook or salesforce")
	default:
		p.errPath(path("type"), "unknown type %q: want webhook or salesforce", d.Type)
	}
	for _, key := range other {
		if _, ok := d.Pos[key]; ok {
			p.errPath(path(key), "%q is not valid for a %s destination", key, d.Type)
		}
	}
	p.validateRetry(d.Retry, path)
	if d.Timeout <= 0 {
		p.errPath(path("timeout"), "must be positive")
	}
	if !d.Breaker.Off {
		if d.Breaker.Failures < 1 {
			p.errPath(path("breaker.failures"), "must be at least 1")
		}
		if d.Breaker.Window <= 0 {
			p.errPath(path("breaker.window"), "must be positive")
		}
		if d.Breaker.ProbeEvery <= 0 {
			p.errPath(path("breaker.probe_every"), "must be positive")
		}
	}
	if d.MaxInFlight < 1 || d.MaxInFlight > 10000 {
		p.errPath(path("max_in_flight"), "must be from 1 to 10000, got %d", d.MaxInFlight)
	}
	p.validateOrder(d, path)
	if d.Consent != "" && d.Consent != "email" && d.Consent != "sms" {
		p.errPath(path("consent"), "want email or sms, got %q", d.Consent)
	}
}

// Values of a destination's order key.
const (
	OrderNone    = "none"
	OrderContact = "contact"
)

var orderKeyRE = regexp.MustCompile(`^(contact\.[A-Za-z0-9_-]+|attributes(\.[A-Za-z0-9_-]+)+)$`)

func (p *parser) validateOrder(d *Destination, path func(string) string) {
	switch d.Order {
	case OrderNone:
		if d.OrderKey != "" {
			p.errPath(path("order_key"), "order_key needs order: contact")
		}
		return
	case OrderContact:
	default:
		p.errPath(path("order"), "want contact or none, got %q", d.Order)
		return
	}
	if d.Type == "salesforce" {
		p.errPath(path("order"), "order: contact is for webhook destinations: a Salesforce batch is not attempted one contact at a time")
	}
	if d.OrderKey != "" && !orderKeyRE.MatchString(d.OrderKey) {
		p.errPath(path("order_key"), "want contact.<key> or attributes.<key>[.<key>…], got %q", d.OrderKey)
	}
}

func (p *parser) validateWebhook(d *Destination, path func(string) string) {
	if d.URL == "" {
		p.errPath(path("url"), "a url is required")
	} else {
		p.checkURL(path("url"), d.URL, d.AllowPrivateNetwork, false)
	}
	if len(d.Secrets) == 0 {
		p.errPath(path("secrets"), "at least one whsec_ secret is required")
	}
	for j, s := range d.Secrets {
		if err := checkSecret(s.Value()); err != nil {
			p.errPath(path(fmt.Sprintf("secrets[%d]", j)), "%v", err)
		}
	}
	p.validateHeaders(d.Headers, path)
}

// setByRelay are the request headers Relay (or Go's HTTP client) sets on
// every delivery: a configured one would be silently replaced or ignored.
var setByRelay = []string{"content-type", "content-length", "transfer-encoding", "host", "user-agent", "traceparent", "tracestate"}

// validateHeaders refuses a header Go's HTTP client would refuse at every
// delivery (a name that is not an RFC 9110 token, a value with CR, LF or
// another control character), one Relay sets itself, and one given twice
// (names are case-insensitive), each at its value's line and column.
func (p *parser) validateHeaders(headers map[string]string, path func(string) string) {
	names := make([]string, 0, len(headers))
	for k := range headers {
		names = append(names, k)
	}
	slices.Sort(names) // the same order, so the same "given twice" message, every time
	seen := map[string]string{}
	for _, k := range names {
		raw := path("headers." + k) // where the parser recorded it
		shown := raw
		if !isToken(k) {
			shown = path("headers." + strconv.Quote(k))
		}
		report := func(format string, args ...any) {
			p.errs = append(p.errs, p.cfg.Errorf(p.at(raw), shown, format, args...))
		}
		lk := strings.ToLower(k)
		switch {
		case k == "":
			report("invalid header name \"\": a header name cannot be empty")
			continue
		case !isToken(k):
			report("invalid header name %q: a name is letters, digits and !#$%%&'*+-.^_`|~ only", k)
			continue
		case slices.Contains(setByRelay, lk) || strings.HasPrefix(lk, "webhook-"):
			report("header %q is set by Relay and cannot be overridden", k)
			continue
		case seen[lk] != "":
			report("header %q is given twice (as %q too): header names are case-insensitive", k, seen[lk])
			continue
		}
		seen[lk] = k
		if i, b, bad := headerValueCtl(headers[k]); bad {
			report("header value has a control character (%s at byte %d): HTTP forbids CR, LF and other control characters in a header value", ctlName(b), i)
		}
	}
}

// isToken reports whether s is an HTTP token (RFC 9110 5.6.2), what a
// header name must be.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// headerValueCtl finds the first byte a header value may not hold: a
// control character other than tab (Go's HTTP client refuses the request).
func headerValueCtl(v string) (int, byte, bool) {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return i, c, true
		}
	}
	return 0, 0, false
}

func ctlName(c byte) string {
	switch c {
	case '\r':
		return "CR"
	case '\n':
		return "LF"
	}
	return fmt.Sprintf("0x%02x", c)
}

// checkSecret never prints the secret.
func checkSecret(s string) error {
	rest, ok := strings.CutPrefix(s, "whsec_")
	if !ok {
		return fmt.Errorf("secret must start with whsec_")
	}
	key, err := base64.StdEncoding.DecodeString(rest)
	if err != nil {
		return fmt.Errorf("secret after whsec_ is not valid base64")
	}
	if len(key) < 16 {
		return fmt.Errorf("secret is too short: want at least 16 bytes of key, got %d", len(key))
	}
	return nil
}

func (p *parser) validateSalesforce(d *Destination, path func(string) string) {
	if d.InstanceURL == "" {
		p.errPath(path("instance_url"), "an instance_url is required")
	} else {
		p.checkURL(path("instance_url"), d.InstanceURL, d.AllowPrivateNetwork, !d.AllowPrivateNetwork)
	}
	if d.Auth.TokenURL == "" {
		p.errPath(path("auth.token_url"), "a token_url is required")
	} else {
		p.checkURL(path("auth.token_url"), d.Auth.TokenURL, d.AllowPrivateNetwork, !d.AllowPrivateNetwork)
	}
	if d.Auth.ClientID == "" {
		p.errPath(path("auth.client_id"), "a client_id is required")
	}
	jwt := d.Auth.Username != "" || d.Auth.PrivateKeyFile != ""
	switch {
	case d.Auth.ClientSecret != "" && jwt:
		p.errPath(path("auth"), "give client_secret (client credentials) or username and private_key_file (JWT bearer), not both")
	case jwt && (d.Auth.Username == "" || d.Auth.PrivateKeyFile == ""):
		p.errPath(path("auth"), "JWT bearer needs both username and private_key_file")
	case !jwt && d.Auth.ClientSecret == "":
		p.errPath(path("auth"), "give client_secret, or username and private_key_file")
	}
	if d.Object == "" {
		p.errPath(path("object"), "an object is required, e.g. Activity__c")
	}
	if len(d.Fields) == 0 {
		p.errPath(path("fields"), "fields are required: Salesforce field -> activity path")
	}
	for field, src := range d.Fields {
		if !IsFieldExpr(src) && !ValidFieldPath(src) { // expressions: the engine checks them
			p.errPath(path("fields."+field), "unknown activity path %q: want id, name, type, action, activity, occurred_at, received_at, contact.<key> or attributes.<key>, or a CEL expression over activity", src)
		}
	}
	p.validateRelate(d, path)
	switch {
	case d.ExternalIDField == "":
		p.errPath(path("external_id_field"), "an external_id_field is required")
	case d.Fields != nil && d.Fields[d.ExternalIDField] == "":
		p.errPath(path("external_id_field"), "%q must be mapped in fields (usually to id)", d.ExternalIDField)
	}
	if d.BatchSize < 1 || d.BatchSize > 200 {
		p.errPath(path("batch_size"), "must be from 1 to 200 (the API's maximum), got %d", d.BatchSize)
	}
	if d.BatchWait <= 0 {
		p.errPath(path("batch_wait"), "must be positive")
	}
	p.validateAPIUse(d, path)
}

// validateAPIUse checks what bounds a Salesforce destination's use of the
// org's API: the budget, the concurrent calls, the Bulk threshold.
func (p *parser) validateAPIUse(d *Destination, path func(string) string) {
	if b := d.APIBudget; b.MaxShare <= 0 || b.MaxShare > 1 {
		p.errPath(path("api_budget.max_share"), "must be above 0 and at most 1 (a share of the org's daily API allowance), got %g", b.MaxShare)
	}
	if d.APIBudget.Reserve < 0 {
		p.errPath(path("api_budget.reserve"), "must be 0 or more API calls, got %d", d.APIBudget.Reserve)
	}
	if d.MaxConcurrentCalls < 1 || d.MaxConcurrentCalls > 25 {
		p.errPath(path("max_concurrent_calls"), "must be from 1 to 25 (the org's limit on long requests), got %d", d.MaxConcurrentCalls)
	}
	if d.BulkThreshold < 1 {
		p.errPath(path("bulk_threshold"), "must be at least 1, got %d", d.BulkThreshold)
	}
	if d.DuplicateRules != DuplicateBlock && d.DuplicateRules != DuplicateAllowSave {
		p.errPath(path("duplicate_rules"), "must be block or allow_save, got %q", d.DuplicateRules)
	}
}

// orttoID is an Ortto activity field id: act:<namespace>:<name>, the
// namespace empty for Ortto's own activities (act::o).
var orttoID = regexp.MustCompile(`^act:[a-z0-9_-]*:[A-Za-z0-9_.-]+$`)

// validateOrtto checks the form of sources.ortto; the engine checks the
// activities against the catalog.
func (p *parser) validateOrtto() {
	o := p.cfg.Sources.Ortto
	for id, name := range o.ActivityIDs {
		path := "sources.ortto.activity_ids." + id
		if !orttoID.MatchString(id) {
			p.errPath(path, "invalid Ortto activity id %q: want act::<name> or act:<namespace>:<name>, e.g. act:cm:placed-order", id)
		}
		if !activityName.MatchString(name) {
			p.errPath(path, "invalid activity name %q: want type or type.action in lowercase a-z 0-9 _ -", name)
		}
	}
	if o.Unmapped != "" && !activityName.MatchString(o.Unmapped) {
		p.errPath("sources.ortto.unmapped", "invalid activity name %q: want type or type.action in lowercase a-z 0-9 _ -", o.Unmapped)
	}
}

// soqlName is a Salesforce API name: an object or a field.
var soqlName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]*$`)

func (p *parser) validateRelate(d *Destination, path func(string) string) {
	r := &d.Relate
	if !d.HasRelate() {
		return
	}
	if r.Field == "" {
		p.errPath(path("relate.field"), "a lookup field is required, e.g. WhoId")
	} else if !soqlName.MatchString(r.Field) {
		p.errPath(path("relate.field"), "invalid field name %q", r.Field)
	}
	if !soqlName.MatchString(r.Match) {
		p.errPath(path("relate.match"), "invalid field name %q", r.Match)
	}
	if r.Value == "" {
		p.errPath(path("relate.value"), "a value is required: an activity path such as contact.email, or a CEL expression")
	} else if !IsFieldExpr(r.Value) && !ValidFieldPath(r.Value) {
		p.errPath(path("relate.value"), "unknown activity path %q", r.Value)
	}
	for i, o := range r.Objects {
		if !soqlName.MatchString(o) {
			p.errPath(path(fmt.Sprintf("relate.objects[%d]", i)), "invalid object name %q", o)
		}
	}
	if r.OnMissing != "leave_unset" && r.OnMissing != "dead_letter" {
		p.errPath(path("relate.on_missing"), "unknown value %q: want leave_unset or dead_letter", r.OnMissing)
	}
	if r.CacheTTL < 0 {
		p.errPath(path("relate.cache_ttl"), "must not be negative")
	}
}

// checkURL wants an absolute http(s) URL; a literal private address, in
// any form a resolver reads as one (2130706433, 0x7f000001, 127.1), is
// refused unless allowed. A name is judged at dial time, on what it
// resolves to. The URL is not repeated whole: it may carry a token.
func (p *parser) checkURL(path, raw string, allowPrivate, httpsOnly bool) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		p.errPath(path, "want an absolute http:// or https:// URL, got %q", redactURLParts(raw))
		return
	}
	// http://:8080/x parses, with a port and no host: every request would
	// fail with "no Host in request URL".
	if h := u.Hostname(); h == "" || strings.Trim(h, "[]") == "" {
		p.errPath(path, "the URL has no host, got %q", redactURLParts(raw))
		return
	}
	if port := u.Port(); port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			p.errPath(path, "port %s is out of range: want 1 to 65535", port)
			return
		}
	}
	if httpsOnly && u.Scheme != "https" {
		p.errPath(path, "must be https")
	}
	if allowPrivate {
		return
	}
	if msg := privateHost(u.Hostname()); msg != "" {
		p.errPath(path, "host %s; set allow_private_network: true to allow it", msg)
	}
}

// privateHost says what a URL host is when it is a loopback, private or
// otherwise internal address written literally, "" otherwise. The ranges
// are iprange's, which the dial-time guard (netguard) uses too.
func privateHost(host string) string {
	name := strings.ToLower(strings.TrimSuffix(host, "."))
	if name == "localhost" || strings.HasSuffix(name, ".localhost") {
		return host + " is a loopback address"
	}
	ip, ok := iprange.LiteralIP(host)
	if !ok {
		return ""
	}
	what := iprange.Reason(ip)
	if what == "" {
		return ""
	}
	article := "a"
	if strings.ContainsRune("aeiou", rune(what[0])) {
		article = "an"
	}
	if plain, err := netip.ParseAddr(host); err == nil && plain == ip {
		return fmt.Sprintf("%s is %s %s address", host, article, what)
	}
	return fmt.Sprintf("%s is %s, %s %s address", host, ip, article, what)
}

// redactURLParts hides a URL's user, password and query, which may carry
// credentials, for messages.
func redactURLParts(raw string) string {
	s := RedactURL(raw)
	if i := strings.IndexAny(s, "?#"); i >= 0 {
		s = s[:i] + "…"
	}
	return s
}

// validateEngine checks engine.max_held_bytes (the engine must be able to
// hold an activity of the largest size while it takes another) and
// engine.max_in_flight.
func (p *parser) validateEngine() {
	c := p.cfg
	if c.Engine.MaxHeldBytes < 2*c.Ingest.MaxActivity {
		p.errPath("engine.max_held_bytes", "must be at least twice ingest.max_activity (%d bytes): the engine must be able to hold an activity of the largest size while it takes another", 2*c.Ingest.MaxActivity)
	}
	if c.Engine.MaxInFlight < 1 || c.Engine.MaxInFlight > 100000 {
		p.errPath("engine.max_in_flight", "must be from 1 to 100000, got %d", c.Engine.MaxInFlight)
	}
	if c.DeadLetters.MaxAge < Duration(time.Minute) {
		p.errPath("deadletters.max_age", "must be at least 1m, got %s", time.Duration(c.DeadLetters.MaxAge))
	}
	if c.DeadLetters.MaxBytes < 1<<20 {
		p.errPath("deadletters.max_bytes", "must be at least 1MiB, got %d bytes", c.DeadLetters.MaxBytes)
	}
}
