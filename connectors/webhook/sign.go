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

// Sign returns the webhook-signature header: one "v1,<base64>" per key,
// space separated.
func Sign(keys [][]byte, id string, ts time.Time, body []byte) string {
	var b strings.Builder
	stamp := strconv.FormatInt(ts.Unix(), 10)
	for i, key := range keys {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString("v1,")
		b.WriteString(base64.StdEncoding.EncodeToString(mac(key, id, stamp, body)))
	}
	return b.String()
}

// mac is HMAC-SHA256 over "<id>.<timestamp>.<body>".
func mac(key []byte, id, stamp string, body []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(id))
	h.Write([]byte{'.'})
	h.Write([]byte(stamp))
	h.Write([]byte{'.'})
	h.Write(body)
	return h.Sum(nil)
}
