// Package salesforce upserts activities into a Salesforce object, keyed on
// an external id field so a redelivered activity never makes a second
// record: sObject Collections for small batches, Bulk API 2.0 jobs for a
// backlog, within the org's API budget.
package salesforce

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/relaydev/relay/config"
	"github.com/relaydev/relay/connectors/netguard"
	"github.com/relaydev/relay/relay/sink"
)

// MaxBatch is the most records one collections call takes.
const MaxBatch = 200

// Options are what a Salesforce sink needs besides its destination's config.
type Options struct {
	// Window is the length of the org's rolling API window: 24 h (the
	// default) in Salesforce, shorter in tests.
	Window     time.Duration
	Logger     *slog.Logger
	Resolver   *net.Resolver // nil: the system's
	HTTPClient *http.Client  // nil: one with the dial-time address guard
}

// Sink upserts batches of activities into one object.
type Sink struct {
	object, externalID, version string
	fields                      []field
	batchSize                   int
	batchWait                   time.Duration
	timeout                     time.Duration
	client                      *http.Client
	relate                      *relater // nil: no lookup field is set
	tokens                      *tokenCache
	log                         *slog.Logger
	budget                      *budget
	calls                       chan struct{} // a slot per call in flight: max_concurrent_calls
	orgCalls                    chan struct{} // the org's, shared by its destinations: OrgMaxCalls
	bulkThreshold               int
	allowSave                   bool // duplicate_rules: allow_save
	checked                     sync.Once
}

var (
	_ sink.BatchSink = (*Sink)(nil)
	_ sink.Holder    = (*Sink)(nil)
	_ sink.Backlog   = (*Sink)(nil)
)

// New builds a sink; it reads the JWT private key file if one is configured.
func New(d config.Destination, opts Options) (*Sink, error) {
	fields, err := compileFields(d.Fields)
	if err != nil {
		return nil, err
	}
	client := opts.HTTPClient
	if client == nil {
		client = &http.Client{Transport: &http.Transport{
			DialContext:         netguard.DialContext(d.AllowPrivateNetwork, opts.Resolver),
			ForceAttemptHTTP2:   true,
			MaxIdleConnsPerHost: 4,
			TLSHandshakeTimeout: 10 * time.Second,
			IdleConnTimeout:     90 * time.Second,
		}, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	tokens, err := newTokenCache(d, client)
	if err != nil {
		return nil, err
	}
	s := &Sink{
		object: d.Object, externalID: d.ExternalIDField, version: d.APIVersion, fields: fields,
		batchSize: min(max(d.BatchSize, 1), MaxBatch), batchWait: time.Duration(d.BatchWait),
		timeout: time.Duration(d.Timeout), client: client, tokens: tokens, log: log,
		allowSave: d.DuplicateRules == config.DuplicateAllowSave,
	}
	s.apiUse(d, opts.Window)
	if d.HasRelate() {
		if s.relate, err = newRelater(d.Relate); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// apiUse sets what bounds the sink's use of the org's API, with the
// config's defaults for a destination built without them.
func (s *Sink) apiUse(d config.Destination, window time.Duration) {
	share, reserve := d.APIBudget.MaxShare, d.APIBudget.Reserve
	if share <= 0 || share > 1 {
		share = 0.25
	}
	if window <= 0 {
		window = 24 * time.Hour
	}
	s.budget = newBudget(d.Name, share, max(reserve, 0), window)
	calls := d.MaxConcurrentCalls
	if calls <= 0 {
		calls = 4
	}
	s.calls = make(chan struct{}, min(calls, OrgMaxCalls))
	s.orgCalls = orgCalls(d.InstanceURL)
	s.bulkThreshold = d.BulkThreshold
	if s.bulkThreshold <= 0 {
		s.bulkThreshold = 2000
	}
}

// Batch returns the batch size and the longest wait for a batch to fill.
func (s *Sink) Batch() (int, time.Duration) { return s.batchSize, s.batchWait }

// Close drops idle connections.
func (s *Sink) Close() { s.client.CloseIdleConnections() }

// DeliverBatch maps each activity to a record, relates it to its Contact
// or Lead when configured, sends one collections upsert and reports each
// record's fate. An activity that cannot be mapped (an expression fails) or
// related (nobody matches, with on_missing: dead_letter) is a dead letter
// without being sent.
//
// A batch above MaxBatch (a backlog: see BatchFor) goes as a Bulk API 2.0
// job instead. A batch that would pass the API budget is not attempted
// (sink.Hold): the worker hands it back and holds the destination.
func (s *Sink) DeliverBatch(ctx context.Context, ds []*sink.Delivery) []sink.Attempt {
	cost := 1
	if len(ds) > MaxBatch {
		cost = jobCalls
	}
	if until := s.budget.until(cost, time.Now()); !until.IsZero() {
		return held(len(ds), time.Until(until))
	}
	if len(ds) > MaxBatch {
		return s.deliverBulk(ctx, ds)
	}
	return s.deliverCollections(ctx, ds)
}

// held is n attempts the budget did not let happen.
func held(n int, wait time.Duration) []sink.Attempt {
	out := make([]sink.Attempt, n)
	now := time.Now().UTC()
	err := &sink.DeliveryError{Kind: sink.Hold, Code: "API_BUDGET", RetryAfter: max(wait, time.Millisecond),
		Err: errors.New("held: the call would pass the destination's api_budget")}
	for i := range out {
		out[i] = sink.Attempt{At: now, Err: err} // one hold, shared by every row
	}
	return out
}

// BatchFor is how many activities to gather when waiting wait: a Bulk
// job's worth above bulk_threshold, else batch_size.
func (s *Sink) BatchFor(waiting int) int {
	if waiting > s.bulkThreshold {
		return max(min(waiting, MaxJobRows), MaxBatch+1)
	}
	return s.batchSize
}

// deliverCollections sends the batch as one sObject Collections upsert.
func (s *Sink) deliverCollections(ctx context.Context, ds []*sink.Delivery) []sink.Attempt {
	start := time.Now()
	ctx = withTrace(ctx, ds)
	out := make([]sink.Attempt, len(ds))
	records, errs := s.records(ctx, ds)
	var send []map[string]any
	var sent []int // index in ds of each record sent
	for i, rec := range records {
		if errs[i] == nil {
			send, sent = append(send, rec), append(sent, i)
		}
	}
	var results []recordResult
	var err error
	if len(send) > 0 {
		results, err = s.upsert(ctx, send)
	}
	lat := time.Since(start)
	for i := range ds {
		out[i] = sink.Attempt{At: start.UTC(), Latency: lat, LatencyMS: float64(lat.Microseconds()) / 1000, Err: errs[i]}
	}
	for j, i := range sent {
		at := &out[i]
		switch {
		case err != nil:
			at.Err = err
			var de *sink.DeliveryError
			if errors.As(err, &de) {
				at.Status = de.Status
			}
		case j < len(results):
			at.Status = http.StatusOK
			at.Err = results[j].err()
		default:
			at.Err = &sink.DeliveryError{Kind: sink.Retry, Err: fmt.Errorf("Salesforce returned %d results for %d records", len(results), len(send))}
		}
	}
	return out
}

// records maps every activity, then relates them; errs[i] is why ds[i]
// will not be sent.
func (s *Sink) records(ctx context.Context, ds []*sink.Delivery) ([]map[string]any, []error) {
	records, errs := make([]map[string]any, len(ds)), make([]error, len(ds))
	keys, values := make([]string, len(ds)), map[string]string{}
	for i, d := range ds {
		a, err := d.Activity, error(nil)
		if a == nil { // the worker decodes the whole activity for a batch sink
			a, err = sink.FullActivity(d)
		}
		in := &input{a: a}
		if err == nil {
			records[i], err = s.record(in)
		}
		if err == nil && s.relate != nil {
			var v string
			keys[i], v, err = s.relate.key(in)
			if err != nil {
				err = fmt.Errorf("relate.value: %w", err)
			} else if keys[i] != "" {
				values[keys[i]] = v
			}
		}
		if err != nil {
			errs[i] = &sink.DeliveryError{Kind: sink.Permanent, Err: err}
		}
	}
	if s.relate == nil {
		return records, errs
	}
	s.setLookups(ctx, records, errs, keys, values)
	return records, errs
}

// setLookups sets the lookup field of each record whose Contact or Lead is
// found; a failed query fails every record of the batch with its error.
func (s *Sink) setLookups(ctx context.Context, records []map[string]any, errs []error, keys []string, values map[string]string) {
	var ids map[string]string
	var err error
	if len(values) > 0 {
		ids, err = s.resolve(ctx, values)
	}
	for i, rec := range records {
		switch {
		case errs[i] != nil:
		case err != nil:
			errs[i] = err
		case ids[keys[i]] != "":
			rec[s.relate.field] = ids[keys[i]]
		case s.relate.deadLetter:
			errs[i] = &sink.DeliveryError{Kind: sink.Permanent, Code: "NO_MATCH", Err: s.noMatch(values[keys[i]])}
		}
	}
}

func (s *Sink) noMatch(value string) error {
	if value == "" {
		return fmt.Errorf("relate: the activity has no %s value to match", s.relate.match)
	}
	return fmt.Errorf("relate: no %s with %s = %q", strings.Join(s.relate.objects, " or "), s.relate.match, value)
}

type upsertRequest struct {
	AllOrNone bool             `json:"allOrNone"`
	Records   []map[string]any `json:"records"`
}

// upsert makes the collections call (the token refreshed and the call made
// once more on 401); with duplicate_rules: allow_save it asks the org to
// save records its duplicate rules match.
func (s *Sink) upsert(ctx context.Context, records []map[string]any) ([]recordResult, error) {
	body, err := json.Marshal(upsertRequest{AllOrNone: false, Records: records})
	if err != nil {
		return nil, &sink.DeliveryError{Kind: sink.Permanent, Err: fmt.Errorf("encode records: %w", err)}
	}
	r := request{method: http.MethodPatch, path: fmt.Sprintf("/services/data/%s/composite/sobjects/%s/%s", s.version, s.object, s.externalID), body: body}
	if s.allowSave {
		r.header = map[string]string{"Sforce-Duplicate-Rule-Header": "allowSave=true"}
	}
	resp, data, err := s.send(ctx, r)
	if err != nil {
		return nil, err
	}
	return s.results(resp, data)
}

// traceKey keys the delivery whose trace context a batch's calls send.
type traceKey struct{}

// withTrace has every call of a batch send the trace context of its first
// activity that has one: a call carries one traceparent, so a batch of
// one (a probe, a batch_size of 1) sends its activity's exactly, and each
// activity's attempt span (telemetry on) is in its own trace either way.
func withTrace(ctx context.Context, ds []*sink.Delivery) context.Context {
	for _, d := range ds {
		if d.TraceParent != "" {
			return context.WithValue(ctx, traceKey{}, d)
		}
	}
	return ctx
}

func transportError(err error) error {
	var blocked *netguard.BlockedError
	if errors.As(err, &blocked) {
		return &sink.DeliveryError{Kind: sink.Permanent, Err: blocked}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return &sink.DeliveryError{Kind: sink.Retry, Err: errors.New("no response in time")}
	}
	return &sink.DeliveryError{Kind: sink.Retry, Err: sink.WithoutURL(err)}
}

// apiError is Salesforce's error element: [{"message", "errorCode"}].
type apiError struct {
	Message   string   `json:"message"`
	ErrorCode string   `json:"errorCode"`
	Fields    []string `json:"fields"`
}

// results reads a 200's per-record results, or classifies a failed call.
func (s *Sink) results(resp *http.Response, data []byte) ([]recordResult, error) {
	if resp.StatusCode == http.StatusOK {
		var rs []recordResult
		if err := json.Unmarshal(data, &rs); err != nil {
			return nil, &sink.DeliveryError{Kind: sink.Retry, Status: resp.StatusCode, Err: fmt.Errorf("unreadable response: %w", err)}
		}
		return rs, nil
	}
	return nil, callError(resp, data)
}

// callError classifies a call Salesforce refused: request limits and 503
// back the destination off, 400 (a malformed call) is permanent, the rest
// is retried.
func callError(resp *http.Response, data []byte) error {
	var errs []apiError
	_ = json.Unmarshal(data, &errs)
	code, msg := "", strings.TrimSpace(string(data))
	if len(errs) > 0 {
		code, msg = errs[0].ErrorCode, errs[0].Message
	}
	if len(msg) > 300 {
		msg = msg[:300] + "…"
	}
	de := &sink.DeliveryError{Kind: sink.Retry, Status: resp.StatusCode, Code: code, Err: errors.New(msg)}
	switch {
	case code == "REQUEST_LIMIT_EXCEEDED" || resp.StatusCode == http.StatusServiceUnavailable:
		de.Kind, de.RetryAfter = sink.Throttle, retryAfter(resp.Header.Get("Retry-After"))
	case resp.StatusCode == http.StatusBadRequest:
		de.Kind = sink.Permanent
	}
	return de
}

// retryAfter reads Retry-After; without one (Salesforce rarely sends it) the
// worker backs off by the destination's schedule.
func retryAfter(v string) time.Duration {
	if v != "" {
		if d, err := time.ParseDuration(strings.TrimSpace(v) + "s"); err == nil && d > 0 {
			return min(d, time.Hour)
		}
		if t, err := http.ParseTime(v); err == nil && time.Until(t) > 0 {
			return min(time.Until(t), time.Hour)
		}
	}
	return 0
}

// recordResult is one element of a collections upsert response.
type recordResult struct {
	ID      string `json:"id"`
	Success bool   `json:"success"`
	Created bool   `json:"created"`
	Errors  []struct {
		StatusCode string   `json:"statusCode"`
		Message    string   `json:"message"`
		Fields     []string `json:"fields"`
	} `json:"errors"`
}

// transient record errors: the same record can succeed later.
var transient = map[string]bool{
	"UNABLE_TO_LOCK_ROW": true, "SERVER_UNAVAILABLE": true, "REQUEST_RUNNING_TOO_LONG": true,
	"QUERY_TIMEOUT": true, "TXN_SECURITY_METERING_ERROR": true, "CONCURRENT_REQUEST_LIMIT_EXCEEDED": true,
}

// permanent record errors: retrying the same record cannot help.
var permanent = map[string]bool{
	"REQUIRED_FIELD_MISSING": true, "INVALID_FIELD": true, "STRING_TOO_LONG": true,
	"INVALID_TYPE_ON_FIELD_IN_RECORD": true, "FIELD_CUSTOM_VALIDATION_EXCEPTION": true,
	"DUPLICATE_VALUE": true, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST": true, "MALFORMED_ID": true,
	"INVALID_FIELD_FOR_INSERT_UPDATE": true, "NUMBER_OUTSIDE_VALID_RANGE": true, "INVALID_EMAIL_ADDRESS": true,
	"FIELD_INTEGRITY_EXCEPTION": true, "DUPLICATE_EXTERNAL_ID": true, "INVALID_CROSS_REFERENCE_KEY": true,
	"CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY": true, "ENTITY_IS_DELETED": true, "INSUFFICIENT_ACCESS_OR_READONLY": true,
	"DUPLICATES_DETECTED": true,
}

func (r recordResult) err() error {
	if r.Success {
		return nil
	}
	if len(r.Errors) == 0 {
		return &sink.DeliveryError{Kind: sink.Retry, Status: http.StatusOK, Err: errors.New("record failed without an error")}
	}
	e := r.Errors[0]
	return rowError(e.StatusCode, e.Message, e.Fields)
}

// rowError classifies a record Salesforce refused: its code, message and
// fields as the dead letter shows them.
func rowError(code, msg string, fields []string) error {
	kind := sink.Retry
	if permanent[code] && !transient[code] {
		kind = sink.Permanent
	}
	if len(fields) > 0 {
		msg += " (fields: " + strings.Join(fields, ", ") + ")"
	}
	return &sink.DeliveryError{Kind: kind, Status: http.StatusOK, Code: code, Err: errors.New(msg)}
}
