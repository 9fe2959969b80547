package activity

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
)

// ErrDuplicate is wrapped by the error of a catalog that would hold a name or
// an alias twice.
var ErrDuplicate = errors.New("duplicate activity")

// Entry is one activity the catalog knows.
type Entry struct {
	Name        string   `json:"name"`        // canonical "type.action", or "type" alone
	Type        string   `json:"type"`        // first part of Name
	Action      string   `json:"action"`      // second part of Name, "" for pageview
	Aliases     []string `json:"aliases"`     // Ortto display names, first is the primary one; never nil
	Description string   `json:"description"` // what the activity records
	Custom      bool     `json:"custom,omitempty"`
}

// Catalog is an immutable set of activities, found by canonical name or by
// alias. Every method is safe for concurrent use.
type Catalog struct {
	entries []Entry        // sorted by Name
	byName  map[string]int // canonical name -> index in entries
	byAlias map[string]int // aliasKey(alias) -> index in entries
}

// Builtin is the catalog of every ODP event and Ortto system activity. It
// is built once and shared.
func Builtin() *Catalog {
	return builtinOnce()
}

var builtinOnce = sync.OnceValue(func() *Catalog {
	c, err := build(builtinEntries)
	if err != nil {
		panic(fmt.Sprintf("activity: built-in catalog: %v", err))
	}
	return c
})

// Entries lists every activity, sorted by Name. The slice is the caller's.
func (c *Catalog) Entries() []Entry {
	out := make([]Entry, len(c.entries))
	for i, e := range c.entries {
		out[i] = e.clone()
	}
	return out
}

// Lookup finds an activity by its exact canonical name ("email.open") or by
// an alias ("Opened email"), the latter ignoring case and surrounding space.
func (c *Catalog) Lookup(nameOrAlias string) (Entry, bool) {
	i, ok := c.byName[nameOrAlias]
	if !ok {
		i, ok = c.byAlias[aliasKey(nameOrAlias)]
	}
	if !ok {
		return Entry{}, false
	}
	return c.entries[i].clone(), true
}

// Match lists the activities pattern selects (see Matches), sorted by Name;
// none for an invalid pattern.
func (c *Catalog) Match(pattern string) []Entry {
	if ValidPattern(pattern) != nil {
		return nil
	}
	var out []Entry
	for _, e := range c.entries {
		if Matches(pattern, e.Name) {
			out = append(out, e.clone())
		}
	}
	return out
}

// With returns a new catalog holding c's activities plus custom ones, each
// marked Custom. Type and Action may be left empty (they follow from Name);
// it fails on an invalid name and on a name or alias already taken. c is
// left unchanged.
func (c *Catalog) With(custom ...Entry) (*Catalog, error) {
	all := c.Entries()
	for _, e := range custom {
		e.Custom = true
		all = append(all, e)
	}
	out, err := build(all)
	if err != nil {
		return nil, fmt.Errorf("add custom activities: %w", err)
	}
	return out, nil
}

// build checks entries, completes their Type and Action, and indexes them.
func build(entries []Entry) (*Catalog, error) {
	out := make([]Entry, 0, len(entries))
	for _, e := range entries {
		e, err := complete(e)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b Entry) int { return strings.Compare(a.Name, b.Name) })
	c := &Catalog{entries: out, byName: make(map[string]int, len(out)), byAlias: map[string]int{}}
	for i, e := range out {
		if _, dup := c.byName[e.Name]; dup {
			return nil, fmt.Errorf("%w: name %q is declared twice", ErrDuplicate, e.Name)
		}
		c.byName[e.Name] = i
	}
	return c, c.indexAliases()
}

func (c *Catalog) indexAliases() error {
	for i, e := range c.entries {
		for _, a := range e.Aliases {
			key := aliasKey(a)
			if j, dup := c.byAlias[key]; dup {
				return fmt.Errorf("%w: alias %q of %q is already used by %q", ErrDuplicate, a, e.Name, c.entries[j].Name)
			}
			if _, dup := c.byName[key]; dup {
				return fmt.Errorf("%w: alias %q of %q is the name of an activity", ErrDuplicate, a, e.Name)
			}
			c.byAlias[key] = i
		}
	}
	return nil
}

// complete validates e's name and aliases and fills Type and Action.
func complete(e Entry) (Entry, error) {
	typ, action, err := ParseName(e.Name)
	if err != nil {
		return Entry{}, err
	}
	if (e.Type != "" && e.Type != typ) || (e.Action != "" && e.Action != action) {
		return Entry{}, fmt.Errorf("%w %q: type %q and action %q do not match it", ErrInvalidName, e.Name, e.Type, e.Action)
	}
	e.Type, e.Action = typ, action
	aliases := make([]string, 0, len(e.Aliases))
	for _, a := range e.Aliases {
		a = strings.TrimSpace(a)
		if a == "" {
			return Entry{}, fmt.Errorf("%w %q: empty alias", ErrInvalidName, e.Name)
		}
		aliases = append(aliases, a)
	}
	e.Aliases = aliases
	return e, nil
}

func (e Entry) clone() Entry {
	e.Aliases = append(make([]string, 0, len(e.Aliases)), e.Aliases...)
	return e
}

func aliasKey(alias string) string {
	return strings.ToLower(strings.TrimSpace(alias))
}

// builtinEntries are the activities of the two source documents: every
// Optimizely Data Platform (ODP) event type/action, named as ODP spells it,
// and every Ortto system activity, its display name as an alias. Where both
// name the same event they share one entry.
var builtinEntries = []Entry{
	// ODP: e-commerce & website.
	{Name: "pageview", Description: "User viewed a webpage"},
	{Name: "product.detail", Description: "User viewed a product page"},
	{Name: "product.add_to_cart", Description: "User added product to cart"},
	{Name: "product.remove_from_cart", Description: "User removed product from cart"},
	{Name: "order.purchase", Description: "User ordered (with line items)"},
	{Name: "order.cancel", Description: "Order was canceled for User"},
	{Name: "order.return", Description: "User returned item"},

	// ODP email, merged with Ortto where it is the same event, then Ortto email.
	{Name: "email.sent", Aliases: []string{"Sent email"}, Description: "Email sent to user: this activity is recorded when the email has been successfully sent to the recipient's email server."},
	{Name: "email.open", Aliases: []string{"Opened email"}, Description: "This activity is recorded when the recipient opens the email."},
	{Name: "email.click", Aliases: []string{"Clicked email"}, Description: "This activity is recorded when the recipient has clicked on a link within the email. We record one activity per link click."},
	{Name: "email.abort", Description: "Email send was aborted to the user"},
	{Name: "email.soft_bounce", Description: "Email soft bounced to user: the address is valid but delivery was temporarily refused (server down, mailbox full, message too large); delivery is retried for up to 72 hours"},
	{Name: "email.hard_bounce", Description: "Email hard bounced to user: the message was permanently rejected (the address is invalid or does not exist); the address is suppressed"},
	{Name: "email.spamreport", Aliases: []string{"Abuse reported"}, Description: "This activity is recorded when a contact marks your email as spam."},
	{Name: "email.received", Aliases: []string{"Received email"}, Description: "This activity is recorded when the recipient's email server has accepted the email sent from our system."},
	{Name: "email.reacted", Aliases: []string{"Reacted to email"}, Description: "This activity is recorded when the contact reacts to the email through the reactions element."},
	{Name: "email.forwarded", Aliases: []string{"Forwarded email"}, Description: "This activity is recorded when the contact has forwarded the email to another person through the forward footer link."},
	{Name: "email.viewed_online", Aliases: []string{"Viewed email online"}, Description: "This activity is recorded when the contact views the email online through the view online footer link."},
	{Name: "email.bounce", Aliases: []string{"Bounced email"}, Description: "This activity is recorded when the contact bounces."},
	{Name: "email.deferred", Aliases: []string{"Deferred email"}, Description: "This activity is recorded when the recipient’s mail server has temporarily refused delivery."},
	{Name: "email.invalid", Aliases: []string{"Invalid email"}, Description: "This activity is recorded when the email cannot be sent."},
	{Name: "email.subscribed", Aliases: []string{"Subscribed to email"}, Description: "This activity is recorded when a contact subscribes to receive emails."},
	{Name: "email.unsubscribed", Aliases: []string{"Unsubscribed from email"}, Description: "This activity is recorded when a contact unsubscribes from receiving emails."},
	{Name: "email.audience_subscribed", Aliases: []string{"Subscribed to email audience"}, Description: "This activity is recorded when a contact subscribes to a specific email audience."},
	{Name: "email.audience_unsubscribed", Aliases: []string{"Unsubscribed from email audience"}, Description: "This activity is recorded when a contact unsubscribes from a specific email audience."},

	// ODP: mobile/web push, subscription, consent, reachability.
	{Name: "push.sent", Description: "Push sent to user"},
	{Name: "push.open", Description: "Push tapped by user"},
	{Name: "push.add_token", Description: "User subscribed for push"},
	{Name: "push.remove_token", Description: "User blocked push for that token"},
	{Name: "list.subscribe", Description: "User subscribes to a list"},
	{Name: "list.unsubscribe", Description: "User unsubscribes from a list"},
	{Name: "consent.opt-in", Description: "User opts in to marketing communications with specified identifier"},
	{Name: "consent.opt-out", Description: "User opts out of marketing communications with specified identifier"},
	{Name: "reachability.reachable", Description: "User is reachable via specified identifier"},
	{Name: "reachability.unreachable", Description: "User is not reachable via specified identifier"},

	// ODP: web campaigns.
	{Name: "web_modal.impression", Description: "User viewed web modal"},
	{Name: "web_modal.submission", Description: "User submitted form for modal"},
	{Name: "web_modal.click", Description: "User clicked a link that is not a form submission"},
	{Name: "web_modal.exit", Description: "User exited without any clicks or submissions"},
	{Name: "web_embed.impression", Description: "User viewed web embed (when at least 50% of the embed is on the screen)"},
	{Name: "web_embed.submission", Description: "User submitted the form in the embed"},
	{Name: "web_embed.click", Description: "User clicked a link that is not a form submission"},

	// Ortto: general.
	{Name: "conversion.attributed", Aliases: []string{"Attributed"}, Description: "This activity is recorded when a conversion takes place."},
	{Name: "audience.entered", Aliases: []string{"Entered audience"}, Description: "This activity is recorded when a contact becomes part of a specific audience."},
	{Name: "audience.left", Aliases: []string{"Left audience"}, Description: "This activity is recorded when a contact is no longer part of a specific audience."},
	{Name: "user_session.started", Aliases: []string{"User session"}, Description: "This activity is recorded when a known contact visits your website/app."},
	{Name: "website_session.started", Aliases: []string{"Website session"}, Description: "This activity is recorded when an anonymous person visits your website/app."},
	{Name: "tag.added", Aliases: []string{"Tag added"}, Description: "This activity is recorded when a tag is added to a contact."},
	{Name: "tag.removed", Aliases: []string{"Tag removed"}, Description: "This activity is recorded when a tag is removed from a contact."},

	// Ortto: SMS.
	{Name: "sms.sent", Aliases: []string{"Sent SMS"}, Description: "This activity is recorded when an SMS message has been successfully sent."},
	{Name: "sms.delivered", Aliases: []string{"Delivered SMS"}, Description: "This activity is recorded when the recipient's mobile carrier has accepted the SMS message."},
	{Name: "sms.clicked", Aliases: []string{"Clicked SMS"}, Description: "This activity is recorded when the contact has clicked on a link within the SMS message."},
	{Name: "sms.replied", Aliases: []string{"Replied to SMS"}, Description: "This activity is recorded when the contact has replied to the SMS message."},
	{Name: "sms.survey_responded", Aliases: []string{"Responded to an SMS survey"}, Description: "This activity is recorded when the contact has responded to a survey sent via SMS."},
	{Name: "sms.nps_responded", Aliases: []string{"Responded to an SMS NPS"}, Description: "This activity is recorded when the contact has responded to an NPS sent via SMS."},
	{Name: "sms.bounced", Aliases: []string{"Bounced SMS"}, Description: "This activity is recorded when an SMS message sent to a user bounces."},
	{Name: "sms.deferred", Aliases: []string{"Deferred SMS"}, Description: "This activity is recorded when the delivery of an SMS message is deferred, typically due to temporary issues with the recipient's carrier."},
	{Name: "sms.invalid", Aliases: []string{"Invalid SMS"}, Description: "This activity is recorded when the SMS cannot be sent."},
	{Name: "sms.abuse_reported", Aliases: []string{"SMS abuse reported"}, Description: "This activity is recorded when a contact reports an SMS message as spam or abuse."},
	{Name: "sms.subscribed", Aliases: []string{"Subscribed to SMS"}, Description: "This activity is recorded when a contact subscribes to receive SMS messages."},
	{Name: "sms.unsubscribed", Aliases: []string{"Unsubscribed from SMS"}, Description: "This activity is recorded when a contact unsubscribes from receiving SMS messages."},
	{Name: "sms.audience_subscribed", Aliases: []string{"Subscribed to SMS audience"}, Description: "This activity is recorded when a contact subscribes to a specific SMS audience."},
	{Name: "sms.audience_unsubscribed", Aliases: []string{"Unsubscribed from SMS audience"}, Description: "This activity is recorded when a contact unsubscribes from a specific SMS audience."},
	{Name: "sms.consent_requested", Aliases: []string{"SMS consent requested"}, Description: "This activity is recorded when consent for SMS communication is requested from a contact."},
	{Name: "sms.consent_failed", Aliases: []string{"SMS consent failed"}, Description: "This activity is recorded when a contact fails to give consent for SMS communication."},

	// Ortto: journeys & playbooks ("Succesful" is Ortto's own spelling).
	{Name: "journey.started", Aliases: []string{"Started journey"}, Description: "This activity is recorded when a contact starts a journey."},
	{Name: "journey.left", Aliases: []string{"Left journey"}, Description: "This activity is recorded when a contact exits a journey."},
	{Name: "journey.action_succeeded", Aliases: []string{"Succesful journey action", "Successful journey action"}, Description: "This activity is recorded when a contact successfully completes an action within a journey."},
	{Name: "journey.action_failed", Aliases: []string{"Failed journey action"}, Description: "This activity is recorded when a user fails to complete an action within a journey."},
	{Name: "playbook.entered", Aliases: []string{"Entered playbook"}, Description: "This activity is recorded when a contact enters a playbook."},
	{Name: "playbook.left", Aliases: []string{"Left playbook"}, Description: "This activity is recorded when a contact exits a playbook."},
	{Name: "playbook.action_succeeded", Aliases: []string{"Succesful playbook action", "Successful playbook action"}, Description: "This activity is recorded when a contact successfully completes an action within a playbook."},
	{Name: "playbook.action_failed", Aliases: []string{"Failed playbook action"}, Description: "This activity is recorded when a user fails to complete an action within a playbook."},

	// Ortto: capture widgets.
	{Name: "widget.shown", Aliases: []string{"Shown widget"}, Description: "This activity is recorded when a widget is displayed to a user."},
	{Name: "widget.dismissed", Aliases: []string{"Dismissed widget"}, Description: "This activity is recorded when a user dismisses a widget."},
	{Name: "widget.qualified", Aliases: []string{"Qualified for widget"}, Description: "This activity is recorded when a contact meets the criteria to be shown a widget in a journey."},
	{Name: "widget.clicked", Aliases: []string{"Clicked widget"}, Description: "This activity is recorded when a user clicks on a widget."},
	{Name: "widget.form_submitted", Aliases: []string{"Submitted widget form"}, Description: "This activity is recorded when a contact submits a form within a widget."},
	{Name: "widget.survey_responded", Aliases: []string{"Responded to widget survey"}, Description: "This activity is recorded when a contact responds to a survey within a widget."},
	{Name: "widget.nps_submitted", Aliases: []string{"Submitted NPS"}, Description: "This activity is recorded when a contact submits an NPS survey within a widget."},
	{Name: "widget.video_watched", Aliases: []string{"Watched widget video"}, Description: "This activity is recorded when a user watches a video within a widget."},
	{Name: "widget.wheel_spun", Aliases: []string{"Spun widget wheel"}, Description: "This activity is recorded when a user spun a wheel within a widget."},
	{Name: "widget.discount_redeemed", Aliases: []string{"Redeemed discount"}, Description: "This activity is recorded when a contact redeemed a discount within a widget."},

	// Ortto: talk.
	{Name: "conversation.opened", Aliases: []string{"Conversation opened"}, Description: "This activity is recorded when a user starts a new conversation."},
	{Name: "conversation.assigned", Aliases: []string{"Conversation assigned"}, Description: "This activity is recorded when a conversation is assigned to an agent."},
	{Name: "conversation.closed", Aliases: []string{"Conversation closed"}, Description: "This activity is recorded when a conversation is marked as closed."},
	{Name: "conversation.snoozed", Aliases: []string{"Conversation snoozed"}, Description: "This activity is recorded when a conversation is marked as snoozed."},
	{Name: "conversation.rated", Aliases: []string{"Conversation rated"}, Description: "This activity is recorded when a user rates a conversation."},
	{Name: "conversation.marked_spam", Aliases: []string{"Conversation marked as spam"}, Description: "This activity is recorded when an agent marks a conversation as spam."},
	{Name: "conversation.tagged", Aliases: []string{"Conversation tagged"}, Description: "This activity is recorded when a tag is added to a conversation."},
	{Name: "conversation.untagged", Aliases: []string{"Conversation untagged"}, Description: "This activity is recorded when a tag is removed from a conversation."},
	{Name: "voice_call.started", Aliases: []string{"Voice call started"}, Description: "This activity is recorded when a call is initiated with a user."},
	{Name: "voice_call.ended", Aliases: []string{"Voice call ended"}, Description: "This activity is recorded when a call with a user ends."},
	{Name: "saved_reply.used", Aliases: []string{"Saved reply used"}, Description: "This activity is recorded when a saved reply is used in a conversation."},
	{Name: "ai_message.used", Aliases: []string{"AI message used"}, Description: "This activity is recorded when an AI-generated message is used in a conversation."},

	// Ortto: knowledge base.
	{Name: "article.feedback_submitted", Aliases: []string{"Article feedback submitted"}, Description: "This activity is recorded when a user submitted feedback on an article."},
}
