// Package web is the HTTP both APIs share: JSON answers and errors, strict
// decoding of requests, bearer tokens and the limit on wrong ones, and the
// servers.
package web

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	jsonv2 "github.com/go-json-experiment/json"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/relaydev/relay/relay/api"
	"github.com/relaydev/relay/relay/clientlimit"
	"github.com/relaydev/relay/relay/text"
)

// WriteJSON answers v as JSON with status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// maxErrorMessage bounds an error message, which may quote what a client
// sent (a destination name, a query value, a time): never echo it whole.
const maxErrorMessage = 300

// WriteError answers an error in the API's JSON shape: the message,
// clipped, and the details naming what is wrong.
func WriteError(w http.ResponseWriter, status int, msg string, details ...api.Detail) {
	WriteJSON(w, status, api.Error{Error: text.Clip(msg, maxErrorMessage), Details: details})
}

// TokenSet holds bearer tokens as hashes, so comparing takes the same time
// whatever the length or content of a guess.
type TokenSet [][32]byte

// NewTokenSet is the set of the non-empty tokens.
func NewTokenSet(tokens ...string) TokenSet {
	var ts TokenSet
	for _, t := range tokens {
		if t != "" {
			ts = append(ts, sha256.Sum256([]byte(t)))
		}
	}
	return ts
}

// Allows reports whether the request carries one of the tokens as its
// bearer token.
func (ts TokenSet) Allows(r *http.Request) bool {
	token, ok := bearer(r.Header.Get("Authorization"))
	return ok && ts.Has(token)
}

// bearer reads the token of an Authorization header of the Bearer scheme,
// whose name is case-insensitive (RFC 9110 §11.1).
func bearer(h string) (string, bool) {
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimLeft(token, " ")
	return token, token != ""
}

// JSONErrors answers the mux's own 404 and 405 in JSON like every other
// error, with the Allow header of a 405.
func JSONErrors(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
		if pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		rec := &discard{header: http.Header{}}
		h.ServeHTTP(rec, r)
		switch {
		case rec.status == http.StatusMethodNotAllowed:
			w.Header().Set("Allow", rec.header.Get("Allow"))
			WriteError(w, rec.status, fmt.Sprintf("method %s not allowed on %s (allowed: %s)", r.Method, text.Clip(r.URL.Path, 200), rec.header.Get("Allow")))
		case rec.status == 0 || rec.status == http.StatusNotFound:
			WriteError(w, http.StatusNotFound, fmt.Sprintf("no such endpoint: %s %s", r.Method, text.Clip(r.URL.Path, 200)))
		default: // a redirect to the clean path
			h.ServeHTTP(w, r)
		}
	})
}

// discard is a ResponseWriter that keeps only the status and headers.
type discard struct {
	header http.Header
	status int
}

func (d *discard) Header() http.Header { return d.header }
func (d *discard) Write(b []byte) (int, error) {
	if d.status == 0 {
		d.status = http.StatusOK
	}
	return len(b), nil
}
func (d *discard) WriteHeader(s int) {
	if d.status == 0 {
		d.status = s
	}
}

// RequireToken answers 401 to a request without one of the tokens. The
// answer says nothing that helps a guesser.
func RequireToken(ts TokenSet, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if TooManyWrongTokens(w, r) {
			return
		}
		if !ts.Allows(r) {
			WrongToken(r)
			w.Header().Set("WWW-Authenticate", `Bearer realm="relay"`)
			WriteError(w, http.StatusUnauthorized, "missing or invalid bearer token")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Requests with a wrong or missing token are limited per client address
// on each listener: wrongTokenBurst at once, then wrongTokenRate a second.
// Past that every request of the address is answered 429 until its
// allowance is back, the right token too, so that guessing learns nothing.
const (
	wrongTokenBurst = 300
	wrongTokenRate  = 10
)

type wrongTokensKey struct{}

// WithWrongTokenLimit gives every request of a listener its limiter.
func WithWrongTokenLimit(srv *http.Server) {
	lim := clientlimit.New(wrongTokenRate, wrongTokenBurst)
	srv.ConnContext = func(ctx context.Context, _ net.Conn) context.Context {
		return context.WithValue(ctx, wrongTokensKey{}, lim)
	}
}

// TooManyWrongTokens answers 429 when the client has used up its
// allowance of wrong tokens.
func TooManyWrongTokens(w http.ResponseWriter, r *http.Request) bool {
	lim, _ := r.Context().Value(wrongTokensKey{}).(*clientlimit.PerClient)
	if lim == nil {
		return false
	}
	wait := lim.Wait(r.RemoteAddr)
	if wait <= 0 {
		return false
	}
	w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
	WriteError(w, http.StatusTooManyRequests, "too many requests with a wrong or missing token from this address; retry later")
	return true
}

// WrongToken counts a request refused for its token.
func WrongToken(r *http.Request) {
	if lim, _ := r.Context().Value(wrongTokensKey{}).(*clientlimit.PerClient); lim != nil {
		lim.Allow(r.RemoteAddr)
	}
}

// CloseAfterChunked closes the connection after every request whose body
// came with a Transfer-Encoding. A request with both Content-Length and
// Transfer-Encoding may be smuggling a second request in its body (RFC
// 9112 §6.3 says to close the connection after it), and Go's server drops
// the Content-Length of such a request before a handler sees it: so none
// of them keeps its connection, and nothing after its body is ever read
// as a request.
func CloseAfterChunked(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.TransferEncoding) > 0 {
			w.Header().Set("Connection", "close")
			r.Close = true
		}
		next.ServeHTTP(w, r)
	})
}

// NewServer returns an HTTP server with limits that keep slow or hostile
// clients from holding it.
func NewServer(addr string, h http.Handler, writeTimeout time.Duration) *http.Server {
	srv := &http.Server{
		Addr:              addr,
		Handler:           CloseAfterChunked(h),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
	WithWrongTokenLimit(srv)
	return srv
}

// Healthz answers 200 while the process can work, 503 once it cannot.
func Healthz(healthy func() bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if healthy != nil && !healthy() {
			WriteError(w, http.StatusServiceUnavailable, "unhealthy: the connection to NATS is closed for good; the process is exiting")
			return
		}
		WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	}
}

// Readyz answers GET /readyz, on both APIs (a load balancer in front of
// either asks it): 200 once the bus, streams and consumers are ready and
// NATS is connected, 503 saying which is not.
func Readyz(ready, connected func() bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if ready != nil && !ready() {
			WriteError(w, http.StatusServiceUnavailable, "not ready: bus, streams or consumers are still starting")
			return
		}
		if connected != nil && !connected() {
			WriteError(w, http.StatusServiceUnavailable, "not ready: disconnected from NATS, reconnecting")
			return
		}
		WriteJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	}
}

// Has reports whether token is one of the set, in constant time.
func (ts TokenSet) Has(token string) bool {
	if token == "" {
		return false
	}
	sum := sha256.Sum256([]byte(token))
	found := 0
	for _, t := range ts {
		found |= subtle.ConstantTimeCompare(sum[:], t[:])
	}
	return found == 1
}

// DecodeOptions make the decoder refuse rather than repair: unknown
// members, duplicate names and invalid UTF-8 (also in escapes, as lone
// surrogates) are errors. Names match exactly, so "ID" is not "id".
var DecodeOptions = jsonv2.JoinOptions(
	jsonv2.RejectUnknownMembers(true),
	jsontext.AllowDuplicateNames(false),
	jsontext.AllowInvalidUTF8(false),
)

// Describe says what a syntax error is in words of its own, without
// repeating the input beyond a short prefix.
func Describe(err error) string {
	switch {
	case err == nil:
		return "invalid"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "the body ends in the middle of a value"
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "invalid UTF-8"):
		return "invalid UTF-8 (text must be UTF-8; it is refused, not repaired)"
	case strings.Contains(msg, "duplicate"):
		return "duplicate name in an object (each name may appear once)"
	case strings.Contains(msg, "surrogate"):
		return "a \\u escape that is not a valid Unicode character (lone surrogate)"
	}
	return text.Clip(msg, 120)
}
