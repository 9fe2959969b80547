package ingest

import (
	"bytes"
	stdjson "encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"time"
	"unicode"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/oklog/ulid/v2"

	"github.com/relaydev/relay/relay/activity"
	"github.com/relaydev/relay/relay/text"
	"github.com/relaydev/relay/relay/web"
)

// inbound is one activity as a producer sends it: Relay's own shape, or
// ODP's (identifiers for contact, data for attributes). contact and
// attributes stay the producer's JSON text.
type inbound struct {
	ID          string         `json:"id"`
	Type        string         `json:"type"`
	Action      string         `json:"action"`
	Activity    string         `json:"activity"`
	Name        string         `json:"name"`
	OccurredAt  string         `json:"occurred_at"`
	Contact     jsontext.Value `json:"contact"`
	Identifiers jsontext.Value `json:"identifiers"`
	Attributes  jsontext.Value `json:"attributes"`
	Data        jsontext.Value `json:"data"`
}

// itemError is a problem with one item of a request. Unknown marks an
// activity the catalog doesn't have (422); anything else is malformed (400).
type itemError struct {
	Field   string
	Message string
	Unknown bool
}

// Limits of what one activity may hold (docs/api.md lists them).
const (
	maxIDLen       = 128 // bytes of a client id
	maxDisplayName = 256 // bytes of an "activity" display name
)

// errTooMany stops reading a batch as soon as it has more items than allowed.
type errTooMany struct{ n int }

func (e errTooMany) Error() string { return fmt.Sprintf("more than %d activities", e.n) }

// badJSON is a JSON-level problem with one item of a body.
type badJSON struct {
	index   int // -1 when the body as a whole is wrong
	field   string
	message string
}

// splitItems returns the items of a body that holds one activity or an
// array of them, each checked as JSON (syntax, UTF-8, duplicate names),
// without decoding any value. A batch longer than maxItems stops early.
func splitItems(body []byte, maxItems int) ([]jsontext.Value, bool, error) {
	dec := jsontext.NewDecoder(bytes.NewReader(body), jsontext.AllowDuplicateNames(false), jsontext.AllowInvalidUTF8(false))
	var items []jsontext.Value
	batch := false
	switch dec.PeekKind() {
	case '[':
		batch = true
		if _, err := dec.ReadToken(); err != nil {
			return nil, batch, jsonProblem(err, -1)
		}
		for dec.PeekKind() != ']' {
			if len(items) == maxItems {
				return nil, batch, errTooMany{maxItems}
			}
			start := dec.InputOffset()
			v, err := dec.ReadValue()
			if err != nil {
				return nil, batch, locate(body[start:], len(items), err)
			}
			items = append(items, bytes.Clone(v))
		}
		if _, err := dec.ReadToken(); err != nil {
			return nil, batch, jsonProblem(err, len(items))
		}
	case '{':
		v, err := dec.ReadValue()
		if err != nil {
			// A lone object's pointer has no item index to drop.
			return nil, batch, jsonProblem(err, -1).at(0)
		}
		items = append(items, bytes.Clone(v))
	case 0:
		if len(bytes.TrimSpace(body)) == 0 {
			return nil, batch, &badJSON{index: -1, message: "empty body: expected an activity or an array of activities"}
		}
		_, err := dec.ReadToken()
		return nil, batch, jsonProblem(err, -1)
	default:
		return nil, batch, &badJSON{index: -1, message: "malformed JSON: expected an object or an array of objects"}
	}
	if _, err := dec.ReadToken(); err != io.EOF {
		return nil, batch, &badJSON{index: -1, message: fmt.Sprintf("malformed JSON: data after the %s at offset %d", map[bool]string{true: "array", false: "object"}[batch], dec.InputOffset())}
	}
	return items, batch, nil
}

// locate names the field of a syntax error inside one item of a batch by
// reading that item again token by token, which tracks the path exactly
// (the batch decoder's pointer can be off when more items follow).
func locate(rest []byte, index int, err error) *badJSON {
	rest = bytes.TrimLeft(rest, " \t\r\n,")
	dec := jsontext.NewDecoder(bytes.NewReader(rest), jsontext.AllowDuplicateNames(false), jsontext.AllowInvalidUTF8(false))
	for dec.StackDepth() > 0 || dec.InputOffset() == 0 {
		if _, terr := dec.ReadToken(); terr != nil {
			var se *jsontext.SyntacticError
			if errors.As(terr, &se) {
				return jsonProblem(terr, -1).at(index)
			}
			break
		}
	}
	return jsonProblem(err, index)
}

func (b *badJSON) at(index int) *badJSON {
	b.index = index
	return b
}

// jsonProblem turns a decoder error into a problem naming the item and
// field: the JSON pointer of a batch starts with the item's index.
func jsonProblem(err error, index int) *badJSON {
	p := &badJSON{index: index, message: "malformed JSON"}
	var se *jsontext.SyntacticError
	if errors.As(err, &se) {
		ptr := string(se.JSONPointer)
		if index >= 0 {
			ptr = dropFirstToken(ptr)
		}
		p.field = pointerField(ptr)
		p.message = "malformed JSON: " + web.Describe(se.Err)
		return p
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		p.message = "malformed JSON: the body ends in the middle of a value"
		return p
	}
	p.message = "malformed JSON: " + text.Clip(err.Error(), 200)
	return p
}

func dropFirstToken(ptr string) string {
	if !strings.HasPrefix(ptr, "/") {
		return ""
	}
	if i := strings.IndexByte(ptr[1:], '/'); i >= 0 {
		return ptr[1+i:]
	}
	return ""
}

// pointerField writes a JSON pointer (/attributes/a~1b) as a field path
// (attributes.a/b), clipped.
func pointerField(ptr string) string {
	if ptr == "" {
		return ""
	}
	parts := strings.Split(strings.TrimPrefix(ptr, "/"), "/")
	for i, p := range parts {
		parts[i] = strings.NewReplacer("~1", "/", "~0", "~").Replace(p)
	}
	return text.Clip(strings.Join(parts, "."), text.MaxQuote)
}

// decodeItem turns one item into an activity, or says what is wrong with it.
func decodeItem(raw jsontext.Value, cat *activity.Catalog, allowCustom bool, now time.Time) (*activity.Activity, []itemError) {
	var in inbound
	if err := json.Unmarshal(raw, &in, web.DecodeOptions); err != nil {
		return nil, []itemError{semanticError(err)}
	}
	return buildActivity(&in, cat, allowCustom, now)
}

func semanticError(err error) itemError {
	var se *json.SemanticError
	if errors.As(err, &se) {
		field := pointerField(string(se.JSONPointer))
		if se.Err != nil && strings.Contains(se.Err.Error(), "unknown object member") {
			return itemError{Field: field, Message: "unknown field"}
		}
		if se.GoType == reflect.TypeFor[time.Time]() || se.GoType == reflect.TypeFor[*time.Time]() {
			return itemError{Field: field, Message: "expected an RFC 3339 time like 2026-11-22T10:00:00Z"}
		}
		if se.JSONKind != 0 && se.GoType != nil {
			return itemError{Field: field, Message: fmt.Sprintf("expected %s, got %s", kindWord(se.GoType.Kind().String()), se.JSONKind)}
		}
		return itemError{Field: field, Message: "invalid value"}
	}
	var syn *jsontext.SyntacticError
	if errors.As(err, &syn) {
		return itemError{Field: pointerField(string(syn.JSONPointer)), Message: "malformed JSON: " + web.Describe(syn.Err)}
	}
	return itemError{Message: "malformed activity: " + text.Clip(err.Error(), 120)}
}

func kindWord(k string) string {
	if k == "slice" {
		return "a JSON value"
	}
	return "a " + k
}

// buildActivity checks a decoded item against the catalog and the limits,
// and fills in what Relay sets.
func buildActivity(in *inbound, cat *activity.Catalog, allowCustom bool, now time.Time) (*activity.Activity, []itemError) {
	var errs []itemError
	a := &activity.Activity{ReceivedAt: now}
	errs = append(errs, resolveName(in, a, cat, allowCustom)...)
	if err := checkID(in.ID); err != nil {
		errs = append(errs, itemError{Field: "id", Message: err.Error()})
	}
	a.ID = in.ID
	if a.ID == "" {
		a.ID = ulid.Make().String()
	}
	a.OccurredAt = now
	if in.OccurredAt != "" {
		t, err := text.ParseTime(in.OccurredAt)
		if err != nil {
			errs = append(errs, itemError{Field: "occurred_at", Message: err.Error()})
		}
		a.OccurredAt = t
	}
	object := func(field string, v jsontext.Value) stdjson.RawMessage {
		if len(v) == 0 || v.Kind() == 'n' {
			return nil
		}
		if v.Kind() != '{' {
			errs = append(errs, itemError{Field: field, Message: fmt.Sprintf("expected an object, got %s", v.Kind())})
			return nil
		}
		return stdjson.RawMessage(v)
	}
	a.Contact = object("contact", in.Contact)
	a.Attributes = object("attributes", in.Attributes)
	if len(in.Identifiers) > 0 {
		if len(in.Contact) > 0 {
			errs = append(errs, itemError{Field: "identifiers", Message: "give contact or identifiers, not both"})
		}
		a.Contact = object("identifiers", in.Identifiers)
	}
	if len(in.Data) > 0 {
		if len(in.Attributes) > 0 {
			errs = append(errs, itemError{Field: "data", Message: "give attributes or data, not both"})
		}
		a.Attributes = object("data", in.Data)
	}
	return a, errs
}

// resolveName finds the activity in the catalog from type/action, name or
// the Ortto display name.
func resolveName(in *inbound, a *activity.Activity, cat *activity.Catalog, allowCustom bool) []itemError {
	name, field := "", ""
	switch {
	case in.Type != "":
		name, field = in.Type, "type"
		if in.Action != "" {
			name += "." + in.Action
		}
	case in.Action != "":
		return []itemError{{Field: "type", Message: "action given without type"}}
	case in.Name != "":
		name, field = in.Name, "name"
	case in.Activity != "":
		name, field = in.Activity, "activity"
	default:
		return []itemError{{Field: "type", Message: "missing: give type (and action), or activity"}}
	}
	if len(in.Activity) > maxDisplayName {
		return []itemError{{Field: "activity", Message: fmt.Sprintf("longer than %d bytes", maxDisplayName)}}
	}
	if field != "activity" && len(name) > activity.MaxNameLen {
		return []itemError{{Field: field, Message: fmt.Sprintf("activity name longer than %d bytes", activity.MaxNameLen)}}
	}
	e, ok := cat.Lookup(name)
	if !ok && field == "name" {
		e, ok = cat.Lookup(in.Name)
	}
	if ok {
		if in.Activity != "" && field != "activity" {
			if other, ok2 := cat.Lookup(in.Activity); !ok2 || other.Name != e.Name {
				return []itemError{{Field: "activity", Message: fmt.Sprintf("%s does not name the same activity as %s %s", text.Quote(in.Activity), field, text.Quote(name))}}
			}
		}
		fill(a, e)
		return nil
	}
	if !allowCustom {
		return []itemError{{Field: field, Message: fmt.Sprintf("unknown activity %s (see `relay activities`, declare it under activities:, or set ingest.allow_custom)", text.Quote(name)), Unknown: true}}
	}
	typ, action, err := activity.ParseName(name)
	if err != nil { // its message quotes at most MaxNameLen bytes
		return []itemError{{Field: field, Message: err.Error()}}
	}
	fill(a, activity.Entry{Name: name, Type: typ, Action: action})
	return nil
}

func fill(a *activity.Activity, e activity.Entry) {
	a.Name, a.Type, a.Action = e.Name, e.Type, e.Action
	if len(e.Aliases) > 0 {
		a.Activity = e.Aliases[0]
	}
}

// checkID accepts client ids of printable characters without spaces, at
// most maxIDLen bytes: an id goes into NATS headers and subjects' tokens.
func checkID(id string) error {
	if len(id) > maxIDLen {
		return fmt.Errorf("longer than %d bytes", maxIDLen)
	}
	for _, r := range id {
		if !unicode.IsPrint(r) || unicode.IsSpace(r) {
			return errors.New("must be printable characters without spaces")
		}
	}
	return nil
}

func (b *badJSON) Error() string { return b.message }
