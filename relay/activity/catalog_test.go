package activity

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
)

// odpNames is every type/action pair of the ODP document, written as ODP
// spells it, with the canonical name it must resolve to.
var odpNames = []struct{ in, want string }{
	{"pageview", "pageview"},
	{"product.detail", "product.detail"},
	{"product.add_to_cart", "product.add_to_cart"},
	{"product.remove_from_cart", "product.remove_from_cart"},
	{"order.purchase", "order.purchase"},
	{"order.cancel", "order.cancel"},
	{"order.return", "order.return"},
	{"email.sent", "email.sent"},
	{"email.open", "email.open"},
	{"email.click", "email.click"},
	{"email.abort", "email.abort"},
	{"email.soft_bounce", "email.soft_bounce"},
	{"email.hard_bounce", "email.hard_bounce"},
	{"email.spamreport", "email.spamreport"},
	{"push.sent", "push.sent"},
	{"push.open", "push.open"},
	{"push.add_token", "push.add_token"},
	{"push.remove_token", "push.remove_token"},
	{"list.subscribe", "list.subscribe"},
	{"list.unsubscribe", "list.unsubscribe"},
	{"consent.opt-in", "consent.opt-in"},
	{"consent.opt-out", "consent.opt-out"},
	{"reachability.reachable", "reachability.reachable"},
	{"reachability.unreachable", "reachability.unreachable"},
	{"web_modal.impression", "web_modal.impression"},
	{"web_modal.submission", "web_modal.submission"},
	{"web_modal.click", "web_modal.click"},
	{"web_modal.exit", "web_modal.exit"},
	{"web_embed.impression", "web_embed.impression"},
	{"web_embed.submission", "web_embed.submission"},
	{"web_embed.click", "web_embed.click"},
}

// orttoNames is every Ortto system activity display name, as Ortto writes
// it, with the canonical name it must resolve to.
var orttoNames = []struct{ in, want string }{
	// General.
	{"Attributed", "conversion.attributed"},
	{"Entered audience", "audience.entered"},
	{"Left audience", "audience.left"},
	{"User session", "user_session.started"},
	{"Website session", "website_session.started"},
	{"Tag added", "tag.added"},
	{"Tag removed", "tag.removed"},
	// Email.
	{"Sent email", "email.sent"},
	{"Received email", "email.received"},
	{"Opened email", "email.open"},
	{"Clicked email", "email.click"},
	{"Reacted to email", "email.reacted"},
	{"Forwarded email", "email.forwarded"},
	{"Viewed email online", "email.viewed_online"},
	{"Bounced email", "email.bounce"},
	{"Deferred email", "email.deferred"},
	{"Invalid email", "email.invalid"},
	{"Abuse reported", "email.spamreport"},
	{"Subscribed to email", "email.subscribed"},
	{"Unsubscribed from email", "email.unsubscribed"},
	{"Unsubscribed from email audience", "email.audience_unsubscribed"},
	{"Subscribed to email audience", "email.audience_subscribed"},
	// SMS.
	{"Sent SMS", "sms.sent"},
	{"Delivered SMS", "sms.delivered"},
	{"Clicked SMS", "sms.clicked"},
	{"Replied to SMS", "sms.replied"},
	{"Responded to an SMS survey", "sms.survey_responded"},
	{"Responded to an SMS NPS", "sms.nps_responded"},
	{"Bounced SMS", "sms.bounced"},
	{"Deferred SMS", "sms.deferred"},
	{"Invalid SMS", "sms.invalid"},
	{"SMS abuse reported", "sms.abuse_reported"},
	{"Subscribed to SMS", "sms.subscribed"},
	{"Unsubscribed from SMS", "sms.unsubscribed"},
	{"Subscribed to SMS audience", "sms.audience_subscribed"},
	{"Unsubscribed from SMS audience", "sms.audience_unsubscribed"},
	{"SMS consent requested", "sms.consent_requested"},
	{"SMS consent failed", "sms.consent_failed"},
	// Journeys & playbooks.
	{"Started journey", "journey.started"},
	{"Left journey", "journey.left"},
	{"Succesful journey action", "journey.action_succeeded"},
	{"Failed journey action", "journey.action_failed"},
	{"Entered playbook", "playbook.entered"},
	{"Left playbook", "playbook.left"},
	{"Succesful playbook action", "playbook.action_succeeded"},
	{"Failed playbook action", "playbook.action_failed"},
	// Capture.
	{"Shown widget", "widget.shown"},
	{"Dismissed widget", "widget.dismissed"},
	{"Qualified for widget", "widget.qualified"},
	{"Clicked widget", "widget.clicked"},
	{"Submitted widget form", "widget.form_submitted"},
	{"Responded to widget survey", "widget.survey_responded"},
	{"Submitted NPS", "widget.nps_submitted"},
	{"Watched widget video", "widget.video_watched"},
	{"Spun widget wheel", "widget.wheel_spun"},
	{"Redeemed discount", "widget.discount_redeemed"},
	// Talk.
	{"Conversation opened", "conversation.opened"},
	{"Conversation assigned", "conversation.assigned"},
	{"Conversation closed", "conversation.closed"},
	{"Conversation snoozed", "conversation.snoozed"},
	{"Conversation rated", "conversation.rated"},
	{"Conversation marked as spam", "conversation.marked_spam"},
	{"Voice call started", "voice_call.started"},
	{"Voice call ended", "voice_call.ended"},
	{"Conversation tagged", "conversation.tagged"},
	{"Conversation untagged", "conversation.untagged"},
	{"Saved reply used", "saved_reply.used"},
	{"AI message used", "ai_message.used"},
	// Knowledge base.
	{"Article feedback submitted", "article.feedback_submitted"},
}

func TestDocumentTablesAreComplete(t *testing.T) {
	if got, want := len(odpNames), 31; got != want {
		t.Errorf("odpNames has %d rows, the ODP document lists %d type/action pairs", got, want)
	}
	if got, want := len(orttoNames), 69; got != want {
		t.Errorf("orttoNames has %d rows, the Ortto document lists %d activities", got, want)
	}
	if got, want := len(Builtin().Entries()), 31+69-4; got != want {
		t.Errorf("Builtin has %d entries, want %d (4 Ortto activities merge into ODP events)", got, want)
	}
}

func TestLookupODPNames(t *testing.T) {
	for _, tc := range odpNames {
		t.Run(tc.in, func(t *testing.T) {
			e, ok := Builtin().Lookup(tc.in)
			if !ok {
				t.Fatalf("Lookup(%q) found nothing", tc.in)
			}
			if e.Name != tc.want {
				t.Errorf("Lookup(%q).Name = %q, want %q", tc.in, e.Name, tc.want)
			}
			if e.Type+dotAction(e.Action) != e.Name || e.Description == "" || e.Custom {
				t.Errorf("Lookup(%q) = %+v: inconsistent entry", tc.in, e)
			}
		})
	}
}

func TestLookupOrttoNames(t *testing.T) {
	extra := []struct{ in, want string }{
		{"Successful journey action", "journey.action_succeeded"},
		{"Successful playbook action", "playbook.action_succeeded"},
	}
	for _, tc := range append(slices.Clone(orttoNames), extra...) {
		t.Run(tc.in, func(t *testing.T) {
			e, ok := Builtin().Lookup(tc.in)
			if !ok {
				t.Fatalf("Lookup(%q) found nothing", tc.in)
			}
			if e.Name != tc.want {
				t.Errorf("Lookup(%q).Name = %q, want %q", tc.in, e.Name, tc.want)
			}
			if !slices.Contains(e.Aliases, tc.in) {
				t.Errorf("Lookup(%q).Aliases = %q, want it listed as spelled", tc.in, e.Aliases)
			}
			if strings.Contains(e.Description, "Learn more") || e.Description == "" {
				t.Errorf("Lookup(%q).Description = %q", tc.in, e.Description)
			}
		})
	}
}

func TestPrimaryAliasIsOrttoSpelling(t *testing.T) {
	for _, name := range []string{"journey.action_succeeded", "playbook.action_succeeded"} {
		e, _ := Builtin().Lookup(name)
		if len(e.Aliases) != 2 || !strings.HasPrefix(e.Aliases[0], "Succesful ") {
			t.Errorf("%s aliases = %q, want Ortto's spelling first, then the correct one", name, e.Aliases)
		}
	}
}

func TestLookupNormalizesAliasesOnly(t *testing.T) {
	tests := []struct {
		in   string
		want string // "" = not found
	}{
		{"  opened EMAIL\t", "email.open"},
		{"OPENED EMAIL", "email.open"},
		{"\nsuccesful JOURNEY action ", "journey.action_succeeded"},
		{"abuse reported", "email.spamreport"},
		{"email.open", "email.open"},
		{"Email.Open", ""},
		{" email.open", ""},
		{"email.opened", ""},
		{"opened", ""},
		{"", ""},
		{"Opened  email", ""},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			e, ok := Builtin().Lookup(tc.in)
			if ok != (tc.want != "") || e.Name != tc.want {
				t.Errorf("Lookup(%q) = %q, %v; want %q", tc.in, e.Name, ok, tc.want)
			}
		})
	}
}

func TestNamesAndAliasesUnique(t *testing.T) {
	names := map[string]bool{}
	aliases := map[string]string{}
	for _, e := range Builtin().Entries() {
		if names[e.Name] {
			t.Errorf("name %q appears twice", e.Name)
		}
		names[e.Name] = true
		for _, a := range e.Aliases {
			key := strings.ToLower(a)
			if other, dup := aliases[key]; dup {
				t.Errorf("alias %q of %s is also an alias of %s", a, e.Name, other)
			}
			aliases[key] = e.Name
		}
	}
	for a := range aliases {
		if names[a] {
			t.Errorf("alias %q is also a canonical name", a)
		}
	}
}

func TestEntriesSortedAndWellFormed(t *testing.T) {
	entries := Builtin().Entries()
	if !slices.IsSortedFunc(entries, func(a, b Entry) int { return strings.Compare(a.Name, b.Name) }) {
		t.Error("Entries() is not sorted by Name")
	}
	for _, e := range entries {
		typ, action, err := ParseName(e.Name)
		if err != nil || typ != e.Type || action != e.Action {
			t.Errorf("%s: type %q action %q, ParseName gives %q %q %v", e.Name, e.Type, e.Action, typ, action, err)
		}
		if e.Aliases == nil || e.Description == "" || e.Custom {
			t.Errorf("%s: aliases %v, description %q, custom %v", e.Name, e.Aliases, e.Description, e.Custom)
		}
	}
}

func TestEntriesJSON(t *testing.T) {
	cat, err := Builtin().With(Entry{Name: "invoice.paid"})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(cat.Entries())
	if err != nil {
		t.Fatal(err)
	}
	var got []map[string]any
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	byName := map[string]map[string]any{}
	for _, m := range got {
		byName[m["name"].(string)] = m
	}
	tests := []struct {
		name, key string
		want      string
	}{
		{"pageview", "action", `""`},
		{"pageview", "aliases", `[]`},
		{"pageview", "custom", `null`},
		{"email.open", "type", `"email"`},
		{"email.open", "aliases", `["Opened email"]`},
		{"invoice.paid", "custom", `true`},
		{"invoice.paid", "aliases", `[]`},
	}
	for _, tc := range tests {
		t.Run(tc.name+"/"+tc.key, func(t *testing.T) {
			v, err := json.Marshal(byName[tc.name][tc.key])
			if err != nil {
				t.Fatal(err)
			}
			if string(v) != tc.want {
				t.Errorf("%s %s = %s, want %s", tc.name, tc.key, v, tc.want)
			}
		})
	}
}

func TestCatalogIsImmutable(t *testing.T) {
	e, _ := Builtin().Lookup("email.open")
	e.Aliases[0] = "changed"
	list := Builtin().Entries()
	for i := range list {
		list[i].Name = "changed"
		if len(list[i].Aliases) > 0 {
			list[i].Aliases[0] = "changed"
		}
	}
	got, ok := Builtin().Lookup("Opened email")
	if !ok || got.Name != "email.open" || got.Aliases[0] != "Opened email" {
		t.Errorf("catalog changed through a returned entry: %+v, %v", got, ok)
	}
}

func TestWith(t *testing.T) {
	tests := []struct {
		name    string
		custom  []Entry
		wantErr error // nil = success
	}{
		{"none", nil, nil},
		{"new", []Entry{{Name: "invoice.paid", Aliases: []string{"Invoice paid"}, Description: "Paid."}}, nil},
		{"one part", []Entry{{Name: "signup"}}, nil},
		{"type and action given", []Entry{{Name: "invoice.sent", Type: "invoice", Action: "sent"}}, nil},
		{"duplicate of builtin", []Entry{{Name: "email.open"}}, ErrDuplicate},
		{"duplicate of builtin one part", []Entry{{Name: "pageview"}}, ErrDuplicate},
		{"duplicate among custom", []Entry{{Name: "invoice.paid"}, {Name: "invoice.paid"}}, ErrDuplicate},
		{"alias taken", []Entry{{Name: "invoice.paid", Aliases: []string{"opened EMAIL"}}}, ErrDuplicate},
		{"alias is a name", []Entry{{Name: "invoice.paid", Aliases: []string{"email.open"}}}, ErrDuplicate},
		{"alias twice", []Entry{{Name: "invoice.paid", Aliases: []string{"Paid", "paid "}}}, ErrDuplicate},
		{"empty alias", []Entry{{Name: "invoice.paid", Aliases: []string{" "}}}, ErrInvalidName},
		{"upper case", []Entry{{Name: "Invoice.paid"}}, ErrInvalidName},
		{"three parts", []Entry{{Name: "invoice.paid.late"}}, ErrInvalidName},
		{"empty", []Entry{{Name: ""}}, ErrInvalidName},
		{"empty action", []Entry{{Name: "invoice."}}, ErrInvalidName},
		{"wildcard", []Entry{{Name: "invoice.*"}}, ErrInvalidName},
		{"space", []Entry{{Name: "invoice paid"}}, ErrInvalidName},
		{"type mismatch", []Entry{{Name: "invoice.paid", Type: "bill"}}, ErrInvalidName},
		{"action mismatch", []Entry{{Name: "invoice", Action: "paid"}}, ErrInvalidName},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(Builtin().Entries())
			cat, err := Builtin().With(tc.custom...)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("With() error = %v, want %v", err, tc.wantErr)
			}
			if after := len(Builtin().Entries()); after != before {
				t.Errorf("Builtin changed size from %d to %d", before, after)
			}
			if tc.wantErr != nil {
				if cat != nil {
					t.Error("With() returned a catalog along with an error")
				}
				return
			}
			checkWith(t, cat, before, tc.custom)
		})
	}
}

func checkWith(t *testing.T, cat *Catalog, before int, custom []Entry) {
	t.Helper()
	entries := cat.Entries()
	if len(entries) != before+len(custom) {
		t.Errorf("With() has %d entries, want %d", len(entries), before+len(custom))
	}
	if !slices.IsSortedFunc(entries, func(a, b Entry) int { return strings.Compare(a.Name, b.Name) }) {
		t.Error("Entries() is not sorted after With()")
	}
	for _, c := range custom {
		e, ok := cat.Lookup(c.Name)
		if !ok || !e.Custom || e.Type+dotAction(e.Action) != c.Name || e.Description != c.Description {
			t.Errorf("Lookup(%q) = %+v, %v", c.Name, e, ok)
		}
		for _, a := range c.Aliases {
			if got, ok := cat.Lookup(a); !ok || got.Name != c.Name {
				t.Errorf("Lookup(alias %q) = %q, %v; want %q", a, got.Name, ok, c.Name)
			}
		}
		if _, ok := Builtin().Lookup(c.Name); ok {
			t.Errorf("Builtin() now knows %q", c.Name)
		}
	}
	if e, ok := cat.Lookup("Opened email"); !ok || e.Custom {
		t.Errorf("builtin entry lost or marked custom after With(): %+v, %v", e, ok)
	}
}

func TestMatch(t *testing.T) {
	tests := []struct {
		pattern string
		want    []string // nil = check only the count
		count   int
	}{
		{"pageview", []string{"pageview"}, 1},
		{"*.open", []string{"email.open", "push.open"}, 2},
		{"*.click", []string{"email.click", "web_embed.click", "web_modal.click"}, 3},
		{"journey.*", []string{"journey.action_failed", "journey.action_succeeded", "journey.left", "journey.started"}, 4},
		{"email.*", nil, 7 + 11},
		{"sms.*", nil, 16},
		{"*.*", nil, 31 + 69 - 4 - 1},
		{"*", nil, 31 + 69 - 4},
		{"nothing.*", nil, 0},
		{"email", nil, 0},
		{"Email.*", nil, 0},
		{"email.open.x", nil, 0},
	}
	for _, tc := range tests {
		t.Run(tc.pattern, func(t *testing.T) {
			got := Builtin().Match(tc.pattern)
			if len(got) != tc.count {
				t.Errorf("Match(%q) gave %d entries, want %d", tc.pattern, len(got), tc.count)
			}
			names := make([]string, len(got))
			for i, e := range got {
				names[i] = e.Name
				if !Matches(tc.pattern, e.Name) {
					t.Errorf("Match(%q) gave %q, which it does not match", tc.pattern, e.Name)
				}
			}
			if tc.want != nil && !slices.Equal(names, tc.want) {
				t.Errorf("Match(%q) = %q, want %q", tc.pattern, names, tc.want)
			}
		})
	}
}

func dotAction(action string) string {
	if action == "" {
		return ""
	}
	return "." + action
}
