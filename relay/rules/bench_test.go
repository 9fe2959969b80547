package rules

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/relaydev/relay/config"
	"github.com/relaydev/relay/relay/activity"
)

func benchRules(b *testing.B, when string) *Rules {
	cfg := &config.Config{File: "b.yaml", Destinations: []config.Destination{{Name: "d",
		Include: []string{"email.*", "sms.*", "journey.started"}, Exclude: []string{"email.sent"}, When: when}}}
	r, errs := CompileRules(cfg, activity.Builtin(), cfg.Destinations[0])
	if len(errs) > 0 {
		b.Fatal(errs)
	}
	return r
}

func BenchmarkMatchName(b *testing.B) {
	r := benchRules(b, "")
	b.ReportAllocs()
	for b.Loop() {
		r.MatchName("sms.delivered")
	}
}

func BenchmarkMatchWhen(b *testing.B) {
	r := benchRules(b, `activity.attributes.campaign == "black-friday" && has(activity.contact.email)`)
	a := &activity.Activity{Name: "email.open", Type: "email", Action: "open", OccurredAt: time.Now(),
		Contact: json.RawMessage(`{"email":"ann@example.com"}`), Attributes: json.RawMessage(`{"campaign":"black-friday"}`)}
	b.ReportAllocs()
	for b.Loop() {
		if ok, _ := r.MatchWhen(a); !ok {
			b.Fatal("no match")
		}
	}
}
