package sftest

import (
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"
)

// The query resource: GET /services/data/vXX.X/query?q=<SOQL> answers
// {"totalSize", "done", "records": [{"attributes": {"type", "url"}, …}],
// "nextRecordsUrl" while not done}; the rest of a result is read from
// GET /services/data/vXX.X/query/<locator>. Errors are Salesforce's
// [{"message", "errorCode"}]: MALFORMED_QUERY for SOQL the fake cannot
// parse, INVALID_TYPE for an unknown object, INVALID_FIELD for an unknown
// field. The fake understands what lookups need:
//
//	SELECT f1, f2 FROM Object [WHERE Field IN ('a', 'b') | WHERE Field = 'a']
//
// compared case-insensitively, as Salesforce compares text.

// AddContact stores a Contact and returns its Id (003…).
func (s *Server) AddContact(fields map[string]any) string { return s.add("Contact", "003", fields) }

// AddLead stores a Lead and returns its Id (00Q…).
func (s *Server) AddLead(fields map[string]any) string { return s.add("Lead", "00Q", fields) }

func (s *Server) add(object, prefix string, fields map[string]any) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	id := fmt.Sprintf("%s%015d", prefix, s.seq)
	rec := map[string]any{"Id": id}
	for k, v := range fields {
		rec[k] = v
	}
	s.people[object] = append(s.people[object], rec)
	return id
}

// personFields are the fields the fake's Contact and Lead have.
var personFields = map[string]bool{"Id": true, "Email": true, "Phone": true, "FirstName": true, "LastName": true, "Name": true, "Company": true}

// Queries returns the SOQL of every query call, in order.
func (s *Server) Queries() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.queries)
}

// FailNextQuery answers the next n query calls with status and errorCode.
func (s *Server) FailNextQuery(n, status int, code string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failQuery = append(s.failQuery, fault{status: status, code: code, left: n})
}

// WithQueryPageSize makes query results come in pages of n records, so
// callers must follow nextRecordsUrl (Salesforce's own pages hold up to
// 2,000).
func WithQueryPageSize(n int) Option { return func(o *options) { o.pageSize = n } }

var (
	selectRE = regexp.MustCompile(`(?is)^\s*SELECT\s+(.+?)\s+FROM\s+([A-Za-z_][A-Za-z0-9_]*)(?:\s+WHERE\s+([A-Za-z_][A-Za-z0-9_]*)\s*(?:IN\s*\((.*)\)|=\s*('(?:[^'\\]|\\.)*'))\s*)?$`)
	fieldRE  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	literal  = regexp.MustCompile(`^\s*'((?:[^'\\]|\\.)*)'\s*(?:,|$)`)
)

func (s *Server) query(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.authorized(w, r) || s.injectedQueryFault(w) {
		return
	}
	q := r.URL.Query().Get("q")
	s.queries = append(s.queries, q)
	if q == "" {
		writeJSON(w, http.StatusBadRequest, []apiError{{Message: "A query string has to be specified", ErrorCode: "MALFORMED_QUERY"}})
		return
	}
	records, apiErr := s.run(q)
	if apiErr != nil {
		writeJSON(w, http.StatusBadRequest, []apiError{*apiErr})
		return
	}
	s.answerPage(w, r.PathValue("version"), cursor{records: records, total: len(records)})
}

// cursor is what is left of a query's result, and its whole size.
type cursor struct {
	records []map[string]any
	total   int
}

// more serves the rest of a result by its locator.
func (s *Server) more(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.authorized(w, r) {
		return
	}
	c, ok := s.cursors[r.PathValue("locator")]
	if !ok {
		writeJSON(w, http.StatusBadRequest, []apiError{{Message: "invalid query locator", ErrorCode: "INVALID_QUERY_LOCATOR"}})
		return
	}
	delete(s.cursors, r.PathValue("locator"))
	s.answerPage(w, r.PathValue("version"), c)
}

func (s *Server) answerPage(w http.ResponseWriter, version string, c cursor) {
	page := c.records
	if page == nil {
		page = []map[string]any{}
	}
	out := map[string]any{"done": true, "totalSize": c.total}
	if n := s.opts.pageSize; n > 0 && len(page) > n {
		s.seq++
		locator := fmt.Sprintf("01gRO%013d-%d", s.seq, c.total-len(page)+n)
		s.cursors[locator] = cursor{records: page[n:], total: c.total}
		page = page[:n]
		out["done"] = false
		out["nextRecordsUrl"] = "/services/data/" + version + "/query/" + locator
	}
	out["records"] = page
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) authorized(w http.ResponseWriter, r *http.Request) bool {
	if exp, ok := s.tokens[strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")]; !ok || time.Now().After(exp) {
		writeJSON(w, http.StatusUnauthorized, []apiError{{Message: "Session expired or invalid", ErrorCode: "INVALID_SESSION_ID"}})
		return false
	}
	if !versionRE.MatchString(r.PathValue("version")) {
		writeJSON(w, http.StatusNotFound, []apiError{{Message: "The requested resource does not exist", ErrorCode: "NOT_FOUND"}})
		return false
	}
	return true
}

func (s *Server) injectedQueryFault(w http.ResponseWriter) bool {
	if len(s.failQuery) == 0 {
		return false
	}
	f := &s.failQuery[0]
	if f.left--; f.left <= 0 {
		s.failQuery = s.failQuery[1:]
	}
	writeJSON(w, f.status, []apiError{{Message: "injected " + f.code, ErrorCode: f.code}})
	return true
}

// run parses and runs a query over the stored Contacts and Leads.
func (s *Server) run(q string) ([]map[string]any, *apiError) {
	m := selectRE.FindStringSubmatch(q)
	if m == nil {
		return nil, &apiError{Message: "unexpected token: " + firstToken(q), ErrorCode: "MALFORMED_QUERY"}
	}
	object := m[2]
	if object != "Contact" && object != "Lead" {
		return nil, &apiError{Message: fmt.Sprintf("\n%s\n^\nERROR at Row:1:Column:1\nsObject type '%s' is not supported.", q, object), ErrorCode: "INVALID_TYPE"}
	}
	var fields []string
	for _, f := range strings.Split(m[1], ",") {
		fields = append(fields, strings.TrimSpace(f))
	}
	where, values, err := m[3], []string{}, (*apiError)(nil)
	if where != "" {
		fields = append(fields, where)
		if values, err = literals(m[4] + m[5]); err != nil {
			return nil, err
		}
	}
	for _, f := range fields {
		if !fieldRE.MatchString(f) {
			return nil, &apiError{Message: "unexpected token: " + f, ErrorCode: "MALFORMED_QUERY"}
		}
		if !personFields[f] {
			return nil, &apiError{Message: fmt.Sprintf("\n%s\n^\nERROR at Row:1:Column:1\nNo such column '%s' on entity '%s'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name.", q, f, object), ErrorCode: "INVALID_FIELD"}
		}
	}
	var out []map[string]any
	for _, rec := range s.people[object] {
		if where != "" && !matchesAny(rec[where], values) {
			continue
		}
		row := map[string]any{"attributes": map[string]string{"type": object, "url": "/services/data/v61.0/sobjects/" + object + "/" + rec["Id"].(string)}}
		for _, f := range fields[:len(fields)-btoi(where != "")] {
			row[f] = rec[f]
		}
		out = append(out, row)
	}
	return out, nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// literals reads a comma-separated list of SOQL string literals.
func literals(list string) ([]string, *apiError) {
	var out []string
	rest := strings.TrimSpace(list)
	for rest != "" {
		m := literal.FindStringSubmatch(rest)
		if m == nil {
			return nil, &apiError{Message: "unexpected token: " + firstToken(rest), ErrorCode: "MALFORMED_QUERY"}
		}
		v, err := unescape(m[1])
		if err != nil {
			return nil, &apiError{Message: err.Error(), ErrorCode: "MALFORMED_QUERY"}
		}
		out = append(out, v)
		rest = strings.TrimSpace(rest[len(m[0]):])
	}
	return out, nil
}

func unescape(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			b.WriteByte(s[i])
			continue
		}
		i++
		if i == len(s) {
			return "", fmt.Errorf("invalid escape at end of %q", s)
		}
		switch c := s[i]; c {
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case '\\', '\'', '"':
			b.WriteByte(c)
		default:
			return "", fmt.Errorf("Invalid string literal '%s'. Illegal character sequence '\\%c' in string literal.", s, c)
		}
	}
	return b.String(), nil
}

func matchesAny(v any, values []string) bool {
	s, ok := v.(string)
	if !ok {
		return false
	}
	for _, want := range values {
		if strings.EqualFold(s, want) {
			return true
		}
	}
	return false
}

func firstToken(q string) string {
	f := strings.Fields(q)
	if len(f) == 0 {
		return "<EOF>"
	}
	return f[0]
}
