package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"testing"
	"time"
)

// destStatus is one row of GET /v1/destinations.
type destStatus struct {
	State          string `json:"state"`
	Delivered      int    `json:"delivered"`
	FailedAttempts int    `json:"failed_attempts"`
	Pending        int    `json:"pending"`
}

// status reads one process's view of the sink destination.
func status(t *testing.T, admin string) destStatus {
	t.Helper()
	req, _ := http.NewRequest("GET", admin+"/v1/destinations", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Destinations []destStatus `json:"destinations"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || len(out.Destinations) != 1 {
		t.Fatalf("destinations: %v %+v", err, out)
	}
	return out.Destinations[0]
}

// TestScaleOutSharesConsumer runs two relay processes on one nats-server:
// they split each destination's deliveries, and a pause said to one holds
// the other too.
func TestScaleOutSharesConsumer(t *testing.T) {
	s := newSink(t)
	procs, ingests, admins := scaledOut(t, s)
	for _, p := range procs {
		t.Cleanup(func() { p.stop(t) })
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	prod := newProducer(64, ingests...)
	for seq := range 20 { // alternate between the two processes' ingest
		if err := prod.post(ctx, ingests[seq%2], seq, 100); err != nil {
			t.Fatal(err)
		}
	}
	accepted := prod.ids()
	tl := settle(t, "scale-out", s, accepted, func() []string { return deadLetters(t, admins[0], "sink") }, time.Minute)
	d0, d1 := status(t, admins[0]).Delivered, status(t, admins[1]).Delivered
	t.Logf("scale-out: process 0 delivered %d, process 1 %d", d0, d1)
	if d0 == 0 || d1 == 0 || d0+d1 < len(accepted) {
		t.Errorf("deliveries not shared: %d and %d for %d activities", d0, d1, len(accepted))
	}
	if tl.duplicates > 0 {
		t.Errorf("%d duplicate deliveries with both processes up", tl.duplicates)
	}

	req, _ := http.NewRequest("POST", admins[0]+"/v1/destinations/sink/pause", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	deadline := time.Now().Add(10 * time.Second)
	for status(t, admins[1]).State != "paused" {
		if time.Now().After(deadline) {
			t.Fatal("the other process never saw the pause")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestScaleOutFailover runs two relay processes on one nats-server sharing
// the destination, kills one (SIGKILL) mid-run, and checks that the other
// finishes the work: every accepted activity is delivered, including those
// the dead process had pulled but not acknowledged.
func TestScaleOutFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("the fault suite runs without -short")
	}
	s := newSink(t)
	procs, ingests, admins := scaledOut(t, s)
	const batches, size = 100, 100
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	prod := newProducer(256, ingests...) // a refused batch goes to the other process
	wait := prod.run(ctx, batches, size, 4)
	waitUntil(t, ctx, "both processes delivering", func() bool {
		return status(t, admins[0]).Delivered > 0 && status(t, admins[1]).Delivered > 0 && prod.count() >= 3000
	})
	d0, d1 := status(t, admins[0]).Delivered, status(t, admins[1]).Delivered
	procs[1].kill()
	killedAt := prod.count()
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	accepted := prod.ids()
	if len(accepted) != batches*size {
		t.Fatalf("accepted %d, want %d", len(accepted), batches*size)
	}
	tl := settle(t, "failover", s, accepted, func() []string { return deadLetters(t, admins[0], "sink") }, 2*time.Minute)
	after := status(t, admins[0]).Delivered
	report(t, "scale-out failover", tl, fmt.Sprintf("killed_process_1_at_accepted=%d split_before_kill=%d/%d survivor_delivered=%d", killedAt, d0, d1, after))
	procs[0].stop(t)
}

// scaledOut starts a nats-server and two relay processes on it, both
// delivering to s, and waits until both are ready.
func scaledOut(t *testing.T, s *sink) (procs []*proc, ingests, admins []string) {
	t.Helper()
	relayBin := binary(t, "./cmd/relay")
	dir := t.TempDir()
	port := freePort(t)
	natsServer(t, port, filepath.Join(dir, "nats"))
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	for i := range 2 {
		cfg, ingest, admin := relayConfig(t, mkdir(t, filepath.Join(dir, fmt.Sprint(i))), url, s.srv.URL)
		p := start(t, relayBin, "serve", "-c", cfg)
		waitHTTP(t, admin+"/readyz", 60*time.Second, p)
		procs, ingests, admins = append(procs, p), append(ingests, ingest), append(admins, admin)
	}
	return procs, ingests, admins
}
