package sftest

import (
	"maps"
	"net/http"
	"slices"
)

// The describe resource: GET /services/data/vXX.X/sobjects/<object>/describe
// answers the object's name and its fields, each with Salesforce's
// properties: name, type (string, email, datetime, double, boolean,
// picklist, reference, textarea…), length (text types), createable,
// updateable, nillable, externalId, restrictedPicklist and picklistValues
// [{"value", "label", "active", "defaultValue"}]. An unknown object is 404
// NOT_FOUND.

type picklist struct {
	restricted bool
	values     []string
}

// WithFieldType sets a field's describe type (default "string").
func WithFieldType(field, typ string) Option {
	return func(o *options) { o.types[field] = typ }
}

// WithReadOnly makes a field neither createable nor updateable (a formula,
// or no edit access): writing it fails with INVALID_FIELD_FOR_INSERT_UPDATE.
func WithReadOnly(field string) Option { return func(o *options) { o.readOnly[field] = true } }

// WithPicklist makes a field a picklist of values; a restricted one
// refuses any other value with INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST.
func WithPicklist(field string, restricted bool, values ...string) Option {
	return func(o *options) {
		o.types[field] = "picklist"
		o.picklists[field] = picklist{restricted: restricted, values: values}
	}
}

type describeField struct {
	Name               string          `json:"name"`
	Label              string          `json:"label"`
	Type               string          `json:"type"`
	Length             int             `json:"length"`
	Createable         bool            `json:"createable"`
	Updateable         bool            `json:"updateable"`
	Nillable           bool            `json:"nillable"`
	ExternalID         bool            `json:"externalId"`
	Unique             bool            `json:"unique"`
	RestrictedPicklist bool            `json:"restrictedPicklist"`
	PicklistValues     []picklistValue `json:"picklistValues"`
}

type picklistValue struct {
	Value        string `json:"value"`
	Label        string `json:"label"`
	Active       bool   `json:"active"`
	DefaultValue bool   `json:"defaultValue"`
}

func (s *Server) describe(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.PathValue("object") != s.opts.object {
		writeJSON(w, http.StatusNotFound, []apiError{{Message: "The requested resource does not exist", ErrorCode: "NOT_FOUND"}})
		return
	}
	fields := []describeField{{Name: "Id", Label: "Record ID", Type: "id", Length: 18, Nillable: false}}
	for _, name := range slices.Sorted(maps.Keys(s.opts.known)) {
		fields = append(fields, s.describeField(name))
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"name": s.opts.object, "label": s.opts.object, "custom": true,
		"createable": true, "updateable": true, "queryable": true, "fields": fields,
	})
}

func (s *Server) describeField(name string) describeField {
	typ := s.opts.types[name]
	if typ == "" {
		typ = "string"
	}
	f := describeField{
		Name: name, Label: name, Type: typ, Createable: !s.opts.readOnly[name], Updateable: !s.opts.readOnly[name],
		Nillable:   !slices.Contains(s.opts.required, name) && name != s.opts.externalID,
		ExternalID: name == s.opts.externalID, Unique: name == s.opts.externalID, PicklistValues: []picklistValue{},
	}
	switch typ {
	case "string", "textarea", "email", "phone", "url", "picklist":
		f.Length = 255
		if n, ok := s.opts.maxLen[name]; ok {
			f.Length = n
		}
	}
	if p, ok := s.opts.picklists[name]; ok {
		f.RestrictedPicklist = p.restricted
		for _, v := range p.values {
			f.PicklistValues = append(f.PicklistValues, picklistValue{Value: v, Label: v, Active: true})
		}
	}
	return f
}
