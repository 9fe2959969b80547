package activity

import (
	"errors"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
)

func TestParseName(t *testing.T) {
	tests := []struct {
		name, typ, action string
		ok                bool
	}{
		{"email.open", "email", "open", true},
		{"pageview", "pageview", "", true},
		{"consent.opt-in", "consent", "opt-in", true},
		{"web_modal.impression", "web_modal", "impression", true},
		{"a1.b2", "a1", "b2", true},
		{"-.-", "-", "-", true},
		{"", "", "", false},
		{".", "", "", false},
		{"email.", "", "", false},
		{".open", "", "", false},
		{"email..open", "", "", false},
		{"a.b.c", "", "", false},
		{"Email.open", "", "", false},
		{"email.Open", "", "", false},
		{"email.*", "", "", false},
		{"*", "", "", false},
		{"email.>", "", "", false},
		{"email open", "", "", false},
		{"email.open ", "", "", false},
		{"e\tmail", "", "", false},
		{"émail.open", "", "", false},
		{"email/open", "", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			typ, action, err := ParseName(tc.name)
			if (err == nil) != tc.ok {
				t.Fatalf("ParseName(%q) error = %v, want ok=%v", tc.name, err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidName) {
				t.Errorf("ParseName(%q) error %v does not wrap ErrInvalidName", tc.name, err)
			}
			if typ != tc.typ || action != tc.action {
				t.Errorf("ParseName(%q) = %q, %q; want %q, %q", tc.name, typ, action, tc.typ, tc.action)
			}
		})
	}
}

func TestParseNameErrorText(t *testing.T) {
	tests := []struct{ name, want string }{
		{"Email.open", `invalid activity name "Email.open": type has 'E' (allowed: a-z 0-9 _ -)`},
		{"email.", `invalid activity name "email.": action is empty`},
		{"a.b.c", `invalid activity name "a.b.c": more than two parts`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := ParseName(tc.name)
			if err == nil || err.Error() != tc.want {
				t.Errorf("ParseName(%q) error = %v, want %s", tc.name, err, tc.want)
			}
		})
	}
}

func TestValidPattern(t *testing.T) {
	tests := []struct {
		pattern string
		ok      bool
	}{
		{"*", true},
		{"*.*", true},
		{"email.*", true},
		{"*.open", true},
		{"email.open", true},
		{"pageview", true},
		{"consent.opt-in", true},
		{"", false},
		{"**", false},
		{"email*", false},
		{"email.op*", false},
		{"email.>", false},
		{">", false},
		{"*.*.*", false},
		{"email.open.x", false},
		{"email.", false},
		{".*", false},
		{"Email.*", false},
		{"email .*", false},
	}
	for _, tc := range tests {
		t.Run(tc.pattern, func(t *testing.T) {
			err := ValidPattern(tc.pattern)
			if (err == nil) != tc.ok {
				t.Fatalf("ValidPattern(%q) = %v, want ok=%v", tc.pattern, err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidPattern) {
				t.Errorf("ValidPattern(%q) error %v does not wrap ErrInvalidPattern", tc.pattern, err)
			}
		})
	}
}

func TestMatches(t *testing.T) {
	tests := []struct {
		pattern, name string
		want          bool
	}{
		{"*", "email.open", true},
		{"*", "pageview", true},
		{"email.*", "email.open", true},
		{"email.*", "email.soft_bounce", true},
		{"email.*", "sms.sent", false},
		{"email.*", "email", false},
		{"email.*", "emails.open", false},
		{"email.*", "email.", false},
		{"*.open", "email.open", true},
		{"*.open", "push.open", true},
		{"*.open", "email.opened", false},
		{"*.open", "open", false},
		{"*.*", "email.open", true},
		{"*.*", "pageview", false},
		{"pageview", "pageview", true},
		{"pageview", "pageview.x", false},
		{"pageview", "pageviews", false},
		{"page", "pageview", false},
		{"email.open", "email.open", true},
		{"email.open", "email.opens", false},
		{"email.open", "email.ope", false},
		{"email.open", "email.open.x", false},
		{"email.*", "email.*", true}, // a pattern read as a name: rules use this for coverage
		{"*.*", "*.open", true},
		{"email.*", "*.open", false},
		{"", "email", false},
	}
	for _, tc := range tests {
		t.Run(tc.pattern+" "+tc.name, func(t *testing.T) {
			if got := Matches(tc.pattern, tc.name); got != tc.want {
				t.Errorf("Matches(%q, %q) = %v, want %v", tc.pattern, tc.name, got, tc.want)
			}
		})
	}
}

func TestMatchesDoesNotAllocate(t *testing.T) {
	allocs := testing.AllocsPerRun(100, func() {
		for _, p := range []string{"*", "email.*", "*.open", "*.*", "pageview", "email.open"} {
			Matches(p, "email.open")
			Matches(p, "pageview")
		}
	})
	if allocs != 0 {
		t.Errorf("Matches allocates %v times per run, want 0", allocs)
	}
}

func BenchmarkMatches(b *testing.B) {
	patterns := []string{"*", "email.*", "*.open", "journey.started", "pageview", "*.*"}
	names := []string{"email.open", "journey.started", "pageview", "web_modal.impression"}
	b.ReportAllocs()
	n := 0
	for i := 0; b.Loop(); i++ {
		if Matches(patterns[i%len(patterns)], names[i%len(names)]) {
			n++
		}
	}
	_ = n
}

func TestSubject(t *testing.T) {
	tests := []struct{ name, want string }{
		{"email.open", "activities.email.open"},
		{"pageview", "activities.pageview"},
		{"consent.opt-in", "activities.consent.opt-in"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Subject(tc.name); got != tc.want {
				t.Errorf("Subject(%q) = %q, want %q", tc.name, got, tc.want)
			}
		})
	}
}

func TestEverySubjectIsALiteralNATSSubject(t *testing.T) {
	for _, e := range Builtin().Entries() {
		if s := Subject(e.Name); !server.IsValidLiteralSubject(s) {
			t.Errorf("Subject(%q) = %q is not a valid literal NATS subject", e.Name, s)
		}
	}
}

func TestFilterSubject(t *testing.T) {
	tests := []struct{ pattern, want string }{
		{"*", "activities.>"},
		{"*.*", "activities.*.*"},
		{"email.*", "activities.email.*"},
		{"*.open", "activities.*.open"},
		{"pageview", "activities.pageview"},
		{"email.open", "activities.email.open"},
	}
	for _, tc := range tests {
		t.Run(tc.pattern, func(t *testing.T) {
			got := FilterSubject(tc.pattern)
			if got != tc.want {
				t.Errorf("FilterSubject(%q) = %q, want %q", tc.pattern, got, tc.want)
			}
			if !server.IsValidSubject(got) {
				t.Errorf("FilterSubject(%q) = %q is not a valid NATS subject", tc.pattern, got)
			}
		})
	}
}

func TestNameFromSubject(t *testing.T) {
	tests := []struct {
		subject, want string
		ok            bool
	}{
		{"activities.email.open", "email.open", true},
		{"activities.pageview", "pageview", true},
		{"activities.consent.opt-in", "consent.opt-in", true},
		{"activities.", "", false},
		{"activities", "", false},
		{"activities.>", "", false},
		{"activities.email.*", "", false},
		{"activities.a.b.c", "", false},
		{"relay.redeliver.crm-hook", "", false},
		{"activity.email.open", "", false},
		{"email.open", "", false},
		{"", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.subject, func(t *testing.T) {
			got, ok := NameFromSubject(tc.subject)
			if got != tc.want || ok != tc.ok {
				t.Errorf("NameFromSubject(%q) = %q, %v; want %q, %v", tc.subject, got, ok, tc.want, tc.ok)
			}
		})
	}
	for _, e := range Builtin().Entries() {
		if got, ok := NameFromSubject(Subject(e.Name)); !ok || got != e.Name {
			t.Errorf("NameFromSubject(Subject(%q)) = %q, %v", e.Name, got, ok)
		}
	}
}

// TestFilterSubjectAgreesWithMatches checks, with nats-server's own subject
// matcher, that the filter subject of every pattern selects exactly the
// names Matches does.
func TestFilterSubjectAgreesWithMatches(t *testing.T) {
	names := []string{"invoice", "invoice.paid", "a.open"}
	patterns := map[string]bool{"*": true, "*.*": true, "invoice": true, "nothing.*": true, "*.nothing": true}
	for _, e := range Builtin().Entries() {
		names = append(names, e.Name)
		patterns[e.Name] = true
		patterns[e.Type] = true
		patterns[e.Type+".*"] = true
		if e.Action != "" {
			patterns["*."+e.Action] = true
		}
	}
	for p := range patterns {
		if err := ValidPattern(p); err != nil {
			t.Fatalf("test pattern %q: %v", p, err)
		}
		filter := FilterSubject(p)
		for _, n := range names {
			nats := server.SubjectMatchesFilter(Subject(n), filter)
			if got := Matches(p, n); got != nats {
				t.Errorf("Matches(%q, %q) = %v, but NATS filter %q selects %q: %v", p, n, got, filter, Subject(n), nats)
			}
		}
	}
}
