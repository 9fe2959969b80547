package consent

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// Mark is one facet of a channel's state: the state and the activity that
// set it.
type Mark struct {
	State      State     `json:"state"`
	Since      time.Time `json:"since"` // the activity's occurred_at
	ActivityID string    `json:"activity_id"`
	Name       string    `json:"name"`
}

// newer says whether m wins over old: the later occurred_at; at the same
// instant a suppressing state, then the greater activity id, so every
// process resolves the same way whatever order the activities came in.
func (m Mark) newer(old *Mark) bool {
	switch {
	case old == nil:
		return true
	case !m.Since.Equal(old.Since):
		return m.Since.After(old.Since)
	case m.State.Suppresses() != old.State.Suppresses():
		return m.State.Suppresses()
	}
	return m.ActivityID > old.ActivityID
}

// Record is a person's state on one channel: its two facets. It holds no
// identifier (the bucket's key is a hash of it).
type Record struct {
	Wish  *Mark `json:"wish,omitempty"`
	Reach *Mark `json:"reach,omitempty"`
}

// Apply returns r with m resolved into its facet by occurred_at, and
// whether it changed: a mark older than the facet's is ignored, so a late
// or out-of-order activity never undoes a newer one.
func (r Record) Apply(m Mark) (Record, bool) {
	slot := &r.Wish
	if m.State.Facet() == Reach {
		slot = &r.Reach
	}
	if !m.newer(*slot) {
		return r, false
	}
	*slot = &m
	return r, true
}

// Effective is the state that decides: a suppressing facet (the later one
// when both are), else the later facet; nil when nothing is known.
func (r Record) Effective() *Mark {
	w, c := r.Wish, r.Reach
	switch {
	case w == nil:
		return c
	case c == nil:
		return w
	case w.State.Suppresses() != c.State.Suppresses():
		if w.State.Suppresses() {
			return w
		}
		return c
	case c.newer(w):
		return c
	}
	return w
}

// Suppression is why an activity is not delivered: the channel's state and
// the activity that set it.
type Suppression struct {
	Channel Channel
	Mark    Mark
}

// String is the trace's line: "suppressed: email opted out at … by
// consent.opt-out 01J…".
func (s *Suppression) String() string {
	return "suppressed: " + string(s.Channel) + " " + s.Mark.State.Words() + " at " +
		s.Mark.Since.UTC().Format(time.RFC3339Nano) + " by " + s.Mark.Name + " " + s.Mark.ActivityID
}

// Normalize is the form an identifier is compared in: an email trimmed
// and lower-cased; a phone number's digits, with its leading + kept. ""
// when there is nothing left.
func Normalize(ch Channel, v string) string {
	v = strings.TrimSpace(v)
	if ch == Email {
		return strings.ToLower(v)
	}
	var b strings.Builder
	for i, r := range v {
		if r >= '0' && r <= '9' || r == '+' && i == 0 {
			b.WriteRune(r)
		}
	}
	if b.Len() == 0 || b.String() == "+" {
		return ""
	}
	return b.String()
}

// Identifier is the activity's contact's identifier on ch, normalized, ""
// when the contact has none. Names match exactly (jsonv2), as the
// producer wrote them.
func Identifier(ch Channel, contact json.RawMessage) string {
	if len(contact) == 0 {
		return ""
	}
	var c struct {
		Email jsontext.Value `json:"email"`
		Phone jsontext.Value `json:"phone"`
	}
	if jsonv2.Unmarshal(contact, &c) != nil {
		return ""
	}
	v := c.Email
	if ch == SMS {
		v = c.Phone
	}
	if v.Kind() != '"' {
		return ""
	}
	var s string
	if jsonv2.Unmarshal(v, &s) != nil {
		return ""
	}
	return Normalize(ch, s)
}

// Hash is the hex SHA-256 of a normalized identifier: the bucket's keys
// and the erasure record name a person by it, never by the identifier.
func Hash(ident string) string {
	sum := sha256.Sum256([]byte(ident))
	return hex.EncodeToString(sum[:])
}

// Key is the bucket key of a person's record on a channel.
func Key(ch Channel, ident string) string { return string(ch) + "." + Hash(ident) }

// contactKey and receivedKey are how Relay's encoder (activity.Encode)
// writes the keys: id, name, type, action, the times (values escaped
// strings, so their keys' first occurrences are the keys themselves), then
// the contact, then the attributes.
var (
	contactKey  = []byte(`,"contact":`)
	receivedKey = []byte(`"received_at":"`)
)

// ContactOf is the contact of a stored activity's JSON, read without
// decoding the rest (the attributes may be large) when Relay's encoder
// wrote it; nil when it has none.
func ContactOf(raw []byte) json.RawMessage {
	if i := bytes.Index(raw, receivedKey); i >= 0 {
		rest := raw[i+len(receivedKey):]
		if end := bytes.IndexByte(rest, '"'); end >= 0 {
			rest = rest[end+1:]
			if !bytes.HasPrefix(rest, contactKey) {
				if len(rest) > 0 && (rest[0] == '}' || bytes.HasPrefix(rest, []byte(`,"attributes":`))) {
					return nil // no contact
				}
			} else if c := objectAt(rest[len(contactKey):]); c != nil {
				return c
			}
		}
	}
	var a struct {
		Contact json.RawMessage `json:"contact"`
	}
	if json.Unmarshal(raw, &a) != nil {
		return nil
	}
	return a.Contact
}

// objectAt is the JSON object data starts with (valid JSON, as stored), nil
// when it does not start with one.
func objectAt(data []byte) json.RawMessage {
	if len(data) == 0 || data[0] != '{' {
		return nil
	}
	depth, inString, escaped := 0, false, false
	for i, c := range data {
		switch {
		case escaped:
			escaped = false
		case inString:
			escaped = c == '\\'
			inString = c != '"' || escaped
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			depth++
		case c == '}' || c == ']':
			if depth--; depth == 0 {
				return json.RawMessage(data[:i+1])
			}
		}
	}
	return nil
}
