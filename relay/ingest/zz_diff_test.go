package ingest

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"net"
	"net/http/httptest"
	"os"
	"reflect"
	"testing"

	"github.com/relaydev/relay/config"
)

var diffSeeds = []string{
	`{"type":"email","action":"open","identifiers":{"email":"a@b"},"data":{"idempotence_id":"x1","ts":1700000000}}`,
	`{"type":"","action":5,"identifiers":{},"data":{"Idempotence_ID":"x","TS":"y","ts":"2026-11-22T10:00:00Z"}}`,
	`{"Type":"x","extra":1,"type":3,"identifiers":[],"data":[]}`,
	`{"type":"x","identifiers":null,"data":null}`,
	`{"type":"x","identifiers":{"e":1},"data":{"idempotence_id":7,"ts":true}}`,
	`[1,"a",null,{"type":"pageview","identifiers":{"e":1}}]`,
	`{"activity":{"field_id":"act::o","id":"a1","created":"2026-11-22T10:00:00Z","attr":{"x":1}},"contact":{"id":"c"},"id":"p1","time":1700000000,"webhook_id":"w"}`,
	`{"activity":{"field_id":"act::test_webhook"},"contact":{"id":"c"}}`,
	`{"activity":{"field_id":"act:cm:placed-order","attr":{"ortto_field_id":"z"}},"contact":[],"id":5,"time":"bad"}`,
	`{"Activity":{},"activity":{"Field_ID":"x","field_id":"nope","ID":1,"extra":2},"Contact":1,"foo":2}`,
	`{"activity":null}`, `{"activity":[]}`, `{"activity":{"field_id":null,"attr":5}}`,
	`{"activity":{"field_id":"act::o","id":"","created":null},"id":"","time":null}`,
	`{"activity":{"field_id":"act:zz:unknown","attr":{}},"id":"p"}`,
	`{"activity":{"field_id":"act::test_webhook","attr":3}}`,
	`{"activity":{"field_id":"act::o","created":"1e400"},"time":5}`,
}

func FuzzDiffItems(f *testing.F) {
	for _, s := range diffSeeds {
		f.Add([]byte(s))
	}
	srcs := []*OrttoSource{
		NewOrttoSource(config.Ortto{}),
		NewOrttoSource(config.Ortto{Unmapped: "ortto.activity"}),
		NewOrttoSource(config.Ortto{ActivityIDs: map[string]string{"act:cm:placed-order": "order.placed"}}),
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		items, _, err := splitItems(body, 50)
		if err != nil {
			return
		}
		for _, it := range items {
			a, ae := odpItem(it)
			b, be := oldOdpItem(it)
			if !reflect.DeepEqual(a, b) || !reflect.DeepEqual(ae, be) {
				t.Fatalf("odp %s:\n%+v %+v\n%+v %+v", it, a, ae, b, be)
			}
			for _, o := range srcs {
				a, ai, ae := o.item(it)
				b, bi, be := o.oldItem(it)
				if !reflect.DeepEqual(a, b) || !reflect.DeepEqual(ai, bi) || !reflect.DeepEqual(ae, be) {
					t.Fatalf("ortto %s:\n%+v %q %+v\n%+v %q %+v", it, a, ai, ae, b, bi, be)
				}
			}
		}
	})
}

func gz(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

type readCase struct {
	ctype, enc string
	body       []byte
	clen       int64 // -2: len(body)
	failErr    error
	maxBody    int64
	budget     int64
	held       int64
}

func runRead(t *testing.T, c readCase, old bool) (int, string, string, string, int64, bool) {
	in := &Ingest{MaxBody: c.maxBody, Inflight: NewByteBudget(c.budget)}
	if c.held > 0 {
		in.Inflight.Take(c.held)
	}
	req := httptest.NewRequest("POST", "/v1/activities", bytes.NewReader(c.body))
	if c.failErr != nil {
		req.Body = io.NopCloser(io.MultiReader(bytes.NewReader(c.body), failingBody{c.failErr}))
	}
	req.ContentLength = c.clen
	if c.clen == -2 {
		req.ContentLength = int64(len(c.body))
	}
	if c.ctype != "" {
		req.Header.Set("Content-Type", c.ctype)
	}
	if c.enc != "" {
		req.Header.Set("Content-Encoding", c.enc)
	}
	w := httptest.NewRecorder()
	var body *bytes.Buffer
	var release func()
	if old {
		body, release = in.oldRead(w, req)
	} else {
		body, release = in.read(w, req)
	}
	got := ""
	if body != nil {
		got = body.String()
	}
	usedBefore := in.Inflight.used.Load()
	if release != nil {
		release()
	}
	return w.Code, w.Body.String(), w.Header().Get("Retry-After") + "|" + w.Header().Get("Content-Type"), got, usedBefore*1000 + in.Inflight.used.Load(), body != nil
}

func FuzzDiffRead(f *testing.F) {
	f.Add("", "", []byte(`{"a":1}`), int64(-2), 0, int64(100), int64(1000), int64(0))
	f.Add("application/json", "gzip", gz([]byte(`{"a":1}`)), int64(-2), 0, int64(100), int64(1000), int64(0))
	f.Add("application/json", "gzip", gz(bytes.Repeat([]byte("a"), 500)), int64(-1), 0, int64(100), int64(1000), int64(0))
	f.Add("application/json", "gzip", gz(bytes.Repeat([]byte("a"), 100)), int64(-1), 0, int64(100), int64(1000), int64(0))
	f.Add("application/json", "gzip", gz(bytes.Repeat([]byte("a"), 101)), int64(-1), 0, int64(100), int64(1000), int64(0))
	f.Add("application/json", "gzip", []byte("not gzip at all"), int64(-2), 0, int64(100), int64(1000), int64(0))
	f.Add("application/json", "gzip", gz([]byte(`{"a":1}`))[:15], int64(-2), 0, int64(100), int64(1000), int64(0))
	f.Add("application/json", "gzip", gz([]byte(`{"a":1}`)), int64(-2), 1, int64(100), int64(1000), int64(0))
	f.Add("text/plain", "", []byte(`x`), int64(-2), 0, int64(100), int64(1000), int64(0))
	f.Add("application/json; charset=latin1", "", []byte(`x`), int64(-2), 0, int64(100), int64(1000), int64(0))
	f.Add(";;", "br", []byte(`x`), int64(-2), 0, int64(100), int64(1000), int64(0))
	f.Add("", "br, gzip", []byte(`x`), int64(-2), 0, int64(100), int64(1000), int64(0))
	f.Add("", "", bytes.Repeat([]byte("a"), 200), int64(-2), 0, int64(100), int64(1000), int64(0))
	f.Add("", "", bytes.Repeat([]byte("a"), 200), int64(-1), 0, int64(100), int64(1000), int64(0))
	f.Add("", "", []byte(`{}`), int64(-2), 0, int64(100), int64(1000), int64(999))
	f.Add("", "", []byte(`{}`), int64(-2), 2, int64(100), int64(1000), int64(0))
	f.Add("", "x-gzip", []byte(`{}`), int64(-2), 3, int64(100), int64(1000), int64(0))
	f.Fuzz(func(t *testing.T, ctype, enc string, body []byte, clen int64, fail int, maxBody, budget, held int64) {
		if maxBody < 0 || maxBody > 1<<20 || budget > 1<<30 || held < 0 || held > 1<<30 || len(body) > 1<<16 {
			return
		}
		if clen > int64(len(body)) || clen < -2 {
			clen = -1
		}
		c := readCase{ctype: ctype, enc: enc, body: body, clen: clen, maxBody: maxBody, budget: budget, held: held}
		switch fail % 4 {
		case 1:
			c.failErr = &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}
		case 2:
			c.failErr = io.ErrUnexpectedEOF
		case 3:
			c.failErr = errors.New("reset")
		}
		a1, a2, a3, a4, a5, a6 := runRead(t, c, false)
		b1, b2, b3, b4, b5, b6 := runRead(t, c, true)
		if a1 != b1 || a2 != b2 || a3 != b3 || a4 != b4 || a5 != b5 || a6 != b6 {
			t.Fatalf("read %+v:\nnew %d %s %s %q %d %v\nold %d %s %s %q %d %v", c, a1, a2, a3, a4, a5, a6, b1, b2, b3, b4, b5, b6)
		}
	})
}
