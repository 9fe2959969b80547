package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// memKB reads one of the memory lines of /proc/<pid>/status, in KiB:
// VmRSS (resident now) or VmHWM (the peak so far).
func memKB(pid int, field string) (int, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			return strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

func rssMB(t *testing.T, p *proc, field string) float64 {
	t.Helper()
	kb, err := memKB(p.cmd.Process.Pid, field)
	if err != nil {
		t.Fatalf("reading the relay's memory: %v", err)
	}
	return float64(kb) / 1024
}

// TestBacklogBoundedMemory keeps a destination's receiver down while
// 200,000 activities arrive, then brings it up and lets the backlog drain.
// The backlog lives in JetStream's file store, not in the relay's memory:
// the relay process's peak RSS stays under a bound well below what holding
// the backlog would take, and every activity is delivered.
func TestBacklogBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("the fault suite runs without -short")
	}
	bin := binary(t, "./cmd/relay")
	port := freePort(t)
	s, up := newSinkAt(t, port)
	dir := t.TempDir()
	cfg, ingest, admin := writeRelayConfig(t, dir, relayOpts{nats: "embedded", sink: fmt.Sprintf("http://127.0.0.1:%d/hook", port),
		retry: "{schedule: [1s, 2s, 5s, 5s, 5s, 5s, 5s, 5s, 5s, 5s, 5s, 5s, 5s, 5s, 5s, 5s, 5s, 5s, 5s, 5s, 5s, 5s, 5s, 5s], max_age: 1h}",
		extra: "    max_in_flight: 64\n    breaker: {probe_every: 1s}\n"})
	relay := start(t, bin, "serve", "-c", cfg)
	waitHTTP(t, admin+"/readyz", 60*time.Second, relay)
	if os.Getenv("RELAY_E2E_LOG") != "" {
		t.Cleanup(func() { t.Logf("relay output:\n%s", relay.out) })
	}

	const batches, size, payload = 400, 500, 2048
	backlogMB := float64(batches*size*(payload+200)) / (1 << 20) // stored bytes, roughly
	prod := newProducer(payload, ingest)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	began := time.Now()
	if err := prod.run(ctx, batches, size, 4)(); err != nil {
		t.Fatal(err)
	}
	ingested := time.Since(began)
	accepted := prod.ids()
	if len(accepted) != batches*size {
		t.Fatalf("accepted %d, want %d", len(accepted), batches*size)
	}
	waiting := rssMB(t, relay, "VmRSS")
	before := status(t, admin)
	if before.Pending < len(accepted) {
		t.Errorf("%d pending with the receiver down, want %d", before.Pending, len(accepted))
	}

	up()
	drainStart := time.Now()
	tl := settle(t, "backlog", s, accepted, func() []string { return deadLetters(t, admin, "sink") }, 4*time.Minute)
	drained := time.Since(drainStart)
	peak := rssMB(t, relay, "VmHWM")
	after := rssMB(t, relay, "VmRSS")
	failedDraining := status(t, admin).FailedAttempts - before.FailedAttempts
	report(t, "backlog 200k", tl, fmt.Sprintf("backlog_mb=%.0f ingest=%s (%.0f/s) rss_waiting_mb=%.0f drain=%s (%.0f/s) peak_rss_mb=%.0f rss_after_mb=%.0f failed_attempts_down=%d failed_attempts_draining=%d",
		backlogMB, ingested.Round(time.Millisecond), float64(len(accepted))/ingested.Seconds(), waiting,
		drained.Round(time.Millisecond), float64(len(accepted))/drained.Seconds(), peak, after, before.FailedAttempts, failedDraining))
	const bound = 300
	if os.Getenv("RELAY_E2E_RACE") != "" {
		t.Logf("race-detector build: its memory is not held to the %d MB bound", bound)
	} else if peak > bound {
		t.Errorf("relay peak RSS %.0f MB over %d MB with a %.0f MB backlog", peak, bound, backlogMB)
	}
	relay.stop(t)
}
