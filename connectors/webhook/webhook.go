package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/relaydev/relay/config"
	"github.com/relaydev/relay/connectors/netguard"
	"github.com/relaydev/relay/relay/expr"
	"github.com/relaydev/relay/relay/sink"
)

// Options are what a webhook sink needs besides its destination's config.
type Options struct {
	Resolver *net.Resolver    // nil: the system's
	Now      func() time.Time // nil: time.Now; stamps each attempt
	// Transports, when set, gives the sink a connection pool shared with
	// the process's other webhook destinations; nil: a pool of its own,
	// up to max_in_flight connections.
	Transports *Transports
}

// Sink delivers activities to one webhook destination.
type Sink struct {
	url       string
	keys      [][]byte
	headers   http.Header
	body      *expr.Program // nil: the default envelope
	maxBody   int           // bounds what body produces
	timeout   time.Duration
	client    *http.Client
	transport *http.Transport // nil when shared
	now       func() time.Time
}

var _ sink.Sink = (*Sink)(nil)

const (
	// maxResponse is how much of a response body is read.
	maxResponse = 4 << 10
	// defaultTimeout bounds an attempt when the destination sets no timeout.
	defaultTimeout = 10 * time.Second
)

// New builds a sink; its HTTP client refuses internal addresses unless
// allow_private_network, and shares opts.Transports' connections (or keeps
// up to max_in_flight of its own warm).
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
	rt := opts.Transports.For(d.AllowPrivateNetwork)
	if rt == nil {
		s.transport = newTransport(max(1, d.MaxInFlight), netguard.DialContext(d.AllowPrivateNetwork, opts.Resolver))
		rt = s.transport
	}
	s.client = &http.Client{Transport: rt, CheckRedirect: noRedirects}
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

// newTransport keeps up to conns connections warm; it refuses what dial
// refuses. net/http sends a request again by itself only when a kept-alive
// connection turns out closed by the receiver before any byte of it was
// written: the receiver saw nothing, and the attempt is still one request.
func newTransport(conns int, dial func(ctx context.Context, network, addr string) (net.Conn, error)) *http.Transport {
	return &http.Transport{
		Proxy:                  nil, // a proxy would dial for us, past the guard
		DialContext:            dial,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           conns,
		MaxIdleConnsPerHost:    conns,
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

// post sends one signed request on one connection and classifies the
// response, of which it reads at most maxResponse bytes. A transport
// failure is the attempt's failure: the durable schedule retries it.
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
func (s *Sink) request(ctx context.Context, d *sink.Delivery, body []byte) (*http.Request, error) {
	id := d.Activity.ID
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("build request: %w", sink.WithoutURL(err))
	}
	ts := s.now()
	h := make(http.Header, len(s.headers)+3)
	for k, v := range s.headers { // shared, never changed: the keys below replace a value
		h[k] = v
	}
	h["Webhook-Id"] = []string{id}
	h["Webhook-Timestamp"] = []string{strconv.FormatInt(ts.Unix(), 10)}
	h["Webhook-Signature"] = []string{Sign(s.keys, id, ts, body)}
	sink.TraceHeaders(h, d)
	req.Header = h
	return req, nil
}

// Close drops the sink's own idle connections; a shared pool stays.
func (s *Sink) Close() {
	if s.transport != nil {
		s.transport.CloseIdleConnections()
	}
}
