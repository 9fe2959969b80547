package e2e

import (
	"context"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// relayOpts shape the relay.yaml of a test's relay process.
type relayOpts struct {
	nats     string // nats.url: "embedded" or nats://…
	sink     string // the webhook destination's URL
	replicas int    // nats.replicas; 0 = the default
	retry    string // the destination's retry block; "" = a short schedule
	extra    string // more keys for the destination
	more     string // more destinations, as YAML list items
}

// relayConfig writes a relay.yaml for a relay process delivering everything
// to url, and returns its path and the ingest and admin base URLs.
func relayConfig(t *testing.T, dir, natsURL, url string) (string, string, string) {
	return writeRelayConfig(t, dir, relayOpts{nats: natsURL, sink: url})
}

func writeRelayConfig(t *testing.T, dir string, o relayOpts) (string, string, string) {
	t.Helper()
	ingest, admin := freePort(t), freePort(t)
	if o.retry == "" {
		o.retry = "{schedule: [100ms, 200ms, 500ms, 1s, 1s, 1s, 1s, 1s, 1s, 1s]}"
	}
	replicas := ""
	if o.replicas > 0 {
		replicas = fmt.Sprintf(", replicas: %d", o.replicas)
	}
	cfg := fmt.Sprintf(`nats: {url: %q, data_dir: %q%s}
ingest: {listen: "127.0.0.1:%d", tokens: [%q]}
admin: {listen: "127.0.0.1:%d", token: %q}
destinations:
  - name: sink
    type: webhook
    url: %s
    allow_private_network: true
    secrets: [%q]
    timeout: 1s
    retry: %s
%s%s`, o.nats, filepath.Join(dir, "data"), replicas, ingest, ingestToken, admin, adminToken, o.sink, secret, o.retry, o.extra, o.more)
	path := filepath.Join(dir, "relay.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, fmt.Sprintf("http://127.0.0.1:%d", ingest), fmt.Sprintf("http://127.0.0.1:%d", admin)
}

// killPoints picks n distinct moments of a run of total activities, as
// counts of accepted ones, at least gap apart and clear of both ends.
func killPoints(rng *rand.Rand, n, total, gap int) []int {
	for {
		pts := make([]int, n)
		for i := range pts {
			pts[i] = gap + rng.IntN(total-2*gap)
		}
		slices.Sort(pts)
		ok := true
		for i := 1; i < n; i++ {
			ok = ok && pts[i]-pts[i-1] >= gap
		}
		if ok {
			return pts
		}
	}
}

// flaky fails every tenth activity for good and three in ten others on
// their first attempt, so a destination sees retries and dead letters.
func flaky(id string, attempt int) bool {
	h := fnv.New32a()
	h.Write([]byte(id))
	v := h.Sum32() % 10
	return v == 0 || (attempt == 1 && v <= 3)
}

// doomed are the ids flaky never lets through.
func doomed(ids []string) map[string]bool {
	out := map[string]bool{}
	for _, id := range ids {
		if flaky(id, 1000) {
			out[id] = true
		}
	}
	return out
}

// TestCrashRecovery kills the relay process with SIGKILL at three random
// points of a 20,000-activity run, restarting it each time on the same data
// dir. Two destinations take every activity: a healthy receiver, and a
// flaky one that fails some attempts and some activities for good. Each
// destination's accounting holds: everything accepted is delivered at least
// once or is a dead letter, and only what could never be delivered is.
func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("the fault suite runs without -short")
	}
	bin := binary(t, "./cmd/relay")
	s, f := newSink(t), newSink(t)
	f.fail = flaky
	dir := t.TempDir()
	cfg, ingest, admin := writeRelayConfig(t, dir, relayOpts{nats: "embedded", sink: s.srv.URL, more: fmt.Sprintf(`  - name: flaky
    type: webhook
    url: %s
    allow_private_network: true
    secrets: [%q]
    timeout: 1s
    retry: {schedule: [100ms, 200ms, 300ms]}
    breaker: off
`, f.srv.URL, secret)})
	run := func() *proc {
		p := start(t, bin, "serve", "-c", cfg)
		waitHTTP(t, admin+"/readyz", 60*time.Second, p)
		return p
	}
	relay := run()

	const batches, size = 200, 100
	seed := time.Now().UnixNano()
	points := killPoints(rand.New(rand.NewPCG(uint64(seed), 0)), 3, batches*size, 2000)
	t.Logf("seed %d: SIGKILL at %v accepted", seed, points)

	prod := newProducer(256, ingest)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	wait := prod.run(ctx, batches, size, 4)
	var at []string
	for _, n := range points {
		waitUntil(t, ctx, fmt.Sprintf("%d accepted", n), func() bool { return prod.count() >= n })
		relay.kill() // SIGKILL, mid-run
		at = append(at, fmt.Sprintf("%d accepted/%d delivered", prod.count(), s.received()))
		relay = run()
	}
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	accepted := prod.ids()
	if len(accepted) != batches*size {
		t.Fatalf("accepted %d, want %d", len(accepted), batches*size)
	}
	tl := settle(t, "crash", s, accepted, func() []string { return deadLetters(t, admin, "sink") }, 3*time.Minute)
	t.Logf("crash: killed at %s; %d refused or cut-off requests retried by the producers", strings.Join(at, ", "), prod.refusals())
	report(t, "relay crash ×3", tl)
	var dead []string
	ft := settle(t, "crash, flaky destination", f, accepted, func() []string { dead = deadLetters(t, admin, "flaky"); return dead }, 3*time.Minute)
	report(t, "relay crash ×3 (flaky)", ft)
	want := doomed(accepted)
	got := f.snapshot()
	for id := range want {
		if got[id] > 0 {
			t.Fatalf("flaky: %s delivered although the receiver always refused it", id)
		}
	}
	isDead := map[string]bool{}
	for _, id := range dead {
		isDead[id] = true
	}
	for id := range want {
		if !isDead[id] {
			t.Errorf("flaky: %s is neither delivered nor a dead letter", id)
			break
		}
	}
	for _, id := range dead {
		if !want[id] {
			t.Errorf("flaky: %s is a dead letter although the receiver takes it on its second attempt", id)
			break
		}
	}
	relay.stop(t)
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
