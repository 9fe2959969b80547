package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The combined scenario: every fault the suite knows, on one destination
// shared by two relay processes on one nats-server.
const (
	combinedBatches   = 120
	combinedBatchSize = 25                     // 3,000 activities…
	combinedPace      = 300 * time.Millisecond // …one batch every 300 ms: about 36 s of producing
	// 15 delays: 16 attempts, then a dead letter, about 7.7 s after the first.
	combinedRetry = "{schedule: [100ms, 100ms, 200ms, 200ms, 300ms, 300ms, 500ms, 500ms, 500ms, 500ms, 500ms, 1s, 1s, 1s, 1s]}"
	// What the reload changes it to: 12 delays, 13 attempts.
	combinedRetryReloaded = "{schedule: [200ms, 200ms, 200ms, 200ms, 200ms, 500ms, 500ms, 500ms, 500ms, 500ms, 1s, 1s]}"
	combinedBreaker       = "    breaker: {failures: 20, window: 2s, probe_every: 1s}\n"
)

// combinedClass buckets an activity id by a hash of it, 0…99: below 5
// the receiver always refuses it, below 30 it refuses its first two
// attempts, the rest it takes at once.
func combinedClass(id string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(id))
	return h.Sum32() % 100
}

func combinedDoomed(id string) bool { return combinedClass(id) < 5 }

// combinedFail is the receiver's refusal of 30% of the payloads: attempt
// counts only the requests it answered while up.
func combinedFail(id string, attempt int) bool {
	c := combinedClass(id)
	return c < 5 || (c < 30 && attempt <= 2)
}

// downReceiver is a sink on a fixed loopback port that can go down: closed
// (connections refused) or unavailable (503 to every request, none of
// which counts as an attempt of the sink's).
type downReceiver struct {
	s    *sink
	port int

	unavailable atomic.Bool
	requests    atomic.Int64 // every request that reached it, answered or not

	mu  sync.Mutex
	srv *http.Server
}

func newDownReceiver(t *testing.T) *downReceiver {
	d := &downReceiver{s: &sink{got: map[string]int{}, tries: map[string]int{}, fail: combinedFail}, port: freePort(t)}
	d.up(t)
	t.Cleanup(d.down)
	return d
}

func (d *downReceiver) url() string { return fmt.Sprintf("http://127.0.0.1:%d", d.port) }

func (d *downReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	d.requests.Add(1)
	if d.unavailable.Load() {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	d.s.ServeHTTP(w, r)
}

// up listens on the receiver's port again.
func (d *downReceiver) up(t *testing.T) {
	t.Helper()
	var ln net.Listener
	var err error
	for range 100 { // the port was ours a moment ago
		if ln, err = net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", d.port)); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("receiver listen: %v", err)
	}
	srv := &http.Server{Handler: d, ReadHeaderTimeout: 5 * time.Second}
	d.mu.Lock()
	d.srv = srv
	d.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
}

// down closes the listener and every open connection: from now on
// connections are refused.
func (d *downReceiver) down() {
	d.mu.Lock()
	srv := d.srv
	d.srv = nil
	d.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
}

// combinedDest is one process's view of the destination.
type combinedDest struct {
	Name         string `json:"name"`
	State        string `json:"state"`
	Breaker      string `json:"breaker"`
	Pending      int    `json:"pending"`
	Delivered    int    `json:"delivered"`
	Failed       int    `json:"failed_attempts"`
	DeadLettered int    `json:"dead_lettered"`
}

func adminDo(method, url string) (int, []byte, error) {
	req, _ := http.NewRequest(method, url, nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

// destView reads the sink destination from one process; an error when
// the process does not answer (killed, restarting).
func destView(admin string) (combinedDest, error) {
	code, body, err := adminDo("GET", admin+"/v1/destinations")
	if err != nil {
		return combinedDest{}, err
	}
	var out struct {
		Destinations []combinedDest `json:"destinations"`
	}
	if code != http.StatusOK || json.Unmarshal(body, &out) != nil {
		return combinedDest{}, fmt.Errorf("destinations: %d %s", code, body)
	}
	for _, d := range out.Destinations {
		if d.Name == "sink" {
			return d, nil
		}
	}
	return combinedDest{}, fmt.Errorf("no destination sink in %s", body)
}

// views reads every answering process's view.
func views(admins []string) []combinedDest {
	var out []combinedDest
	for _, a := range admins {
		if v, err := destView(a); err == nil {
			out = append(out, v)
		}
	}
	return out
}

// waitFor polls cond until it holds or within passes; it reports which.
func waitFor(within time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// breakerIs holds when some answering process sees one of states, or,
// with every, when all of admins answer and see one of them.
func breakerIs(admins []string, every bool, states ...string) func() bool {
	return func() bool {
		vs := views(admins)
		if every && len(vs) < len(admins) {
			return false
		}
		n := 0
		for _, v := range vs {
			if slices.Contains(states, v.Breaker) {
				n++
			}
		}
		if every {
			return n == len(vs)
		}
		return n > 0
	}
}

// deadLetterAttempts reads every dead letter of the sink destination with
// how many attempts its history holds.
func deadLetterAttempts(t *testing.T, admin string) map[string]int {
	t.Helper()
	out := map[string]int{}
	cursor := ""
	deadline := time.Now().Add(30 * time.Second)
	for range 10_000 {
		code, body, err := adminDo("GET", fmt.Sprintf("%s/v1/deadletters?destination=sink&limit=1000&cursor=%s", admin, cursor))
		if err != nil || code != http.StatusOK {
			if time.Now().After(deadline) {
				t.Fatalf("list dead letters: %d %v %s", code, err, body)
			}
			time.Sleep(200 * time.Millisecond)
			continue
		}
		var page struct {
			DeadLetters []struct {
				ID       string            `json:"id"`
				Attempts []json.RawMessage `json:"attempts"`
			} `json:"deadletters"`
			NextCursor string `json:"next_cursor"`
		}
		if err := json.Unmarshal(body, &page); err != nil {
			t.Fatalf("dead letters: %v", err)
		}
		for _, dl := range page.DeadLetters {
			out[dl.ID] = len(dl.Attempts)
		}
		if page.NextCursor == "" {
			return out
		}
		cursor = page.NextCursor
	}
	t.Fatal("dead-letter pages never ended")
	return nil
}

// pacedRun posts batches 0…batches-1, one every pace, from workers
// goroutines, each batch until accepted (on the next ingest after a
// refusal); wait returns once every batch was (or ctx ended).
func pacedRun(ctx context.Context, p *producer, batches, size int, pace time.Duration, workers int) (wait func() error) {
	jobs := make(chan int, batches)
	go func() {
		defer close(jobs)
		tick := time.NewTicker(pace)
		defer tick.Stop()
		for seq := range batches {
			jobs <- seq
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := range jobs {
				if err := p.send(ctx, seq, size); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	return func() error {
		wg.Wait()
		close(errs)
		return <-errs
	}
}

// reloadTimestamp reads relay_config_last_reload_success_timestamp_seconds.
func reloadTimestamp(admin string) float64 {
	code, body, err := adminDo("GET", admin+"/metrics")
	if err != nil || code != http.StatusOK {
		return 0
	}
	for _, line := range strings.Split(string(body), "\n") {
		if rest, ok := strings.CutPrefix(line, "relay_config_last_reload_success_timestamp_seconds "); ok {
			v, _ := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return v
		}
	}
	return 0
}

// traceOf is an activity's trace from the admin API, cut short, for the
// log of a failing run.
func traceOf(admin, id string) string {
	code, body, err := adminDo("GET", admin+"/v1/activities/"+id)
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("%d %s", code, tail(string(body), 1500))
}

// TestCombinedFaults runs two relay processes on one nats-server sharing
// one webhook destination (short retry schedule, breaker with a 2 s window
// and 1 s probes) while producers send 3,000 activities across both
// processes' ingest, paced over about 36 s. The receiver refuses 30% of
// the payloads by a hash of the activity id (5% always, 25% on their first
// two attempts), and meanwhile, one after the other:
//
//  1. the receiver goes down (connections refused) until the breaker has
//     opened and at least 3 s passed, then comes back;
//  2. both processes' files change the retry schedule; one is reloaded by
//     SIGHUP, the other by POST /v1/reload;
//  3. one process is killed (SIGKILL) and restarted on the same file;
//  4. the receiver answers 503 to everything; once the breaker opened the
//     destination is paused (admin API on one process) for 3 s, during
//     which the receiver gets no request at all, then resumed (relay
//     resume, through the other); probing must go on, and the receiver
//     comes back.
//
// Then, once quiet: every accepted activity is delivered with a valid
// signature or a dead letter, none lost; the ones always refused are dead
// letters and were never delivered, every other one was delivered and is
// no dead letter. Duplicates are allowed (at least once) and reported.
func TestCombinedFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("the fault suite runs without -short")
	}
	began := time.Now()
	bin := binary(t, "./cmd/relay")
	rcv := newDownReceiver(t)
	s := rcv.s
	dir := t.TempDir()
	natsPort := freePort(t)
	natsServer(t, natsPort, filepath.Join(dir, "nats"))
	natsURL := fmt.Sprintf("nats://127.0.0.1:%d", natsPort)
	var procs []*proc
	var cfgs, ingests, admins []string
	for i := range 2 {
		cfg, ingest, admin := writeRelayConfig(t, mkdir(t, filepath.Join(dir, fmt.Sprint(i))), relayOpts{
			nats: natsURL, sink: rcv.url(), retry: combinedRetry, extra: combinedBreaker})
		p := start(t, bin, "serve", "-c", cfg)
		waitHTTP(t, admin+"/readyz", 60*time.Second, p)
		procs, cfgs, ingests, admins = append(procs, p), append(cfgs, cfg), append(ingests, ingest), append(admins, admin)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	prod := newProducer(256, ingests...)
	produceStart := time.Now()
	wait := pacedRun(ctx, prod, combinedBatches, combinedBatchSize, combinedPace, 4)
	total := combinedBatches * combinedBatchSize
	var events []string
	event := func(format string, args ...any) {
		msg := fmt.Sprintf("%5.1fs accepted=%d delivered=%d: ", time.Since(produceStart).Seconds(), prod.count(), s.received()) + fmt.Sprintf(format, args...)
		events = append(events, msg)
		t.Log(msg)
	}

	// A sampler notes every change of the breaker as the processes see it,
	// with the receiver's requests and deliveries, for the log.
	var samples []string
	sampleDone := make(chan struct{})
	sampleCtx, stopSampling := context.WithCancel(ctx)
	go func() {
		defer close(sampleDone)
		last := ""
		for sampleCtx.Err() == nil {
			var st []string
			for _, a := range admins {
				v, err := destView(a)
				if err != nil {
					st = append(st, "-")
					continue
				}
				st = append(st, v.State+"/"+v.Breaker)
			}
			if cur := strings.Join(st, " "); cur != last {
				last = cur
				samples = append(samples, fmt.Sprintf("%5.1fs %s requests=%d delivered=%d", time.Since(produceStart).Seconds(), cur, rcv.requests.Load(), s.received()))
			}
			select {
			case <-sampleCtx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()

	// 1. The receiver down: connections refused.
	waitUntil(t, ctx, "300 accepted and deliveries", func() bool { return prod.count() >= 300 && s.received() > 0 })
	rcv.down()
	down1 := time.Now()
	event("receiver down (connections refused)")
	opened1 := waitFor(8*time.Second, breakerIs(admins, false, breakerHolding...))
	event("breaker opened: %v after %s", opened1, time.Since(down1).Round(time.Millisecond))
	if !opened1 {
		t.Errorf("down #1: the breaker did not open within 8 s of the receiver refusing connections")
	}
	waitUntil(t, ctx, "3 s of the receiver down", func() bool { return time.Since(down1) >= 3*time.Second })
	rcv.up(t)
	up1 := time.Now()
	closed1 := waitFor(20*time.Second, breakerIs(admins, true, "closed"))
	event("receiver up after %s; breaker closed on both: %v after %s", up1.Sub(down1).Round(time.Millisecond), closed1, time.Since(up1).Round(time.Millisecond))
	if !closed1 {
		t.Errorf("down #1: the breaker was not closed on both processes within 20 s of the receiver coming back: %+v", views(admins))
	}

	// 2. A reload changing the retry schedule: SIGHUP to one process, POST
	// /v1/reload to the other.
	waitUntil(t, ctx, "900 accepted", func() bool { return prod.count() >= 900 })
	for _, cfg := range cfgs {
		old, err := os.ReadFile(cfg)
		if err != nil {
			t.Fatal(err)
		}
		changed := strings.Replace(string(old), "retry: "+combinedRetry, "retry: "+combinedRetryReloaded, 1)
		if changed == string(old) {
			t.Fatalf("the retry schedule is not in %s:\n%s", cfg, old)
		}
		if err := os.WriteFile(cfg, []byte(changed), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	hupAt := time.Now()
	if err := procs[0].cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	code, body, err := adminDo("POST", admins[1]+"/v1/reload")
	var reloaded struct {
		Changed []string `json:"changed"`
	}
	if err != nil || code != http.StatusOK || json.Unmarshal(body, &reloaded) != nil || !slices.Equal(reloaded.Changed, []string{"sink"}) {
		t.Errorf("POST /v1/reload on process 1: %d %v %s", code, err, body)
	}
	hupApplied := waitFor(30*time.Second, func() bool { return reloadTimestamp(admins[0]) >= float64(hupAt.Unix()) })
	if !hupApplied {
		t.Errorf("SIGHUP: process 0 did not report a successful reload within 30 s")
	}
	event("reloaded (new retry schedule): process 0 by SIGHUP (applied %v), process 1 by POST /v1/reload (%d %s)", hupApplied, code, strings.TrimSpace(string(body)))

	// 3. SIGKILL of process 1, restarted on the same file.
	waitUntil(t, ctx, "1,300 accepted", func() bool { return prod.count() >= 1300 })
	procs[1].kill()
	killed := procs[1]
	killedAt := prod.count()
	event("process 1 SIGKILLed")
	procs[1] = start(t, bin, "serve", "-c", cfgs[1])
	restartAt := time.Now()
	restarted := waitFor(60*time.Second, func() bool {
		select {
		case <-procs[1].done:
			return true
		default:
		}
		resp, err := http.Get(admins[1] + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	select {
	case <-procs[1].done:
		restarted = false
		t.Errorf("process 1 exited after its restart:\n%s", tail(procs[1].out.String(), 4000))
	default:
	}
	if !restarted {
		t.Errorf("process 1 not ready within 60 s of its restart")
	}
	event("process 1 restarted: ready %v after %s", restarted, time.Since(restartAt).Round(time.Millisecond))

	// 4. The receiver unavailable (503 to everything); while the breaker is
	// open, a pause through process 0 and a resume through process 1.
	waitUntil(t, ctx, "1,800 accepted", func() bool { return prod.count() >= 1800 })
	rcv.unavailable.Store(true)
	down2 := time.Now()
	event("receiver unavailable (503)")
	opened2 := waitFor(8*time.Second, breakerIs(admins, false, breakerHolding...))
	event("breaker opened: %v after %s", opened2, time.Since(down2).Round(time.Millisecond))
	if !opened2 {
		t.Errorf("down #2: the breaker did not open within 8 s of the receiver answering 503 to everything")
	}
	code, body, err = adminDo("POST", admins[0]+"/v1/destinations/sink/pause")
	if err != nil || code != http.StatusOK {
		t.Errorf("pause through process 0: %d %v %s", code, err, body)
	}
	pausedAt := time.Now()
	seenPaused := waitFor(10*time.Second, func() bool {
		vs := views(admins)
		for _, v := range vs {
			if v.State != "paused" {
				return false
			}
		}
		return len(vs) == len(admins)
	})
	if !seenPaused {
		t.Errorf("not both processes saw the pause within 10 s: %+v", views(admins))
	}
	waitUntil(t, ctx, "1.5 s into the pause", func() bool { return time.Since(pausedAt) >= 1500*time.Millisecond })
	reqsPaused := rcv.requests.Load()
	waitUntil(t, ctx, "3 s of pause", func() bool { return time.Since(pausedAt) >= 3*time.Second })
	whilePaused := rcv.requests.Load() - reqsPaused
	if whilePaused != 0 {
		t.Errorf("the receiver got %d requests during the pause (after 1.5 s of it): a paused destination makes no attempt and no probe", whilePaused)
	}
	out, err := exec.Command(bin, "resume", "sink", "-c", cfgs[1]).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "sink: active") {
		t.Errorf("relay resume sink through process 1: %v %s", err, out)
	}
	resumedAt := time.Now()
	reqsResumed := rcv.requests.Load()
	event("paused through process 0 for %s (both saw it: %v; requests meanwhile: %d), resumed by relay resume through process 1", resumedAt.Sub(pausedAt).Round(time.Millisecond), seenPaused, whilePaused)
	probing := waitFor(5*time.Second, func() bool { return rcv.requests.Load() > reqsResumed })
	if !probing {
		t.Errorf("no probe within 5 s of the resume while the breaker is open: the destination stopped probing (%+v)", views(admins))
	}
	waitUntil(t, ctx, "1.5 s after the resume, still down", func() bool { return time.Since(resumedAt) >= 1500*time.Millisecond })
	rcv.unavailable.Store(false)
	up2 := time.Now()
	closed2 := waitFor(20*time.Second, breakerIs(admins, true, "closed"))
	event("probing after the resume: %v; receiver up after %s down; breaker closed on both: %v after %s", probing, up2.Sub(down2).Round(time.Millisecond), closed2, time.Since(up2).Round(time.Millisecond))
	if !closed2 {
		t.Errorf("down #2: the breaker was not closed on both processes within 20 s of the receiver coming back: %+v", views(admins))
	}

	if err := wait(); err != nil {
		t.Fatalf("producers: %v (accepted %d of %d)", err, prod.count(), total)
	}
	accepted := prod.ids()
	event("producers done: %d accepted, %d refused or cut-off requests retried", len(accepted), prod.refusals())
	if len(accepted) != total {
		t.Fatalf("accepted %d, want %d", len(accepted), total)
	}

	// Quiet: every accepted activity delivered or a dead letter, then
	// nothing pending on either process.
	var dead map[string]int
	tl := settle(t, "combined", s, accepted, func() []string {
		dead = deadLetterAttempts(t, admins[0])
		return slices.Collect(maps.Keys(dead))
	}, 90*time.Second)
	quiet := len(tl.missing) == 0 && waitFor(30*time.Second, func() bool {
		vs := views(admins)
		for _, v := range vs {
			if v.Pending != 0 {
				return false
			}
		}
		return len(vs) == len(admins)
	})
	if !quiet {
		t.Errorf("still pending 30 s after the accounting settled: %+v", views(admins))
	}
	dead = deadLetterAttempts(t, admins[0])
	tl = reckon(s, accepted, slices.Collect(maps.Keys(dead)))
	event("quiet: %v; %s; final views %+v", quiet, tl, views(admins))

	// The always-refused ones are dead letters, never delivered; every other
	// one delivered and no dead letter.
	got := s.snapshot()
	var doomed, doomedDelivered, doomedNotDead, healthyDead, healthyMissing []string
	for _, id := range accepted {
		if combinedDoomed(id) {
			doomed = append(doomed, id)
			if got[id] > 0 {
				doomedDelivered = append(doomedDelivered, id)
			}
			if _, ok := dead[id]; !ok {
				doomedNotDead = append(doomedNotDead, id)
			}
			continue
		}
		if _, ok := dead[id]; ok {
			healthyDead = append(healthyDead, id)
		}
		if got[id] == 0 {
			healthyMissing = append(healthyMissing, id)
		}
	}
	explain := func(what string, ids []string) {
		if len(ids) == 0 {
			return
		}
		t.Errorf("%d %s, e.g. %v", len(ids), what, ids[:min(5, len(ids))])
		for _, id := range ids[:min(2, len(ids))] {
			s.mu.Lock()
			tries := s.tries[id]
			s.mu.Unlock()
			t.Logf("trace of %s (class %d, receiver tries %d): %s", id, combinedClass(id), tries, traceOf(admins[0], id))
		}
	}
	explain("activities the receiver always refuses were delivered", doomedDelivered)
	explain("activities the receiver always refuses are no dead letter", doomedNotDead)
	explain("activities the receiver takes (at once or on a third attempt) are dead letters", healthyDead)
	explain("activities the receiver takes were never delivered", healthyMissing)
	explain("accepted activities neither delivered nor a dead letter", tl.missing)

	attempts := map[int]int{} // attempts in a dead letter's history -> dead letters
	for _, n := range dead {
		attempts[n]++
	}
	var hist []string
	for _, n := range slices.Sorted(maps.Keys(attempts)) {
		hist = append(hist, fmt.Sprintf("%d:%d", n, attempts[n]))
	}
	stopSampling()
	<-sampleDone
	for _, e := range events {
		t.Log("event " + e)
	}
	for _, e := range samples {
		t.Log("breaker (process 0, process 1) " + e)
	}
	if t.Failed() {
		for i, a := range admins {
			if _, body, err := adminDo("GET", a+"/metrics"); err == nil {
				for _, line := range strings.Split(string(body), "\n") {
					if strings.HasPrefix(line, "relay_breaker") || strings.HasPrefix(line, "relay_destination_") && strings.Contains(line, "sink") {
						t.Logf("process %d metric %s", i, line)
					}
				}
			}
		}
	}
	report(t, "combined", tl, fmt.Sprintf("always_refused=%d dead_letter_attempts=%s healthy_dead=%d killed_process_1_at_accepted=%d requests_while_paused=%d bad_signatures=%d receiver_requests=%d elapsed=%s",
		len(doomed), strings.Join(hist, ","), len(healthyDead), killedAt, whilePaused, s.badSignatures(), rcv.requests.Load(), time.Since(began).Round(time.Second)))
	for _, p := range procs {
		select {
		case <-p.done:
		default:
			p.stop(t)
		}
	}
	if t.Failed() {
		for i, p := range append(procs, killed) {
			name := fmt.Sprintf("process %d", i)
			if i == 2 {
				name = "process 1 before its SIGKILL"
			}
			t.Logf("%s log, warnings, errors and the lost activities' lines (last 60):\n%s", name, logLines(p.out.String(), tl.missing[:min(3, len(tl.missing))], 60))
		}
	}
}

// breakerHolding are the states of a breaker that holds delivery.
var breakerHolding = []string{"open", "half_open"}

// logLines picks from a relay log its warnings and errors and the lines
// naming one of ids, the last n of them.
func logLines(log string, ids []string, n int) string {
	var out []string
	for _, line := range strings.Split(log, "\n") {
		keep := strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR")
		for _, id := range ids {
			keep = keep || strings.Contains(line, "activity_id="+id+" ")
		}
		if keep {
			out = append(out, line)
		}
	}
	return strings.Join(out[max(0, len(out)-n):], "\n")
}
