package dashboard

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"sync"
	"time"
)

const (
	cookieName = "relay_session"
	csrfHeader = "X-CSRF-Token"
	// maxSessions bounds the store: past it, the oldest session is dropped.
	maxSessions = 1000
)

// session is one signed-in browser. It remembers a hash of the admin token
// it signed in with, so rotating the token ends it.
type session struct {
	csrf      string
	tokenHash [32]byte
	created   time.Time
	expires   time.Time
}

func (s session) csrfMatches(got string) bool {
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(s.csrf)) == 1
}

// sessions is the server-side store, keyed by a hash of the cookie value so
// neither a map lookup's timing nor a memory dump gives a usable cookie.
type sessions struct {
	ttl time.Duration
	now func() time.Time
	mu  sync.Mutex
	m   map[[32]byte]session
}

func newSessions(ttl time.Duration, now func() time.Time) *sessions {
	return &sessions{ttl: ttl, now: now, m: map[[32]byte]session{}}
}

// create starts a session and returns the cookie value.
func (ss *sessions) create(tokenHash [32]byte) (id string, s session) {
	id, csrf := randomString(), randomString()
	now := ss.now()
	s = session{csrf: csrf, tokenHash: tokenHash, created: now, expires: now.Add(ss.ttl)}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.sweep(now)
	ss.m[sha256.Sum256([]byte(id))] = s
	return id, s
}

// sweep drops expired sessions, and the oldest ones past maxSessions.
// ss.mu is held.
func (ss *sessions) sweep(now time.Time) {
	for k, s := range ss.m {
		if !now.Before(s.expires) {
			delete(ss.m, k)
		}
	}
	for len(ss.m) >= maxSessions {
		var oldest [32]byte
		first := true
		for k, s := range ss.m {
			if first || s.created.Before(ss.m[oldest].created) {
				oldest, first = k, false
			}
		}
		delete(ss.m, oldest)
	}
}

// get returns the request's session if it exists, has not expired and was
// signed in with the current admin token.
func (ss *sessions) get(r *http.Request, current [32]byte) (session, bool) {
	c, err := r.Cookie(cookieName)
	if err != nil || c.Value == "" {
		return session{}, false
	}
	key := sha256.Sum256([]byte(c.Value))
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s, ok := ss.m[key]
	if !ok {
		return session{}, false
	}
	if !ss.now().Before(s.expires) || subtle.ConstantTimeCompare(s.tokenHash[:], current[:]) != 1 {
		delete(ss.m, key)
		return session{}, false
	}
	return s, true
}

// delete ends the request's session, if any.
func (ss *sessions) delete(r *http.Request) {
	c, err := r.Cookie(cookieName)
	if err != nil {
		return
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	delete(ss.m, sha256.Sum256([]byte(c.Value)))
}

func (ss *sessions) len() int {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return len(ss.m)
}

func randomString() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return base64.RawURLEncoding.EncodeToString(b)
}

// setCookie sends the session cookie: HttpOnly, SameSite=Strict, and Secure
// when the request came over TLS.
func setCookie(w http.ResponseWriter, r *http.Request, value string, expires time.Time) {
	c := &http.Cookie{
		Name:     cookieName,
		Value:    value,
		Path:     "/",
		HttpOnly: true,
		SameSite: http.SameSiteStrictMode,
		Secure:   r.TLS != nil,
	}
	if value == "" {
		c.MaxAge = -1
	} else {
		c.Expires = expires
	}
	http.SetCookie(w, c)
}
