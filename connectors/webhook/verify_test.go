package webhook

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestVerifyRejects: everything a receiver must refuse, beyond the
// reference cases of TestVerify: timestamps just outside the tolerance,
// malformed timestamps, unknown or misspelt versions, broken base64, a
// signature of the right length for the wrong message.
func TestVerifyRejects(t *testing.T) {
	at := time.Unix(1614265330, 0)
	key, _ := ParseSecret(vectorSecret)
	b64 := vectorSig[3:]
	tests := []struct {
		name string
		ts   string
		sig  string
		now  time.Time
		want error
	}{
		{"exactly 5 minutes late", vectorTS, vectorSig, at.Add(Tolerance), nil},
		{"exactly 5 minutes early", vectorTS, vectorSig, at.Add(-Tolerance), nil},
		{"a second past 5 minutes late", vectorTS, vectorSig, at.Add(Tolerance + time.Second), ErrTimestampTooOld},
		{"a second past 5 minutes early", vectorTS, vectorSig, at.Add(-Tolerance - time.Second), ErrTimestampTooNew},
		{"a day old", vectorTS, vectorSig, at.Add(24 * time.Hour), ErrTimestampTooOld},
		{"timestamp 0", "0", vectorSig, at, ErrTimestampTooOld},
		{"timestamp in the far future", "99999999999", vectorSig, at, ErrTimestampTooNew},
		{"timestamp overflows int64", "99999999999999999999", vectorSig, at, ErrTimestampFormat},
		{"timestamp with a sign", "+" + vectorTS, vectorSig, at, ErrTimestampFormat},
		{"negative timestamp", "-" + vectorTS, vectorSig, at, ErrTimestampFormat},
		{"timestamp with a space", vectorTS + " ", vectorSig, at, ErrTimestampFormat},
		{"timestamp with a fraction", vectorTS + ".5", vectorSig, at, ErrTimestampFormat},
		{"timestamp in milliseconds", vectorTS + "000", vectorSig, at, ErrTimestampTooNew},
		{"timestamp in hex", "0x603a7a72", vectorSig, at, ErrTimestampFormat},
		{"v2 only", vectorTS, "v2," + b64, at, ErrNoMatchingSignature},
		{"v1a", vectorTS, "v1a," + b64, at, ErrNoMatchingSignature},
		{"V1 upper case", vectorTS, "V1," + b64, at, ErrNoMatchingSignature},
		{"v1 without a comma", vectorTS, "v1" + b64, at, ErrNoMatchingSignature},
		{"v1 with a space before the signature", vectorTS, "v1, " + b64, at, ErrNoMatchingSignature},
		{"v1, and nothing", vectorTS, "v1,", at, ErrNoMatchingSignature},
		{"only a comma", vectorTS, ",", at, ErrNoMatchingSignature},
		{"only spaces", vectorTS, "   ", at, ErrNoMatchingSignature},
		{"bare base64 without a version", vectorTS, b64, at, ErrNoMatchingSignature},
		{"base64url alphabet", vectorTS, "v1," + strings.NewReplacer("+", "-", "/", "_").Replace(b64), at, ErrNoMatchingSignature},
		{"not base64", vectorTS, "v1,!!!!" + b64[4:], at, ErrNoMatchingSignature},
		{"truncated", vectorTS, vectorSig[:len(vectorSig)-4], at, ErrNoMatchingSignature},
		{"one byte too long", vectorTS, "v1," + b64[:len(b64)-1] + "AA==", at, ErrNoMatchingSignature},
		{"signature of another timestamp", vectorTS, Sign([][]byte{key}, vectorID, at.Add(time.Second), []byte(vectorBody)), at, ErrNoMatchingSignature},
		{"a thousand wrong signatures", vectorTS, strings.Repeat("v1,Zm9v ", 1000), at, ErrNoMatchingSignature},
		{"wrong ones around the right one", vectorTS, "v2,x v1,Zm9v\t" + vectorSig + " v1a,y", at, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Verify(vectorSecret, vectorID, tc.ts, tc.sig, []byte(vectorBody), tc.now)
			if !errors.Is(err, tc.want) {
				t.Errorf("Verify = %v, want %v", err, tc.want)
			}
		})
	}
}

// TestVerifyTimestampIsSigned: moving an old delivery's timestamp into the
// window breaks its signature, so a replayed capture cannot be refreshed.
func TestVerifyTimestampIsSigned(t *testing.T) {
	now := time.Unix(1614265330, 0).Add(time.Hour)
	fresh := strconv.FormatInt(now.Unix(), 10)
	if err := Verify(vectorSecret, vectorID, vectorTS, vectorSig, []byte(vectorBody), now); !errors.Is(err, ErrTimestampTooOld) {
		t.Fatalf("an hour-old delivery: %v", err)
	}
	if err := Verify(vectorSecret, vectorID, fresh, vectorSig, []byte(vectorBody), now); !errors.Is(err, ErrNoMatchingSignature) {
		t.Errorf("the same signature with a fresh timestamp: %v", err)
	}
}

// TestDeliverStampsAttemptTime: webhook-timestamp is the time of the
// attempt itself, not of the activity or its first attempt, so a retry
// hours later still verifies within the tolerance, and a captured request
// stops verifying once the tolerance has passed.
func TestDeliverStampsAttemptTime(t *testing.T) {
	srv, got := recorder(t, 200)
	for _, later := range []time.Duration{0, 3 * time.Hour, 72 * time.Hour} {
		at := clock.Add(later)
		s := newSink(t, dest(srv.URL, vectorSecret), Options{Now: func() time.Time { return at }})
		if a := s.Deliver(t.Context(), delivery(t, 2)); a.Err != nil || !a.At.Equal(at) {
			t.Fatalf("attempt = %+v, want delivered at %s", a, at)
		}
		r := next(t, got)
		if ts := r.header.Get("webhook-timestamp"); ts != strconv.FormatInt(at.Unix(), 10) {
			t.Errorf("webhook-timestamp = %s, want %d (the attempt, %s after the activity)", ts, at.Unix(), later)
		}
		if err := VerifyRequest(vectorSecret, r.header, r.body, at); err != nil {
			t.Errorf("%s later: %v", later, err)
		}
		if err := VerifyRequest(vectorSecret, r.header, r.body, at.Add(Tolerance+time.Second)); !errors.Is(err, ErrTimestampTooOld) {
			t.Errorf("replayed past the tolerance: %v", err)
		}
	}
}
