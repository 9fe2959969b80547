package salesforce

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/relaydev/relay/relay/activity"
	"github.com/relaydev/relay/relay/expr"
	"github.com/relaydev/relay/relay/sink"
)

// Problem is one thing the org's description of the object says is wrong
// with the destination's mapping, at a path of the destination's config
// ("object", "external_id_field", "fields.Type__c", "relate.field").
type Problem struct {
	Path, Message string
}

// describedField is the part of a describe field Relay checks.
type describedField struct {
	Name               string          `json:"name"`
	Type               string          `json:"type"`
	Length             int             `json:"length"`
	Createable         bool            `json:"createable"`
	Updateable         bool            `json:"updateable"`
	ExternalID         bool            `json:"externalId"`
	IDLookup           bool            `json:"idLookup"`
	RestrictedPicklist bool            `json:"restrictedPicklist"`
	PicklistValues     []picklistValue `json:"picklistValues"`
}

type picklistValue struct {
	Value  string `json:"value"`
	Active bool   `json:"active"`
}

// Check describes the object (GET /sobjects/<object>/describe, one call)
// and checks every mapped field: it exists, Relay may create and update
// it, its type takes what is mapped to it, a fixed value fits its length
// and, for a restricted picklist, is one of its values; the external id
// field is one, and the relate field is a lookup. An error is a describe
// that failed (the org unreachable, the credentials refused).
func (s *Sink) Check(ctx context.Context) ([]Problem, error) {
	var desc struct {
		Fields []describedField `json:"fields"`
	}
	err := s.getJSON(ctx, fmt.Sprintf("/services/data/%s/sobjects/%s/describe", s.version, s.object), &desc)
	if err != nil {
		if de := (*sink.DeliveryError)(nil); errors.As(err, &de) && de.Status == http.StatusNotFound {
			return []Problem{{"object", fmt.Sprintf("the org has no object %s the integration user can see", s.object)}}, nil
		}
		return nil, fmt.Errorf("describe %s: %w", s.object, err)
	}
	byName := map[string]describedField{}
	for _, f := range desc.Fields {
		byName[strings.ToLower(f.Name)] = f
	}
	var out []Problem
	for _, f := range s.fields {
		out = append(out, s.checkField(f, byName)...)
	}
	if f, ok := byName[strings.ToLower(s.externalID)]; ok && !f.ExternalID && !f.IDLookup {
		out = append(out, Problem{"external_id_field", fmt.Sprintf("%s.%s is not an External ID field: mark it External ID (and Unique) in Setup", s.object, s.externalID)})
	}
	if s.relate != nil {
		f, ok := byName[strings.ToLower(s.relate.field)]
		switch {
		case !ok:
			out = append(out, Problem{"relate.field", fmt.Sprintf("no field %s on %s", s.relate.field, s.object)})
		case f.Type != "reference":
			out = append(out, Problem{"relate.field", fmt.Sprintf("%s.%s is a %s field, not a lookup", s.object, f.Name, f.Type)})
		case !f.Createable || !f.Updateable:
			out = append(out, Problem{"relate.field", fmt.Sprintf("%s.%s is not writable by the integration user", s.object, f.Name)})
		}
	}
	return out, nil
}

// checkField checks one mapped field against its description.
func (s *Sink) checkField(f field, byName map[string]describedField) []Problem {
	path := "fields." + f.name
	d, ok := byName[strings.ToLower(f.name)]
	if !ok {
		return []Problem{{path, fmt.Sprintf("no field %s on %s (or the integration user cannot see it)", f.name, s.object)}}
	}
	var out []Problem
	if !d.Createable || !d.Updateable {
		out = append(out, Problem{path, fmt.Sprintf("%s.%s is not writable (createable %t, updateable %t): give the integration user edit access, or map another field", s.object, d.Name, d.Createable, d.Updateable)})
	}
	if kind := sourceKind(f.src); kind != "" && !takes(d.Type, kind) {
		out = append(out, Problem{path, fmt.Sprintf("%s.%s is a %s field; it cannot take %s", s.object, d.Name, d.Type, kind)})
	}
	v, fixed := fixedValue(f.src)
	if !fixed {
		if f.src.path != nil && f.src.path[0] == "id" && textType(d.Type) && d.Length > 0 && d.Length < 26 {
			out = append(out, Problem{path, fmt.Sprintf("%s.%s holds %d characters; activity ids have up to 26", s.object, d.Name, d.Length)})
		}
		return out
	}
	if textType(d.Type) && d.Length > 0 && len([]rune(v)) > d.Length {
		out = append(out, Problem{path, fmt.Sprintf("%q is longer than %s.%s's %d characters", v, s.object, d.Name, d.Length)})
	}
	if d.RestrictedPicklist && !slices.ContainsFunc(d.PicklistValues, func(p picklistValue) bool { return p.Active && p.Value == v }) {
		var values []string
		for _, p := range d.PicklistValues {
			if p.Active {
				values = append(values, p.Value)
			}
		}
		out = append(out, Problem{path, fmt.Sprintf("%q is not a value of the restricted picklist %s.%s (%s)", v, s.object, d.Name, strings.Join(values, ", "))})
	}
	return out
}

// sourceKind is what a path maps, for the type check: "text" or
// "a date-time"; "" when it cannot be told (contact and attributes, an
// expression).
func sourceKind(src source) string {
	if src.path == nil {
		return ""
	}
	switch src.path[0] {
	case "id", "name", "type", "action", "activity":
		return "text"
	case "occurred_at", "received_at":
		return "a date-time"
	}
	return ""
}

func textType(t string) bool {
	switch t {
	case "string", "textarea", "email", "phone", "url", "picklist", "multipicklist", "combobox", "encryptedstring":
		return true
	}
	return false
}

// takes reports whether a field of describe type t takes what kind maps.
func takes(t, kind string) bool {
	if kind == "a date-time" {
		return t == "datetime" || t == "date" || textType(t)
	}
	return textType(t)
}

// fixedValue is an expression's value when it reads nothing of the
// activity (`'"Completed"'`), as text.
func fixedValue(src source) (string, bool) {
	if src.prg == nil || strings.Contains(src.text, "activity") {
		return "", false
	}
	in, err := expr.NewInput(&activity.Activity{})
	if err != nil {
		return "", false
	}
	v, err := src.prg.Value(in)
	if err != nil || v == nil {
		return "", false
	}
	s, ok := v.(string)
	return s, ok
}
