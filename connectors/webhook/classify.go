package webhook

import (
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/relaydev/relay/relay"
)

// maxRetryAfter caps how long a receiver may ask Relay to wait.
const maxRetryAfter = time.Hour

// classify turns a response into nil (delivered) or a DeliveryError.
func classify(resp *http.Response, body []byte) error {
	code := resp.StatusCode
	switch {
	case code >= 200 && code < 300:
		return nil
	case code >= 300 && code < 400:
		return &relay.DeliveryError{Kind: relay.Retry, Status: code,
			Err: fmt.Errorf("redirect to %q not followed", resp.Header.Get("Location"))}
	case code == http.StatusGone:
		return &relay.DeliveryError{Kind: relay.Gone, Status: code, Err: fmt.Errorf("receiver is gone: %s", snippet(body))}
	case code == http.StatusTooManyRequests || code >= 500:
		return &relay.DeliveryError{Kind: relay.Retry, Status: code,
			RetryAfter: retryAfter(resp.Header.Get("Retry-After"), time.Now()), Err: fmt.Errorf("%s", snippet(body))}
	default:
		return &relay.DeliveryError{Kind: relay.Retry, Status: code, Err: fmt.Errorf("%s", snippet(body))}
	}
}

// retryAfter reads seconds or an HTTP date, capped at maxRetryAfter.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	var d time.Duration
	if secs, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
		d = time.Duration(secs) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), maxRetryAfter)
}

// snippet is the start of a response body, printable, for the attempt's error.
func snippet(body []byte) string {
	s := string(body)
	if len(s) > 256 {
		s = s[:256] + "…"
	}
	s = strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return ' '
	}, s)
	if s = strings.TrimSpace(s); s == "" {
		return "empty response"
	}
	return "response: " + s
}

// slogAdapter lets go-retryablehttp log through slog.
type slogAdapter struct{ log *slog.Logger }

func (a slogAdapter) Error(msg string, kv ...any) { a.log.Error(msg, kv...) }
func (a slogAdapter) Info(msg string, kv ...any)  { a.log.Debug(msg, kv...) }
func (a slogAdapter) Debug(msg string, kv ...any) { a.log.Debug(msg, kv...) }
func (a slogAdapter) Warn(msg string, kv ...any)  { a.log.Warn(msg, kv...) }
