package relay

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/relaydev/relay/relay/activity"
	"github.com/relaydev/relay/relay/store"
)

func BenchmarkDecodeForDelivery(b *testing.B) {
	a := &activity.Activity{ID: "a-1", Name: "email.open", Type: "email", Action: "open", OccurredAt: time.Now(), ReceivedAt: time.Now(),
		Contact: json.RawMessage(`{"email":"ann@example.com"}`), Attributes: json.RawMessage(`{"campaign":"black-friday","pad":"` + strings.Repeat("x", 800) + `"}`)}
	data, _ := json.Marshal(a)
	h := store.ActivityHeaders(a)
	b.Run("headers", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := store.HeadActivity(h); !ok {
				b.Fatal("no head")
			}
		}
	})
	b.Run("full JSON (when rule, batch connector)", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var out activity.Activity
			if err := json.Unmarshal(data, &out); err != nil {
				b.Fatal(err)
			}
		}
	})
}
