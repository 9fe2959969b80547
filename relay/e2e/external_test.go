package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// natsServer runs nats-server, built from the module Relay depends on, as a
// separate process with JetStream on a fixed port and store dir.
func natsServer(t *testing.T, port int, storeDir string) *proc {
	t.Helper()
	bin := binary(t, "github.com/nats-io/nats-server/v2")
	p := start(t, bin, "-a", "127.0.0.1", "-p", fmt.Sprint(port), "-js", "-sd", storeDir, "-m", "0")
	deadline := time.Now().Add(30 * time.Second)
	for !dialable(port) {
		if time.Now().After(deadline) {
			t.Fatalf("nats-server not listening:\n%s", p.out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return p
}

// TestExternalNATSRestart delivers through a nats-server running as its own
// process, restarts that server mid-test, and checks that every accepted
// activity is delivered: ingest refuses (never accepts) while the bus is
// down, and the relay recovers by itself.
func TestExternalNATSRestart(t *testing.T) {
	relayBin := binary(t, "./cmd/relay")
	s := newSink(t)
	dir := t.TempDir()
	port := freePort(t)
	store := filepath.Join(dir, "nats")
	ns := natsServer(t, port, store)
	cfg, ingest, admin := relayConfig(t, dir, fmt.Sprintf("nats://127.0.0.1:%d", port), s.srv.URL)
	relay := start(t, relayBin, "serve", "-c", cfg)
	waitHTTP(t, admin+"/readyz", 60*time.Second, relay)

	prod := &producer{url: ingest + "/v1/activities"}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for seq := range 10 {
		if err := prod.postBatch(ctx, seq, 100); err != nil {
			t.Fatalf("batch %d: %v", seq, err)
		}
	}
	ns.stop(t)
	// While the bus is down nothing is accepted.
	if err := prod.postBatch(ctx, 10, 100); err == nil {
		t.Fatal("ingest accepted a batch while nats-server was down")
	}
	ns = natsServer(t, port, store)
	for seq := 10; seq < 20; seq++ {
		for prod.postBatch(ctx, seq, 100) != nil {
			if ctx.Err() != nil {
				t.Fatal("ingest never recovered after nats-server restart")
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	accepted := unique(prod.ids())
	if len(accepted) < 2000 {
		t.Fatalf("accepted %d, want 2000", len(accepted))
	}
	dups := waitAccounted(t, s, accepted, 2*time.Minute)
	t.Logf("external nats restart: %d accepted, all delivered, %d duplicates, %d refused requests", len(accepted), dups, prod.refused)
	relay.stop(t)
	ns.stop(t)
}
