package admin

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/relaydev/relay/relay/activity"
	"github.com/relaydev/relay/relay/api"
	"github.com/relaydev/relay/relay/consent"
	"github.com/relaydev/relay/relay/engine"
	"github.com/relaydev/relay/relay/web"
)

// Contacts serves a person's page (GET /v1/contacts) and their erasure
// (POST /v1/contacts/erase).
type Contacts struct {
	States *consent.States
	Eraser *consent.Eraser
	Engine *engine.Engine
	Log    *slog.Logger
}

// contactLimit bounds the activities a lookup lists.
const contactLimit = 20

// lookup answers GET /v1/contacts?email=|phone=|id=[&limit=].
func (c *Contacts) lookup(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var given []string
	for _, f := range []string{"email", "phone", "id"} {
		if q.Has(f) {
			given = append(given, f)
		}
	}
	if len(given) != 1 {
		web.WriteError(w, http.StatusBadRequest, "want exactly one of email=, phone=, id=")
		return
	}
	p, err := consent.NewPerson(given[0], q.Get(given[0]))
	if err != nil {
		web.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	limit, err := queryInt(q.Get("limit"), contactLimit, 1, 200)
	if err != nil {
		web.WriteError(w, http.StatusBadRequest, "limit: "+err.Error())
		return
	}
	out, err := c.contact(r, p, limit)
	if err != nil {
		web.WriteError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	web.WriteJSON(w, http.StatusOK, out)
}

// contact reads the person's newest activities and channel states.
func (c *Contacts) contact(r *http.Request, p consent.Person, limit int) (*api.Contact, error) {
	out := &api.Contact{Channels: map[string]api.ChannelState{}, Activities: []api.ContactActivity{}}
	idents := map[consent.Channel]string{}
	if ch := p.Channel(); ch != "" {
		idents[ch] = p.Value
	}
	type found struct {
		seq uint64
		a   *activity.Activity
	}
	var newest []found // the newest limit once trimmed: Find's order is not the stream's
	trim := func() {
		slices.SortFunc(newest, func(x, y found) int { return cmp.Compare(y.seq, x.seq) })
		newest = newest[:min(len(newest), limit)]
	}
	scanned, err := c.Eraser.Find(r.Context(), p, func(msg jetstream.Msg) {
		a := &activity.Activity{}
		if json.Unmarshal(msg.Data(), a) != nil {
			return
		}
		for _, ch := range consent.Channels {
			if idents[ch] == "" { // a person looked up by id: their channels from their activities
				idents[ch] = consent.Identifier(ch, a.Contact)
			}
		}
		var seq uint64
		if md, err := msg.Metadata(); err == nil {
			seq = md.Sequence.Stream
		}
		if newest = append(newest, found{seq, a}); len(newest) > 2*limit {
			trim()
		}
	})
	if err != nil {
		return nil, err
	}
	trim() // newest first
	out.Scanned = scanned
	for ch, v := range idents {
		if rec, ok := c.States.Get(ch, v); ok {
			out.Channels[string(ch)] = channelState(rec)
		}
	}
	for _, f := range newest {
		out.Activities = append(out.Activities, c.statuses(r, f.a))
	}
	return out, nil
}

// statuses is an activity with its status at every destination.
func (c *Contacts) statuses(r *http.Request, a *activity.Activity) api.ContactActivity {
	ca := api.ContactActivity{ID: a.ID, Name: a.Name, ReceivedAt: a.ReceivedAt, Destinations: []api.ContactDestination{}}
	t, err := c.Engine.Trace(r.Context(), a.ID)
	if err != nil {
		return ca // a copy only, or past the log: no statuses
	}
	for _, d := range t.Destinations {
		ca.Destinations = append(ca.Destinations, api.ContactDestination{Name: d.Name, Status: d.Status})
	}
	return ca
}

func channelState(r consent.Record) api.ChannelState {
	mark := func(m *consent.Mark) *api.StateMark {
		if m == nil {
			return nil
		}
		return &api.StateMark{State: string(m.State), Since: m.Since, ActivityID: m.ActivityID, Name: m.Name}
	}
	cs := api.ChannelState{Wish: mark(r.Wish), Reach: mark(r.Reach)}
	if m := r.Effective(); m != nil {
		cs.State, cs.Since, cs.ActivityID, cs.Name, cs.Suppressed = string(m.State), m.Since, m.ActivityID, m.Name, m.State.Suppresses()
	}
	return cs
}

// erase answers POST /v1/contacts/erase once the person's data is gone.
func (c *Contacts) erase(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			web.WriteError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("erase request larger than %d bytes", tooLarge.Limit))
			return
		}
		web.WriteError(w, http.StatusBadRequest, "erase request: "+err.Error())
		return
	}
	var req api.EraseRequest
	if err := jsonv2.Unmarshal(body, &req, web.DecodeOptions); err != nil {
		web.WriteError(w, http.StatusBadRequest, "erase request: want {\"email\": …}, {\"phone\": …} or {\"id\": …}: "+web.Describe(err))
		return
	}
	var given []consent.Person
	for _, f := range []struct{ name, v string }{{"email", req.Email}, {"phone", req.Phone}, {"id", req.ID}} {
		if f.v == "" {
			continue
		}
		p, err := consent.NewPerson(f.name, f.v)
		if err != nil {
			web.WriteError(w, http.StatusBadRequest, err.Error())
			return
		}
		given = append(given, p)
	}
	if len(given) != 1 {
		web.WriteError(w, http.StatusBadRequest, "want exactly one of email, phone, id")
		return
	}
	rec, err := c.Eraser.Erase(r.Context(), given[0], "admin")
	if err != nil {
		c.Log.Error("erasure failed; send it again", "identifier", given[0].Hash(), "error", err)
		web.WriteError(w, http.StatusServiceUnavailable, "erasure not complete, send it again: "+err.Error())
		return
	}
	c.Log.Info("person erased", "field", rec.Field, "identifier", rec.Identifier, "activities", rec.Erased.Activities, "took_ms", rec.TookMS)
	web.WriteJSON(w, http.StatusOK, api.EraseResult{IdentifierHash: rec.Identifier, TookMS: rec.TookMS, Erased: api.ErasedCounts(rec.Erased)})
}

// contacts is a Contacts route, 503 until the bus is open.
func (a *Admin) contacts(route func(*Contacts) http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if a.Contacts == nil {
			web.WriteError(w, http.StatusServiceUnavailable, "starting: the bus is not open yet")
			return
		}
		route(a.Contacts)(w, r)
	}
}
