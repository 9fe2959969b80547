package relay_test

import (
	"log/slog"
	"os"
	"testing"
)

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p))
	return len(p), nil
}

// testLogger logs warnings and errors into the test's output.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: testLogLevel()}))
}

// testLogLevel is warn, or what RELAY_TEST_LOG names (debug, info).
func testLogLevel() slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(os.Getenv("RELAY_TEST_LOG"))); err == nil && os.Getenv("RELAY_TEST_LOG") != "" {
		return l
	}
	return slog.LevelWarn
}
