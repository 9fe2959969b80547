package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/relaydev/relay/config"
	"github.com/relaydev/relay/relay/api"
)

const (
	// requestTimeout bounds one API call.
	requestTimeout = 10 * time.Second
	// maxAnswer bounds what is read of an answer.
	maxAnswer = 64 << 20
)

// apiClient talks to Relay's ingest or admin API.
type apiClient struct {
	base    string // "http://127.0.0.1:8081", no trailing slash
	token   string
	timeout time.Duration
	http    *http.Client
}

// clientFlags are -c, --server, --token and the TLS flags of a client
// command.
type clientFlags struct {
	flags                 *flag.FlagSet
	config, server, token *string
	tls                   tlsFlags
	admin                 bool // talk to the admin API, not ingest
}

func addClientFlags(flags *flag.FlagSet, admin bool) *clientFlags {
	api, port, env := "ingest", "8080", "RELAY_INGEST_TOKEN"
	if admin {
		api, port, env = "admin", "8081", "RELAY_ADMIN_TOKEN"
	}
	return &clientFlags{
		flags:  flags,
		config: flags.String("c", configPath(), "config file to take the server address and token from"),
		server: flags.String("server", "", "Relay's "+api+" URL (default: from the config, https:// when it has tls, else http://127.0.0.1:"+port+")"),
		token:  flags.String("token", "", "bearer token (default: from the config, else $"+env+")"),
		tls:    addTLSFlags(flags),
		admin:  admin,
	}
}

// client returns a client for --server and --token, filling what is not
// given from the config, else the defaults and the environment. A config
// named with -c or $RELAY_CONFIG must exist; only the default ./relay.yaml
// may be absent.
func (f *clientFlags) client(stderr io.Writer) (*apiClient, error) {
	if by := f.configNamedBy(); by != "" {
		if _, err := os.Stat(*f.config); errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("config %s (named by %s) does not exist", *f.config, by)
		}
	}
	c := &apiClient{base: strings.TrimRight(*f.server, "/"), token: *f.token, timeout: requestTimeout, http: &http.Client{}}
	https := strings.HasPrefix(c.base, "https://")
	var def apiDefaults
	if c.base == "" || c.token == "" || (https && *f.tls.caFile == "") {
		def = f.defaults(stderr)
	}
	if c.base == "" {
		c.base, https = def.scheme+"://"+def.addr, def.scheme == "https"
	}
	if c.token == "" {
		c.token = def.token
	}
	if https {
		var err error
		if c.http, err = f.tls.httpClient(def.tls); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// configNamedBy says who named the config: "-c", "$RELAY_CONFIG", or ""
// for the default ./relay.yaml.
func (f *clientFlags) configNamedBy() string { return configNamedBy(f.flags) }

// configNamedBy says what named the config: -c, $RELAY_CONFIG, or ""
// for the default ./relay.yaml.
func configNamedBy(flags *flag.FlagSet) string {
	by := ""
	if os.Getenv("RELAY_CONFIG") != "" {
		by = "$RELAY_CONFIG"
	}
	flags.Visit(func(fl *flag.Flag) {
		if fl.Name == "c" {
			by = "-c"
		}
	})
	return by
}

// apiDefaults are what a client takes from the config.
type apiDefaults struct {
	scheme, addr, token string
	tls                 config.TLS // what the API serves
}

// defaults reads the API's address, token and TLS from the config, falling
// back to the default address and the token in the environment.
func (f *clientFlags) defaults(stderr io.Writer) apiDefaults {
	d := apiDefaults{scheme: "http", addr: "127.0.0.1:8080", token: os.Getenv("RELAY_INGEST_TOKEN")}
	if f.admin {
		d.addr, d.token = "127.0.0.1:8081", os.Getenv("RELAY_ADMIN_TOKEN")
	}
	cfg, err := config.Load(*f.config)
	if err != nil && (cfg == nil || f.concerns(err)) {
		if !errors.Is(err, os.ErrNotExist) {
			first, _, _ := strings.Cut(err.Error(), "\n")
			fmt.Fprintf(stderr, "relay: not using %s for the server and token: %s\n", *f.config, first)
		}
		return d
	}
	listen, tok, served := cfg.Ingest.Listen, "", cfg.Ingest.TLS
	if len(cfg.Ingest.Tokens) > 0 {
		tok = cfg.Ingest.Tokens[0].Value()
	}
	if f.admin {
		listen, tok, served = cfg.Admin.Listen, cfg.Admin.Token.Value(), cfg.Admin.TLS
	}
	if listen != "" {
		d.addr = dialAddr(listen)
	}
	if tok != "" {
		d.token = tok
	}
	if served.Enabled() {
		d.scheme, d.tls = "https", served
	}
	return d
}

// concerns reports whether a config's errors touch the API the client
// talks to. Others (a bad destination) leave its address and token usable:
// relay reload is how an operator hears of them.
func (f *clientFlags) concerns(err error) bool {
	var errs config.Errors
	if !errors.As(err, &errs) {
		return true
	}
	section := "ingest"
	if f.admin {
		section = "admin"
	}
	for _, e := range errs {
		if e.Path == section || strings.HasPrefix(e.Path, section+".") || e.Path == "(file)" {
			return true
		}
	}
	return false
}

// dialAddr turns a listen address into one to dial: an unspecified host
// (":8080", "0.0.0.0:8080") means this machine.
func dialAddr(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// do sends in as JSON (unless nil) to path and decodes the answer into out
// (unless nil). An error answer becomes an *apiError.
func (c *apiClient) do(ctx context.Context, method, path string, in, out any) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := c.newRequest(ctx, method, path, in)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s %s: no answer within %s", method, req.URL, c.timeout)
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("%w (is relay serve running there? see --server)", err)
	}
	if err != nil {
		return err // a *url.Error: names the method and URL
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", method, req.URL, err)
	}
	if resp.StatusCode >= 300 {
		return newAPIError(resp.StatusCode, data)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: unexpected answer: %w", method, req.URL, err)
	}
	return nil
}

func (c *apiClient) newRequest(ctx context.Context, method, path string, in any) (*http.Request, error) {
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, fmt.Errorf("make request: %w", err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	return req, nil
}

// apiError is an error answer of the API: its HTTP status and the body,
// {"error": "…", "details": […]} (api.Error).
type apiError struct {
	Status  int
	Message string
	Details []api.Detail
}

// newAPIError reads an error answer; a body that is not the API's JSON
// (a proxy's page, say) is kept as text.
func newAPIError(status int, body []byte) *apiError {
	e := &apiError{Status: status}
	var b api.Error
	if json.Unmarshal(body, &b) != nil || b.Error == "" {
		e.Message = truncate(strings.TrimSpace(string(body)), 200)
	} else {
		e.Message, e.Details = b.Error, b.Details
	}
	if e.Message == "" {
		e.Message = strings.ToLower(http.StatusText(status))
	}
	return e
}

// Error reads "server said 422: items[0].type: unknown activity …"; with
// several details, one per line.
func (e *apiError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "server said %d: ", e.Status)
	switch len(e.Details) {
	case 1:
		b.WriteString(detailString(e.Details[0]))
	default:
		b.WriteString(e.Message)
		for _, d := range e.Details {
			b.WriteString("\n  " + detailString(d))
		}
	}
	if e.Status == http.StatusUnauthorized {
		b.WriteString(" (check --token)")
	}
	return b.String()
}

// detailString reads "items[0].type: unknown activity …": where, then
// what.
func detailString(d api.Detail) string {
	where := d.Field
	if d.Index != nil {
		where = fmt.Sprintf("items[%d]", *d.Index)
		if d.Field != "" {
			where += "." + d.Field
		}
	}
	if where == "" {
		return d.Message
	}
	return where + ": " + d.Message
}

// truncate shortens s to at most n runes, marking the cut.
func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "…"
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
