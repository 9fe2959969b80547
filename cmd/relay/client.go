package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/relaydev/relay/config"
)

// apiClient talks to Relay's ingest or admin API.
type apiClient struct {
	base  string
	token string
	http  *http.Client
}

// clientFlags adds -c, --server and --token; resolve fills the defaults
// from the config (ingest or admin) or the environment.
type clientFlags struct {
	config, server, token *string
	admin                 bool
}

func addClientFlags(fs *flag.FlagSet, admin bool) *clientFlags {
	which := "ingest"
	if admin {
		which = "admin"
	}
	return &clientFlags{
		config: fs.String("c", configPath(), "config file to read the server address and token from"),
		server: fs.String("server", "", "Relay's "+which+" URL (default: from the config, else http://127.0.0.1:"+map[bool]string{true: "8081", false: "8080"}[admin]+")"),
		token:  fs.String("token", "", "bearer token (default: from the config, else $RELAY_"+strings.ToUpper(which)+"_TOKEN)"),
		admin:  admin,
	}
}

func (f *clientFlags) client() *apiClient {
	addr, token := "127.0.0.1:8080", os.Getenv("RELAY_INGEST_TOKEN")
	if f.admin {
		addr, token = "127.0.0.1:8081", os.Getenv("RELAY_ADMIN_TOKEN")
	}
	if cfg, err := config.Load(*f.config); err == nil {
		if f.admin {
			addr, token = cfg.Admin.Listen, cfg.Admin.Token.Value()
		} else {
			addr = cfg.Ingest.Listen
			if len(cfg.Ingest.Tokens) > 0 {
				token = cfg.Ingest.Tokens[0].Value()
			}
		}
	}
	base := "http://" + addr
	if *f.server != "" {
		base = strings.TrimRight(*f.server, "/")
	}
	if *f.token != "" {
		token = *f.token
	}
	return &apiClient{base: base, token: token, http: &http.Client{Timeout: 10 * time.Minute}}
}

// apiError is an error answer of the API.
type apiError struct {
	Status  int
	Message string `json:"error"`
	Details []struct {
		Index   *int   `json:"index"`
		Field   string `json:"field"`
		Message string `json:"message"`
	} `json:"details"`
}

func (e *apiError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "server said %d: %s", e.Status, e.Message)
	for _, d := range e.Details {
		b.WriteString("\n  ")
		if d.Index != nil {
			fmt.Fprintf(&b, "items[%d]", *d.Index)
		}
		if d.Field != "" {
			fmt.Fprintf(&b, ".%s", d.Field)
		}
		fmt.Fprintf(&b, ": %s", d.Message)
	}
	return b.String()
}

// do sends in as JSON (when not nil) and decodes the answer into out.
func (c *apiClient) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		e := &apiError{Status: resp.StatusCode}
		if json.Unmarshal(data, e) != nil || e.Message == "" {
			e.Message = strings.TrimSpace(string(data))
		}
		return e
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: unexpected answer: %w", method, path, err)
	}
	return nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
