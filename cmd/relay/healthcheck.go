package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// cmdHealthcheck asks the admin API's /readyz whether Relay is ready: exit
// 0 on 200, 1 with a one-line reason otherwise (a wrong use too). It is
// the container image's HEALTHCHECK, where there is no curl.
func cmdHealthcheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("healthcheck", stderr)
	url := fs.String("url", "", "URL to GET (default: the admin API's /readyz, its address and TLS from the config, else http://127.0.0.1:8081/readyz)")
	timeout := fs.Duration("timeout", 3*time.Second, "how long to wait for the answer")
	noToken := "none" // /readyz takes no token: set, so none is looked up
	cf := &clientFlags{
		flags:  fs,
		config: fs.String("c", configPath(), "config file to take the admin address and TLS from"),
		server: url,
		token:  &noToken,
		tls:    addTLSFlags(fs),
		admin:  true,
	}
	err := parseNoArgs(fs, args)
	if err == nil && *timeout <= 0 {
		err = usageError(fs, "--timeout: want a positive duration, not %s", *timeout)
	}
	if errors.Is(err, errUsage) {
		return errSilent // exit 1, not 2: a Docker HEALTHCHECK reserves 2
	}
	if err != nil {
		return err
	}
	c, err := cf.client(stderr)
	if err != nil {
		return err
	}
	target := c.base
	if *url == "" {
		target += "/readyz"
	}
	if err := probe(ctx, c.http, target, *timeout); err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	fmt.Fprintf(stdout, "ready: %s\n", target)
	return nil
}

// probe GETs url and returns nil on a 200 answer, else why not, in one
// line.
func probe(ctx context.Context, client *http.Client, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	resp, err := client.Do(req)
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("GET %s: no answer within %s", url, timeout)
	case err != nil:
		return err // a *url.Error: names the method and URL
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	reason := strings.Join(strings.Fields(newAPIError(resp.StatusCode, body).Message), " ")
	return fmt.Errorf("GET %s answered %d: %s", url, resp.StatusCode, reason)
}
