package e2e

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// natsServer runs nats-server, built from the module Relay depends on, as a
// separate process with JetStream on a fixed port and store dir.
func natsServer(t *testing.T, port int, storeDir string, args ...string) *proc {
	t.Helper()
	bin := binary(t, "github.com/nats-io/nats-server/v2")
	p := start(t, bin, append([]string{"-a", "127.0.0.1", "-p", fmt.Sprint(port), "-js", "-sd", storeDir}, args...)...)
	deadline := time.Now().Add(30 * time.Second)
	for !dialable(port) {
		if time.Now().After(deadline) {
			t.Fatalf("nats-server not listening:\n%s", p.out)
		}
		select {
		case <-p.done:
			t.Fatalf("nats-server exited:\n%s", p.out)
		case <-time.After(20 * time.Millisecond):
		}
	}
	return p
}

// outageLog records when ingest answered 202 and how often it refused,
// so a test can tell what happened while the bus was down.
type outageLog struct {
	mu       sync.Mutex
	down, up time.Time // the outage, once known
	accepts  []time.Time
	refused  map[int]int // answers other than 202 during the outage
}

func (o *outageLog) answer(status int) {
	now := time.Now()
	o.mu.Lock()
	defer o.mu.Unlock()
	if status == http.StatusAccepted {
		o.accepts = append(o.accepts, now)
	} else if !o.down.IsZero() && o.up.IsZero() {
		o.refused[status]++
	}
}

func (o *outageLog) mark(down bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if down {
		o.down = time.Now()
	} else {
		o.up = time.Now()
	}
}

// acceptedWhileDown counts 202s answered well inside the outage: from
// grace after the server died (a request acknowledged just before may
// still be on its way back) until the restart began.
func (o *outageLog) acceptedWhileDown(grace time.Duration) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, at := range o.accepts {
		if at.After(o.down.Add(grace)) && at.Before(o.up) {
			n++
		}
	}
	return n
}

// TestNATSOutage kills the external nats-server (SIGKILL) in the middle of
// a run, keeps it down for 10 seconds while producers go on posting, and
// restarts it on the same store. Ingest answers 503 while the bus is down
// and never 202, and /readyz says it is not ready; ingest and the workers
// recover by themselves, and every accepted activity is delivered.
func TestNATSOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("the fault suite runs without -short")
	}
	relayBin := binary(t, "./cmd/relay")
	s := newSink(t)
	dir := t.TempDir()
	port := freePort(t)
	store := filepath.Join(dir, "nats")
	ns := natsServer(t, port, store)
	cfg, ingest, admin := relayConfig(t, dir, fmt.Sprintf("nats://127.0.0.1:%d", port), s.srv.URL)
	relay := start(t, relayBin, "serve", "-c", cfg)
	waitHTTP(t, admin+"/readyz", 60*time.Second, relay)

	const batches, size, outage = 150, 100, 10 * time.Second
	log := &outageLog{refused: map[int]int{}}
	prod := newProducer(256, ingest)
	prod.onAnswer = log.answer
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	wait := prod.run(ctx, batches, size, 4)
	waitUntil(t, ctx, "5,000 accepted", func() bool { return prod.count() >= 5000 })
	ns.kill()
	log.mark(true)
	before := prod.count()
	waitStatus(t, admin+"/readyz", http.StatusServiceUnavailable, 10*time.Second)
	time.Sleep(outage) // the outage itself, not a wait for an event
	log.mark(false)
	ns = natsServer(t, port, store)
	waitStatus(t, admin+"/readyz", http.StatusOK, 30*time.Second)
	if err := wait(); err != nil {
		t.Fatalf("ingest never recovered after the restart: %v", err)
	}
	recovered := time.Since(log.up)

	if n := log.acceptedWhileDown(500 * time.Millisecond); n > 0 {
		t.Errorf("ingest answered 202 %d times while nats-server was down", n)
	}
	if log.refused[http.StatusServiceUnavailable] == 0 {
		t.Errorf("ingest never answered 503 during the outage (answers: %v)", log.refused)
	}
	accepted := prod.ids()
	if len(accepted) != batches*size {
		t.Fatalf("accepted %d, want %d", len(accepted), batches*size)
	}
	tl := settle(t, "nats outage", s, accepted, func() []string { return deadLetters(t, admin, "sink") }, 3*time.Minute)
	report(t, "nats outage 10s", tl, fmt.Sprintf("accepted_before_outage=%d refused_during=%v ingest_done_after_restart=%s",
		before, log.refused, recovered.Round(time.Millisecond)))
	relay.stop(t)
	ns.stop(t)
}

// waitStatus waits until url answers status.
func waitStatus(t *testing.T, url string, status int, within time.Duration) {
	t.Helper()
	waitAnswer(t, url, status, within, nil)
}
