// Package sftest is a fake Salesforce for tests: the OAuth token endpoint
// (client credentials and JWT bearer), the sObject Collections upsert, the
// SOQL query resource over Contacts and Leads, the object's describe, the
// limits resource and Bulk API 2.0 upsert jobs with CSV results; every call
// counted in the org's rolling API allowance and answered with
// Sforce-Limit-Info, with Salesforce's own result and error formats, and
// faults to inject (timeouts after applying, 503s, locks, duplicate rules).
package sftest

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Server is a running fake Salesforce org.
type Server struct {
	*httptest.Server
	opts options

	mu        sync.Mutex
	tokens    map[string]time.Time // access token -> expiry
	records   map[string]map[string]any
	ids       map[string]string // external id -> record id
	upserts   map[string]int    // external id -> successful upserts
	calls     int
	traced    []string // the traceparent of each API call ("" for none)
	tokenReqs int
	maxBatch  int
	fail      []fault
	locked    map[string]int // external id -> lock failures left
	seq       int
	people    map[string][]map[string]any // "Contact", "Lead" -> records
	queries   []string
	failQuery []fault
	cursors   map[string]cursor // query locator -> the rest of a result

	usage                           []time.Time // the org's calls in the window, oldest first
	apiCalls, timeouts, unavailable int
	inFlight, maxInFlight           int
	dupes                           map[string][]string // external id -> ids of records beyond the first
	jobs                            map[string]*job
	rowJob                          map[string]*job // external id -> the last job that processed its row
	jobOrder                        []string
	failJobs                        []int // next jobs to fail: how many rows each processes first
	failUploads                     []fault
}

type options struct {
	clientID, clientSecret string
	jwtKey                 *rsa.PublicKey
	jwtUser                string
	object, externalID     string
	known                  map[string]bool
	required               []string
	maxLen                 map[string]int
	tokenTTL               time.Duration
	pageSize               int // query records per page; 0: all at once

	apiMax                       int
	apiWindow                    time.Duration
	faults                       *rand.Rand
	timeoutRate, unavailableRate float64
	types                        map[string]string // field -> describe type; "string" when absent
	readOnly                     map[string]bool
	picklists                    map[string]picklist
	duplicateRule                string // field a duplicate rule matches on; "" for none
	bulkDelay                    time.Duration
	bulkChunk                    int    // rows the org processes in parallel chunks of; 0: 10,000
	parentField                  string // the lookup whose parent a row locks; "" for none
	latency                      time.Duration
}

// Option configures the fake.
type Option func(*options)

// WithClient sets the connected app's client id and secret.
func WithClient(id, secret string) Option {
	return func(o *options) { o.clientID, o.clientSecret = id, secret }
}

// WithJWT accepts JWT bearer assertions signed by the public key (PEM) for user.
func WithJWT(publicKeyPEM []byte, user string) Option {
	return func(o *options) {
		block, _ := pem.Decode(publicKeyPEM)
		if block == nil {
			panic("sftest: not a PEM public key")
		}
		k, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			panic(err)
		}
		o.jwtKey, o.jwtUser = k.(*rsa.PublicKey), user
	}
}

// WithObject defines the object: its name, external id field and fields.
func WithObject(object, externalID string, fields ...string) Option {
	return func(o *options) {
		o.object, o.externalID = object, externalID
		o.known = map[string]bool{externalID: true}
		for _, f := range fields {
			o.known[f] = true
		}
	}
}

// WithRequired makes fields required on the object.
func WithRequired(fields ...string) Option { return func(o *options) { o.required = fields } }

// WithMaxLength limits a text field's length.
func WithMaxLength(field string, n int) Option {
	return func(o *options) { o.maxLen[field] = n }
}

// WithTokenTTL makes access tokens expire (Salesforce's own have no
// expires_in; sessions simply stop working).
func WithTokenTTL(d time.Duration) Option { return func(o *options) { o.tokenTTL = d } }

// New starts the fake on 127.0.0.1.
func New(t testing.TB, opts ...Option) *Server {
	s := &Server{tokens: map[string]time.Time{}, records: map[string]map[string]any{}, ids: map[string]string{}, upserts: map[string]int{}, locked: map[string]int{},
		people: map[string][]map[string]any{}, cursors: map[string]cursor{}}
	s.dupes, s.jobs, s.rowJob = map[string][]string{}, map[string]*job{}, map[string]*job{}
	s.opts = options{clientID: "client-id", clientSecret: "client-secret", maxLen: map[string]int{}, tokenTTL: time.Hour,
		apiMax: 100_000, apiWindow: 24 * time.Hour, types: map[string]string{}, readOnly: map[string]bool{}, picklists: map[string]picklist{}}
	WithObject("Activity__c", "Relay_Id__c", "Type__c", "Email__c", "Occurred_At__c", "Campaign__c", "Total__c", "Vip__c", "Details__c")(&s.opts)
	for _, o := range opts {
		o(&s.opts)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /services/oauth2/token", s.token)
	mux.HandleFunc("PATCH /services/data/{version}/composite/sobjects/{object}/{field}", s.api(s.upsert))
	mux.HandleFunc("GET /services/data/{version}/query", s.api(s.query))
	mux.HandleFunc("GET /services/data/{version}/query/{locator}", s.api(s.more))
	mux.HandleFunc("GET /services/data/{version}/limits", s.api(s.limits))
	mux.HandleFunc("GET /services/data/{version}/sobjects/{object}/describe", s.api(s.describe))
	mux.HandleFunc("POST /services/data/{version}/jobs/ingest", s.api(s.createJob))
	mux.HandleFunc("PUT /services/data/{version}/jobs/ingest/{id}/batches", s.api(s.uploadJob))
	mux.HandleFunc("PATCH /services/data/{version}/jobs/ingest/{id}", s.api(s.closeJob))
	mux.HandleFunc("GET /services/data/{version}/jobs/ingest/{id}", s.api(s.jobInfo))
	mux.HandleFunc("GET /services/data/{version}/jobs/ingest/{id}/{results}", s.api(s.jobResults))
	mux.HandleFunc("GET /services/data/{version}/jobs/ingest/{id}/{results}/", s.api(s.jobResults))
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/oauth2/token") {
			s.mu.Lock()
			s.traced = append(s.traced, r.Header.Get("traceparent"))
			s.mu.Unlock()
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

// TraceParents are the traceparent headers of the API calls made so far
// (token requests aside), "" for a call without one.
func (s *Server) TraceParents() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.traced...)
}

// TokenURL is the fake's token endpoint.
func (s *Server) TokenURL() string { return s.URL + "/services/oauth2/token" }

type fault struct {
	status int
	code   string
	left   int
}

// FailNext answers the next n upsert calls with status and errorCode
// (403 REQUEST_LIMIT_EXCEEDED, 503 SERVER_UNAVAILABLE, 500 …).
func (s *Server) FailNext(n, status int, code string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = append(s.fail, fault{status: status, code: code, left: n})
}

// LockRecord fails the record with this external id with UNABLE_TO_LOCK_ROW
// for its next n upserts.
func (s *Server) LockRecord(externalID string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.locked[externalID] = n
}

// ExpireTokens ends every session now.
func (s *Server) ExpireTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens = map[string]time.Time{}
}

// Records returns a copy of the stored records by external id.
func (s *Server) Records() map[string]map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]map[string]any, len(s.records))
	for k, v := range s.records {
		c := make(map[string]any, len(v))
		for f, x := range v {
			c[f] = x
		}
		out[k] = c
	}
	return out
}

// Upserts returns how many times each record was upserted, by external id.
func (s *Server) Upserts() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.upserts)
}

// Calls, TokenRequests and MaxBatch report what the fake saw.
func (s *Server) Calls() int         { s.mu.Lock(); defer s.mu.Unlock(); return s.calls }
func (s *Server) TokenRequests() int { s.mu.Lock(); defer s.mu.Unlock(); return s.tokenReqs }
func (s *Server) MaxBatch() int      { s.mu.Lock(); defer s.mu.Unlock(); return s.maxBatch }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

type apiError struct {
	Message   string   `json:"message"`
	ErrorCode string   `json:"errorCode"`
	Fields    []string `json:"fields,omitempty"`
}

var versionRE = regexp.MustCompile(`^v\d+\.\d$`)

func (s *Server) upsert(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if exp, ok := s.tokens[strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")]; !ok || time.Now().After(exp) {
		writeJSON(w, http.StatusUnauthorized, []apiError{{Message: "Session expired or invalid", ErrorCode: "INVALID_SESSION_ID"}})
		return
	}
	if len(s.fail) > 0 {
		f := &s.fail[0]
		if f.left--; f.left <= 0 {
			s.fail = s.fail[1:]
		}
		writeJSON(w, f.status, []apiError{{Message: "injected " + f.code, ErrorCode: f.code}})
		return
	}
	if !versionRE.MatchString(r.PathValue("version")) {
		writeJSON(w, http.StatusNotFound, []apiError{{Message: "The requested resource does not exist", ErrorCode: "NOT_FOUND"}})
		return
	}
	if r.PathValue("object") != s.opts.object {
		writeJSON(w, http.StatusNotFound, []apiError{{Message: "The requested resource does not exist", ErrorCode: "NOT_FOUND"}})
		return
	}
	if r.PathValue("field") != s.opts.externalID {
		writeJSON(w, http.StatusBadRequest, []apiError{{Message: "Provided external ID field does not exist or is not accessible: " + r.PathValue("field"), ErrorCode: "INVALID_FIELD"}})
		return
	}
	var req struct {
		AllOrNone *bool            `json:"allOrNone"`
		Records   []map[string]any `json:"records"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, []apiError{{Message: "Unexpected character: " + err.Error(), ErrorCode: "JSON_PARSER_ERROR"}})
		return
	}
	if len(req.Records) > 200 {
		writeJSON(w, http.StatusBadRequest, []apiError{{Message: "record limit reached. cannot submit more than 200 records into this call", ErrorCode: "EXCEEDED_ID_LIMIT"}})
		return
	}
	s.maxBatch = max(s.maxBatch, len(req.Records))
	allowSave := strings.Contains(r.Header.Get("Sforce-Duplicate-Rule-Header"), "allowSave=true")
	results := make([]any, len(req.Records))
	for i, rec := range req.Records {
		results[i] = s.upsertOne(rec, allowSave)
	}
	writeJSON(w, http.StatusOK, results)
}

type recordError struct {
	StatusCode string   `json:"statusCode"`
	Message    string   `json:"message"`
	Fields     []string `json:"fields"`
}

type result struct {
	ID      string        `json:"id,omitempty"`
	Success bool          `json:"success"`
	Created bool          `json:"created,omitempty"`
	Errors  []recordError `json:"errors"`
}

func failed(code, msg string, fields ...string) result {
	if fields == nil {
		fields = []string{}
	}
	return result{Errors: []recordError{{StatusCode: code, Message: msg, Fields: fields}}}
}

func (s *Server) upsertOne(rec map[string]any, allowSave bool) result {
	attrs, _ := rec["attributes"].(map[string]any)
	if attrs == nil || attrs["type"] != s.opts.object {
		return failed("INVALID_TYPE", "attributes.type must be "+s.opts.object)
	}
	names := slices.Sorted(maps.Keys(rec))
	for _, f := range names {
		if f != "attributes" && !s.opts.known[f] {
			return failed("INVALID_FIELD", fmt.Sprintf("No such column '%s' on sobject of type %s", f, s.opts.object), f)
		}
	}
	for _, f := range names {
		if n, ok := s.opts.maxLen[f]; ok {
			if str, isStr := rec[f].(string); isStr && len(str) > n {
				return failed("STRING_TOO_LONG", fmt.Sprintf("%s: data value too large: %s (max length=%d)", f, str[:min(len(str), 20)], n), f)
			}
		}
	}
	for _, f := range []string{"WhoId"} {
		if id, set := rec[f]; set && !s.isPerson(id) {
			return failed("INVALID_CROSS_REFERENCE_KEY", fmt.Sprintf("invalid cross reference id: %v", id), f)
		}
	}
	ext, _ := rec[s.opts.externalID].(string)
	if ext == "" {
		return failed("REQUIRED_FIELD_MISSING", "Required fields are missing: ["+s.opts.externalID+"]", s.opts.externalID)
	}
	for _, f := range s.opts.required {
		if _, ok := rec[f]; !ok {
			return failed("REQUIRED_FIELD_MISSING", "Required fields are missing: ["+f+"]", f)
		}
	}
	for _, f := range names {
		if p, ok := s.opts.picklists[f]; ok && p.restricted && !slices.Contains(p.values, fmt.Sprint(rec[f])) {
			return failed("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", fmt.Sprintf("%s: bad value for restricted picklist field: %v", f, rec[f]), f)
		}
		if s.opts.readOnly[f] {
			return failed("INVALID_FIELD_FOR_INSERT_UPDATE", fmt.Sprintf("Unable to create/update fields: %s. Please check the security settings of this field and verify that it is read/write for your profile or permission set.", f), f)
		}
	}
	if ids := s.dupes[ext]; len(ids) > 0 {
		all := append([]string{s.ids[ext]}, ids...)
		return failed("DUPLICATE_EXTERNAL_ID", fmt.Sprintf("%s: more than one record found for external id field: [%s]", s.opts.externalID, strings.Join(all, ", ")), s.opts.externalID)
	}
	if n := s.locked[ext]; n > 0 {
		s.locked[ext] = n - 1
		return failed("UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access to this record or 1 records")
	}
	stored := map[string]any{}
	for f, v := range rec {
		if f != "attributes" {
			stored[f] = v
		}
	}
	id, exists := s.ids[ext]
	if !exists && !allowSave && s.duplicateOf(rec) != "" {
		return result{Errors: []recordError{{StatusCode: "DUPLICATES_DETECTED", Message: "Use one of these records? (duplicate of " + s.duplicateOf(rec) + ")", Fields: []string{}}}}
	}
	if !exists {
		s.seq++
		id = fmt.Sprintf("a0B%015d", s.seq)
		s.ids[ext] = id
	}
	s.records[ext] = stored
	s.upserts[ext]++
	return result{ID: id, Success: true, Created: !exists, Errors: []recordError{}}
}

// duplicateOf is the id of a stored record the duplicate rule matches
// rec to, "" when there is no rule or no match.
func (s *Server) duplicateOf(rec map[string]any) string {
	f := s.opts.duplicateRule
	v, ok := rec[f]
	if f == "" || !ok {
		return ""
	}
	for ext, stored := range s.records {
		if fmt.Sprint(stored[f]) == fmt.Sprint(v) {
			return s.ids[ext]
		}
	}
	return ""
}

// AddDuplicateRecord stores a second record with the external id of a
// stored one (possible when the field is not marked Unique): an upsert of
// that external id then fails with DUPLICATE_EXTERNAL_ID naming both.
func (s *Server) AddDuplicateRecord(externalID string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.ids[externalID]; !ok {
		s.seq++
		s.ids[externalID] = fmt.Sprintf("a0B%015d", s.seq)
		s.records[externalID] = map[string]any{s.opts.externalID: externalID}
	}
	s.seq++
	id := fmt.Sprintf("a0B%015d", s.seq)
	s.dupes[externalID] = append(s.dupes[externalID], id)
	return id
}

// WithDuplicateRule adds a duplicate rule: a new record whose field equals
// a stored record's is refused with DUPLICATES_DETECTED, unless the call
// carries Sforce-Duplicate-Rule-Header: allowSave=true (REST only: Bulk
// API jobs cannot send it).
func WithDuplicateRule(field string) Option { return func(o *options) { o.duplicateRule = field } }

// isPerson reports whether id is a stored Contact's or Lead's.
func (s *Server) isPerson(id any) bool {
	for _, recs := range s.people {
		for _, rec := range recs {
			if rec["Id"] == id {
				return true
			}
		}
	}
	return false
}
