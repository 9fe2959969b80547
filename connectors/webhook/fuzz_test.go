package webhook

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzVerify: Verify never panics on anything a receiver may be sent, and
// whatever Sign makes with a valid secret verifies, while a changed body,
// id or signature does not.
func FuzzVerify(f *testing.F) {
	f.Add(vectorSecret, vectorID, vectorTS, vectorSig, []byte(vectorBody), int64(1614265330))
	f.Add(vectorSecret, vectorID, vectorTS, "v1,Zm9v "+vectorSig, []byte(vectorBody), int64(1614265330))
	f.Add(secondSecret, "act-1", "1764000000", "v2,abc v1a,def", []byte(`{"type":"email.open"}`), int64(1764000000))
	f.Add("whsec_", "", "", "", []byte{}, int64(0))
	f.Add("not-a-secret!", "x", "-1", "v1,%%%", []byte("\x00\xff"), int64(-1))
	f.Add(vectorSecret, "id.with.dots", "+1614265330", "v1,", []byte(vectorBody), int64(1614265330))
	f.Fuzz(func(t *testing.T, secret, id, timestamp, signature string, body []byte, unix int64) {
		now := time.Unix(unix, 0)
		err := Verify(secret, id, timestamp, signature, body, now)
		if err != nil && strings.Contains(err.Error(), secret) && len(secret) > 8 {
			t.Fatalf("error %q repeats the secret", err)
		}
		key, kerr := ParseSecret(secret)
		if kerr != nil {
			if err == nil {
				t.Fatalf("verified with a secret ParseSecret refuses: %v", kerr)
			}
			return
		}
		if id == "" || unix < 0 {
			return
		}
		sig := Sign([][]byte{key}, id, now, body)
		ts := strconv.FormatInt(unix, 10)
		if err := Verify(secret, id, ts, sig, body, now); err != nil {
			t.Fatalf("Sign's own signature does not verify: %v", err)
		}
		if err := Verify(secret, id, ts, signature+" "+sig, body, now); err != nil {
			t.Fatalf("Sign's signature after others does not verify: %v", err)
		}
		if err := Verify(secret, id, ts, sig, append(body[:len(body):len(body)], 'x'), now); !errors.Is(err, ErrNoMatchingSignature) {
			t.Fatalf("a changed body verifies: %v", err)
		}
		if err := Verify(secret, id+"x", ts, sig, body, now); !errors.Is(err, ErrNoMatchingSignature) {
			t.Fatalf("a changed id verifies: %v", err)
		}
		if err := Verify(secret, id, ts, "v2"+sig[2:], body, now); !errors.Is(err, ErrNoMatchingSignature) {
			t.Fatalf("an unknown version verifies: %v", err)
		}
	})
}
