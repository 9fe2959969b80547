package webhook

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/hashicorp/go-retryablehttp"

	"github.com/relaydev/relay/connectors/netguard"
	"github.com/relaydev/relay/relay/sink"
)

// newClient retries, inside one attempt, only transport failures that
// happened before any response: twice, quickly. Statuses are classified and
// retried on the durable schedule, never here.
func newClient(hc *http.Client, log *slog.Logger) *retryablehttp.Client {
	c := retryablehttp.NewClient()
	c.HTTPClient = hc
	c.RetryMax = 2
	c.RetryWaitMin = 50 * time.Millisecond
	c.RetryWaitMax = 500 * time.Millisecond
	c.CheckRetry = retryTransport
	c.ErrorHandler = retryablehttp.PassthroughErrorHandler // keep the last response and error
	c.Logger = nil
	if log != nil {
		c.Logger = retryLog{log}
	}
	return c
}

// retryTransport is the retry policy: no response, an error worth a second
// try, and time left.
func retryTransport(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil || resp != nil || err == nil {
		return false, nil
	}
	return !hopeless(err), nil
}

// hopeless reports a transport error another try within the same second
// cannot fix: a refused address, an untrusted certificate, an unknown host.
func hopeless(err error) bool {
	var blocked *netguard.BlockedError
	var cert *tls.CertificateVerificationError
	var dns *net.DNSError
	return errors.As(err, &blocked) || errors.As(err, &cert) || (errors.As(err, &dns) && dns.IsNotFound)
}

// retryLog lets go-retryablehttp log through slog, at debug level: the
// worker logs the attempt's outcome once. It leaves out the URL, which may
// carry a token; the logger already names the destination.
type retryLog struct{ log *slog.Logger }

func (l retryLog) Error(msg string, kv ...any) { l.log.Debug(msg, safeKV(kv)...) }
func (l retryLog) Warn(msg string, kv ...any)  { l.log.Debug(msg, safeKV(kv)...) }
func (l retryLog) Info(msg string, kv ...any)  { l.log.Debug(msg, safeKV(kv)...) }
func (l retryLog) Debug(msg string, kv ...any) { l.log.Debug(msg, safeKV(kv)...) }

// safeKV drops the "url" and "request" pairs and strips the URL from errors.
func safeKV(kv []any) []any {
	out := make([]any, 0, len(kv))
	for i := 0; i+1 < len(kv); i += 2 {
		key, v := kv[i], kv[i+1]
		if key == "url" || key == "request" {
			continue
		}
		if err, ok := v.(error); ok {
			v = sink.WithoutURL(err).Error()
		}
		out = append(out, key, v)
	}
	return out
}
