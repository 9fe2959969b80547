// Package consent keeps each person's state on the channels Relay's
// destinations reach them by (email, sms), derived from the catalog's
// consent, subscription, reachability, bounce and abuse activities, in a
// JetStream KV bucket every process shares; and decides whether an activity
// may reach a destination that declares `consent: email` or `consent: sms`.
package consent

import ()

// Channel is a way of reaching a person: its identifier is a field of the
// activity's contact.
type Channel string

// The channels a destination's `consent:` names.
const (
	Email Channel = "email" // by contact.email, compared case-insensitively
	SMS   Channel = "sms"   // by contact.phone, compared on its digits and a leading +
)

// Channels lists every channel.
var Channels = []Channel{Email, SMS}

// State is what a consent activity says of a person on one channel.
type State string

// The states. Two facets are kept apart (see Facet): a wish (what the
// person asked) and reachability (whether the address works).
const (
	OptedIn       State = "opted_in"
	OptedOut      State = "opted_out"
	Subscribed    State = "subscribed"
	Unsubscribed  State = "unsubscribed"
	AbuseReported State = "abuse_reported"
	Reachable     State = "reachable"
	Unreachable   State = "unreachable"
	Bounced       State = "hard_bounced"
)

// Suppresses says whether a person in state s on a channel gets nothing
// more by it.
func (s State) Suppresses() bool {
	switch s {
	case OptedOut, Unsubscribed, AbuseReported, Unreachable, Bounced:
		return true
	}
	return false
}

// Facet is the part of a channel's state an activity sets. A person's
// wish and the address's reachability are resolved apart: a later
// subscription does not make a hard-bounced address work, and a later
// "reachable" does not undo an opt-out.
type Facet string

// The facets.
const (
	Wish  Facet = "wish"
	Reach Facet = "reach"
)

// Facet is the facet state s belongs to.
func (s State) Facet() Facet {
	switch s {
	case Reachable, Unreachable, Bounced:
		return Reach
	}
	return Wish
}

// Words says the state as the trace does ("opted out").
func (s State) Words() string {
	switch s {
	case OptedIn:
		return "opted in"
	case OptedOut:
		return "opted out"
	case AbuseReported:
		return "reported abuse"
	case Bounced:
		return "hard-bounced"
	}
	return string(s)
}

// Rule is one row of the table: activity Name sets State on Channel, or,
// when Channel is "", on every channel whose identifier the activity's
// contact carries (ODP's consent, reachability and list events are "with
// specified identifier").
type Rule struct {
	Name    string
	Channel Channel
	State   State
}

// Table is which activity sets which state on which channel. docs/consent.md
// shows it; a test checks both against each other and against the catalog.
var Table = []Rule{
	{"consent.opt-in", "", OptedIn},
	{"consent.opt-out", "", OptedOut},
	{"list.subscribe", "", Subscribed},
	{"list.unsubscribe", "", Unsubscribed},
	{"reachability.reachable", "", Reachable},
	{"reachability.unreachable", "", Unreachable},
	{"email.subscribed", Email, Subscribed},
	{"email.unsubscribed", Email, Unsubscribed},
	{"email.hard_bounce", Email, Bounced},
	{"email.bounce", Email, Bounced},
	{"email.spamreport", Email, AbuseReported},
	{"sms.subscribed", SMS, Subscribed},
	{"sms.unsubscribed", SMS, Unsubscribed},
	{"sms.bounced", SMS, Bounced},
	{"sms.abuse_reported", SMS, AbuseReported},
}

// Passing are the catalog's activities about consent, subscription,
// bounces or abuse that set no channel state, and why: they are delivered
// like any other (and, like the Table's, never suppressed).
var Passing = map[string]string{
	"email.soft_bounce":           "a temporary refusal: the address still works",
	"sms.deferred":                "a temporary refusal: the number still works",
	"email.deferred":              "a temporary refusal: the address still works",
	"email.invalid":               "one message could not be sent; says nothing of the address for good",
	"sms.invalid":                 "one message could not be sent; says nothing of the number for good",
	"email.audience_subscribed":   "one audience of the channel, not the channel",
	"email.audience_unsubscribed": "one audience of the channel, not the channel",
	"sms.audience_subscribed":     "one audience of the channel, not the channel",
	"sms.audience_unsubscribed":   "one audience of the channel, not the channel",
	"sms.consent_requested":       "a request, not an answer",
	"sms.consent_failed":          "no answer was given: what was given before stands",
	"push.add_token":              "push is not a channel a destination declares",
	"push.remove_token":           "push is not a channel a destination declares",
	"conversation.marked_spam":    "an agent's verdict on a conversation, not the person's wish",
}

// rules are Table's rows by activity name.
var rules = func() map[string]Rule {
	m := make(map[string]Rule, len(Table))
	for _, r := range Table {
		m[r.Name] = r
	}
	return m
}()

// RuleOf is the row of an activity, false for an activity that sets no
// state.
func RuleOf(name string) (Rule, bool) {
	r, ok := rules[name]
	return r, ok
}

// Passes says whether an activity always reaches a consent destination:
// the consent activities themselves (Table and Passing) are never
// suppressed, so a destination keeping its own list learns of every wish.
func Passes(name string) bool {
	if _, ok := rules[name]; ok {
		return true
	}
	_, ok := Passing[name]
	return ok
}
