// Package activity defines the activity Relay moves and the built-in catalog of
// activities it knows.
package activity

import "time"

// Activity is one thing that happened to a person, as stored in JetStream and
// sent as the "data" of a webhook.
type Activity struct {
	ID         string         `json:"id"`
	Name       string         `json:"name"`               // canonical "type.action" ("pageview" has no action)
	Type       string         `json:"type"`               // first part of Name
	Action     string         `json:"action"`             // second part of Name, "" when there is none
	Activity   string         `json:"activity,omitempty"` // the Ortto display name, when the catalog has one
	OccurredAt time.Time      `json:"occurred_at"`
	ReceivedAt time.Time      `json:"received_at"`
	Contact    map[string]any `json:"contact,omitempty"`
	Attributes map[string]any `json:"attributes,omitempty"`
}
