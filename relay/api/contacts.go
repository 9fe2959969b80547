package api

import "time"

// Contact is GET /v1/contacts: a person's channel states and their newest
// retained activities with their status at every destination.
type Contact struct {
	Channels   map[string]ChannelState `json:"channels"`
	Activities []ContactActivity       `json:"activities"`
	// Scanned is how many stored activities the lookup read.
	Scanned int `json:"scanned"`
}

// ChannelState is a person's state on one channel: the one that decides
// (state, since, the activity that set it) and both facets.
type ChannelState struct {
	State      string     `json:"state"`
	Since      time.Time  `json:"since"`
	ActivityID string     `json:"activity_id"`
	Name       string     `json:"name"`
	Suppressed bool       `json:"suppressed"`
	Wish       *StateMark `json:"wish,omitempty"`
	Reach      *StateMark `json:"reach,omitempty"`
}

// StateMark is one facet of a channel state.
type StateMark struct {
	State      string    `json:"state"`
	Since      time.Time `json:"since"`
	ActivityID string    `json:"activity_id"`
	Name       string    `json:"name"`
}

// ContactActivity is one of a person's activities in GET /v1/contacts.
type ContactActivity struct {
	ID           string               `json:"id"`
	Name         string               `json:"name"`
	ReceivedAt   time.Time            `json:"received_at"`
	Destinations []ContactDestination `json:"destinations"`
}

// ContactDestination is an activity's status at one destination, as a
// trace gives it.
type ContactDestination struct {
	Name   string `json:"name"`
	Status string `json:"status"`
}

// EraseRequest is POST /v1/contacts/erase: exactly one of the fields.
type EraseRequest struct {
	Email string `json:"email,omitempty"`
	Phone string `json:"phone,omitempty"`
	ID    string `json:"id,omitempty"`
}

// EraseResult is what an erasure removed.
type EraseResult struct {
	Erased         ErasedCounts `json:"erased"`
	IdentifierHash string       `json:"identifier_hash"`
	TookMS         int64        `json:"took_ms"`
}

// ErasedCounts counts what an erasure removed, by kind.
type ErasedCounts struct {
	Activities       int `json:"activities"`
	Queued           int `json:"queued"`
	AttemptHistories int `json:"attempt_histories"`
	DeadLetters      int `json:"dead_letters"`
	LogEntries       int `json:"log_entries"`
}
