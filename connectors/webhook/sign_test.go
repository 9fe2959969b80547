package webhook

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

const (
	vectorSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vectorID     = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vectorTS     = "1614265330"
	vectorBody   = `{"test": 2432232314}`
	vectorSig    = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func TestSignReferenceVector(t *testing.T) {
	key, err := ParseSecret(vectorSecret)
	if err != nil {
		t.Fatal(err)
	}
	if got := Sign([][]byte{key}, vectorID, time.Unix(1614265330, 0), []byte(vectorBody)); got != vectorSig {
		t.Errorf("Sign = %q, want %q", got, vectorSig)
	}
}

func TestVerify(t *testing.T) {
	at := time.Unix(1614265330, 0)
	other, _ := ParseSecret(secondSecret)
	key, _ := ParseSecret(vectorSecret)
	rotated := Sign([][]byte{other, key}, vectorID, at, []byte(vectorBody))
	tests := []struct {
		name        string
		id, ts, sig string
		body        string
		now         time.Time
		want        error
	}{
		{"reference vector", vectorID, vectorTS, vectorSig, vectorBody, at, nil},
		{"several signatures, one matches", vectorID, vectorTS, "v1,Zm9v " + vectorSig, vectorBody, at, nil},
		{"rotation: signed by two secrets", vectorID, vectorTS, rotated, vectorBody, at, nil},
		{"4 minutes late is fine", vectorID, vectorTS, vectorSig, vectorBody, at.Add(4 * time.Minute), nil},
		{"too old", vectorID, vectorTS, vectorSig, vectorBody, at.Add(6 * time.Minute), ErrTimestampTooOld},
		{"too new", vectorID, vectorTS, vectorSig, vectorBody, at.Add(-6 * time.Minute), ErrTimestampTooNew},
		{"tampered body", vectorID, vectorTS, vectorSig, vectorBody + " ", at, ErrNoMatchingSignature},
		{"other id", "msg_other", vectorTS, vectorSig, vectorBody, at, ErrNoMatchingSignature},
		{"unknown version only", vectorID, vectorTS, "v2" + vectorSig[2:], vectorBody, at, ErrNoMatchingSignature},
		{"not base64", vectorID, vectorTS, "v1,%%%", vectorBody, at, ErrNoMatchingSignature},
		{"timestamp not a number", vectorID, "yesterday", vectorSig, vectorBody, at, ErrTimestampFormat},
		{"missing id", "", vectorTS, vectorSig, vectorBody, at, ErrMissingHeaders},
		{"missing signature", vectorID, vectorTS, "", vectorBody, at, ErrMissingHeaders},
		{"missing timestamp", vectorID, "", vectorSig, vectorBody, at, ErrMissingHeaders},
		{"signed by another secret only", vectorID, vectorTS, Sign([][]byte{other}, vectorID, at, []byte(vectorBody)), vectorBody, at, ErrNoMatchingSignature},
		{"v1 without a comma", vectorID, vectorTS, "v1" + vectorSig[3:], vectorBody, at, ErrNoMatchingSignature},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Verify(vectorSecret, tc.id, tc.ts, tc.sig, []byte(tc.body), tc.now)
			if !errors.Is(err, tc.want) {
				t.Errorf("Verify = %v, want %v", err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), vectorSecret[6:]) {
				t.Errorf("error %q contains the secret", err)
			}
		})
	}
}

func TestVerifyRequest(t *testing.T) {
	at := time.Unix(1614265330, 0)
	h := http.Header{}
	h.Set("Webhook-Id", vectorID)
	h.Set("webhook-timestamp", vectorTS)
	h.Set("webhook-signature", vectorSig)
	if err := VerifyRequest(vectorSecret, h, []byte(vectorBody), at); err != nil {
		t.Errorf("VerifyRequest = %v", err)
	}
	h.Del("webhook-signature")
	if err := VerifyRequest(vectorSecret, h, []byte(vectorBody), at); !errors.Is(err, ErrMissingHeaders) {
		t.Errorf("VerifyRequest without a signature = %v", err)
	}
}

func TestParseSecret(t *testing.T) {
	want := []byte("demo-secret-for-the-example-receiver")
	tests := []struct {
		name, secret string
		err          error
	}{
		{"whsec_ prefix", secondSecret, nil},
		{"raw base64", strings.TrimPrefix(secondSecret, "whsec_"), nil},
		{"not base64", "whsec_not!base64", ErrBadSecret},
		{"empty", "whsec_", ErrBadSecret},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			key, err := ParseSecret(tc.secret)
			if !errors.Is(err, tc.err) || (err == nil && string(key) != string(want)) {
				t.Errorf("ParseSecret = %q, %v", key, err)
			}
			if err != nil && strings.Contains(err.Error(), "not!base64") {
				t.Errorf("error %q contains the secret", err)
			}
		})
	}
	if err := Verify("not-a-secret!", vectorID, vectorTS, vectorSig, []byte(vectorBody), time.Unix(1614265330, 0)); !errors.Is(err, ErrBadSecret) {
		t.Errorf("Verify with a bad secret = %v", err)
	}
}

func BenchmarkSign(b *testing.B) {
	key, _ := ParseSecret(vectorSecret)
	body := make([]byte, 1024)
	ts := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		Sign([][]byte{key}, vectorID, ts, body)
	}
}
