package consent

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Person names someone a lookup or an erasure is about: by their email,
// their phone number or their contact id.
type Person struct {
	Field string // "email", "phone" or "id"
	Value string // normalized (Normalize) for email and phone
	// needle is what a stored activity of the person must contain, for a
	// quick test before decoding (lower-cased for an email, the last
	// digits for a phone number).
	needle []byte
}

// maxIdentifier bounds an identifier given to a lookup or an erasure.
const maxIdentifier = 512

// NewPerson checks and normalizes an identifier; the error names the field.
func NewPerson(field, value string) (Person, error) {
	if len(value) > maxIdentifier || !utf8.ValidString(value) {
		return Person{}, fmt.Errorf("%s: want valid UTF-8 of at most %d bytes", field, maxIdentifier)
	}
	p := Person{Field: field}
	switch field {
	case "email":
		p.Value = Normalize(Email, value)
		if !strings.Contains(p.Value, "@") {
			return Person{}, fmt.Errorf("email: not an email address")
		}
		p.needle = []byte(p.Value)
	case "phone":
		p.Value = Normalize(SMS, value)
		digits := strings.TrimPrefix(p.Value, "+")
		if len(digits) < 4 {
			return Person{}, fmt.Errorf("phone: want at least 4 digits")
		}
		p.needle = []byte(digits[len(digits)-4:])
	case "id":
		p.Value = strings.TrimSpace(value)
		if p.Value == "" {
			return Person{}, fmt.Errorf("id: empty")
		}
		p.needle = []byte(p.Value)
	default:
		return Person{}, fmt.Errorf("%s: want one of email, phone, id", field)
	}
	return p, nil
}

// Channel is the channel a person is identified on ("" for a contact id).
func (p Person) Channel() Channel {
	switch p.Field {
	case "email":
		return Email
	case "phone":
		return SMS
	}
	return ""
}

// Hash names the person in the erasure record: "sha256:" and the hex
// SHA-256 of the field and the normalized value.
func (p Person) Hash() string { return "sha256:" + Hash(p.Field+":"+p.Value) }

// Might says whether data (a stored activity's JSON) may be the person's:
// false is sure, true needs Matches.
func (p Person) Might(data []byte) bool {
	if p.Field == "email" {
		return containsFold(data, p.needle)
	}
	return bytes.Contains(data, p.needle)
}

// Matches says whether a contact (JSON) is the person's.
func (p Person) Matches(contact json.RawMessage) bool {
	if len(contact) == 0 {
		return false
	}
	switch p.Field {
	case "email":
		return Identifier(Email, contact) == p.Value
	case "phone":
		return Identifier(SMS, contact) == p.Value
	}
	var c map[string]json.RawMessage
	if json.Unmarshal(contact, &c) != nil {
		return false
	}
	raw := bytes.TrimSpace(c["id"])
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s == p.Value
	}
	return string(raw) == p.Value // a number id, as written
}

// MatchesActivity says whether a stored activity's JSON is the person's.
func (p Person) MatchesActivity(data []byte) bool {
	if !p.Might(data) {
		return false
	}
	return p.Matches(ContactOf(data))
}

// containsFold reports whether data holds needle (lower-case ASCII or
// UTF-8) ignoring ASCII case.
func containsFold(data, needle []byte) bool {
	if len(needle) == 0 {
		return true
	}
	first := needle[0]
	upper := first
	if first >= 'a' && first <= 'z' {
		upper = first - 'a' + 'A'
	}
	for i := 0; i+len(needle) <= len(data); i++ {
		c := data[i]
		if c != first && c != upper {
			j := bytes.IndexByte(data[i+1:], first)
			k := -1
			if upper != first {
				k = bytes.IndexByte(data[i+1:], upper)
			}
			switch {
			case j < 0 && k < 0:
				return false
			case j < 0 || (k >= 0 && k < j):
				j = k
			}
			i += j // the loop's i++ moves onto the candidate
			continue
		}
		if equalFold(data[i:i+len(needle)], needle) {
			return true
		}
	}
	return false
}

// equalFold compares b to the lower-case needle ignoring ASCII case.
func equalFold(b, needle []byte) bool {
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != needle[i] {
			return false
		}
	}
	return true
}
