package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Tolerance is how far a webhook's timestamp may be from the receiver's clock.
const Tolerance = 5 * time.Minute

// Verification errors. None of them contains the secret.
var (
	ErrMissingHeaders      = errors.New("missing webhook-id, webhook-timestamp or webhook-signature")
	ErrTimestampFormat     = errors.New("webhook-timestamp is not unix seconds")
	ErrTimestampTooOld     = errors.New("webhook-timestamp is too old")
	ErrTimestampTooNew     = errors.New("webhook-timestamp is too far in the future")
	ErrNoMatchingSignature = errors.New("no matching v1 signature")
)

// Verify checks a received webhook against a secret: the timestamp must be
// within Tolerance of now, and one of the space-separated v1 signatures must
// match (compared in constant time).
func Verify(secret, id, timestamp, signature string, body []byte, now time.Time) error {
	if id == "" || timestamp == "" || signature == "" {
		return ErrMissingHeaders
	}
	key, err := ParseSecret(secret)
	if err != nil {
		return err
	}
	sec, err := parseTimestamp(timestamp)
	if err != nil {
		return err
	}
	ts := time.Unix(sec, 0)
	switch {
	case now.Sub(ts) > Tolerance:
		return ErrTimestampTooOld
	case ts.Sub(now) > Tolerance:
		return ErrTimestampTooNew
	}
	var sum [sha256.Size]byte
	want := mac(sum[:0], key, signedPrefix(nil, id, []byte(timestamp)), body)
	for _, sig := range strings.Fields(signature) {
		b64, ok := strings.CutPrefix(sig, "v1,")
		if !ok {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(b64)
		if err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return ErrNoMatchingSignature
}

// parseTimestamp reads unix seconds written as digits only: no sign, no
// spaces, nothing a lenient parser would skip.
func parseTimestamp(s string) (int64, error) {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, ErrTimestampFormat
		}
	}
	sec, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, ErrTimestampFormat
	}
	return sec, nil
}

// VerifyRequest is Verify with the three webhook-* headers of a request.
func VerifyRequest(secret string, h http.Header, body []byte, now time.Time) error {
	return Verify(secret, h.Get("webhook-id"), h.Get("webhook-timestamp"), h.Get("webhook-signature"), body, now)
}
