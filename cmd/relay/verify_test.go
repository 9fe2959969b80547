package main

import (
	"os"
	"strings"
	"testing"
	"time"
)

// The Standard Webhooks reference vector (DESIGN §4).
const (
	vectorSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vectorID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vectorTimestamp = "1614265330"
	vectorBody      = `{"test": 2432232314}`
	vectorSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func TestVerify(t *testing.T) {
	vectorTime := time.Unix(1614265330, 0)
	t.Cleanup(func() { now, stdin = time.Now, os.Stdin })
	tests := []struct {
		name   string
		clock  time.Time
		env    string // $RELAY_WEBHOOK_SECRET
		args   []string
		body   string
		code   int
		stdout string
		stderr string
	}{
		{"reference vector", vectorTime, "", []string{"--secret", vectorSecret, "--id", vectorID, "--timestamp", vectorTimestamp, "--signature", vectorSignature}, vectorBody, 0, "valid\n", ""},
		{"secret from the environment", vectorTime.Add(time.Minute), vectorSecret, []string{"--id", vectorID, "--timestamp", vectorTimestamp, "--signature", vectorSignature}, vectorBody, 0, "valid\n", ""},
		{"one of several signatures", vectorTime, "", []string{"--secret", vectorSecret, "--id", vectorID, "--timestamp", vectorTimestamp, "--signature", "v1,bm90IGl0 " + vectorSignature}, vectorBody, 0, "valid\n", ""},
		{"tampered body", vectorTime, "", []string{"--secret", vectorSecret, "--id", vectorID, "--timestamp", vectorTimestamp, "--signature", vectorSignature}, `{"test": 2432232315}`, 1, "", "invalid: no matching v1 signature\n"},
		{"other id", vectorTime, "", []string{"--secret", vectorSecret, "--id", "msg_other", "--timestamp", vectorTimestamp, "--signature", vectorSignature}, vectorBody, 1, "", "invalid: no matching v1 signature\n"},
		{"other secret", vectorTime, "", []string{"--secret", "whsec_ZGVtby1zZWNyZXQtZm9yLXRoZS1leGFtcGxlLXJlY2VpdmVy", "--id", vectorID, "--timestamp", vectorTimestamp, "--signature", vectorSignature}, vectorBody, 1, "", "invalid: no matching v1 signature\n"},
		{"too old today", time.Now(), "", []string{"--secret", vectorSecret, "--id", vectorID, "--timestamp", vectorTimestamp, "--signature", vectorSignature}, vectorBody, 1, "", "invalid: webhook-timestamp is too old\n"},
		{"no signature", vectorTime, "", []string{"--secret", vectorSecret, "--id", vectorID, "--timestamp", vectorTimestamp}, vectorBody, 1, "", "invalid: missing"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("RELAY_WEBHOOK_SECRET", tc.env)
			now = func() time.Time { return tc.clock }
			stdin = strings.NewReader(tc.body)
			code, out, errOut := runCLI(t, append([]string{"verify"}, tc.args...)...)
			if code != tc.code || out != tc.stdout || !strings.HasPrefix(errOut, tc.stderr) || (tc.stderr == "") != (errOut == "") {
				t.Errorf("exit %d, stdout %q, stderr %q; want %d, %q, %q", code, out, errOut, tc.code, tc.stdout, tc.stderr)
			}
			if strings.Contains(errOut, "MfKQ9r8G") {
				t.Errorf("stderr shows the secret: %q", errOut)
			}
		})
	}
}
