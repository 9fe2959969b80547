package relay_test

import (
	"fmt"
	"io"
	"maps"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relaydev/relay/connectors/webhook"
	"github.com/relaydev/relay/relay/api"
	"github.com/relaydev/relay/relay/store"
)

const (
	// hugeBody is what a receiver answering with an endless body offers.
	hugeBody = 1 << 30
	// maxBodyRead bounds what Relay may take of it, socket buffers included.
	maxBodyRead = 64 << 20
	// maxHeapGrowth bounds the heap while every scenario runs at once.
	maxHeapGrowth = 256 << 20
)

// TestMisbehavingReceivers runs one Relay with a destination per kind of
// misbehaving receiver, plus a healthy one, all taking the same activities
// at once. Each misbehaviour ends as DESIGN §4 says, the healthy
// destination is not held up, and for every destination the sent ids are
// exactly the delivered ones plus the dead letters.
func TestMisbehavingReceivers(t *testing.T) {
	const n = 30
	healthy := newReceiver(t, secretA)
	target := newMisbehaving(t, answer(http.StatusOK, "")) // where the redirect points
	var resumed atomic.Bool
	scenarios := []*scenario{
		{name: "down", settings: "timeout: 1s\n    retry: {schedule: [100ms, 200ms]}", check: checkDown},
		{name: "hanging", settings: "timeout: 500ms\n    max_in_flight: 10\n    retry: {schedule: [100ms, 100ms]}",
			behave: hang, check: checkHanging},
		{name: "slow", settings: "timeout: 5s\n    max_in_flight: 10", behave: slow(2 * time.Second), check: checkSlow},
		{name: "errors", settings: "retry: {schedule: [100ms, 200ms]}",
			behave: answer(http.StatusInternalServerError, "database on fire"), check: checkErrors},
		{name: "throttled", settings: "max_in_flight: 1\n    retry: {schedule: [100ms, 100ms, 100ms]}",
			behave: throttleFirst(3, "1"), check: checkThrottled},
		{name: "gone", behave: goneUntil(&resumed), check: func(t *testing.T, r *run, s *scenario) { checkGone(t, r, s, &resumed) }},
		{name: "redirect", settings: "retry: {schedule: [100ms, 200ms]}",
			behave: redirectTo(target.srv.URL + "/elsewhere"), check: func(t *testing.T, r *run, s *scenario) { checkRedirect(t, r, s, target) }},
		{name: "huge-error", settings: "timeout: 5s\n    max_in_flight: 10\n    retry: {schedule: [100ms, 200ms]}",
			behave: huge(http.StatusInternalServerError), check: checkHugeError},
		{name: "huge-ok", settings: "timeout: 5s\n    max_in_flight: 10", behave: huge(http.StatusOK), check: checkHugeOK},
	}
	yaml := baseYAML(t.TempDir()) + "destinations:\n" + webhookYAML("healthy", healthy.srv.URL, "timeout: 2s")
	for _, s := range scenarios {
		s.url = closedURL(t)
		if s.behave != nil {
			s.rcv = newMisbehaving(t, s.behave)
			s.url = s.rcv.srv.URL + "/hook"
		}
		// The retry stage is what these scenarios test: the breaker, which
		// would hold their attempts, has tests of its own.
		yaml += webhookYAML(s.name, s.url, s.settings+"\n    breaker: off")
	}
	node := startRelay(t, yaml)
	heap := sampleHeap(t)
	start := time.Now()
	r := &run{node: node, ids: node.send(pageviews(n)...)}

	t.Run("healthy", func(t *testing.T) {
		waitFor(t, 10*time.Second, "the healthy destination to get everything", func() bool { return len(healthy.delivered()) == n })
		waitSettled(t, node, "healthy")
		checkExactly(t, "healthy", healthy, wantIDs(r.ids))
		var last time.Time
		for _, id := range r.ids {
			if at := healthy.attemptTimes(id); len(at) > 0 && at[0].After(last) {
				last = at[0]
			}
		}
		// The slow receiver answers its first request after 2s: everything
		// reached the healthy one before, while the others misbehaved.
		slowFirst := named(scenarios, "slow").rcv.firstAnswer()
		if !slowFirst.IsZero() && !last.Before(slowFirst) {
			t.Errorf("healthy destination done %s after sending, not before the slow receiver's first answer (%s)",
				last.Sub(start), slowFirst.Sub(start))
		}
		t.Logf("healthy: %d delivered, the last %s after sending", n, last.Sub(start).Round(time.Millisecond))
		r.account(t, "healthy", healthy.delivered())
	})
	for _, s := range scenarios {
		t.Run(s.name, func(t *testing.T) {
			s.check(t, r, s)
			if s.rcv != nil {
				if bad := s.rcv.badSignatures(); bad > 0 {
					t.Errorf("%d requests with a bad signature", bad)
				}
			}
		})
	}
	growth := heap.growth()
	t.Logf("heap: %d MiB in use before sending, peak growth %d MiB while every scenario ran (%s)",
		heap.base>>20, growth>>20, time.Since(start).Round(time.Millisecond))
	if growth > maxHeapGrowth {
		t.Errorf("heap grew by %d MiB, want under %d MiB", growth>>20, maxHeapGrowth>>20)
	}
}

// scenario is one destination and the receiver that misbehaves for it.
type scenario struct {
	name     string
	settings string    // the destination's timeout, retry, max_in_flight
	behave   behaviour // nil: nobody listens at its URL
	check    func(t *testing.T, r *run, s *scenario)

	url string
	rcv *misbehaving
}

func named(scenarios []*scenario, name string) *scenario {
	for _, s := range scenarios {
		if s.name == name {
			return s
		}
	}
	panic("no scenario " + name)
}

// Run is the relay every scenario shares and the ids sent to all of them.
type run struct {
	node *node
	ids  []string
}

func checkDown(t *testing.T, r *run, s *scenario) {
	dls := r.waitDeadLetters(t, s.name, 20*time.Second)
	expectAttempts(t, dls, 3, func(a attemptView) string {
		if a.Status != 0 || !strings.Contains(a.Error, "refused") {
			return "want status 0 and connection refused"
		}
		return ""
	})
	r.account(t, s.name, nil)
}

func checkHanging(t *testing.T, r *run, s *scenario) {
	const timeout, slack = 500 * time.Millisecond, time.Second
	dls := r.waitDeadLetters(t, s.name, 25*time.Second)
	expectAttempts(t, dls, 3, func(a attemptView) string {
		if a.Status != 0 || !strings.Contains(a.Error, "no response within 500ms") {
			return "want status 0 and no response within the timeout"
		}
		if lat := time.Duration(a.LatencyMS * float64(time.Millisecond)); lat > timeout+slack {
			return fmt.Sprintf("attempt took %s, the timeout is %s", lat, timeout)
		}
		return ""
	})
	// 3 attempts of 500ms each through 10 slots: every slot was taken back
	// at the timeout. (The receiver notices a hang-up a little late, so the
	// most it holds at once may exceed 10 by one.)
	if got, want := s.rcv.requests(), 3*len(r.ids); got != want {
		t.Errorf("the hanging receiver got %d requests, want %d", got, want)
	}
	waitFor(t, 10*time.Second, "Relay to hang up on the hanging receiver", func() bool {
		return s.rcv.active.Load() == 0 && s.rcv.open.Load() == 0
	})
	t.Logf("hanging: %d requests, at most %d hung at once, all %d connections closed by Relay",
		s.rcv.requests(), s.rcv.peak.Load(), s.rcv.conns.Load())
	r.account(t, s.name, s.rcv.delivered())
}

func checkSlow(t *testing.T, r *run, s *scenario) {
	const maxInFlight = 10
	r.waitDelivered(t, s, 30*time.Second)
	if peak := s.rcv.peak.Load(); peak != maxInFlight {
		t.Errorf("at most %d deliveries at once, want max_in_flight %d used", peak, maxInFlight)
	}
	rounds := s.rcv.rounds(time.Second)
	if want := (len(r.ids) + maxInFlight - 1) / maxInFlight; rounds > want+1 {
		t.Errorf("%d rounds of requests, want about %d", rounds, want)
	}
	t.Logf("slow: %d delivered in %d rounds, %d at once", len(s.rcv.delivered()), rounds, s.rcv.peak.Load())
	r.account(t, s.name, s.rcv.delivered())
}

func checkErrors(t *testing.T, r *run, s *scenario) {
	dls := r.waitDeadLetters(t, s.name, 20*time.Second)
	expectAttempts(t, dls, 3, func(a attemptView) string {
		if a.Status != http.StatusInternalServerError || !strings.Contains(a.Error, "database on fire") {
			return "want status 500 with the response's text"
		}
		return ""
	})
	r.account(t, s.name, s.rcv.delivered())
}

func checkThrottled(t *testing.T, r *run, s *scenario) {
	const asked = time.Second
	r.waitDelivered(t, s, 30*time.Second)
	reqs := s.rcv.log()
	throttled := 0
	nextGap, retryGap := time.Duration(math.MaxInt64), time.Duration(math.MaxInt64)
	for i, q := range reqs {
		if q.status != http.StatusTooManyRequests {
			continue
		}
		throttled++
		// The destination sends nothing for as long as asked…
		if i+1 < len(reqs) {
			nextGap = min(nextGap, reqs[i+1].arrived.Sub(q.answered))
		}
		// …and this activity comes back no sooner.
		times := s.rcv.attemptTimes(q.id)
		for j := 1; j < len(times); j++ {
			if times[j-1].Equal(q.arrived) {
				retryGap = min(retryGap, times[j].Sub(times[j-1]))
			}
		}
	}
	if throttled == 0 {
		t.Fatal("the receiver never answered 429")
	}
	if nextGap < asked {
		t.Errorf("a request came %s after a 429 asking for %s: the destination did not back off", nextGap, asked)
	}
	if retryGap < asked {
		t.Errorf("an activity was retried %s after a 429 asking for %s", retryGap, asked)
	}
	t.Logf("throttled: %d answers 429 (Retry-After: 1); next request at least %s later, same activity at least %s later; then %d delivered",
		throttled, nextGap.Round(time.Millisecond), retryGap.Round(time.Millisecond), len(s.rcv.delivered()))
	if dl := r.status(t, s.name).DeadLettered; dl != 0 {
		t.Errorf("%d dead letters, want none", dl)
	}
	r.account(t, s.name, s.rcv.delivered())
}

func checkGone(t *testing.T, r *run, s *scenario, resumed *atomic.Bool) {
	waitFor(t, 10*time.Second, "the destination to pause", func() bool { return r.status(t, s.name).State == store.StatePaused })
	st := r.status(t, s.name)
	if st.Pending == 0 || st.DeadLettered != 0 || len(s.rcv.delivered()) != 0 {
		t.Fatalf("paused destination: %+v, %d delivered; want its backlog pending, nothing dead-lettered", st, len(s.rcv.delivered()))
	}
	t.Logf("gone: paused after %d requests answered 410, %d pending", s.rcv.requests(), st.Pending)
	resumed.Store(true)
	if status, out := r.node.adminDoT(t, "POST", "/v1/destinations/"+s.name+"/resume", ""); status != http.StatusOK {
		t.Fatalf("resume: %d %v", status, out)
	}
	r.waitDelivered(t, s, 30*time.Second)
	if st := r.status(t, s.name); st.State != store.StateActive || st.DeadLettered != 0 {
		t.Errorf("after resume: %+v; want active, no dead letters", st)
	}
	r.account(t, s.name, s.rcv.delivered())
}

func checkRedirect(t *testing.T, r *run, s *scenario, target *misbehaving) {
	dls := r.waitDeadLetters(t, s.name, 20*time.Second)
	expectAttempts(t, dls, 3, func(a attemptView) string {
		if a.Status != http.StatusFound || !strings.Contains(a.Error, "not followed") {
			return "want status 302, not followed"
		}
		return ""
	})
	if got := target.requests(); got != 0 {
		t.Errorf("the redirect's target got %d requests, want none", got)
	}
	r.account(t, s.name, s.rcv.delivered())
}

func checkHugeError(t *testing.T, r *run, s *scenario) {
	dls := r.waitDeadLetters(t, s.name, 20*time.Second)
	expectAttempts(t, dls, 3, func(a attemptView) string {
		if a.Status != http.StatusInternalServerError || !strings.Contains(a.Error, "response: endless") {
			return "want status 500 with the start of the body"
		}
		if a.LatencyMS > 2000 {
			return "the attempt waited for the body"
		}
		return ""
	})
	checkBodyRead(t, s)
	r.account(t, s.name, s.rcv.delivered())
}

func checkHugeOK(t *testing.T, r *run, s *scenario) {
	r.waitDelivered(t, s, 20*time.Second)
	checkBodyRead(t, s)
	if dl := r.status(t, s.name).DeadLettered; dl != 0 {
		t.Errorf("%d dead letters, want none", dl)
	}
	r.account(t, s.name, s.rcv.delivered())
}

// checkBodyRead waits for every endless body to stop being written, then
// checks none went far: Relay read its few KiB and hung up.
func checkBodyRead(t *testing.T, s *scenario) {
	waitFor(t, 10*time.Second, "every response to end", func() bool { return s.rcv.active.Load() == 0 })
	most, total, count := s.rcv.bodyStats()
	t.Logf("%s: %d responses offering %d MiB each; at most %d KiB written into one (socket buffers included), %d MiB in all",
		s.name, count, hugeBody>>20, most>>10, total>>20)
	if most >= maxBodyRead {
		t.Errorf("%d MiB of one response body written, want under %d MiB: Relay reads the body whole", most>>20, maxBodyRead>>20)
	}
}

// waitDelivered waits until every id reached the receiver and nothing is
// pending.
func (r *run) waitDelivered(t *testing.T, s *scenario, within time.Duration) {
	t.Helper()
	waitFor(t, within, s.name+" to deliver everything", func() bool { return len(s.rcv.delivered()) == len(r.ids) })
	waitFor(t, within, s.name+" to settle", func() bool { return r.status(t, s.name).Pending == 0 })
}

// waitDeadLetters waits until every id is a dead letter and nothing is
// pending, and returns the dead letters.
func (r *run) waitDeadLetters(t *testing.T, dest string, within time.Duration) map[string]deadLetterView {
	t.Helper()
	waitFor(t, within, dest+" to dead-letter everything", func() bool {
		st := r.status(t, dest)
		return st.DeadLettered == len(r.ids) && st.Pending == 0
	})
	return r.deadLetters(t, dest)
}

// account checks that the sent ids are exactly the delivered ones plus the
// dead letters, and logs any activity that arrived twice.
func (r *run) account(t *testing.T, dest string, delivered map[string]int) {
	t.Helper()
	dls := r.deadLetters(t, dest)
	sent := wantIDs(r.ids)
	dups := 0
	for id, count := range delivered {
		if count > 1 {
			dups++
			t.Logf("%s: %s delivered %d times", dest, id, count)
		}
		if _, ok := dls[id]; ok {
			dups++
			t.Logf("%s: %s both delivered and a dead letter", dest, id)
		}
		if _, ok := sent[id]; !ok {
			t.Errorf("%s: %s delivered but never sent", dest, id)
		}
	}
	for id := range dls {
		if _, ok := sent[id]; !ok {
			t.Errorf("%s: dead letter %s was never sent", dest, id)
		}
	}
	lost := 0
	for id := range sent {
		if delivered[id] == 0 && dls[id].ID == "" {
			lost++
			t.Errorf("%s: %s neither delivered nor a dead letter", dest, id)
		}
	}
	t.Logf("%s: %d sent = %d delivered + %d dead letters; %d lost, %d duplicates", dest, len(sent), len(delivered), len(dls), lost, dups)
}

// deadLetters reads every page of a destination's dead letters.
func (r *run) deadLetters(t *testing.T, dest string) map[string]deadLetterView {
	t.Helper()
	out := map[string]deadLetterView{}
	cursor := ""
	for page := 0; page <= len(r.ids); page++ {
		status, body := r.node.adminDoT(t, "GET", "/v1/deadletters?limit=7&destination="+dest+"&cursor="+cursor, "")
		if status != http.StatusOK {
			t.Fatalf("dead letters of %s: %d %v", dest, status, body)
		}
		var list struct {
			DeadLetters []deadLetterView `json:"deadletters"`
			NextCursor  string           `json:"next_cursor"`
		}
		remarshal(t, body, &list)
		for _, dl := range list.DeadLetters {
			if _, ok := out[dl.ID]; ok {
				t.Errorf("%s: dead letter %s listed twice", dest, dl.ID)
			}
			if dl.Destination != dest {
				t.Errorf("dead letter %s of %s says destination %q", dl.ID, dest, dl.Destination)
			}
			out[dl.ID] = dl
		}
		if cursor = list.NextCursor; cursor == "" {
			return out
		}
	}
	t.Fatalf("dead letters of %s: more pages than activities", dest)
	return nil
}

func (r *run) status(t *testing.T, dest string) api.DestinationStatus {
	t.Helper()
	status, body := r.node.adminDoT(t, "GET", "/v1/destinations", "")
	if status != http.StatusOK {
		t.Fatalf("destinations: %d %v", status, body)
	}
	var out struct {
		Destinations []api.DestinationStatus `json:"destinations"`
	}
	remarshal(t, body, &out)
	for _, d := range out.Destinations {
		if d.Name == dest {
			return d
		}
	}
	t.Fatalf("destination %s not listed", dest)
	return api.DestinationStatus{}
}

type deadLetterView struct {
	ID          string        `json:"id"`
	Destination string        `json:"destination"`
	Attempts    []attemptView `json:"attempts"`
}

type attemptView struct {
	At        string  `json:"at"`
	Status    int     `json:"status"`
	Error     string  `json:"error"`
	LatencyMS float64 `json:"latency_ms"`
}

// expectAttempts checks every dead letter has want attempts, each with a
// time and passing bad (which names what is wrong, or "").
func expectAttempts(t *testing.T, dls map[string]deadLetterView, want int, bad func(attemptView) string) {
	t.Helper()
	reported := 0
	for _, dl := range dls {
		if len(dl.Attempts) != want {
			t.Errorf("dead letter %s: %d attempts, want %d", dl.ID, len(dl.Attempts), want)
		}
		for _, a := range dl.Attempts {
			msg := bad(a)
			if msg == "" && a.At == "" {
				msg = "want a time"
			}
			if msg != "" && reported < 5 {
				reported++
				t.Errorf("dead letter %s: attempt %+v: %s", dl.ID, a, msg)
			}
		}
	}
	for _, dl := range dls {
		t.Logf("%d dead letters, each with %d attempts; one: %+v", len(dls), len(dl.Attempts), dl.Attempts[len(dl.Attempts)-1])
		return
	}
}

// behaviour answers one request; it returns the status it wrote (0: none).
// seq counts the receiver's requests from 1.
type behaviour func(m *misbehaving, w http.ResponseWriter, req *http.Request, seq int) int

func answer(status int, body string) behaviour {
	return func(_ *misbehaving, w http.ResponseWriter, _ *http.Request, _ int) int {
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
		return status
	}
}

// hang never answers: it holds the request until the client hangs up (or
// the test ends).
func hang(m *misbehaving, _ http.ResponseWriter, req *http.Request, _ int) int {
	select {
	case <-req.Context().Done():
	case <-m.stop:
	}
	return 0
}

func slow(hold time.Duration) behaviour {
	return func(m *misbehaving, w http.ResponseWriter, req *http.Request, _ int) int {
		select {
		case <-time.After(hold):
		case <-req.Context().Done():
			return 0
		case <-m.stop:
			return 0
		}
		w.WriteHeader(http.StatusOK)
		return http.StatusOK
	}
}

// throttleFirst answers 429 with Retry-After to the first k requests.
func throttleFirst(k int, retryAfter string) behaviour {
	return func(_ *misbehaving, w http.ResponseWriter, _ *http.Request, seq int) int {
		if seq > k {
			w.WriteHeader(http.StatusOK)
			return http.StatusOK
		}
		w.Header().Set("Retry-After", retryAfter)
		w.WriteHeader(http.StatusTooManyRequests)
		return http.StatusTooManyRequests
	}
}

func goneUntil(resumed *atomic.Bool) behaviour {
	return func(_ *misbehaving, w http.ResponseWriter, _ *http.Request, _ int) int {
		if resumed.Load() {
			w.WriteHeader(http.StatusOK)
			return http.StatusOK
		}
		w.WriteHeader(http.StatusGone)
		_, _ = io.WriteString(w, "this hook was deleted")
		return http.StatusGone
	}
}

func redirectTo(url string) behaviour {
	return func(_ *misbehaving, w http.ResponseWriter, req *http.Request, _ int) int {
		http.Redirect(w, req, url, http.StatusFound)
		return http.StatusFound
	}
}

// huge answers status with a body of up to hugeBody bytes, written in
// chunks until the client stops reading.
func huge(status int) behaviour {
	chunk := []byte(strings.Repeat("endless body ", 64<<10/13))
	return func(m *misbehaving, w http.ResponseWriter, _ *http.Request, _ int) int {
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(20 * time.Second))
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(status)
		var written int64
		for written < hugeBody {
			k, err := w.Write(chunk)
			written += int64(k)
			if err != nil {
				break
			}
		}
		m.wroteBody(written)
		return status
	}
}

// misbehaving is a webhook receiver that answers as its behaviour says and
// records every request, its connections and how many requests it holds.
type misbehaving struct {
	srv    *httptest.Server
	behave behaviour
	stop   chan struct{} // closed at the test's end: releases held requests

	open, conns  atomic.Int32 // connections open now, and ever
	active, peak atomic.Int32 // requests being answered now, and the most at once

	mu     sync.Mutex
	reqs   []request
	byID   map[string][]time.Time
	ok     map[string]int
	bodies []int64
	bad    int
}

type request struct {
	id                string
	arrived, answered time.Time
	status            int
}

func newMisbehaving(t *testing.T, behave behaviour) *misbehaving {
	m := &misbehaving{behave: behave, stop: make(chan struct{}), byID: map[string][]time.Time{}, ok: map[string]int{}}
	m.srv = httptest.NewUnstartedServer(http.HandlerFunc(m.handle))
	m.srv.Config.ConnState = m.track
	m.srv.Start()
	t.Cleanup(m.srv.Close)
	t.Cleanup(func() { close(m.stop) }) // runs before Close, which waits for handlers
	return m
}

func (m *misbehaving) track(_ net.Conn, state http.ConnState) {
	switch state {
	case http.StateNew:
		m.open.Add(1)
		m.conns.Add(1)
	case http.StateClosed, http.StateHijacked:
		m.open.Add(-1)
	}
}

func (m *misbehaving) handle(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body) // read whole, so a hang-up cancels req's context
	id := req.Header.Get("webhook-id")
	verr := webhook.VerifyRequest(secretA, req.Header, body, time.Now())
	m.mu.Lock()
	if verr != nil {
		m.bad++
	}
	i := len(m.reqs)
	m.reqs = append(m.reqs, request{id: id, arrived: time.Now()})
	m.byID[id] = append(m.byID[id], m.reqs[i].arrived)
	m.mu.Unlock()

	now := m.active.Add(1)
	for p := m.peak.Load(); now > p && !m.peak.CompareAndSwap(p, now); p = m.peak.Load() {
	}
	status := m.behave(m, w, req, i+1)
	m.active.Add(-1)

	m.mu.Lock()
	defer m.mu.Unlock()
	m.reqs[i].answered, m.reqs[i].status = time.Now(), status
	if status >= 200 && status < 300 {
		m.ok[id]++
	}
}

func (m *misbehaving) wroteBody(n int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.bodies = append(m.bodies, n)
}

// bodyStats is the most written into one response body, the total, and
// how many bodies.
func (m *misbehaving) bodyStats() (most, total int64, count int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, b := range m.bodies {
		most, total = max(most, b), total+b
	}
	return most, total, len(m.bodies)
}

func (m *misbehaving) delivered() map[string]int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.ok)
}

func (m *misbehaving) requests() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.reqs)
}

func (m *misbehaving) log() []request {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]request(nil), m.reqs...)
}

func (m *misbehaving) attemptTimes(id string) []time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]time.Time(nil), m.byID[id]...)
}

func (m *misbehaving) badSignatures() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.bad
}

// firstAnswer is when the receiver first answered 2xx (zero: not yet).
func (m *misbehaving) firstAnswer() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	var first time.Time
	for _, q := range m.reqs {
		if q.status >= 200 && q.status < 300 && (first.IsZero() || q.answered.Before(first)) {
			first = q.answered
		}
	}
	return first
}

// rounds counts waves of requests: a request starts a new wave when it
// arrives at least gap after the first of the current one.
func (m *misbehaving) rounds(gap time.Duration) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	rounds := 0
	var wave time.Time
	for _, q := range m.reqs {
		if rounds == 0 || q.arrived.Sub(wave) >= gap {
			rounds++
			wave = q.arrived
		}
	}
	return rounds
}

// heapSampler follows the peak of the heap in use from a baseline.
type heapSampler struct {
	base uint64
	peak atomic.Uint64
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

func sampleHeap(t *testing.T) *heapSampler {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	h := &heapSampler{base: ms.HeapInuse, stop: make(chan struct{}), done: make(chan struct{})}
	h.peak.Store(ms.HeapInuse)
	go func() {
		defer close(h.done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-h.stop:
				return
			case <-tick.C:
				runtime.ReadMemStats(&ms)
				if ms.HeapInuse > h.peak.Load() {
					h.peak.Store(ms.HeapInuse)
				}
			}
		}
	}()
	t.Cleanup(func() { h.growth() })
	return h
}

// growth stops sampling and returns the peak's growth over the baseline.
func (h *heapSampler) growth() uint64 {
	h.once.Do(func() { close(h.stop) })
	<-h.done
	return h.peak.Load() - h.base
}

// closedURL is a loopback URL nobody listens on.
func closedURL(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr + "/hook"
}

// webhookYAML is a webhook destination signing with secretA, with its own
// settings lines (timeout, retry, max_in_flight…).
func webhookYAML(name, url, settings string) string {
	yaml := fmt.Sprintf("  - name: %s\n    type: webhook\n    url: %s\n    allow_private_network: true\n    secrets: [%q]\n", name, url, secretA)
	if settings != "" {
		yaml += "    " + settings + "\n"
	}
	return yaml
}

func pageviews(n int) []map[string]any {
	items := make([]map[string]any, n)
	for i := range items {
		items[i] = map[string]any{"type": "pageview", "contact": map[string]any{"email": fmt.Sprintf("p%d@example.com", i)}}
	}
	return items
}

func wantIDs(ids []string) map[string]string {
	out := make(map[string]string, len(ids))
	for _, id := range ids {
		out[id] = "pageview"
	}
	return out
}
