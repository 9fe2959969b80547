package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/relaydev/relay/connectors/webhook"
)

func TestReceiverVerifies(t *testing.T) {
	key, err := webhook.ParseSecret(demoSecret)
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"type":"email.open","timestamp":"2026-11-22T10:00:00Z","data":{"id":"a1","contact":{"email":"ann@example.com"},"attributes":{"campaign":"bf"}}}`)
	now := time.Now()
	tests := []struct {
		name      string
		signature string
		status    int
		printed   string
	}{
		{"valid", webhook.Sign([][]byte{key}, "a1", now, body), http.StatusNoContent, "ann@example.com"},
		{"duplicate", webhook.Sign([][]byte{key}, "a1", now, body), http.StatusOK, "duplicate a1"},
		{"bad signature", webhook.Sign([][]byte{[]byte("another key entirely")}, "a1", now, body), http.StatusUnauthorized, ""},
	}
	var out bytes.Buffer
	h := &handler{secret: demoSecret, seen: map[string]bool{}, out: &out}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out.Reset()
			req := httptest.NewRequest("POST", "/webhook", bytes.NewReader(body))
			req.Header.Set("webhook-id", "a1")
			req.Header.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
			req.Header.Set("webhook-signature", tc.signature)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.status {
				t.Errorf("status = %d, want %d", rec.Code, tc.status)
			}
			if !strings.Contains(out.String(), tc.printed) {
				t.Errorf("printed %q, want %q", out.String(), tc.printed)
			}
		})
	}
}
