package ingest

import (
	"testing"
	"time"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/relaydev/relay/relay/activity"
)

func BenchmarkDecodeItem(b *testing.B) {
	raw := jsontext.Value(`{"type":"email","action":"open","id":"a-1","contact":{"email":"ann@example.com"},"attributes":{"campaign":"black-friday","url":"https://example.com/x"}}`)
	cat := activity.Builtin()
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if _, errs := decodeItem(raw, cat, false, now); errs != nil {
			b.Fatal(errs)
		}
	}
}
