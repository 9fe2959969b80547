package salesforce

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/relaydev/relay/relay/sink"
)

// request is one call to the org's API.
type request struct {
	method, path string // path below the instance, from /services/…
	body         []byte
	contentType  string            // of body; application/json when empty
	header       map[string]string // more headers
	maxBody      int64             // the most of the answer read; 8 MiB when 0
}

// send makes one call: within the concurrent calls allowed, counted in the
// budget, the token refreshed and the call made once more on a 401.
func (s *Sink) send(ctx context.Context, r request) (*http.Response, []byte, error) {
	for try := 0; ; try++ {
		tok, err := s.tokens.get(ctx)
		if err != nil {
			return nil, nil, err
		}
		resp, data, err := s.do(ctx, tok, r)
		if err != nil {
			return nil, nil, err
		}
		if resp.StatusCode == http.StatusUnauthorized && try == 0 {
			s.tokens.invalidate(tok)
			continue
		}
		return resp, data, nil
	}
}

// do makes one authorized call and reads its answer.
func (s *Sink) do(ctx context.Context, tok *token, r request) (*http.Response, []byte, error) {
	for _, slots := range []chan struct{}{s.calls, s.orgCalls} { // the destination's, then the org's
		select {
		case slots <- struct{}{}:
			defer func() { <-slots }()
		case <-ctx.Done():
			return nil, nil, &sink.DeliveryError{Kind: sink.Retry, Err: fmt.Errorf("waiting for a call slot: %w", ctx.Err())}
		}
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var rd io.Reader
	if r.body != nil {
		rd = bytes.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, tok.instance+r.path, rd)
	if err != nil {
		return nil, nil, &sink.DeliveryError{Kind: sink.Permanent, Err: fmt.Errorf("build request: %w", sink.WithoutURL(err))}
	}
	if r.body != nil {
		ct := r.contentType
		if ct == "" {
			ct = "application/json"
		}
		req.Header.Set("Content-Type", ct)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", "Bearer "+tok.access)
	if d, ok := ctx.Value(traceKey{}).(*sink.Delivery); ok {
		sink.TraceHeaders(req.Header, d)
	}
	for k, v := range r.header {
		req.Header.Set(k, v)
	}
	s.budget.spend(time.Now())
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, nil, transportError(err)
	}
	defer resp.Body.Close()
	s.budget.observe(resp.Header)
	limit := r.maxBody
	if limit == 0 {
		limit = 8 << 20
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	if err != nil {
		return nil, nil, &sink.DeliveryError{Kind: sink.Retry, Status: resp.StatusCode, Err: fmt.Errorf("read response: %w", err)}
	}
	return resp, data, nil
}
