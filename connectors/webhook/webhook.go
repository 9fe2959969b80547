package webhook

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/hashicorp/go-retryablehttp"

	"github.com/relaydev/relay/config"
	"github.com/relaydev/relay/connectors/netguard"
	"github.com/relaydev/relay/relay/expr"
	"github.com/relaydev/relay/relay/sink"
)

// Options are what a webhook sink needs besides its destination's config.
type Options struct {
	Logger   *slog.Logger     // nil: no logging
	Resolver *net.Resolver    // nil: the system's
	Now      func() time.Time // nil: time.Now; stamps each attempt
}

// Sink delivers activities to one webhook destination.
type Sink struct {
	url       string
	keys      [][]byte
	headers   http.Header
	body      *expr.Program // nil: the default envelope
	maxBody   int           // bounds what body produces
	timeout   time.Duration
	client    *retryablehttp.Client
	transport *http.Transport
	now       func() time.Time
}

var _ sink.Sink = (*Sink)(nil)

const (
	// maxResponse is how much of a response body is read.
	maxResponse = 4 << 10
	// defaultTimeout bounds an attempt when the destination sets no timeout.
	defaultTimeout = 10 * time.Second
)

// New builds a sink; its HTTP client keeps up to max_in_flight connections
// warm and refuses internal addresses unless allow_private_network.
func New(d config.Destination, opts Options) (*Sink, error) {
	if u, err := url.Parse(d.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("url: want an absolute http or https URL")
	}
	keys, err := parseSecrets(d.Secrets)
	if err != nil {
		return nil, err
	}
	s := &Sink{url: d.URL, keys: keys, headers: headers(d.Headers), timeout: time.Duration(d.Timeout), now: opts.Now, maxBody: int(d.MaxBody)}
	if d.Body != "" {
		prg, cerr := expr.Compile(d.Body, expr.Object)
		if cerr != nil {
			return nil, fmt.Errorf("body: %w", cerr)
		}
		s.body = prg
	}
	if s.timeout <= 0 {
		s.timeout = defaultTimeout
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.transport = newTransport(d, opts.Resolver)
	s.client = newClient(&http.Client{Transport: s.transport, CheckRedirect: noRedirects}, opts.Logger)
	return s, nil
}

func parseSecrets(secrets []config.Secret) ([][]byte, error) {
	if len(secrets) == 0 {
		return nil, errors.New("secrets: at least one is needed to sign with")
	}
	keys := make([][]byte, len(secrets))
	for i, sec := range secrets {
		key, err := ParseSecret(sec.Value())
		if err != nil {
			return nil, fmt.Errorf("secrets[%d]: %w", i, err)
		}
		keys[i] = key
	}
	return keys, nil
}

// headers are the configured extra headers, then the ones Relay owns.
func headers(extra map[string]string) http.Header {
	h := make(http.Header, len(extra)+5)
	for k, v := range extra {
		h.Set(k, v)
	}
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", "Relay/1")
	return h
}

func newTransport(d config.Destination, resolver *net.Resolver) *http.Transport {
	conns := max(1, d.MaxInFlight)
	return &http.Transport{
		Proxy:                  nil, // a proxy would dial for us, past the guard
		DialContext:            netguard.DialContext(d.AllowPrivateNetwork, resolver),
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           conns,
		MaxIdleConnsPerHost:    conns,
		MaxConnsPerHost:        conns,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    10 * time.Second,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: 64 << 10,
	}
}

// noRedirects makes the client return a 3xx as it is: a redirect is never
// followed (it could lead anywhere, and the signature is not for there).
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// Deliver makes one attempt: a signed POST, headers and body bounded by the
// destination's timeout. A body expression that fails to evaluate makes a
// dead letter at once: another attempt would fail the same way.
func (s *Sink) Deliver(ctx context.Context, d *sink.Delivery) sink.Attempt {
	at, start := s.now(), time.Now()
	body, err := s.payload(d)
	status := 0
	if err == nil {
		status, err = s.post(ctx, d, body)
	}
	lat := time.Since(start)
	a := sink.Attempt{At: at.UTC(), Status: status, Latency: lat, LatencyMS: float64(lat.Microseconds()) / 1000, Err: err}
	if err != nil {
		a.Error = err.Error()
	}
	return a
}

// payload is the request body: the envelope, or the body expression's value.
func (s *Sink) payload(d *sink.Delivery) ([]byte, error) {
	if s.body == nil {
		return Body(d.Activity, d.Raw), nil
	}
	body, err := sink.EvalBody(s.body, d, s.maxBody)
	if err != nil {
		return nil, &sink.DeliveryError{Kind: sink.Permanent, Err: err}
	}
	return body, nil
}

// post sends one signed request (retrying transport failures briefly) and
// classifies the response, of which it reads at most maxResponse bytes.
func (s *Sink) post(ctx context.Context, d *sink.Delivery, body []byte) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := s.request(ctx, d, body)
	if err != nil {
		return 0, &sink.DeliveryError{Kind: sink.Permanent, Err: err}
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, transportError(err, s.timeout)
	}
	defer resp.Body.Close() // unread bytes close the connection rather than being read
	head, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	return resp.StatusCode, classify(resp, head, s.now())
}

// request is the signed POST, stamped now: webhook-id is the activity id,
// the same on every attempt and replay; traceparent continues the
// activity's trace.
func (s *Sink) request(ctx context.Context, d *sink.Delivery, body []byte) (*retryablehttp.Request, error) {
	id := d.Activity.ID
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodPost, s.url, body)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", sink.WithoutURL(err))
	}
	ts := s.now()
	for k, v := range s.headers { // shared, never changed: Set replaces a value
		req.Header[k] = v
	}
	req.Header.Set("webhook-id", id)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(ts.Unix(), 10))
	req.Header.Set("webhook-signature", Sign(s.keys, id, ts, body))
	sink.TraceHeaders(req.Header, d)
	return req, nil
}

// Close drops idle connections.
func (s *Sink) Close() { s.transport.CloseIdleConnections() }
