package webhook

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/relaydev/relay/connectors/netguard"
	"github.com/relaydev/relay/relay/sink"
)

const (
	// maxRetryAfter caps how long a receiver may ask Relay to wait.
	maxRetryAfter = time.Hour
	// maxSnippet is how much of a response body or header an error quotes.
	maxSnippet = 256
)

// classify turns a response into nil (delivered) or a *sink.DeliveryError:
// 410 pauses the destination, everything else non-2xx is retried on the
// schedule, after Retry-After for 429 and 5xx.
func classify(resp *http.Response, body []byte, now time.Time) error {
	code := resp.StatusCode
	switch {
	case code >= 200 && code < 300:
		return nil
	case code >= 300 && code < 400:
		return &sink.DeliveryError{Kind: sink.Retry, Status: code, Err: redirectError(resp.Header.Get("Location"))}
	case code == http.StatusGone:
		return &sink.DeliveryError{Kind: sink.Gone, Status: code, Err: fmt.Errorf("receiver asked to stop: %s", snippet(body))}
	case code == http.StatusTooManyRequests || code >= 500:
		return &sink.DeliveryError{Kind: sink.Retry, Status: code,
			RetryAfter: retryAfter(resp.Header.Get("Retry-After"), now), Err: errors.New(snippet(body))}
	default:
		return &sink.DeliveryError{Kind: sink.Retry, Status: code, Err: errors.New(snippet(body))}
	}
}

func redirectError(location string) error {
	if location == "" {
		return errors.New("redirect without a Location not followed")
	}
	return fmt.Errorf("redirect to %s not followed", printable(location))
}

// retryAfter reads seconds or an HTTP date, capped at maxRetryAfter.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		d = time.Duration(min(secs, int64(maxRetryAfter/time.Second))) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), maxRetryAfter)
}

// snippet is the start of a response body, printable, for the attempt's error.
func snippet(body []byte) string {
	if s := printable(string(body)); s != "" {
		return "response: " + s
	}
	return "empty response"
}

// printable is the first maxSnippet bytes of s on one line, without
// control characters.
func printable(s string) string {
	cut := len(s) > maxSnippet
	if cut {
		s = s[:maxSnippet]
	}
	s = strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return ' '
	}, strings.ToValidUTF8(s, ""))
	s = strings.TrimSpace(s)
	if cut {
		s += "…"
	}
	return s
}

// transportError classifies a failure without a response: refused by the
// SSRF guard is permanent, everything else (timeouts, resets) is retried.
// The URL is left out, as it may carry a token.
func transportError(err error, timeout time.Duration) error {
	var blocked *netguard.BlockedError
	switch {
	case errors.As(err, &blocked):
		return &sink.DeliveryError{Kind: sink.Permanent, Err: blocked}
	case errors.Is(err, context.DeadlineExceeded):
		return &sink.DeliveryError{Kind: sink.Retry, Err: fmt.Errorf("no response within %s", timeout)}
	}
	return &sink.DeliveryError{Kind: sink.Retry, Err: sink.WithoutURL(err)}
}
