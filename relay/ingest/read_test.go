package ingest

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/relaydev/relay/relay/metrics"
)

// failingBody fails a read with err, as a connection that times out or
// breaks does.
type failingBody struct{ err error }

func (b failingBody) Read([]byte) (int, error) { return 0, b.err }
func (b failingBody) Close() error             { return nil }

// TestReadErrorsNameNoAddress: a body that cannot be read is 408 on a
// timeout, 400 otherwise, and the answer repeats no socket address.
func TestReadErrorsNameNoAddress(t *testing.T) {
	src := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080}
	dst := &net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 51234}
	tests := []struct {
		name   string
		err    error
		status int
	}{
		{"timeout", &net.OpError{Op: "read", Net: "tcp", Source: src, Addr: dst, Err: os.ErrDeadlineExceeded}, http.StatusRequestTimeout},
		{"reset", &net.OpError{Op: "read", Net: "tcp", Source: src, Addr: dst, Err: errors.New("connection reset by peer")}, http.StatusBadRequest},
		{"cut short", io.ErrUnexpectedEOF, http.StatusBadRequest},
	}
	in := &Ingest{MaxBody: 1 << 20, Inflight: NewByteBudget(1 << 20), Metrics: metrics.New()}
	for _, tc := range tests {
		req := httptest.NewRequest("POST", "/v1/activities", nil)
		req.Body = failingBody{tc.err}
		req.ContentLength = 100
		w := httptest.NewRecorder()
		if body, _ := in.read(w, req); body != nil {
			t.Fatalf("%s: read succeeded", tc.name)
		}
		if w.Code != tc.status || strings.Contains(w.Body.String(), "10.1.2.3") || strings.Contains(w.Body.String(), "127.0.0.1") {
			t.Errorf("%s: %d %s", tc.name, w.Code, w.Body)
		}
		if in.Inflight.used.Load() != 0 {
			t.Errorf("%s: the budget was not given back", tc.name)
		}
	}
}

func TestByteBudget(t *testing.T) {
	b := NewByteBudget(100)
	if !b.Take(60) || b.Take(50) || !b.Take(40) || b.Take(1) {
		t.Fatal("budget of 100: 60 then 50 (refused) then 40 then 1 (refused)")
	}
	b.Give(60)
	b.Give(40)
	if !b.Take(150) { // larger than the whole budget: runs alone
		t.Fatal("a request larger than the budget must run when nothing else does")
	}
	if b.Take(1) {
		t.Fatal("nothing runs beside an oversized request")
	}
}
