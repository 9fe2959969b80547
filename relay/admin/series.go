package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/relaydev/relay/relay/store"
	"github.com/relaydev/relay/relay/text"
	"github.com/relaydev/relay/relay/web"
)

// series answers GET /v1/destinations/{name}/series?window=1h|24h: the
// destination's attempts by outcome, latency, backlog and breaker, per
// minute over an hour or per ten minutes over a day, from the delivery
// log's roll-ups.
func (a *Admin) series(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	win, ok := a.seriesWindow(w, r)
	if !ok {
		return
	}
	if known, err := a.knownDestination(r.Context(), name); err != nil {
		web.WriteError(w, http.StatusServiceUnavailable, err.Error())
		return
	} else if !known {
		web.WriteError(w, http.StatusNotFound, fmt.Sprintf("unknown destination %s: not in the config, and the delivery log holds nothing of it", text.Quote(name)))
		return
	}
	s, err := a.Log.Series().Read(r.Context(), name, win)
	if err != nil {
		web.WriteError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	web.WriteJSON(w, http.StatusOK, s)
}

// allSeries answers GET /v1/series?window=1h: every configured
// destination's last hour, for the destinations page.
func (a *Admin) allSeries(w http.ResponseWriter, r *http.Request) {
	win, ok := a.seriesWindow(w, r)
	if !ok {
		return
	}
	if win != "1h" {
		web.WriteError(w, http.StatusBadRequest, "window: GET /v1/series serves 1h; a day is read per destination, GET /v1/destinations/{name}/series?window=24h")
		return
	}
	var names []string
	for _, wk := range a.Engine.Workers() {
		names = append(names, wk.Name)
	}
	list, err := a.Log.Series().ReadAll(r.Context(), names, win)
	if err != nil {
		web.WriteError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	web.WriteJSON(w, http.StatusOK, map[string]any{"window": win, "series": list})
}

// seriesWindow reads ?window= (default 1h), answering the error itself.
func (a *Admin) seriesWindow(w http.ResponseWriter, r *http.Request) (string, bool) {
	if a.Log == nil {
		web.WriteError(w, http.StatusNotFound, "charts read the delivery log's roll-ups: "+store.ErrLogOff.Error())
		return "", false
	}
	win := defaultString(r.URL.Query().Get("window"), "1h")
	if _, ok := store.SeriesWindow(win); !ok {
		web.WriteError(w, http.StatusBadRequest, fmt.Sprintf("window: want 1h or 24h, got %s", text.Quote(win)))
		return "", false
	}
	return win, true
}

// knownDestination reports whether a destination is configured, or was
// and its delivery log is still kept.
func (a *Admin) knownDestination(ctx context.Context, name string) (bool, error) {
	if a.Engine.Worker(name) != nil {
		return true, nil
	}
	ok, err := a.Log.Logged(ctx, name)
	if errors.Is(err, store.ErrLogOff) {
		return false, nil
	}
	return ok, err
}
