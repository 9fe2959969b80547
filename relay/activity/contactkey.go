package activity

import (
	"bytes"
	"encoding/json"
	"strings"
)

// DefaultContactKeys name a contact when a destination's order_key is not
// set: the first present of them.
var DefaultContactKeys = []string{"contact.id", "contact.email", "contact.phone"}

// ContactKey names the contact of an activity (its stored JSON) by the
// first of paths it has, as "path=value" for a string and "path:literal"
// for a number or a boolean, so that the id 777 and the id "777" are two
// contacts; "" when the activity has none.
func ContactKey(raw []byte, paths []string) string {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(raw, &top); err != nil {
		return ""
	}
	for _, path := range paths {
		if v, text := lookupKey(top, strings.Split(path, ".")); v != "" {
			if !text {
				return path + ":" + v
			}
			return path + "=" + v
		}
	}
	return ""
}

// lookupKey follows path through nested objects and returns the value's
// text: a string's content (text true), or a number's or a boolean's
// literal.
func lookupKey(obj map[string]json.RawMessage, path []string) (v string, text bool) {
	raw, ok := obj[path[0]]
	if !ok {
		return "", false
	}
	if len(path) > 1 {
		var next map[string]json.RawMessage
		if err := json.Unmarshal(raw, &next); err != nil {
			return "", false
		}
		return lookupKey(next, path[1:])
	}
	raw = bytes.TrimSpace(raw)
	switch {
	case len(raw) == 0 || string(raw) == "null" || raw[0] == '{' || raw[0] == '[':
		return "", false
	case raw[0] == '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", false
		}
		return s, true
	}
	return string(raw), false
}
