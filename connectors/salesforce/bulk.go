package salesforce

import (
	"bytes"
	"cmp"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/relaydev/relay/relay/sink"
)

// MaxJobRows is the most activities one Bulk API 2.0 job takes: a backlog
// of 200,000 goes in 8 jobs.
const MaxJobRows = 25_000

const (
	// jobTries is how many jobs one attempt makes at most when a job fails
	// whole (it could not be created, loaded or closed).
	jobTries = 3
	// stepTries is how many times one call of a job is made at most when
	// it times out or is refused for a while (503).
	stepTries = 4
	// jobTimeout is how long a job is polled before its rows go back to
	// the schedule (the job may still finish: upserts are idempotent).
	jobTimeout = 30 * time.Minute
	// maxPoll is the longest wait between two polls of a job.
	maxPoll = 10 * time.Second
)

// jobInfo is the part of a Bulk API 2.0 job's info Relay reads.
type jobInfo struct {
	ID                     string `json:"id"`
	State                  string `json:"state"`
	ErrorMessage           string `json:"errorMessage"`
	NumberRecordsProcessed int    `json:"numberRecordsProcessed"`
	NumberRecordsFailed    int    `json:"numberRecordsFailed"`
}

// table is one job's rows: one per distinct external id, sorted by the
// relate lookup (a parent's rows together, so parallel chunks of the job
// do not lock the same parent) and then by external id.
type table struct {
	columns []string
	rows    [][]string
	keys    []string                  // each row's external id
	records map[string]map[string]any // external id -> its record
}

// deliverBulk upserts the batch as one Bulk API 2.0 job and settles each
// activity from the job's per-row results: a row in successfulResults is
// delivered, one in failedResults fails with its sf__Error (a dead letter
// or a retry by its code), one in unprocessedrecords goes back to the
// queue unattempted. A job that fails whole is made again, up to jobTries.
func (s *Sink) deliverBulk(ctx context.Context, ds []*sink.Delivery) []sink.Attempt {
	start := time.Now()
	records, errs := s.records(ctx, ds)
	keys := make([]string, len(ds))
	for i, rec := range records {
		if errs[i] != nil {
			continue
		}
		if keys[i] = cell(rec[s.externalID]); keys[i] == "" {
			errs[i] = rowError("REQUIRED_FIELD_MISSING", "Required fields are missing: ["+s.externalID+"]", []string{s.externalID})
		}
	}
	t := s.table(records, errs, keys)
	var outcomes map[string]error
	var jobErr error
	if len(t.rows) > 0 {
		outcomes, jobErr = s.runJob(ctx, t)
		if jobErr == nil && s.allowSave {
			s.saveDuplicates(ctx, t, outcomes)
		}
	}
	lat := time.Since(start)
	out := make([]sink.Attempt, len(ds))
	for i := range ds {
		at := sink.Attempt{At: start.UTC(), Latency: lat, LatencyMS: float64(lat.Microseconds()) / 1000, Err: errs[i]}
		if errs[i] == nil {
			at.Err, at.Status = rowOutcome(outcomes, jobErr, keys[i])
		}
		out[i] = at
	}
	return out
}

// rowOutcome is a sent row's fate and the HTTP status shown with it.
func rowOutcome(outcomes map[string]error, jobErr error, key string) (error, int) {
	if jobErr != nil {
		var de *sink.DeliveryError
		if errors.As(jobErr, &de) {
			return jobErr, de.Status
		}
		return jobErr, 0
	}
	err, ok := outcomes[key]
	if !ok {
		return &sink.DeliveryError{Kind: sink.Retry, Status: http.StatusOK, Err: errors.New("the Bulk job's results do not name this record")}, http.StatusOK
	}
	return err, http.StatusOK
}

// table lays the records out as CSV rows, one per external id.
func (s *Sink) table(records []map[string]any, errs []error, keys []string) *table {
	t := &table{records: map[string]map[string]any{}}
	cols := map[string]bool{}
	for i, rec := range records {
		if errs[i] != nil {
			continue
		}
		if _, dup := t.records[keys[i]]; !dup {
			t.records[keys[i]] = rec
			t.keys = append(t.keys, keys[i])
		}
		for f := range rec {
			if f != "attributes" && f != s.externalID {
				cols[f] = true
			}
		}
	}
	t.columns = append([]string{s.externalID}, slices.Sorted(maps.Keys(cols))...)
	parent := ""
	if s.relate != nil {
		parent = s.relate.field
	}
	slices.SortFunc(t.keys, func(a, b string) int {
		return cmp.Or(strings.Compare(cell(t.records[a][parent]), cell(t.records[b][parent])), strings.Compare(a, b))
	})
	for _, k := range t.keys {
		row := make([]string, len(t.columns))
		for c, f := range t.columns {
			row[c] = cell(t.records[k][f])
		}
		t.rows = append(t.rows, row)
	}
	return t
}

// csv is the job's upload: a header row, then the rows.
func (t *table) csv() []byte {
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	_ = w.Write(t.columns)
	_ = w.WriteAll(t.rows) // a bytes.Buffer does not fail
	return buf.Bytes()
}

// cell is a record's value as CSV: empty when absent (Bulk then leaves the
// field as it is, as a collections upsert does for a field left out).
func cell(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case json.Number:
		return x.String()
	case bool:
		return strconv.FormatBool(x)
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	}
	return fmt.Sprint(v)
}

// runJob runs the table as a job, making it again when one fails whole.
func (s *Sink) runJob(ctx context.Context, t *table) (map[string]error, error) {
	var last error
	for try := range jobTries {
		if try > 0 && !pause(ctx, time.Duration(try)*time.Second) {
			break
		}
		res, err := s.job(ctx, t)
		if err == nil {
			return res, nil
		}
		last = err
		if kind, _ := sink.Classify(err); kind == sink.Permanent {
			break
		}
		s.log.Warn("Bulk job failed whole; making it again", "try", try+1, "rows", len(t.rows), "error", err)
	}
	return nil, last
}

// job creates a job, uploads the rows, closes it, waits for it and reads
// its results by external id.
func (s *Sink) job(ctx context.Context, t *table) (map[string]error, error) {
	info, err := s.createJob(ctx)
	if err != nil {
		return nil, fmt.Errorf("create Bulk job: %w", err)
	}
	if err := s.upload(ctx, info.ID, t.csv()); err != nil {
		s.abortJob(ctx, info.ID)
		return nil, fmt.Errorf("upload to Bulk job %s: %w", info.ID, err)
	}
	if err := s.closeJob(ctx, info.ID); err != nil {
		s.abortJob(ctx, info.ID)
		return nil, fmt.Errorf("close Bulk job %s: %w", info.ID, err)
	}
	if info, err = s.waitJob(ctx, info.ID); err != nil {
		return nil, fmt.Errorf("Bulk job %s: %w", info.ID, err)
	}
	if info.State == "Aborted" {
		return nil, &sink.DeliveryError{Kind: sink.Retry, Status: http.StatusOK, Err: fmt.Errorf("Bulk job %s was aborted", info.ID)}
	}
	res, err := s.jobResults(ctx, info, len(t.rows))
	if err != nil {
		return nil, fmt.Errorf("results of Bulk job %s: %w", info.ID, err)
	}
	if info.State == "Failed" {
		s.log.Warn("Bulk job failed; its processed rows are settled, the others go back to the queue", "job_id", info.ID, "error", info.ErrorMessage)
	}
	return res, nil
}

func (s *Sink) jobsPath(rest string) string {
	return "/services/data/" + s.version + "/jobs/ingest" + rest
}

func (s *Sink) createJob(ctx context.Context) (jobInfo, error) {
	body, _ := json.Marshal(map[string]string{ // strings always encode
		"object": s.object, "externalIdFieldName": s.externalID, "operation": "upsert",
		"contentType": "CSV", "lineEnding": "LF", "columnDelimiter": "COMMA",
	})
	var info jobInfo
	err := s.step(ctx, func() error {
		return s.callJSON(ctx, request{method: http.MethodPost, path: s.jobsPath(""), body: body}, &info)
	})
	return info, err
}

// upload puts the CSV once: an upload that timed out may have landed,
// and a job takes one upload only, so a failed one ends the job.
func (s *Sink) upload(ctx context.Context, id string, data []byte) error {
	resp, body, err := s.send(ctx, request{method: http.MethodPut, path: s.jobsPath("/" + id + "/batches"), body: data, contentType: "text/csv"})
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		return callError(resp, body)
	}
	return nil
}

// closeJob marks the upload complete. A close that timed out may have
// landed: the job's state says.
func (s *Sink) closeJob(ctx context.Context, id string) error {
	body := []byte(`{"state":"UploadComplete"}`)
	return s.step(ctx, func() error {
		var info jobInfo
		err := s.callJSON(ctx, request{method: http.MethodPatch, path: s.jobsPath("/" + id), body: body}, &info)
		if err == nil {
			return nil
		}
		if cur, ierr := s.jobState(ctx, id); ierr == nil && cur.State != "Open" {
			return nil // closed by an earlier try
		}
		return err
	})
}

// abortJob abandons a job that cannot go on; a failure is only logged (an
// open job Salesforce closes and deletes by itself).
func (s *Sink) abortJob(ctx context.Context, id string) {
	var info jobInfo
	if err := s.callJSON(ctx, request{method: http.MethodPatch, path: s.jobsPath("/" + id), body: []byte(`{"state":"Aborted"}`)}, &info); err != nil {
		s.log.Debug("aborting Bulk job", "job_id", id, "error", err)
	}
}

func (s *Sink) jobState(ctx context.Context, id string) (jobInfo, error) {
	var info jobInfo
	err := s.step(ctx, func() error {
		return s.callJSON(ctx, request{method: http.MethodGet, path: s.jobsPath("/" + id)}, &info)
	})
	return info, err
}

// waitJob polls the job until it is complete, failed or aborted, waiting
// longer between polls as it runs (250 ms, doubling, at most maxPoll).
func (s *Sink) waitJob(ctx context.Context, id string) (jobInfo, error) {
	deadline := time.Now().Add(jobTimeout)
	wait := 250 * time.Millisecond
	for {
		info, err := s.jobState(ctx, id)
		if err != nil {
			return jobInfo{ID: id}, err
		}
		switch info.State {
		case "JobComplete", "Failed", "Aborted":
			return info, nil
		}
		if time.Now().Add(wait).After(deadline) {
			return info, &sink.DeliveryError{Kind: sink.Retry, Err: fmt.Errorf("still %s after %s", info.State, jobTimeout)}
		}
		if !pause(ctx, wait) {
			return info, &sink.DeliveryError{Kind: sink.Retry, Err: ctx.Err()}
		}
		wait = min(2*wait, maxPoll)
	}
}

// jobResults reads the job's successful, failed and (when some rows were
// not processed) unprocessed rows, by external id.
func (s *Sink) jobResults(ctx context.Context, info jobInfo, rows int) (map[string]error, error) {
	out := make(map[string]error, rows)
	ok, err := s.resultRows(ctx, info.ID, "successfulResults")
	if err != nil {
		return nil, err
	}
	for _, r := range ok {
		out[r[s.externalID]] = nil
	}
	var failed []map[string]string
	if info.State != "JobComplete" || info.NumberRecordsFailed > 0 { // a complete job's count is final: no call for an empty file
		if failed, err = s.resultRows(ctx, info.ID, "failedResults"); err != nil {
			return nil, err
		}
	}
	for _, r := range failed {
		code, msg, fields := parseRowError(r["sf__Error"])
		out[r[s.externalID]] = rowError(code, msg, fields)
	}
	if info.State == "JobComplete" && len(ok)+len(failed) >= rows {
		return out, nil
	}
	left, err := s.resultRows(ctx, info.ID, "unprocessedrecords")
	if err != nil {
		return nil, err
	}
	for _, r := range left {
		out[r[s.externalID]] = &sink.DeliveryError{Kind: sink.Hold, Status: http.StatusOK, Err: fmt.Errorf("not processed by Bulk job %s: back to the queue", info.ID)}
	}
	return out, nil
}

// resultRows reads one of a job's result files, each row by column name.
func (s *Sink) resultRows(ctx context.Context, id, which string) ([]map[string]string, error) {
	var data []byte
	err := s.step(ctx, func() error {
		resp, body, err := s.send(ctx, request{method: http.MethodGet, path: s.jobsPath("/" + id + "/" + which + "/"), maxBody: 1 << 30})
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return callError(resp, body)
		}
		data = body
		return nil
	})
	if err != nil {
		return nil, err
	}
	recs, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
	if err != nil {
		return nil, &sink.DeliveryError{Kind: sink.Retry, Status: http.StatusOK, Err: fmt.Errorf("unreadable %s: %w", which, err)}
	}
	var out []map[string]string
	for i := 1; i < len(recs); i++ {
		row := make(map[string]string, len(recs[0]))
		for c, name := range recs[0] {
			if c < len(recs[i]) {
				row[name] = recs[i][c]
			}
		}
		out = append(out, row)
	}
	return out, nil
}

// parseRowError reads an sf__Error: CODE:message:field,field --.
func parseRowError(v string) (code, msg string, fields []string) {
	v = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "--"))
	code, rest, _ := strings.Cut(v, ":")
	msg = rest
	if i := strings.LastIndex(rest, ":"); i >= 0 {
		msg = rest[:i]
		for _, f := range strings.Split(rest[i+1:], ",") {
			if f = strings.TrimSpace(f); f != "" {
				fields = append(fields, f)
			}
		}
	}
	return code, msg, fields
}

// saveDuplicates sends again, through sObject Collections with the
// duplicate rule header (which Bulk jobs cannot carry), the rows a
// duplicate rule refused, and takes those answers instead.
func (s *Sink) saveDuplicates(ctx context.Context, t *table, outcomes map[string]error) {
	var keys []string
	for _, k := range t.keys {
		var de *sink.DeliveryError
		if errors.As(outcomes[k], &de) && de.Code == "DUPLICATES_DETECTED" {
			keys = append(keys, k)
		}
	}
	for len(keys) > 0 {
		n := min(len(keys), MaxBatch)
		recs := make([]map[string]any, n)
		for i, k := range keys[:n] {
			recs[i] = t.records[k]
		}
		results, err := s.upsert(ctx, recs)
		for i, k := range keys[:n] {
			switch {
			case err != nil:
				outcomes[k] = err
			case i < len(results):
				outcomes[k] = results[i].err()
			}
		}
		keys = keys[n:]
	}
}

// callJSON makes a call whose 200 or 201 answer is JSON, decoding it into out.
func (s *Sink) callJSON(ctx context.Context, r request, out any) error {
	resp, data, err := s.send(ctx, r)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		return callError(resp, data)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return &sink.DeliveryError{Kind: sink.Retry, Status: resp.StatusCode, Err: fmt.Errorf("unreadable response: %w", err)}
	}
	return nil
}

// step makes one call of a job, again when it timed out or was refused for
// a while (100 ms, doubling; a Retry-After up to 5 s); a permanent refusal
// or REQUEST_LIMIT_EXCEEDED ends it at once.
func (s *Sink) step(ctx context.Context, call func() error) error {
	var err error
	for try := range stepTries {
		if err = call(); err == nil {
			return nil
		}
		var de *sink.DeliveryError
		if errors.As(err, &de) && (de.Kind == sink.Permanent || de.Code == "REQUEST_LIMIT_EXCEEDED") {
			return err
		}
		wait := (100 * time.Millisecond) << try
		if errors.As(err, &de) && de.RetryAfter > 0 {
			wait = min(de.RetryAfter, 5*time.Second)
		}
		if try+1 < stepTries && !pause(ctx, wait) {
			break
		}
	}
	return err
}

// pause waits d or until ctx is done (false).
func pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
