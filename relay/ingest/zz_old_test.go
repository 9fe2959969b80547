package ingest

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/relaydev/relay/relay/web"
)

func (in *Ingest) oldRead(w http.ResponseWriter, r *http.Request) (*bytes.Buffer, func()) {
	if msg := notJSON(r.Header.Get("Content-Type")); msg != "" {
		in.reject("media_type")
		web.WriteError(w, http.StatusUnsupportedMediaType, msg)
		return nil, nil
	}
	gzipped, msg := bodyEncoding(r.Header.Values("Content-Encoding"))
	if msg != "" {
		in.reject("media_type")
		web.WriteError(w, http.StatusUnsupportedMediaType, msg)
		return nil, nil
	}
	if r.ContentLength > in.MaxBody {
		in.reject("too_large")
		web.WriteError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body of %d bytes is larger than the limit of %d bytes (ingest.max_body)", r.ContentLength, in.MaxBody))
		return nil, nil
	}
	weight := in.MaxBody
	if r.ContentLength >= 0 && !gzipped { // gzip: as large as it may unpack
		weight = r.ContentLength
	}
	// A body is held about three times while it is decoded: the bytes read,
	// the items' values and the activities encoded for the bus.
	weight *= decodeCopies
	if !in.Inflight.Take(weight) {
		in.reject("busy")
		w.Header().Set("Retry-After", "1")
		web.WriteError(w, http.StatusServiceUnavailable, fmt.Sprintf("ingest is busy decoding %d bytes of other requests (ingest.max_inflight_bytes); retry after a second", in.Inflight.Limit()))
		return nil, nil
	}
	release := func() { in.Inflight.Give(weight) }
	body := &bytes.Buffer{}
	if r.ContentLength > 0 && !gzipped {
		body.Grow(int(r.ContentLength) + bytes.MinRead)
	}
	var src io.Reader = http.MaxBytesReader(w, r.Body, in.MaxBody)
	var zr *gzip.Reader
	if gzipped {
		var err error
		if zr, err = gzip.NewReader(src); err != nil {
			release()
			in.reject("malformed")
			web.WriteError(w, http.StatusBadRequest, "the body is not gzip, as its Content-Encoding says")
			return nil, nil
		}
		// What it unpacks to is held to the same limit: a gzip bomb stops
		// at ingest.max_body.
		src = io.LimitReader(zr, in.MaxBody+1)
	}
	_, err := body.ReadFrom(src)
	if err == nil && gzipped {
		err = zr.Close()
		if err == nil && int64(body.Len()) > in.MaxBody {
			err = &http.MaxBytesError{Limit: in.MaxBody}
		}
	}
	if err == nil {
		return body, release
	}
	release()
	var tooLarge *http.MaxBytesError
	var ne net.Error
	switch {
	case gzipped && (errors.Is(err, gzip.ErrChecksum) || errors.Is(err, gzip.ErrHeader) || errors.Is(err, io.ErrUnexpectedEOF) || errors.As(err, new(flate.CorruptInputError))):
		in.reject("malformed")
		web.WriteError(w, http.StatusBadRequest, "the gzip body is corrupt or cut short")
	case errors.As(err, &tooLarge):
		in.reject("too_large")
		web.WriteError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than the limit of %d bytes (ingest.max_body)", in.MaxBody))
	case errors.As(err, &ne) && ne.Timeout():
		in.reject("read")
		web.WriteError(w, http.StatusRequestTimeout, "reading the request body timed out")
	default:
		in.reject("read")
		web.WriteError(w, http.StatusBadRequest, "reading the request body failed: the body was cut short or the connection broke")
	}
	return nil, nil
}

func oldOdpItem(raw jsontext.Value) (*sourceItem, []itemError) {
	if raw.Kind() != '{' {
		return nil, []itemError{{Message: "expected an event (an object), got " + kindOf(raw)}}
	}
	it := &sourceItem{fields: odpFields}
	var errs []itemError
	bad := func(field, format string, args ...any) {
		errs = append(errs, itemError{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	var typ, action, ids, data jsontext.Value
	unknown := false // one unknown field is named per event
	for _, m := range members(raw) {
		switch m.name {
		case "type":
			typ = m.value
		case "action":
			action = m.value
		case "identifiers":
			ids = m.value
		case "data":
			data = m.value
		default:
			if unknown {
				continue
			}
			unknown = true
			if k, ok := caseVariant(m.name, "type", "action", "identifiers", "data"); ok {
				bad(web.Clip(m.name, MaxQuote), "unknown field: names are case-sensitive; ODP's is %q", k)
			} else {
				bad(web.Clip(m.name, MaxQuote), "unknown field: an event has type, action, identifiers and data")
			}
		}
	}
	switch s, err := stringValue(typ); {
	case typ == nil:
		bad("type", "type is required")
	case err != nil:
		bad("type", "%v", err)
	case s == "":
		bad("type", "type is required")
	default:
		it.in.Type = s
	}
	if action != nil {
		s, err := stringValue(action)
		if err != nil {
			bad("action", "%v", err)
		}
		it.in.Action = s
	}
	switch {
	case ids == nil || ids.Kind() == 'n':
		bad("identifiers", "at least one identifier is required, e.g. {\"email\": \"ann@example.com\"}")
	case ids.Kind() != '{':
		bad("identifiers", "expected an object, got %s", kindOf(ids))
	case len(members(ids)) == 0:
		bad("identifiers", "at least one identifier is required, e.g. {\"email\": \"ann@example.com\"}")
	default:
		it.in.Contact = ids
	}
	if data != nil && data.Kind() != 'n' {
		if err := objectValue(data); err != nil {
			bad("data", "%v", err)
			return it, errs
		}
		for _, m := range members(data) {
			switch m.name {
			case "idempotence_id":
				s, err := stringValue(m.value)
				if err != nil {
					bad("data.idempotence_id", "%v", err)
				}
				it.in.ID = s
			case "ts":
				t, err := sourceTime(m.value)
				if err != nil {
					bad("data.ts", "%v", err)
				}
				it.at = t
			default:
				if k, ok := caseVariant(m.name, "idempotence_id", "ts"); ok {
					bad("data."+m.name, "differs from %q only in case: ODP's field names are lower case", k)
				}
			}
		}
		it.in.Attributes = data // kept whole, idempotence_id and ts included
	}
	return it, errs
}

func (o *OrttoSource) oldItem(raw jsontext.Value) (it *sourceItem, ignored []string, errs []itemError) {
	if raw.Kind() != '{' {
		return nil, nil, []itemError{{Message: "expected Ortto's webhook payload (an object), got " + kindOf(raw)}}
	}
	bad := func(field, format string, args ...any) {
		errs = append(errs, itemError{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	caseSeen := false // one such name is named per payload
	caseBad := func(name, k string) {
		if !caseSeen {
			caseSeen = true
			bad(web.Clip(name, MaxQuote), "unknown field: names are case-sensitive; Ortto's is %q", k)
		}
	}
	it = &sourceItem{fields: map[string]string{"name": "activity.field_id", "contact": "contact", "attributes": "activity.attr"}}
	var act, contact, id, tm jsontext.Value
	for _, m := range members(raw) {
		switch m.name {
		case "activity":
			act = m.value
		case "contact":
			contact = m.value
		case "id":
			id = m.value
		case "time":
			tm = m.value
		case "webhook_id":
		default:
			if k, ok := caseVariant(m.name, "activity", "contact", "id", "time", "webhook_id"); ok {
				caseBad(m.name, k)
			} else {
				ignored = append(ignored, web.Clip(m.name, MaxQuote))
			}
		}
	}
	if act == nil || act.Kind() == 'n' {
		bad("activity", "missing: Ortto sends the activity only when the webhook's \"Send activity payload if relevant\" option is on")
		return it, ignored, errs
	}
	if err := objectValue(act); err != nil {
		bad("activity", "%v", err)
		return it, ignored, errs
	}
	var fid, actID, created, attr jsontext.Value
	for _, m := range members(act) {
		switch m.name {
		case "field_id":
			fid = m.value
		case "id":
			actID = m.value
		case "created":
			created = m.value
		case "attr":
			attr = m.value
		default:
			if k, ok := caseVariant(m.name, "field_id", "id", "created", "attr"); ok {
				caseBad("activity."+m.name, k)
			} else {
				ignored = append(ignored, web.Clip("activity."+m.name, MaxQuote))
			}
		}
	}
	fieldID := ""
	switch s, err := stringValue(fid); {
	case fid == nil || fid.Kind() == 'n':
		bad("activity.field_id", "missing: the activity's field id (act::o, act:cm:<name>) tells which activity it is")
	case err != nil:
		bad("activity.field_id", "%v", err)
	case !orttoIDForm.MatchString(s):
		bad("activity.field_id", "%s is not an Ortto activity field id: want act::<name> or act:<namespace>:<name>, e.g. act::o or act:cm:placed-order", Quote(s))
	default:
		fieldID = s
	}
	if fieldID == OrttoTestID && len(errs) == 0 {
		it.test = true
		return it, ignored, nil
	}
	object := func(field string, v jsontext.Value) jsontext.Value {
		if v == nil || v.Kind() == 'n' {
			return nil
		}
		if err := objectValue(v); err != nil {
			bad(field, "%v", err)
			return nil
		}
		return v
	}
	it.in.Contact = object("contact", contact)
	it.in.Attributes = object("activity.attr", attr)
	for _, f := range []struct {
		name string
		v    jsontext.Value
	}{{"id", id}, {"activity.id", actID}} {
		if f.v == nil || f.v.Kind() == 'n' {
			continue
		}
		s, err := stringValue(f.v)
		if err != nil {
			bad(f.name, "%v", err)
			continue
		}
		if it.in.ID == "" && s != "" {
			it.in.ID, it.fields["id"] = s, f.name
		}
	}
	for _, f := range []struct {
		name string
		v    jsontext.Value
	}{{"activity.created", created}, {"time", tm}} {
		if f.v == nil || f.v.Kind() == 'n' {
			continue
		}
		t, err := sourceTime(f.v)
		if err != nil {
			bad(f.name, "%v", err)
		}
		it.at = t
		break
	}
	if fieldID == "" {
		return it, ignored, errs
	}
	name, mapped := o.ids[fieldID]
	switch {
	case mapped:
		it.in.Name = name
	case o.unmapped != "":
		it.in.Name = o.unmapped
		if it.in.Attributes != nil && slices.ContainsFunc(members(it.in.Attributes), func(m member) bool { return m.name == orttoFieldIDKey }) {
			bad("activity.attr."+orttoFieldIDKey, "reserved: with sources.ortto.unmapped Relay keeps the field id of an unmapped activity under this name")
		}
		it.in.Attributes = withMember(it.in.Attributes, orttoFieldIDKey, fieldID)
	default:
		errs = append(errs, itemError{Field: "activity.field_id", Unknown: true, Message: fmt.Sprintf("unmapped Ortto activity %s: map it to a catalog activity under sources.ortto.activity_ids in relay.yaml and run `relay reload` (or set sources.ortto.unmapped to keep such activities)", Quote(fieldID))})
	}
	return it, ignored, errs
}
