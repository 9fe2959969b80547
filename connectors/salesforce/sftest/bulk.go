package sftest

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Bulk API 2.0 ingest jobs, upsert only (the operation Relay uses):
//
//	POST  /services/data/vXX.X/jobs/ingest          {"object", "operation": "upsert", "externalIdFieldName", "contentType": "CSV", "lineEnding": "LF"} → job info
//	PUT   /services/data/vXX.X/jobs/ingest/<id>/batches   text/csv, once, while Open → 201
//	PATCH /services/data/vXX.X/jobs/ingest/<id>     {"state": "UploadComplete" | "Aborted"} → job info
//	GET   /services/data/vXX.X/jobs/ingest/<id>     job info: state Open, UploadComplete, InProgress, JobComplete, Failed or Aborted
//	GET   …/<id>/successfulResults/  "sf__Id","sf__Created",<the uploaded columns>
//	GET   …/<id>/failedResults/      "sf__Id","sf__Error",<the uploaded columns>; sf__Error is CODE:message:fields --
//	GET   …/<id>/unprocessedrecords/ <the uploaded columns>
//
// The rows are applied when the upload is complete; the job reads as
// InProgress for WithBulkDelay and then JobComplete (or Failed, see
// FailNextJob). A job's rows are applied in parallel chunks: with
// WithParentLocks, a row whose parent record another chunk also writes
// fails with UNABLE_TO_LOCK_ROW, as when Salesforce locks a parent for a
// child's write.

type job struct {
	info            jobInfo
	header          []string
	rows            [][]string
	uploaded        bool
	success, failed [][]string
	unprocessed     [][]string
	doneAt          time.Time
	final           string // the state once doneAt passes
	failAfter       int    // rows processed before the job fails; -1: it does not
}

type jobInfo struct {
	ID                     string  `json:"id"`
	Operation              string  `json:"operation"`
	Object                 string  `json:"object"`
	CreatedByID            string  `json:"createdById"`
	CreatedDate            string  `json:"createdDate"`
	SystemModstamp         string  `json:"systemModstamp"`
	State                  string  `json:"state"`
	ExternalIDFieldName    string  `json:"externalIdFieldName"`
	ConcurrencyMode        string  `json:"concurrencyMode"`
	ContentType            string  `json:"contentType"`
	APIVersion             float64 `json:"apiVersion"`
	JobType                string  `json:"jobType"`
	ContentURL             string  `json:"contentUrl,omitempty"`
	LineEnding             string  `json:"lineEnding"`
	ColumnDelimiter        string  `json:"columnDelimiter"`
	NumberRecordsProcessed int     `json:"numberRecordsProcessed"`
	NumberRecordsFailed    int     `json:"numberRecordsFailed"`
	Retries                int     `json:"retries"`
	TotalProcessingTime    int     `json:"totalProcessingTime"`
	ErrorMessage           string  `json:"errorMessage,omitempty"`
}

// WithBulkDelay keeps each closed job InProgress for d.
func WithBulkDelay(d time.Duration) Option { return func(o *options) { o.bulkDelay = d } }

// WithParentLocks makes the org apply a job's rows in parallel chunks of
// chunk rows, where a row whose parent (the lookup field) another chunk
// also writes fails with UNABLE_TO_LOCK_ROW.
func WithParentLocks(field string, chunk int) Option {
	return func(o *options) { o.parentField, o.bulkChunk = field, chunk }
}

// FailNextJob makes the next job closed fail whole after processing its
// first processed rows; the rest are in its unprocessedrecords.
func (s *Server) FailNextJob(processed int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failJobs = append(s.failJobs, processed)
}

// FailNextUpload answers the next n job uploads with status and errorCode.
func (s *Server) FailNextUpload(n, status int, code string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failUploads = append(s.failUploads, fault{status: status, code: code, left: n})
}

// JobDone is when the last job that processed the row of this external
// id finished (or finishes); zero when no job did.
func (s *Server) JobDone(externalID string) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if j := s.rowJob[externalID]; j != nil {
		return j.doneAt
	}
	return time.Time{}
}

// Jobs is how many ingest jobs were created; JobRows how many rows each
// closed job held, in order.
func (s *Server) Jobs() int { s.mu.Lock(); defer s.mu.Unlock(); return len(s.jobOrder) }

// JobRows reports the rows uploaded to each job, in the order created.
func (s *Server) JobRows() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []int
	for _, id := range s.jobOrder {
		out = append(out, len(s.jobs[id].rows))
	}
	return out
}

func (s *Server) createJob(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Object, Operation, ExternalIDFieldName, ContentType, LineEnding, ColumnDelimiter string
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, []apiError{{Message: "Unexpected character: " + err.Error(), ErrorCode: "JSON_PARSER_ERROR"}})
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case req.Object != s.opts.object:
		writeJSON(w, http.StatusBadRequest, []apiError{{Message: "sObject type '" + req.Object + "' is not supported.", ErrorCode: "INVALIDENTITY"}})
		return
	case req.Operation != "upsert":
		writeJSON(w, http.StatusBadRequest, []apiError{{Message: "the fake org takes upsert jobs only, not " + req.Operation, ErrorCode: "INVALIDJOB"}})
		return
	case req.ExternalIDFieldName != s.opts.externalID:
		writeJSON(w, http.StatusBadRequest, []apiError{{Message: "External ID was blank or not an External ID field: " + req.ExternalIDFieldName, ErrorCode: "INVALIDJOB"}})
		return
	case req.ContentType != "" && req.ContentType != "CSV", req.LineEnding != "" && req.LineEnding != "LF",
		req.ColumnDelimiter != "" && req.ColumnDelimiter != "COMMA":
		writeJSON(w, http.StatusBadRequest, []apiError{{Message: "the fake org takes CSV with LF line endings and commas", ErrorCode: "INVALIDJOB"}})
		return
	}
	s.seq++
	id := fmt.Sprintf("750%015d", s.seq)
	now := time.Now().UTC().Format("2006-01-02T15:04:05.000+0000")
	j := &job{failAfter: -1, info: jobInfo{
		ID: id, Operation: "upsert", Object: req.Object, CreatedByID: "005000000000001", CreatedDate: now, SystemModstamp: now,
		State: "Open", ExternalIDFieldName: req.ExternalIDFieldName, ConcurrencyMode: "Parallel", ContentType: "CSV",
		APIVersion: 61.0, JobType: "V2Ingest", ContentURL: "services/data/" + r.PathValue("version") + "/jobs/ingest/" + id + "/batches",
		LineEnding: "LF", ColumnDelimiter: "COMMA",
	}}
	s.jobs[id] = j
	s.jobOrder = append(s.jobOrder, id)
	writeJSON(w, http.StatusOK, j.info)
}

// jobOf finds the path's job, answering 404 when there is none.
func (s *Server) jobOf(w http.ResponseWriter, r *http.Request) *job {
	j := s.jobs[r.PathValue("id")]
	if j == nil {
		writeJSON(w, http.StatusNotFound, []apiError{{Message: "The requested resource does not exist", ErrorCode: "NOT_FOUND"}})
	}
	return j
}

func (s *Server) uploadJob(w http.ResponseWriter, r *http.Request) {
	data, err := io.ReadAll(io.LimitReader(r.Body, 150<<20))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, []apiError{{Message: "reading the upload: " + err.Error(), ErrorCode: "INVALIDJOB"}})
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.jobOf(w, r)
	if j != nil && len(s.failUploads) > 0 {
		f := &s.failUploads[0]
		if f.left--; f.left <= 0 {
			s.failUploads = s.failUploads[1:]
		}
		writeJSON(w, f.status, []apiError{{Message: "injected " + f.code, ErrorCode: f.code}})
		return
	}
	switch {
	case j == nil:
		return
	case !strings.HasPrefix(r.Header.Get("Content-Type"), "text/csv"):
		writeJSON(w, http.StatusBadRequest, []apiError{{Message: "Content-Type must be text/csv", ErrorCode: "INVALIDJOB"}})
		return
	case j.info.State != "Open" || j.uploaded:
		writeJSON(w, http.StatusConflict, []apiError{{Message: "Job data can be uploaded once, while the job is Open; it is " + j.info.State, ErrorCode: "INVALIDJOBSTATE"}})
		return
	}
	recs, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
	if err != nil || len(recs) == 0 {
		writeJSON(w, http.StatusBadRequest, []apiError{{Message: fmt.Sprintf("ClientInputError : unreadable CSV: %v", err), ErrorCode: "INVALIDJOB"}})
		return
	}
	j.header, j.rows, j.uploaded = recs[0], recs[1:], true
	w.WriteHeader(http.StatusCreated)
}

func (s *Server) closeJob(w http.ResponseWriter, r *http.Request) {
	var req struct{ State string }
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, []apiError{{Message: "Unexpected character: " + err.Error(), ErrorCode: "JSON_PARSER_ERROR"}})
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.jobOf(w, r)
	if j == nil {
		return
	}
	switch {
	case req.State == "Aborted" && (j.info.State == "Open" || j.info.State == "UploadComplete"):
		j.info.State = "Aborted"
	case req.State == "UploadComplete" && j.info.State == "Open" && j.uploaded:
		if len(s.failJobs) > 0 {
			j.failAfter, s.failJobs = s.failJobs[0], s.failJobs[1:]
		}
		j.doneAt = time.Now().Add(s.opts.bulkDelay)
		s.process(j)
		j.info.State, j.info.ContentURL = "UploadComplete", ""
	default:
		writeJSON(w, http.StatusConflict, []apiError{{Message: fmt.Sprintf("Cannot change the state of a job from %s to %s", j.info.State, req.State), ErrorCode: "INVALIDJOBSTATE"}})
		return
	}
	writeJSON(w, http.StatusOK, j.info)
}

// process applies the rows: each as one upsert of the REST API, without
// the duplicate rule header Bulk jobs cannot send.
func (s *Server) process(j *job) {
	ext := -1
	for i, h := range j.header {
		if h == s.opts.externalID {
			ext = i
		}
	}
	chunkOf := map[string]int{} // parent id -> the first chunk that writes it
	parents := s.parentsByChunk(j)
	j.final = "JobComplete"
	for i, row := range j.rows {
		if j.failAfter >= 0 && i >= j.failAfter {
			j.unprocessed = append(j.unprocessed, row)
			continue
		}
		rec := map[string]any{"attributes": map[string]any{"type": s.opts.object}}
		for c, v := range row {
			if c < len(j.header) && v != "" && v != "#N/A" {
				rec[j.header[c]] = v
			}
		}
		var res result
		if p := s.parentOf(j, row); p != "" && parents[p] > 1 && chunkOf[p] != 0 && chunkOf[p]-1 != i/s.chunk() {
			res = failed("UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access to this record or 1 records: "+p)
		} else {
			if p != "" && chunkOf[p] == 0 {
				chunkOf[p] = i/s.chunk() + 1
			}
			res = s.upsertOne(rec, false)
		}
		j.info.NumberRecordsProcessed++
		if ext >= 0 && ext < len(row) {
			s.rowJob[row[ext]] = j
		}
		if res.Success {
			j.success = append(j.success, append([]string{res.ID, fmt.Sprint(res.Created)}, row...))
			continue
		}
		j.info.NumberRecordsFailed++
		e := res.Errors[0]
		var id string
		if ext >= 0 && ext < len(row) {
			id = s.ids[row[ext]]
		}
		j.failed = append(j.failed, append([]string{id, e.StatusCode + ":" + e.Message + ":" + strings.Join(e.Fields, ",") + " --"}, row...))
	}
	if j.failAfter >= 0 {
		j.final, j.info.ErrorMessage = "Failed", "InternalServerError : the job stopped after "+fmt.Sprint(j.failAfter)+" records"
	}
}

func (s *Server) chunk() int {
	if s.opts.bulkChunk > 0 {
		return s.opts.bulkChunk
	}
	return 10_000
}

func (s *Server) parentOf(j *job, row []string) string {
	if s.opts.parentField == "" {
		return ""
	}
	for c, h := range j.header {
		if h == s.opts.parentField && c < len(row) {
			return row[c]
		}
	}
	return ""
}

// parentsByChunk counts, for each parent, how many chunks write it.
func (s *Server) parentsByChunk(j *job) map[string]int {
	seen := map[string]map[int]bool{}
	for i, row := range j.rows {
		if p := s.parentOf(j, row); p != "" {
			if seen[p] == nil {
				seen[p] = map[int]bool{}
			}
			seen[p][i/s.chunk()] = true
		}
	}
	out := map[string]int{}
	for p, chunks := range seen {
		out[p] = len(chunks)
	}
	return out
}

// settle moves a closed job to its final state once its time has come.
func (j *job) settle(now time.Time) {
	if (j.info.State == "UploadComplete" || j.info.State == "InProgress") && !now.Before(j.doneAt) {
		j.info.State = j.final
		return
	}
	if j.info.State == "UploadComplete" {
		j.info.State = "InProgress"
	}
}

func (s *Server) jobInfo(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if j := s.jobOf(w, r); j != nil {
		j.settle(time.Now())
		writeJSON(w, http.StatusOK, j.info)
	}
}

func (s *Server) jobResults(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.jobOf(w, r)
	if j == nil {
		return
	}
	j.settle(time.Now())
	if j.info.State != "JobComplete" && j.info.State != "Failed" {
		writeJSON(w, http.StatusConflict, []apiError{{Message: "results are available once the job is complete; it is " + j.info.State, ErrorCode: "INVALIDJOBSTATE"}})
		return
	}
	var header []string
	var rows [][]string
	switch r.PathValue("results") {
	case "successfulResults":
		header, rows = append([]string{"sf__Id", "sf__Created"}, j.header...), j.success
	case "failedResults":
		header, rows = append([]string{"sf__Id", "sf__Error"}, j.header...), j.failed
	case "unprocessedrecords":
		header, rows = j.header, j.unprocessed
	default:
		writeJSON(w, http.StatusNotFound, []apiError{{Message: "The requested resource does not exist", ErrorCode: "NOT_FOUND"}})
		return
	}
	w.Header().Set("Content-Type", "text/csv")
	cw := csv.NewWriter(w)
	_ = cw.Write(header)
	_ = cw.WriteAll(rows)
}
