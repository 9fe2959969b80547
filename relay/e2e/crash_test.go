package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// relayConfig writes a relay.yaml for a relay process delivering everything
// to url, and returns its path and the ingest and admin base URLs.
func relayConfig(t *testing.T, dir, natsURL, url string) (string, string, string) {
	t.Helper()
	ingest, admin := freePort(t), freePort(t)
	cfg := fmt.Sprintf(`nats: {url: %q, data_dir: %q}
ingest: {listen: "127.0.0.1:%d", tokens: [%q]}
admin: {listen: "127.0.0.1:%d", token: %q}
destinations:
  - name: sink
    type: webhook
    url: %s
    allow_private_network: true
    secrets: [%q]
    timeout: 1s
    retry: {schedule: [100ms, 200ms, 500ms, 1s, 1s, 1s, 1s, 1s, 1s, 1s]}
`, natsURL, filepath.Join(dir, "data"), ingest, ingestToken, admin, adminToken, url, secret)
	path := filepath.Join(dir, "relay.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, fmt.Sprintf("http://127.0.0.1:%d", ingest), fmt.Sprintf("http://127.0.0.1:%d", admin)
}

// TestCrashRecovery kills the relay process with SIGKILL while thousands of
// activities are in flight, restarts it on the same data dir, and checks
// that every activity ingest accepted is delivered at least once.
func TestCrashRecovery(t *testing.T) {
	bin := binary(t, "./cmd/relay")
	s := newSink(t)
	dir := t.TempDir()
	cfg, ingest, admin := relayConfig(t, dir, "embedded", s.srv.URL)
	run := func() *proc {
		p := start(t, bin, "serve", "-c", cfg)
		waitHTTP(t, admin+"/readyz", 60*time.Second, p)
		return p
	}
	relay := run()

	const batches, size, workers = 60, 100, 4
	prod := &producer{url: ingest + "/v1/activities"}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				seq := int(next.Add(1)) - 1
				if seq >= batches {
					return
				}
				// A producer retries a refused batch with the same ids.
				for ctx.Err() == nil && prod.postBatch(ctx, seq, size) != nil {
					time.Sleep(50 * time.Millisecond)
				}
			}
		}()
	}
	waitUntil(t, ctx, "2,000 accepted", func() bool { return len(prod.ids()) >= 2000 })
	relay.kill() // SIGKILL, mid-run
	t.Logf("killed relay with %d accepted", len(prod.ids()))
	relay = run()
	wg.Wait()
	accepted := prod.ids()
	if len(accepted) < batches*size {
		t.Fatalf("accepted %d, want %d", len(accepted), batches*size)
	}
	dups := waitAccounted(t, s, unique(accepted), 2*time.Minute)
	t.Logf("crash: %d activities accepted, all delivered, %d duplicate deliveries, %d refused requests retried", len(unique(accepted)), dups, prod.refused)
	if s.bad > 0 {
		t.Errorf("%d deliveries failed signature verification", s.bad)
	}
	relay.stop(t)
}

func unique(ids []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}

func waitUntil(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
