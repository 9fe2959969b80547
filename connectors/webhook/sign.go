// Package webhook delivers activities as Standard Webhooks: signed POSTs
// whose webhook-id is the activity id. It also holds the verifier receivers
// use.
package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"time"
)

const secretPrefix = "whsec_"

// ErrBadSecret is a secret that is not whsec_<base64>.
var ErrBadSecret = errors.New("webhook secret must be whsec_ followed by base64")

// ParseSecret returns the key of a "whsec_<base64>" secret (raw base64 is
// accepted too). The error never contains the secret.
func ParseSecret(s string) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(s, secretPrefix))
	if err != nil || len(key) == 0 {
		return nil, ErrBadSecret
	}
	return key, nil
}

// sigLen is the length of one "v1,<base64>" signature.
var sigLen = len("v1,") + base64.StdEncoding.EncodedLen(sha256.Size)

// Sign returns the webhook-signature header: one "v1,<base64>" per key,
// space separated.
func Sign(keys [][]byte, id string, ts time.Time, body []byte) string {
	var stamp [20]byte
	prefix := signedPrefix(make([]byte, 0, 64), id, strconv.AppendInt(stamp[:0], ts.Unix(), 10))
	b := make([]byte, 0, len(keys)*(sigLen+1))
	for i, key := range keys {
		if i > 0 {
			b = append(b, ' ')
		}
		var sum [sha256.Size]byte
		b = append(b, "v1,"...)
		b = base64.StdEncoding.AppendEncode(b, mac(sum[:0], key, prefix, body))
	}
	return string(b)
}

// signedPrefix appends "<id>.<timestamp>." to dst: what is signed before
// the body.
func signedPrefix(dst []byte, id string, stamp []byte) []byte {
	dst = append(dst, id...)
	dst = append(dst, '.')
	dst = append(dst, stamp...)
	return append(dst, '.')
}

// mac appends HMAC-SHA256(key, prefix + body) to dst.
func mac(dst, key, prefix, body []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write(prefix)
	h.Write(body)
	return h.Sum(dst)
}
