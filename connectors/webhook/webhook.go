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
	"github.com/relaydev/relay/relay"
)

// Options are what a webhook sink needs besides its destination's config.
type Options struct {
	Logger   *slog.Logger
	Resolver *net.Resolver    // nil: the system's
	Now      func() time.Time // nil: time.Now
}

// Sink delivers activities to one webhook destination.
type Sink struct {
	url       string
	keys      [][]byte
	headers   http.Header
	timeout   time.Duration
	client    *retryablehttp.Client
	transport *http.Transport
	now       func() time.Time
}

var _ relay.Sink = (*Sink)(nil)

// maxResponse is how much of a response body is read.
const maxResponse = 4 << 10

// New builds a sink; its HTTP client keeps up to max_in_flight connections
// warm and refuses internal addresses unless allow_private_network.
func New(d config.Destination, opts Options) (*Sink, error) {
	s := &Sink{url: d.URL, timeout: time.Duration(d.Timeout), now: opts.Now, headers: http.Header{}}
	if s.now == nil {
		s.now = time.Now
	}
	for i, sec := range d.Secrets {
		key, err := ParseSecret(sec.Value())
		if err != nil {
			return nil, fmt.Errorf("secrets[%d]: %w", i, err)
		}
		s.keys = append(s.keys, key)
	}
	if len(s.keys) == 0 {
		return nil, errors.New("no secrets to sign with")
	}
	for k, v := range d.Headers {
		s.headers.Set(k, v)
	}
	s.headers.Set("Content-Type", "application/json")
	s.headers.Set("User-Agent", "Relay/1")
	s.transport = newTransport(d, opts.Resolver)
	s.client = newClient(s.transport, opts.Logger)
	return s, nil
}

func newTransport(d config.Destination, resolver *net.Resolver) *http.Transport {
	conns := max(1, d.MaxInFlight)
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           netguard.DialContext(d.AllowPrivateNetwork, resolver),
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          conns,
		MaxIdleConnsPerHost:   conns,
		MaxConnsPerHost:       conns,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		ResponseHeaderTimeout: time.Duration(d.Timeout),
	}
}

// newClient retries only transport failures before any response, twice and
// quickly; statuses are classified and retried on the durable schedule.
func newClient(t *http.Transport, log *slog.Logger) *retryablehttp.Client {
	c := retryablehttp.NewClient()
	c.HTTPClient = &http.Client{
		Transport: t,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse // never follow redirects
		},
	}
	c.RetryMax = 2
	c.RetryWaitMin = 50 * time.Millisecond
	c.RetryWaitMax = 500 * time.Millisecond
	c.Logger = nil
	if log != nil {
		c.Logger = slogAdapter{log}
	}
	c.ErrorHandler = retryablehttp.PassthroughErrorHandler
	c.CheckRetry = func(ctx context.Context, resp *http.Response, err error) (bool, error) {
		if ctx.Err() != nil || resp != nil || err == nil {
			return false, nil
		}
		var blocked *netguard.BlockedError
		if errors.As(err, &blocked) {
			return false, nil
		}
		return true, nil
	}
	return c
}

// Deliver makes one attempt: a signed POST bounded by the destination's timeout.
func (s *Sink) Deliver(ctx context.Context, d *relay.Delivery) relay.Attempt {
	start := s.now()
	status, err := s.post(ctx, d, Body(d.Activity, d.Raw))
	lat := time.Since(start)
	return relay.Attempt{At: start.UTC(), Status: status, Latency: lat, LatencyMS: float64(lat.Microseconds()) / 1000, Err: err}
}

func (s *Sink) post(ctx context.Context, d *relay.Delivery, body []byte) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodPost, s.url, body)
	if err != nil {
		return 0, &relay.DeliveryError{Kind: relay.Permanent, Err: fmt.Errorf("build request: %w", err)}
	}
	for k, v := range s.headers {
		req.Header[k] = v
	}
	ts := s.now()
	id := d.Activity.ID
	req.Header.Set("webhook-id", id)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(ts.Unix(), 10))
	req.Header.Set("webhook-signature", Sign(s.keys, id, ts, body))
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, transportError(err, s.timeout)
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	return resp.StatusCode, classify(resp, snippet)
}

// Close drops idle connections.
func (s *Sink) Close() { s.transport.CloseIdleConnections() }

func transportError(err error, timeout time.Duration) error {
	var blocked *netguard.BlockedError
	if errors.As(err, &blocked) {
		return &relay.DeliveryError{Kind: relay.Permanent, Err: blocked}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return &relay.DeliveryError{Kind: relay.Retry, Err: fmt.Errorf("no response within %s", timeout)}
	}
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = uerr.Err // the cause, without the URL repeated
	}
	return &relay.DeliveryError{Kind: relay.Retry, Err: err}
}
