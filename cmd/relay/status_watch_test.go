package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestStatusWatch: relay status --watch redraws the table with the
// figures of each read until interrupted, which ends it with exit 0; a
// failed read is shown and the next one tried.
func TestStatusWatch(t *testing.T) {
	var reads atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := reads.Add(1)
		if n == 2 {
			http.Error(w, `{"error":"bus not ready"}`, http.StatusServiceUnavailable)
			return
		}
		if n >= 4 {
			cancel() // Ctrl-C after the fourth read
		}
		fmt.Fprintf(w, `{"destinations":[{"name":"crm","type":"webhook","state":"active","pending":%d}]}`, n*10)
	}))
	defer srv.Close()
	noConfig(t)
	var out, errOut bytes.Buffer
	code := run(ctx, []string{"status", "--watch", "--every", "5ms", "--server", srv.URL, "--token", "t"}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut.String())
	}
	screens := strings.Split(out.String(), clearScreen)[1:]
	if len(screens) != 3 {
		t.Fatalf("%d screens, want 3 (the fourth read was interrupted):\n%s", len(screens), out.String())
	}
	for i, want := range []string{"crm", "server said 503", "crm"} {
		if !strings.Contains(screens[i], want) || !strings.Contains(screens[i], "relay status, every 5ms") {
			t.Errorf("screen %d lacks %q:\n%s", i+1, want, screens[i])
		}
	}
	if !strings.Contains(squash(screens[0]), "crm webhook active — 10 ") || !strings.Contains(squash(screens[2]), "crm webhook active — 30 ") {
		t.Errorf("the screens do not show each read's figures:\n%s", out.String())
	}
}

func TestStatusWatchJSON(t *testing.T) {
	var reads atomic.Int32
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if reads.Add(1) >= 2 {
			defer cancel()
		}
		fmt.Fprint(w, `{"destinations": [{"name": "crm"}]}`)
	}))
	defer srv.Close()
	noConfig(t)
	var out, errOut bytes.Buffer
	if code := run(ctx, []string{"status", "--watch", "--json", "--every", "5ms", "--server", srv.URL, "--token", "t"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut.String())
	}
	if got := out.String(); got != "{\"destinations\":[{\"name\":\"crm\"}]}\n" && got != strings.Repeat("{\"destinations\":[{\"name\":\"crm\"}]}\n", 2) {
		t.Errorf("--watch --json: %q, want one JSON document a line", got)
	}
}
