// Package config reads relay.yaml into plain structs. Every problem it finds
// carries the file, line and column it comes from, and all of them are
// reported at once.
package config

import (
	"fmt"
	"time"
)

// Config is the whole of relay.yaml.
type Config struct {
	// File is the path the config was read from, for error messages.
	File string `yaml:"-"`

	NATS         NATS          `yaml:"nats"`
	Ingest       Ingest        `yaml:"ingest"`
	Admin        Admin         `yaml:"admin"`
	Activities   []Custom      `yaml:"activities"`
	Sources      Sources       `yaml:"sources"`
	Destinations []Destination `yaml:"destinations"`
	Alerts       Alerts        `yaml:"alerts"`
	Log          Log           `yaml:"log"`
	Engine       Engine        `yaml:"engine"`
	DeadLetters  DeadLetters   `yaml:"deadletters"`
	Telemetry    Telemetry     `yaml:"telemetry"`
}

// DeadLetters bounds the DEADLETTER stream: a dead letter older than
// MaxAge (default 720h), or the oldest past MaxBytes (default 1GiB), is
// dropped and counted in relay_deadletters_dropped_total.
type DeadLetters struct {
	MaxAge   Duration `yaml:"max_age"`
	MaxBytes ByteSize `yaml:"max_bytes"`
}

// Telemetry exports OpenTelemetry traces over OTLP. It is off unless
// OTLPEndpoint is set here or in OTEL_EXPORTER_OTLP_ENDPOINT (or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT); the other standard
// OTEL_EXPORTER_OTLP_* variables are read too, and what is set here wins.
type Telemetry struct {
	// OTLPEndpoint is the collector's URL: http://collector:4318 (OTLP
	// over HTTP; /v1/traces is added to a URL without a path) or
	// http://collector:4317 with protocol grpc. https:// uses TLS.
	OTLPEndpoint string `yaml:"otlp_endpoint"`
	// Protocol is http (default: OTLP/HTTP protobuf) or grpc.
	Protocol string `yaml:"protocol"`
	// SampleRatio is the share of traces Relay starts that are recorded,
	// 0 to 1 (default 1). A producer's sampling decision in its
	// traceparent is followed. Unsampled attempts still send traceparent.
	SampleRatio *float64 `yaml:"sample_ratio"`
	// Headers are sent with every export (an API key): never printed.
	Headers map[string]Secret `yaml:"headers"`
}

// Engine bounds what the delivery engine holds in memory.
type Engine struct {
	// MaxHeldBytes bounds the bytes of the activities the engine holds
	// while they wait (ordered lanes, fan-out shares, batches), default
	// 64 MiB; past it the engine takes no more from the stream until
	// some settle.
	MaxHeldBytes ByteSize `yaml:"max_held_bytes"`
	// MaxInFlight bounds the calls to receivers in flight at once across
	// every destination (default 1024), and so the connections kept open
	// to them: each destination's own max_in_flight applies within it.
	MaxInFlight int `yaml:"max_in_flight"`
}

// AlertsDestination is the name of the destination Relay makes of alerts:
// its consumer, dead letters and metrics go by it, and no destination of
// the config may take it.
const AlertsDestination = "relay-alerts"

// AlertEvents are the operational events alerts: can receive.
var AlertEvents = []string{
	"relay.destination.breaker_opened", "relay.destination.breaker_closed",
	"relay.destination.paused", "relay.destination.resumed", "relay.destination.gone",
	"relay.destination.held", "relay.deadletter.created",
}

// Alerts is where Relay sends its operational events, as signed Standard
// Webhooks, delivered durably like any destination's activities.
type Alerts struct {
	URL     string            `yaml:"url"`
	Secrets []Secret          `yaml:"secrets"`
	Include []string          `yaml:"include"` // event types; default every one
	Headers map[string]string `yaml:"headers"`

	AllowPrivateNetwork bool     `yaml:"allow_private_network"`
	Timeout             Duration `yaml:"timeout"` // default 10s
	Retry               Retry    `yaml:"retry"`   // default as a destination's
	// DeadLetterEvery is the most often relay.deadletter.created is sent
	// per destination; it counts the dead letters since the last one.
	DeadLetterEvery Duration `yaml:"deadletter_every"` // default 1m
}

// Enabled reports whether alerts are configured.
func (a Alerts) Enabled() bool { return a.URL != "" }

// Destination is the webhook destination alerts are delivered through.
// Its breaker is off: an alert of its own breaker could not be delivered.
func (a Alerts) Destination() Destination {
	return Destination{
		Name: AlertsDestination, Type: "webhook", URL: a.URL, Secrets: a.Secrets, Headers: a.Headers,
		AllowPrivateNetwork: a.AllowPrivateNetwork, Timeout: a.Timeout, Retry: a.Retry,
		MaxInFlight: 1, Breaker: Breaker{Off: true}, // one at a time: in order, unless retried
	}
}

// Log configures the process log and the delivery log, the record of every
// delivery attempt kept in JetStream.
type Log struct {
	Level  string `yaml:"level"`  // debug, info (default), warn or error
	Format string `yaml:"format"` // text (default) or json
	// Deliveries turns the delivery log on (default) or off.
	Deliveries *bool    `yaml:"deliveries"`
	Retention  Duration `yaml:"retention"` // default 72h
	MaxBytes   ByteSize `yaml:"max_bytes"` // default 1GiB
}

// DeliveriesOn reports whether the delivery log is kept.
func (l Log) DeliveriesOn() bool { return l.Deliveries == nil || *l.Deliveries }

// NATS says where the bus is.
type NATS struct {
	URL       string   `yaml:"url"`       // "embedded" (default) or nats://host:port[,nats://…]
	DataDir   string   `yaml:"data_dir"`  // default "./data"; embedded JetStream storage
	Replicas  int      `yaml:"replicas"`  // default 1
	Retention Duration `yaml:"retention"` // default 168h
	// DuplicateWindow is how long an activity id is remembered to drop a
	// producer's retry; JetStream keeps every id of the window in memory.
	DuplicateWindow Duration `yaml:"duplicate_window"` // default 2m

	// Credentials of an external server; give at most one of a creds file,
	// an nkey seed file, a user and password, or a token.
	Credentials  string  `yaml:"credentials"`    // a .creds file (user JWT and nkey seed)
	NKeySeedFile string  `yaml:"nkey_seed_file"` // a file holding an nkey seed (SU…)
	User         string  `yaml:"user"`
	Password     Secret  `yaml:"password"`
	Token        Secret  `yaml:"token"`
	TLS          NATSTLS `yaml:"tls"`
}

// NATSTLS is how Relay connects to an external server over TLS.
type NATSTLS struct {
	CAFile   string `yaml:"ca_file"`   // CAs to trust for the server's certificate; default the system's
	CertFile string `yaml:"cert_file"` // client certificate, when the server asks for one
	KeyFile  string `yaml:"key_file"`
}

// Enabled reports whether any TLS setting is given.
func (t NATSTLS) Enabled() bool { return t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" }

// TLS serves an API over HTTPS.
type TLS struct {
	CertFile string `yaml:"cert_file"` // PEM certificate (chain) the API presents
	KeyFile  string `yaml:"key_file"`  // its PEM private key
	// ClientCAFile, when set, makes the API ask every client for a
	// certificate signed by one of these CAs (mutual TLS).
	ClientCAFile string `yaml:"client_ca_file"`
}

// Enabled reports whether the API is served over TLS.
func (t TLS) Enabled() bool { return t.CertFile != "" || t.KeyFile != "" || t.ClientCAFile != "" }

// Embedded reports whether Relay runs its own in-process nats-server.
func (n NATS) Embedded() bool { return n.URL == "" || n.URL == "embedded" }

// Ingest configures the ingest API.
type Ingest struct {
	Listen      string   `yaml:"listen"`       // default "127.0.0.1:8080"
	Tokens      []Secret `yaml:"tokens"`       // bearer tokens accepted; at least one
	AllowCustom bool     `yaml:"allow_custom"` // accept activities not in the catalog
	MaxBatch    int      `yaml:"max_batch"`    // default 1000
	MaxBody     ByteSize `yaml:"max_body"`     // default 5 MiB
	// MaxActivity bounds one activity's stored JSON (default 512 KiB); the
	// bus must carry it with its dead-letter record, which Relay checks at
	// start.
	MaxActivity ByteSize `yaml:"max_activity"`
	// MaxInflightBytes bounds the request bytes ingest reads and decodes at
	// once (default 64 MiB); beyond it requests get 503 with Retry-After.
	MaxInflightBytes ByteSize `yaml:"max_inflight_bytes"`
	TLS              TLS      `yaml:"tls"` // default plain HTTP
}

// Admin configures the admin API.
type Admin struct {
	Listen string `yaml:"listen"` // default "127.0.0.1:8081"
	Token  Secret `yaml:"token"`  // required
	TLS    TLS    `yaml:"tls"`    // default plain HTTP
	// SessionTTL is how long a dashboard sign-in lasts; default 12h.
	SessionTTL Duration `yaml:"session_ttl"`
}

// Sources configures the endpoints that take other systems' payloads as
// they send them.
type Sources struct {
	Ortto Ortto `yaml:"ortto"`
}

// Ortto configures POST /v1/sources/ortto.
type Ortto struct {
	// ActivityIDs maps Ortto activity field ids ("act:cm:placed-order") to
	// catalog activities ("order.purchase"), adding to or replacing the
	// built-in table.
	ActivityIDs map[string]string `yaml:"activity_ids"`
	// Unmapped is the catalog activity an id without a mapping is stored
	// as, its field id kept in attributes.ortto_field_id; "" (the default)
	// refuses such a delivery with 422.
	Unmapped string `yaml:"unmapped"`
	// Pos holds where each key was written, relative to sources.ortto:
	// "unmapped", "activity_ids.act:cm:x".
	Pos map[string]Pos `yaml:"-"`
}

// Custom declares an activity that is not in the built-in catalog.
type Custom struct {
	Name        string `yaml:"name"` // "type.action" or "type"
	Description string `yaml:"description"`
	Pos         Pos    `yaml:"-"`
}

// Destination is one place activities are delivered to.
type Destination struct {
	Name    string   `yaml:"name"`
	Type    string   `yaml:"type"` // "webhook" or "salesforce"
	Include []string `yaml:"include"`
	Exclude []string `yaml:"exclude"`
	When    string   `yaml:"when"` // CEL expression over `activity`

	Retry       Retry    `yaml:"retry"`
	Timeout     Duration `yaml:"timeout"`       // default 10s
	MaxInFlight int      `yaml:"max_in_flight"` // default 64
	RateLimit   Rate     `yaml:"rate_limit"`    // default unlimited

	// Order is "none" (default) or "contact": a contact's activities are
	// attempted one at a time in stored order (docs/ordering.md).
	Order string `yaml:"order"`
	// OrderKey is the activity path naming the contact for Order, such as
	// contact.id or attributes.account_id; by default contact.id, else
	// contact.email, else contact.phone.
	OrderKey string `yaml:"order_key"`

	// Consent is "email", "sms" or "" (none): an activity of a person
	// whose state on that channel suppresses is not delivered (docs/consent.md).
	Consent string `yaml:"consent"`

	AllowPrivateNetwork bool `yaml:"allow_private_network"`

	// Breaker stops attempts to a receiver that fails every one; on by
	// default, "breaker: off" turns it off.
	Breaker Breaker `yaml:"breaker"`

	// webhook
	URL     string            `yaml:"url"`
	Secrets []Secret          `yaml:"secrets"`
	Headers map[string]string `yaml:"headers"`
	// Body is a CEL expression over `activity` returning a map or list,
	// sent as the JSON body instead of the default envelope.
	Body string `yaml:"body"`
	// MaxBody bounds what Body produces (default 1 MiB): a larger body
	// makes the activity a dead letter for the destination.
	MaxBody ByteSize `yaml:"max_body"`

	// salesforce
	InstanceURL     string            `yaml:"instance_url"`
	Auth            Auth              `yaml:"auth"`
	APIVersion      string            `yaml:"api_version"` // default "v61.0"
	Object          string            `yaml:"object"`
	ExternalIDField string            `yaml:"external_id_field"`
	Fields          map[string]string `yaml:"fields"`     // Salesforce field -> activity path or CEL expression
	Relate          Relate            `yaml:"relate"`     // optional: set a lookup to the matching Contact or Lead
	BatchSize       int               `yaml:"batch_size"` // default 200, at most 200
	BatchWait       Duration          `yaml:"batch_wait"` // default 1s
	// APIBudget is the share of the org's daily API allowance Relay may
	// use, and what it leaves to the other integrations.
	APIBudget APIBudget `yaml:"api_budget"`
	// MaxConcurrentCalls bounds the calls in flight to the org (default 4,
	// at most 25: the org's limit on long requests).
	MaxConcurrentCalls int `yaml:"max_concurrent_calls"`
	// BulkThreshold: with more than this many waiting, Bulk API 2.0 jobs
	// instead of sObject Collections (default 2000).
	BulkThreshold int `yaml:"bulk_threshold"`
	// DuplicateRules is "block" (default: a duplicate rule that fires
	// rejects the record) or "allow_save".
	DuplicateRules string `yaml:"duplicate_rules"`

	// Pos holds where each key of this destination was written, by path
	// relative to the destination: "name", "include[1]", "when", "fields.Email__c".
	// The engine uses it to report what it finds when compiling the rules.
	Pos map[string]Pos `yaml:"-"`
	// Text holds where the text of each scalar value starts, by the same
	// paths as Pos: past an opening quote, or on the first content line of a
	// block scalar (| or >). Expression errors are placed with it.
	Text map[string]Pos `yaml:"-"`
	// At is where the destination's mapping starts.
	At Pos `yaml:"-"`
}

// Auth is a Salesforce destination's OAuth 2.0 configuration: client
// credentials (ClientSecret) or JWT bearer (Username and PrivateKeyFile).
type Auth struct {
	TokenURL       string `yaml:"token_url"`
	ClientID       string `yaml:"client_id"`
	ClientSecret   Secret `yaml:"client_secret"`
	Username       string `yaml:"username"`
	PrivateKeyFile string `yaml:"private_key_file"`
	Audience       string `yaml:"audience"` // JWT aud; default https://login.salesforce.com
}

// Relate sets a Salesforce lookup field (WhoId on Task) to the record of
// the first of Objects whose Match field equals the activity's Value.
type Relate struct {
	Field     string   `yaml:"field"`      // the lookup field, e.g. WhoId
	Match     string   `yaml:"match"`      // default "Email"
	Value     string   `yaml:"value"`      // activity path or CEL expression; default contact.email
	Objects   []string `yaml:"objects"`    // default [Contact, Lead], searched in order
	OnMissing string   `yaml:"on_missing"` // "leave_unset" (default) or "dead_letter"
	CacheTTL  Duration `yaml:"cache_ttl"`  // default 10m; 0s turns the cache off
}

// APIBudget bounds a Salesforce destination's API calls in the org's
// rolling 24 hours.
type APIBudget struct {
	// MaxShare is the most of the org's allowance Relay's own calls may
	// use (default 0.25).
	MaxShare float64 `yaml:"max_share"`
	// Reserve is how many calls Relay always leaves to the org (default
	// 5000; 0 leaves none).
	Reserve int `yaml:"reserve"`
}

// Duplicate rule handling of a Salesforce destination.
const (
	DuplicateBlock     = "block"
	DuplicateAllowSave = "allow_save"
)

// HasRelate reports whether the destination configures relate.
func (d Destination) HasRelate() bool {
	_, written := d.Pos["relate"]
	return written || d.Relate.Field != ""
}

// Retry is a destination's durable retry schedule.
type Retry struct {
	Schedule []Duration `yaml:"schedule"` // delays before each retry; default 5s,30s,5m,30m,2h,5h,10h
	MaxAge   Duration   `yaml:"max_age"`  // default 72h
}

// Pos is a place in the config file.
type Pos struct {
	Line, Col int
}

// Durations returns the schedule as plain durations.
func (r Retry) Durations() []time.Duration {
	out := make([]time.Duration, len(r.Schedule))
	for i, d := range r.Schedule {
		out[i] = time.Duration(d)
	}
	return out
}

// Breaker is a destination's circuit breaker: it opens when at least
// Failures attempts in a row failed within Window; while open only one
// probe each ProbeEvery is attempted.
type Breaker struct {
	Off        bool     `yaml:"-"`           // breaker: off
	Failures   int      `yaml:"failures"`    // default 20
	Window     Duration `yaml:"window"`      // default 5m
	ProbeEvery Duration `yaml:"probe_every"` // default 30s
}

// FromScalar reads the one-word form, "off".
func (b *Breaker) FromScalar(s string) error {
	if s == "off" || s == "false" {
		b.Off = true
		return nil
	}
	return fmt.Errorf("expected off or a mapping {failures, window, probe_every}, got %q", s)
}
