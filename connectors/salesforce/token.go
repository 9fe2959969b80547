package salesforce

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
	"golang.org/x/oauth2/jwt"

	"github.com/relaydev/relay/config"
	"github.com/relaydev/relay/relay/sink"
)

// token is an access token and the instance it is for.
type token struct {
	access   string
	instance string
	expiry   time.Time
}

// String never shows the token.
func (t *token) String() string { return "<token>" }

// tokenCache fetches a token once and keeps it until it expires or
// Salesforce refuses it.
type tokenCache struct {
	fetch    func(ctx context.Context) (*oauth2.Token, error)
	instance string // configured; the token response's instance_url wins
	client   *http.Client

	mu  sync.Mutex
	cur *token
}

func newTokenCache(d config.Destination, client *http.Client) (*tokenCache, error) {
	c := &tokenCache{instance: strings.TrimRight(d.InstanceURL, "/"), client: client}
	if d.Auth.PrivateKeyFile != "" {
		pemKey, err := os.ReadFile(d.Auth.PrivateKeyFile)
		if err != nil {
			return nil, fmt.Errorf("auth.private_key_file: %w", err)
		}
		if err := checkKey(pemKey); err != nil {
			return nil, fmt.Errorf("auth.private_key_file %s: %w", d.Auth.PrivateKeyFile, err)
		}
		cfg := &jwt.Config{
			Email: d.Auth.ClientID, Subject: d.Auth.Username, PrivateKey: pemKey,
			TokenURL: d.Auth.TokenURL, Audience: d.Auth.Audience, Expires: 3 * time.Minute,
		}
		c.fetch = func(ctx context.Context) (*oauth2.Token, error) { return cfg.TokenSource(ctx).Token() }
		return c, nil
	}
	cfg := &clientcredentials.Config{
		ClientID: d.Auth.ClientID, ClientSecret: d.Auth.ClientSecret.Value(),
		TokenURL: d.Auth.TokenURL, AuthStyle: oauth2.AuthStyleInParams,
	}
	c.fetch = func(ctx context.Context) (*oauth2.Token, error) { return cfg.Token(ctx) }
	return c, nil
}

// checkKey accepts a PEM RSA private key (PKCS#1 or PKCS#8).
func checkKey(data []byte) error {
	block, _ := pem.Decode(data)
	if block == nil {
		return errors.New("not a PEM file")
	}
	if _, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return nil
	}
	if _, err := x509.ParsePKCS8PrivateKey(block.Bytes); err != nil {
		return errors.New("not an RSA private key")
	}
	return nil
}

// get returns the cached token, fetching one if there is none or it expired.
func (c *tokenCache) get(ctx context.Context) (*token, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur != nil && (c.cur.expiry.IsZero() || time.Until(c.cur.expiry) > 30*time.Second) {
		return c.cur, nil
	}
	ot, err := c.fetch(context.WithValue(ctx, oauth2.HTTPClient, c.client))
	if err != nil {
		return nil, tokenError(err)
	}
	t := &token{access: ot.AccessToken, instance: c.instance, expiry: ot.Expiry}
	if inst, ok := ot.Extra("instance_url").(string); ok && inst != "" {
		t.instance = strings.TrimRight(inst, "/")
	}
	c.cur = t
	return t, nil
}

// invalidate drops a token Salesforce refused, unless another caller
// already replaced it.
func (c *tokenCache) invalidate(t *token) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == t {
		c.cur = nil
	}
}

// tokenError classifies a failed token request without repeating anything
// secret: a refused credential will not fix itself, but the schedule keeps
// retrying in case an operator fixes the connected app.
func tokenError(err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		status := 0
		if re.Response != nil {
			status = re.Response.StatusCode
		}
		code, desc := re.ErrorCode, re.ErrorDescription
		if code == "" { // some flows leave the body unparsed
			var body struct {
				Error       string `json:"error"`
				Description string `json:"error_description"`
			}
			if json.Unmarshal(re.Body, &body) == nil {
				code, desc = body.Error, body.Description
			}
		}
		msg := strings.TrimSpace(code + " " + desc)
		if msg == "" {
			msg = "token request refused"
		}
		return &sink.DeliveryError{Kind: sink.Retry, Status: status, Code: "OAUTH", Err: fmt.Errorf("get token: %s", msg)}
	}
	return &sink.DeliveryError{Kind: sink.Retry, Err: fmt.Errorf("get token: %w", sink.WithoutURL(err))}
}
