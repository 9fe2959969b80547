package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relaydev/relay/connectors/webhook"
)

// Order tests: an ordered destination (order: contact) through a receiver
// failing 30% of attempts, with relay processes killed mid-run.
const (
	orderContacts = 2000
	orderEach     = 10
	orderExtra    = "    order: contact\n    max_in_flight: 64\n"
	orderRetry    = "{schedule: [50ms, 50ms, 50ms, 50ms, 50ms, 50ms, 50ms, 50ms, 50ms, 50ms, 50ms, 50ms, 50ms, 50ms, 50ms]}"
)

// orderSink records each contact's first successful deliveries (the
// activity's attributes.n) in arrival order; it fails 30% of attempts.
type orderSink struct {
	srv *httptest.Server

	mu    sync.Mutex
	rng   *rand.Rand
	done  map[string]bool
	first map[string][]int
	bad   int
}

func newOrderSink(t *testing.T) *orderSink {
	s := &orderSink{rng: rand.New(rand.NewPCG(14, 2)), done: map[string]bool{}, first: map[string][]int{}}
	s.srv = httptest.NewServer(s)
	t.Cleanup(s.srv.Close)
	return s
}

func (s *orderSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	err := webhook.VerifyRequest(secret, r.Header, body, time.Now())
	var msg struct {
		Data struct {
			ID      string `json:"id"`
			Contact struct {
				ID string `json:"id"`
			} `json:"contact"`
			Attributes struct {
				N int `json:"n"`
			} `json:"attributes"`
		} `json:"data"`
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil || json.Unmarshal(body, &msg) != nil {
		s.bad++
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if s.rng.Float64() < 0.3 {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	if d := msg.Data; !s.done[d.ID] {
		s.done[d.ID] = true
		s.first[d.Contact.ID] = append(s.first[d.Contact.ID], d.Attributes.N)
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *orderSink) delivered() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.done)
}

// check fails the test for every contact whose first deliveries are not
// 0, 1, 2… (stored order) or miss some.
func (s *orderSink) check(t *testing.T) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	bad := 0
	for c := range orderContacts {
		got := s.first[fmt.Sprintf("c%d", c)]
		ok := len(got) == orderEach
		for i := 0; ok && i < orderEach; i++ {
			ok = got[i] == i
		}
		if !ok {
			if bad < 5 {
				t.Errorf("contact c%d: first deliveries %v, want 0..%d in order", c, got, orderEach-1)
			}
			bad++
		}
	}
	if bad > 0 || s.bad > 0 {
		t.Errorf("%d of %d contacts out of order or incomplete; %d bad requests", bad, orderContacts, s.bad)
	}
}

// sendOrdered posts every contact's activities n = 0…orderEach-1, round by
// round, so each contact's are stored in the order of n. Ids are fixed, so
// a batch sent again is not stored twice.
func sendOrdered(t *testing.T, ctx context.Context, ingest string) {
	t.Helper()
	client := &http.Client{Timeout: 30 * time.Second}
	for n := range orderEach {
		for from := 0; from < orderContacts; from += 500 {
			items := make([]map[string]any, 0, 500)
			for c := from; c < min(from+500, orderContacts); c++ {
				items = append(items, map[string]any{"id": fmt.Sprintf("c%d-%d", c, n), "type": "email", "action": "open",
					"contact": map[string]any{"id": fmt.Sprintf("c%d", c)}, "attributes": map[string]any{"n": n}})
			}
			body, _ := json.Marshal(items)
			req, _ := http.NewRequestWithContext(ctx, "POST", ingest+"/v1/activities", bytes.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+ingestToken)
			req.Header.Set("Content-Type", "application/json")
			resp, err := client.Do(req)
			if err != nil {
				t.Fatalf("ingest: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusAccepted {
				t.Fatalf("ingest answered %d", resp.StatusCode)
			}
		}
	}
}

// TestOrderThroughCrashes kills the relay (SIGKILL, its embedded NATS with
// it) twice while it delivers an ordered destination, restarting it on the
// same data dir each time.
func TestOrderThroughCrashes(t *testing.T) {
	bin := binary(t, "./cmd/relay")
	s := newOrderSink(t)
	cfg, ingest, admin := writeRelayConfig(t, t.TempDir(), relayOpts{nats: "embedded", sink: s.srv.URL, retry: orderRetry, extra: orderExtra})
	run := func() *proc {
		p := start(t, bin, "serve", "-c", cfg)
		waitHTTP(t, admin+"/readyz", 60*time.Second, p)
		return p
	}
	relay := run()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	start := time.Now()
	sendOrdered(t, ctx, ingest)
	total := orderContacts * orderEach
	for _, share := range []int{25, 60} {
		waitUntil(t, ctx, fmt.Sprintf("%d%% delivered", share), func() bool { return s.delivered() >= total*share/100 })
		relay.kill()
		t.Logf("SIGKILL with %d of %d delivered, at %s", s.delivered(), total, time.Since(start).Round(time.Millisecond))
		relay = run()
	}
	waitUntil(t, ctx, "every activity delivered", func() bool { return s.delivered() == total })
	t.Logf("%d activities of %d contacts delivered through two crashes in %s", total, orderContacts, time.Since(start).Round(time.Millisecond))
	s.check(t)
	if dead := deadLetters(t, admin, "sink"); len(dead) > 0 {
		t.Errorf("%d dead letters", len(dead))
	}
	relay.stop(t)
}

// TestOrderFailover runs two relay processes sharing an ordered
// destination: one works it at a time; the one working is killed mid-run
// and the other takes over, in order.
func TestOrderFailover(t *testing.T) {
	bin := binary(t, "./cmd/relay")
	s := newOrderSink(t)
	dir := t.TempDir()
	port := freePort(t)
	natsServer(t, port, filepath.Join(dir, "nats"))
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	var procs []*proc
	var ingests, admins []string
	for i := range 2 {
		cfg, ingest, admin := writeRelayConfig(t, mkdir(t, filepath.Join(dir, fmt.Sprint(i))), relayOpts{nats: url, sink: s.srv.URL, retry: orderRetry, extra: orderExtra})
		p := start(t, bin, "serve", "-c", cfg)
		waitHTTP(t, admin+"/readyz", 60*time.Second, p)
		procs, ingests, admins = append(procs, p), append(ingests, ingest), append(admins, admin)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	start := time.Now()
	sendOrdered(t, ctx, ingests[0])
	total := orderContacts * orderEach
	waitUntil(t, ctx, "40% delivered", func() bool { return s.delivered() >= total*40/100 })
	d0, d1 := status(t, admins[0]).Delivered, status(t, admins[1]).Delivered
	if d0 > 0 && d1 > 0 {
		t.Errorf("both processes delivered (%d and %d): an ordered destination is worked by one at a time", d0, d1)
	}
	working, other := 0, 1
	if d1 > d0 {
		working, other = 1, 0
	}
	procs[working].kill()
	killed := time.Now()
	t.Logf("SIGKILL of process %d (delivered %d) with %d of %d delivered", working, max(d0, d1), s.delivered(), total)
	before := s.delivered()
	waitUntil(t, ctx, "the other process delivering", func() bool { return s.delivered() > before+100 })
	t.Logf("process %d took over after %s", other, time.Since(killed).Round(time.Millisecond))
	waitUntil(t, ctx, "every activity delivered", func() bool { return s.delivered() == total })
	t.Logf("%d activities of %d contacts delivered through a fail-over in %s", total, orderContacts, time.Since(start).Round(time.Millisecond))
	s.check(t)
	procs[other].stop(t)
}

// TestOrderThroughNATSRestart kills the nats-server (SIGKILL) while one
// relay process delivers an ordered destination, and starts it again on
// the same store after a few seconds.
func TestOrderThroughNATSRestart(t *testing.T) {
	bin := binary(t, "./cmd/relay")
	s := newOrderSink(t)
	dir := t.TempDir()
	port := freePort(t)
	store := filepath.Join(dir, "nats")
	ns := natsServer(t, port, store)
	cfg, ingest, admin := writeRelayConfig(t, mkdir(t, filepath.Join(dir, "relay")), relayOpts{nats: fmt.Sprintf("nats://127.0.0.1:%d", port), sink: s.srv.URL, retry: orderRetry, extra: orderExtra})
	relay := start(t, bin, "serve", "-c", cfg)
	waitHTTP(t, admin+"/readyz", 60*time.Second, relay)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	start := time.Now()
	sendOrdered(t, ctx, ingest)
	total := orderContacts * orderEach
	waitUntil(t, ctx, "30% delivered", func() bool { return s.delivered() >= total*30/100 })
	ns.kill()
	t.Logf("nats-server SIGKILL with %d of %d delivered", s.delivered(), total)
	down := time.Now()
	waitUntil(t, ctx, "3 s of outage", func() bool { return time.Since(down) > 3*time.Second })
	natsServer(t, port, store)
	waitUntil(t, ctx, "every activity delivered", func() bool { return s.delivered() == total })
	t.Logf("%d activities of %d contacts delivered through a nats-server restart in %s", total, orderContacts, time.Since(start).Round(time.Millisecond))
	s.check(t)
	relay.stop(t)
	// An older activity coming back (its acknowledgement lost with the
	// server) while its contact's next one is attempted goes in front of
	// it; the one attempted must still be the one taken out after.
	if n := strings.Count(relay.out.String(), "already acknowledged"); n > 0 {
		t.Errorf("%d activities attempted again after being settled", n)
	}
}

// TestOrderTwoProcessesThroughNATSRestart: two relay processes share an
// ordered destination and the nats-server restarts mid-run; it forgets
// which process was pinned, and whichever it pins next must not overtake
// what the other still holds.
func TestOrderTwoProcessesThroughNATSRestart(t *testing.T) {
	bin := binary(t, "./cmd/relay")
	s := newOrderSink(t)
	dir := t.TempDir()
	port := freePort(t)
	store := filepath.Join(dir, "nats")
	ns := natsServer(t, port, store)
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	var procs []*proc
	var ingests []string
	for i := range 2 {
		cfg, ingest, admin := writeRelayConfig(t, mkdir(t, filepath.Join(dir, fmt.Sprint(i))), relayOpts{nats: url, sink: s.srv.URL, retry: orderRetry, extra: orderExtra})
		p := start(t, bin, "serve", "-c", cfg)
		waitHTTP(t, admin+"/readyz", 60*time.Second, p)
		procs, ingests = append(procs, p), append(ingests, ingest)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	start := time.Now()
	sendOrdered(t, ctx, ingests[0])
	total := orderContacts * orderEach
	waitUntil(t, ctx, "30% delivered", func() bool { return s.delivered() >= total*30/100 })
	ns.kill()
	t.Logf("nats-server SIGKILL with %d of %d delivered", s.delivered(), total)
	down := time.Now()
	waitUntil(t, ctx, "2 s of outage", func() bool { return time.Since(down) > 2*time.Second })
	natsServer(t, port, store)
	waitUntil(t, ctx, "every activity delivered", func() bool { return s.delivered() == total })
	t.Logf("%d activities of %d contacts delivered by two processes through a nats-server restart in %s", total, orderContacts, time.Since(start).Round(time.Millisecond))
	s.check(t)
	for _, p := range procs {
		p.stop(t)
		if strings.Contains(p.out.String(), "another process works the destination now") {
			t.Log("a process handed back what it held to the one pinned after the restart")
		}
	}
}
