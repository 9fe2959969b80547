package sftest

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"
)

// token serves the OAuth 2.0 token endpoint: client credentials, or a JWT
// bearer assertion (iss = client id, sub = user, RS256).
func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, oauthError("invalid_request", "bad form"))
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokenReqs++
	switch r.PostForm.Get("grant_type") {
	case "client_credentials":
		id, secret, ok := r.BasicAuth()
		if !ok {
			id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
		}
		if id != s.opts.clientID || secret != s.opts.clientSecret {
			writeJSON(w, http.StatusBadRequest, oauthError("invalid_client", "invalid client credentials"))
			return
		}
	case "urn:ietf:params:oauth:grant-type:jwt-bearer":
		if err := s.checkAssertion(r.PostForm.Get("assertion")); err != nil {
			writeJSON(w, http.StatusBadRequest, oauthError("invalid_grant", err.Error()))
			return
		}
	default:
		writeJSON(w, http.StatusBadRequest, oauthError("unsupported_grant_type", "grant type not supported"))
		return
	}
	buf := make([]byte, 16)
	_, _ = rand.Read(buf)
	tok := "00D" + hex.EncodeToString(buf)
	s.tokens[tok] = time.Now().Add(s.opts.tokenTTL)
	// Like Salesforce: no expires_in; the session lasts until it stops working.
	writeJSON(w, http.StatusOK, map[string]string{
		"access_token": tok, "instance_url": s.URL, "id": s.URL + "/id/00D/005",
		"token_type": "Bearer", "issued_at": time.Now().Format("20060102150405"), "signature": "fake",
	})
}

func oauthError(code, desc string) map[string]string {
	return map[string]string{"error": code, "error_description": desc}
}

func (s *Server) checkAssertion(assertion string) error {
	if s.opts.jwtKey == nil {
		return errors.New("JWT bearer flow is not enabled for this connected app")
	}
	parts := strings.Split(assertion, ".")
	if len(parts) != 3 {
		return errors.New("invalid assertion")
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return errors.New("invalid assertion signature")
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if rsa.VerifyPKCS1v15(s.opts.jwtKey, crypto.SHA256, sum[:], sig) != nil {
		return errors.New("invalid assertion signature")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return errors.New("invalid assertion")
	}
	var claims struct {
		Iss string `json:"iss"`
		Sub string `json:"sub"`
		Aud string `json:"aud"`
		Exp int64  `json:"exp"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return errors.New("invalid assertion")
	}
	switch {
	case claims.Iss != s.opts.clientID:
		return errors.New("invalid client_id in iss")
	case claims.Sub != s.opts.jwtUser:
		return errors.New("user hasn't approved this consumer")
	case claims.Aud == "":
		return errors.New("audience is missing")
	case time.Unix(claims.Exp, 0).Before(time.Now()):
		return errors.New("expired authorization code")
	}
	return nil
}
