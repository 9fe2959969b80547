package relay

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"strings"
	"time"
)

// Detail names one problem of a request: which item, which field.
type Detail struct {
	Index   *int   `json:"index,omitempty"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

type errorBody struct {
	Error   string   `json:"error"`
	Details []Detail `json:"details,omitempty"`
	IDs     []string `json:"ids,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string, details ...Detail) {
	writeJSON(w, status, errorBody{Error: msg, Details: details})
}

// tokenSet holds bearer tokens as hashes, so comparing takes the same time
// whatever the length or content of a guess.
type tokenSet [][32]byte

func newTokenSet(tokens ...string) tokenSet {
	var ts tokenSet
	for _, t := range tokens {
		if t != "" {
			ts = append(ts, sha256.Sum256([]byte(t)))
		}
	}
	return ts
}

func (ts tokenSet) allows(r *http.Request) bool {
	h := r.Header.Get("Authorization")
	token, ok := strings.CutPrefix(h, "Bearer ")
	if !ok {
		return false
	}
	sum := sha256.Sum256([]byte(token))
	found := 0
	for _, t := range ts {
		found |= subtle.ConstantTimeCompare(sum[:], t[:])
	}
	return found == 1
}

// requireToken answers 401 to a request without one of the tokens. The
// answer says nothing that helps a guesser.
func requireToken(ts tokenSet, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !ts.allows(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="relay"`)
			writeError(w, http.StatusUnauthorized, "missing or invalid bearer token")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// newServer returns an HTTP server with limits that keep slow or hostile
// clients from holding it.
func newServer(addr string, h http.Handler, writeTimeout time.Duration) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
}
