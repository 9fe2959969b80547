package relay_test

// TestModel is a model-based (stateful property) test of one destination's
// life. Each sequence starts a real Relay (embedded NATS, the real engine,
// config from a file) with one destination "d" and drives it through a
// random list of actions drawn by pgregory.net/rapid:
//
//   - ingest a batch of activities of a few contacts, each with a script
//     of how the receiver answers its attempts (204; 500 once or twice;
//     429 with Retry-After; 410, which pauses the destination; a hang past
//     the timeout; 422 to every attempt: a payload the receiver refuses);
//   - wait for some attempts; pause; resume; take the receiver down
//     (connections refused) and bring it back;
//   - reload (POST /v1/reload) a config changing the retry schedule, the
//     include rules, order: contact, the breaker, or the destination's kind
//     (webhook <-> Salesforce batch sink, against the fake org sftest);
//   - stop and restart the engine on the same data directory (and with
//     -model.crash, a crash: the NATS connection closed before the stop);
//   - replay the dead letters.
//
// Then, with the receiver up and the destination resumed, it waits for the
// system to settle (polling with a deadline) and checks the invariants
// (check): nothing selected lost; nothing delivered after it became a
// dead letter; at most schedule+1 attempts per run; no dead letter while
// the breaker is open; no breaker opening on a receiver that answered 2xx
// with fewer failures since; no request while paused; at most one probe
// each probe_every while the breaker is open; nothing waiting past its next delay plus
// probe_every (and slack) while the receiver accepts it; order per contact
// while order: contact was on throughout; pending, dead_lettered and the
// traces agree with what the receiver saw.
//
// Running it:
//
//	go test -count=1 -run TestModel -v ./relay/                          # CI: 12 sequences, -model.slack=65s
//	go test -count=1 -run TestModel -v ./relay/ -model.sequences=2000 -timeout=0
//	go test -count=1 -run TestModel -v ./relay/ -rapid.seed=N            # replay a failing seed
//
// A failure prints "To reproduce, specify -run="TestModel" -rapid.seed=N"
// and the shrunk sequence (each step is logged). -rapid.checks=N is the
// same as -model.sequences=N; -rapid.shrinktime bounds the minimisation
// (each shrink step runs a whole sequence again, a few seconds; the engine
// is timing dependent, so a shrunk sequence may need a few runs to fail
// again). -model.crash adds crashes (slow: an activity in flight at a
// crash waits out the ack wait, 31s, before it is delivered again),
// -model.empty-schedule adds `retry: {schedule: []}` to the reloads.
// To look past a failure already known: -model.slack=25s lengthens the
// wait allowed while settling, -model.liveness=false keeps only the 45s
// "none lost" deadline, -model.order=false and -model.salesforce=false
// leave out order: contact and the Salesforce sink; -model.steps bounds
// a sequence's actions (14). No fail file is written unless
// -rapid.nofailfile=false; shrinking is bounded by -rapid.shrinktime (20s
// unless given).

import (
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/relaydev/relay/connectors/salesforce/sftest"
)

var (
	modelSequences     = flag.Int("model.sequences", 12, "TestModel: number of random sequences (same as -rapid.checks)")
	modelMaxSteps      = flag.Int("model.steps", 14, "TestModel: most actions in a sequence")
	modelCrash         = flag.Bool("model.crash", false, "TestModel: also crash the engine (slow: the ack wait is 31s)")
	modelEmptySchedule = flag.Bool("model.empty-schedule", false, "TestModel: also reload to retry: {schedule: []}")
	modelLiveness      = flag.Bool("model.liveness", true, "TestModel: fail as soon as something waits past its next delay + probe_every (+slack) while settling")
	// An activity a stopping process had asked JetStream for, but had not
	// received when it stopped, is delivered again only after its ack wait
	// (the fan-out's 60 s; a destination's own consumer's 2 × timeout +
	// 30 s = 31 s here): at least once, never lost, but late. The default
	// slack allows one such wait; -model.slack=0 checks the tight bound
	// (and finds that wait after some restarts).
	modelSlack      = flag.Duration("model.slack", 65*time.Second, "TestModel: more time anything may wait while settling (the default covers one ack wait after a restart)")
	modelOrder      = flag.Bool("model.order", true, "TestModel: also turn order: contact on and off")
	modelSalesforce = flag.Bool("model.salesforce", true, "TestModel: also switch the destination to a Salesforce batch sink and back")
)

const (
	mDest    = "d"
	mTimeout = 500 * time.Millisecond
	// mSettle is the most a sequence may take to settle once the receiver
	// is healthy: beyond the slack, the longest ack wait (the fan-out's
	// 60 s) and some.
	mSettle = 90 * time.Second
)

var (
	mSchedules = [][]time.Duration{
		{50 * time.Millisecond, 100 * time.Millisecond},
		{100 * time.Millisecond, 200 * time.Millisecond, 300 * time.Millisecond},
		{50 * time.Millisecond},
		{}, // only with -model.empty-schedule
	}
	mBreakers = []struct {
		yaml     string
		failures int
		probe    time.Duration
		window   time.Duration
	}{
		{"breaker: off", 0, 0, 0},
		{"breaker: {failures: 3, window: 2s, probe_every: 500ms}", 3, 500 * time.Millisecond, 2 * time.Second},
		{"breaker: {failures: 5, window: 3s, probe_every: 1s}", 5, time.Second, 3 * time.Second},
	}
	mNames    = []string{"email.open", "email.click", "sms.sent"}
	mContacts = []string{"c0", "c1", "c2"}
	mSeq      atomic.Int64 // numbers sequences, so ids are unique in the shared fake org
)

// mCfg is the destination's config.
type mCfg struct {
	Kind      string // webhook or salesforce
	Order     bool   // order: contact (webhook only)
	Sched     int    // index in mSchedules
	EmailOnly bool   // include: ["email.*"] rather than email and sms
	Breaker   int    // index in mBreakers
	// Calls is engine.max_in_flight, the calls in flight across every
	// destination: drawn at start (a reload keeps it, as it needs a
	// restart), often below the destination's own max_in_flight of 4.
	Calls int
}

func (c mCfg) String() string {
	s := fmt.Sprintf("%s schedule=%v breaker=%d", c.Kind, mSchedules[c.Sched], mBreakers[c.Breaker].failures)
	if c.Order {
		s += " order=contact"
	}
	if c.EmailOnly {
		s += " include=email.*"
	}
	return s + fmt.Sprintf(" engine.max_in_flight=%d", c.Calls)
}

func (c mCfg) selects(name string) bool { return !c.EmailOnly || strings.HasPrefix(name, "email.") }

func (c mCfg) yaml(dir string, rcv *mReceiver, sf *sftest.Server) string {
	include := `["email.*", "sms.*"]`
	if c.EmailOnly {
		include = `["email.*"]`
	}
	var sched []string
	for _, d := range mSchedules[c.Sched] {
		sched = append(sched, d.String())
	}
	head := baseYAML(dir) + fmt.Sprintf("engine: {max_in_flight: %d}\ndestinations:\n", max(1, c.Calls))
	if c.Kind == "salesforce" {
		return head + fmt.Sprintf(`  - name: %s
    type: salesforce
    allow_private_network: true
    instance_url: %s
    auth: {token_url: %s, client_id: client-id, client_secret: client-secret}
    object: Activity__c
    external_id_field: Relay_Id__c
    fields: {Relay_Id__c: id, Type__c: name, Email__c: contact.email}
    include: %s
    batch_wait: 100ms
    timeout: %s
    retry: {schedule: [%s]}
    %s
`, mDest, sf.URL, sf.TokenURL(), include, mTimeout, strings.Join(sched, ", "), mBreakers[c.Breaker].yaml)
	}
	order := ""
	if c.Order {
		order = "\n    order: contact"
	}
	return head + fmt.Sprintf(`  - name: %s
    type: webhook
    url: %s
    allow_private_network: true
    secrets: [%q]
    timeout: %s
    max_in_flight: 4
    include: %s
    retry: {schedule: [%s]}
    %s%s
`, mDest, rcv.url(), secretA, mTimeout, include, strings.Join(sched, ", "), mBreakers[c.Breaker].yaml, order)
}

func drawCfg(rt *rapid.T, label string) mCfg {
	kinds := []string{"webhook"}
	if *modelSalesforce {
		kinds = append(kinds, "webhook", "salesforce")
	}
	scheds := len(mSchedules) - 1
	if *modelEmptySchedule {
		scheds++
	}
	c := mCfg{
		Kind:      rapid.SampledFrom(kinds).Draw(rt, label+".kind"),
		Order:     rapid.Bool().Draw(rt, label+".order"),
		Sched:     rapid.IntRange(0, scheds-1).Draw(rt, label+".schedule"),
		EmailOnly: rapid.Bool().Draw(rt, label+".email_only"),
		Breaker:   rapid.IntRange(0, len(mBreakers)-1).Draw(rt, label+".breaker"),
	}
	if c.Kind != "webhook" || !*modelOrder {
		c.Order = false
	}
	return c
}

type mActivity struct {
	id, name, contact string
	beh               mBehaviour
	at                time.Time // when ingest was asked
}

type mCfgAt struct {
	at  time.Time
	cfg mCfg
}

type mReplay struct {
	at  time.Time
	ids map[string]bool
}

// mModel is one sequence: the world and what the model knows of it.
type mModel struct {
	rt      *rapid.T
	prefix  string
	dir     string
	file    string
	rcv     *mReceiver
	sf      *sftest.Server
	log     *mLog
	logger  *slog.Logger
	node    *mNode
	polls   []*mPoller
	replayN atomic.Int64

	cfgs     []mCfgAt
	acts     []*mActivity
	byID     map[string]*mActivity
	replays  []mReplay
	restarts []time.Time
	resumes  []time.Time // when the model asked for a resume
	next     int
	story    []string // the steps so far, repeated in a failure's message
}

// logf logs a step and keeps it for the failure message.
func (m *mModel) logf(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	m.story = append(m.story, line)
	m.rt.Logf("%s", line)
}

// fatalf fails the sequence, with the steps that led there.
func (m *mModel) fatalf(format string, args ...any) {
	m.rt.Fatalf("%s\nsequence %s:\n  %s", fmt.Sprintf(format, args...), m.prefix, strings.Join(m.story, "\n  "))
}

func TestModel(t *testing.T) {
	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
	defaults := map[string]string{"rapid.checks": strconv.Itoa(*modelSequences), "rapid.nofailfile": "true", "rapid.shrinktime": "20s"}
	for name, v := range defaults {
		if f := flag.Lookup(name); f != nil && !set[name] {
			old := f.Value.String()
			_ = flag.Set(name, v)
			defer func() { _ = flag.Set(name, old) }()
		}
	}
	sf := sftest.New(t)
	var sequences, steps atomic.Int64
	start := time.Now()
	rapid.Check(t, func(rt *rapid.T) {
		sequences.Add(1)
		steps.Add(int64(runModel(rt, sf)))
	})
	t.Logf("%d sequences, %d actions in %s", sequences.Load(), steps.Load(), time.Since(start).Round(time.Millisecond))
}

// runModel runs one sequence and returns how many actions it made.
func runModel(rt *rapid.T, sf *sftest.Server) int {
	m := &mModel{rt: rt, sf: sf, byID: map[string]*mActivity{}, log: &mLog{}}
	m.prefix = fmt.Sprintf("s%d", mSeq.Add(1))
	dir, err := os.MkdirTemp("", "relay-model-")
	if err != nil {
		rt.Fatal(err)
	}
	m.dir = filepath.Join(dir, "data")
	m.file = filepath.Join(dir, "relay.yaml")
	m.logger = slog.New(slog.NewTextHandler(m.log, &slog.HandlerOptions{Level: slog.LevelInfo}))
	m.rcv, err = newMReceiver()
	if err != nil {
		rt.Fatal(err)
	}
	rt.Cleanup(func() {
		if rt.Failed() {
			m.log.dump(rt, 120)
		}
		if m.node != nil {
			_ = m.node.stop()
		}
		m.rcv.close()
		_ = os.RemoveAll(dir)
	})
	m.rcv.breaker = func() string {
		if m.node != nil && m.node.poll != nil {
			return m.node.poll.breaker()
		}
		return ""
	}

	cfg := drawCfg(rt, "start")
	cfg.Calls = rapid.SampledFrom([]int{1, 2, 1024}).Draw(rt, "start.calls")
	m.writeCfg(cfg)
	m.logf("start: %s", cfg)
	m.start()

	m.ingest(0)
	actions := []string{"ingest", "ingest", "ingest", "wait", "wait", "pause", "resume", "reload", "reload",
		"restart", "down", "up", "replay"}
	if *modelCrash {
		actions = append(actions, "crash")
	}
	n := rapid.IntRange(1, max(1, *modelMaxSteps)).Draw(rt, "steps")
	for i := 1; i <= n; i++ {
		switch a := rapid.SampledFrom(actions).Draw(rt, fmt.Sprintf("action%d", i)); a {
		case "ingest":
			m.ingest(i)
		case "wait":
			m.wait(i)
		case "pause", "resume":
			if a == "resume" {
				m.resumes = append(m.resumes, time.Now())
			}
			code, out, err := m.node.do("POST", "/v1/destinations/"+mDest+"/"+a, nil)
			if err != nil || code >= 300 {
				rt.Fatalf("step %d: %s: %d %v %v", i, a, code, out, err)
			}
			m.logf("step %d: %s", i, a)
		case "reload":
			c := drawCfg(rt, fmt.Sprintf("reload%d", i))
			c.Calls = cfg.Calls
			m.reload(i, c)
		case "restart", "crash":
			m.restart(i, a == "crash")
		case "down", "up":
			if err := m.rcv.setUp(a == "up"); err != nil {
				rt.Fatalf("step %d: receiver %s: %v", i, a, err)
			}
			m.logf("step %d: receiver %s", i, a)
		case "replay":
			m.replay(i)
		}
	}
	m.settle()
	m.check()
	return n + 1
}

func (m *mModel) writeCfg(c mCfg) {
	if err := os.WriteFile(m.file, []byte(c.yaml(m.dir, m.rcv, m.sf)), 0o600); err != nil {
		m.rt.Fatal(err)
	}
	m.cfgs = append(m.cfgs, mCfgAt{time.Now(), c})
}

func (m *mModel) start() {
	n, err := startModelNode(m.file, m.logger)
	if err != nil {
		m.fatalf("INVARIANT engine starts on its data directory: %v", err)
	}
	m.node = n
	m.polls = append(m.polls, startPoller(n, mDest, &m.replayN))
}

func (m *mModel) ingest(step int) {
	rt := m.rt
	k := rapid.IntRange(1, 6).Draw(rt, fmt.Sprintf("batch%d", step))
	var items []map[string]any
	var desc []string
	at := time.Now()
	for j := range k {
		l := fmt.Sprintf("a%d.%d", step, j)
		a := &mActivity{
			id:      fmt.Sprintf("%s-%03d", m.prefix, m.next),
			contact: rapid.SampledFrom(mContacts).Draw(rt, l+".contact"),
			name:    rapid.SampledFrom(mNames).Draw(rt, l+".name"),
			beh:     rapid.SampledFrom(mBehaviours).Draw(rt, l+".behaviour"),
			at:      at,
		}
		m.next++
		m.rcv.setScript(a.id, a.beh)
		m.acts = append(m.acts, a)
		m.byID[a.id] = a
		typ, action, _ := strings.Cut(a.name, ".")
		items = append(items, map[string]any{"id": a.id, "type": typ, "action": action,
			"contact":    map[string]any{"id": a.contact, "email": a.contact + "@example.com"},
			"attributes": map[string]any{"n": m.next}})
		desc = append(desc, fmt.Sprintf("%s(%s %s %s)", a.id, a.contact, a.name, a.beh.name))
	}
	code, out, err := doPost(m.node.ingest+"/v1/activities", items)
	if err != nil || code != http.StatusAccepted {
		rt.Fatalf("step %d: ingest: %d %v %v", step, code, out, err)
	}
	m.logf("step %d: ingest %s", step, strings.Join(desc, " "))
}

// wait lets the engine work: until the receiver has seen a few more
// requests, or a moment passes.
func (m *mModel) wait(step int) {
	more := rapid.IntRange(1, 4).Draw(m.rt, fmt.Sprintf("wait%d.requests", step))
	within := time.Duration(rapid.IntRange(2, 8).Draw(m.rt, fmt.Sprintf("wait%d.tenths", step))) * 100 * time.Millisecond
	target := m.rcv.requests() + more
	deadline := time.Now().Add(within)
	for m.rcv.requests() < target && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	m.logf("step %d: wait for %d requests or %s (saw %d more)", step, more, within, m.rcv.requests()-target+more)
}

func (m *mModel) reload(step int, c mCfg) {
	m.writeCfg(c)
	code, out, err := m.node.do("POST", "/v1/reload", nil)
	m.logf("step %d: reload to %s: %d %v", step, c, code, out)
	if err != nil || code != http.StatusOK {
		m.fatalf("INVARIANT a valid reload applies: step %d: reload to %s: %d %v %v", step, c, code, out, err)
	}
}

func (m *mModel) restart(step int, crash bool) {
	what := "restart"
	if crash {
		what = "crash and restart"
	}
	m.logf("step %d: %s", step, what)
	if err := m.node.stop(crash); err != nil {
		m.rt.Fatalf("step %d: %s: %v", step, what, err)
	}
	m.restarts = append(m.restarts, time.Now())
	m.start()
}

func (m *mModel) replay(step int) {
	dls, err := m.node.deadLetters(mDest)
	if err != nil {
		m.rt.Fatalf("step %d: dead letters: %v", step, err)
	}
	if len(dls) == 0 {
		m.logf("step %d: replay: no dead letters", step)
		return
	}
	ids := map[string]bool{}
	var list []string
	for id := range dls {
		ids[id] = true
		list = append(list, id)
	}
	sort.Strings(list)
	at := time.Now()
	m.replayN.Add(1)
	code, out, err := m.node.do("POST", "/v1/replay", map[string]any{"destination": mDest, "ids": list})
	if err != nil || code != http.StatusOK {
		m.rt.Fatalf("step %d: replay: %d %v %v", step, code, out, err)
	}
	m.replays = append(m.replays, mReplay{at, ids})
	m.logf("step %d: replay %v: %v", step, list, out)
}

func doPost(url string, body any) (int, map[string]any, error) {
	return mDo("POST", url, ingestToken, body)
}

// cfgsDuring is every config in force at some time in [from, to].
func (m *mModel) cfgsDuring(from, to time.Time) []mCfg {
	var out []mCfg
	for i, c := range m.cfgs {
		if c.at.After(to) {
			break
		}
		if i+1 < len(m.cfgs) && !m.cfgs[i+1].at.After(from) {
			continue // replaced before from
		}
		out = append(out, c.cfg)
	}
	return out
}

func (m *mModel) cfgAt(at time.Time) mCfg {
	c := m.cfgs[0].cfg
	for _, x := range m.cfgs {
		if !x.at.After(at) {
			c = x.cfg
		}
	}
	return c
}

// expected: selected by every config from its ingest on, so it must be
// delivered or be a dead letter; never: selected by none, so it must not
// be delivered.
func (m *mModel) selection(a *mActivity, end time.Time) (expected, never bool) {
	expected, never = true, true
	for _, c := range m.cfgsDuring(a.at, end) {
		if c.selects(a.name) {
			never = false
		} else {
			expected = false
		}
	}
	return
}

func (m *mModel) everWebhook(kind string) bool {
	for _, c := range m.cfgs {
		if c.cfg.Kind == kind {
			return true
		}
	}
	return false
}

// settle brings the receiver up and the destination back, and waits until
// every activity it must take is delivered or a dead letter, nothing is
// pending and no request is in flight. While waiting, nothing the receiver
// would accept may wait longer than its next delay, a Retry-After, a
// probe and a timeout, plus slack.
func (m *mModel) settle() {
	rt := m.rt
	if err := m.rcv.setUp(true); err != nil {
		rt.Fatal(err)
	}
	begin := time.Now()
	m.logf("settle: receiver up, destination resumed")
	var maxDelay, maxProbe time.Duration
	for _, c := range m.cfgs {
		for _, d := range mSchedules[c.cfg.Sched] {
			maxDelay = max(maxDelay, d)
		}
		maxProbe = max(maxProbe, mBreakers[c.cfg.Breaker].probe)
	}
	// Retry-After is 1s; a 410's hand-back 1s; the fan-out's hand-over of
	// a slow destination and the pull loop's back-off add a little.
	bound := maxDelay + time.Second + maxProbe + 2*mTimeout + 4*time.Second + *modelSlack
	deadline := begin.Add(mSettle)
	stable := 0
	for {
		now := time.Now()
		st, err := m.node.status(mDest)
		if err != nil {
			rt.Fatalf("settle: status: %v", err)
		}
		if st.State == "paused" {
			m.resumes = append(m.resumes, time.Now())
			if code, out, err := m.node.do("POST", "/v1/destinations/"+mDest+"/resume", nil); err != nil || code >= 300 {
				rt.Fatalf("settle: resume: %d %v %v", code, out, err)
			}
		}
		dls, err := m.node.deadLetters(mDest)
		if err != nil {
			rt.Fatalf("settle: dead letters: %v", err)
		}
		by, _, inFlight := m.rcv.snapshot()
		records := m.records()
		cur := m.cfgAt(now)
		var unsettled []string
		lastByContact := map[string]time.Time{}
		for _, a := range m.acts {
			for _, at := range by[a.id] {
				lastByContact[a.contact] = maxTime(lastByContact[a.contact], at.end, at.start)
			}
		}
		var late []string
		for _, a := range m.acts {
			exp, _ := m.selection(a, now)
			if !exp || delivered(by[a.id]) || records[a.id] || dls[a.id].ID != "" {
				continue
			}
			unsettled = append(unsettled, a.id)
			if cur.Kind != "webhook" || st.State == "paused" {
				continue
			}
			last := begin
			if cur.Order {
				last = maxTime(last, lastByContact[a.contact])
			} else if list := by[a.id]; len(list) > 0 {
				last = maxTime(last, list[len(list)-1].end, list[len(list)-1].start)
			}
			if now.Sub(last) > bound && now.Sub(m.cfgs[len(m.cfgs)-1].at) > bound {
				late = append(late, fmt.Sprintf("%s (%s, %d attempts, last event %s ago)", a.id, a.beh.name, len(by[a.id]), now.Sub(last).Round(time.Millisecond)))
			}
		}
		if len(late) > 0 && *modelLiveness {
			m.fatalf("INVARIANT nothing waits past its next delay + probe_every (+slack %s) while the receiver accepts it: %s waiting; destination %s, breaker %q, pending %d",
				bound, strings.Join(late, ", "), st.State, st.Breaker, st.Pending)
		}
		if len(unsettled) == 0 && st.Pending == 0 && inFlight == 0 && st.State == "active" {
			if stable++; stable >= 3 {
				rt.Logf("settle: settled in %s", time.Since(begin).Round(time.Millisecond))
				return
			}
		} else {
			stable = 0
		}
		if now.After(deadline) && len(unsettled) == 0 {
			m.fatalf("INVARIANT pending agrees with the receiver: after %s every selected activity is delivered or a dead letter, yet pending is %d (destination %s, breaker %q, receiver in flight %d)",
				mSettle, st.Pending, st.State, st.Breaker, inFlight)
		}
		if now.After(deadline) {
			m.fatalf("INVARIANT every selected activity is delivered or a dead letter (none lost): after %s, %v neither; destination %s, breaker %q, pending %d, receiver in flight %d",
				mSettle, unsettled, st.State, st.Breaker, st.Pending, inFlight)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (m *mModel) records() map[string]bool {
	out := map[string]bool{}
	if !m.everWebhook("salesforce") {
		return out
	}
	for id := range m.sf.Records() {
		if strings.HasPrefix(id, m.prefix+"-") {
			out[id] = true
		}
	}
	return out
}

func delivered(list []mAttempt) bool {
	return slices.ContainsFunc(list, mAttempt.ok)
}

func maxTime(ts ...time.Time) time.Time {
	var out time.Time
	for _, t := range ts {
		if t.After(out) {
			out = t
		}
	}
	return out
}

// check verifies the invariants once the sequence has settled.
func (m *mModel) check() {
	rt := m.rt
	now := time.Now()
	var bad []string
	fail := func(inv, format string, args ...any) {
		bad = append(bad, "INVARIANT "+inv+": "+fmt.Sprintf(format, args...))
	}
	by, all, _ := m.rcv.snapshot()
	dls, err := m.node.deadLetters(mDest)
	if err != nil {
		rt.Fatalf("dead letters: %v", err)
	}
	records := m.records()
	st, err := m.node.status(mDest)
	if err != nil {
		rt.Fatal(err)
	}

	if b := m.rcv.badSignatures(); len(b) > 0 {
		fail("every request is signed", "%v", b)
	}

	for _, a := range m.acts {
		list := by[a.id]
		_, never := m.selection(a, now)
		if never && (delivered(list) || records[a.id]) {
			fail("only selected activities are delivered", "%s (%s) reached the destination though no config selected it", a.id, a.name)
		}
		// Nothing delivered after it became a dead letter, unless replayed
		// (a replayed one leaves the list; one that fails again comes back
		// with a later dead_at).
		if dl, ok := dls[a.id]; ok {
			for _, at := range list {
				if at.ok() && at.start.After(dl.DeadAt) {
					fail("nothing is delivered after it became a dead letter unless replayed",
						"%s delivered at %s, dead letter since %s", a.id, at.start.Format("15:04:05.000"), dl.DeadAt.Format("15:04:05.000"))
				}
			}
		}
		// At most schedule+1 attempts per run.
		runs := []time.Time{a.at}
		for _, r := range m.replays {
			if r.ids[a.id] {
				runs = append(runs, r.at)
			}
		}
		for i, from := range runs {
			to := now
			if i+1 < len(runs) {
				to = runs[i+1]
			}
			most := 0
			for _, c := range m.cfgsDuring(from, to) {
				most = max(most, len(mSchedules[c.Sched]))
			}
			made, excused := 0, 0
			var steps []string
			for _, at := range list {
				if at.start.Before(from) || !at.start.Before(to) || at.cut {
					continue
				}
				made++
				probe := at.breaker != "" && at.breaker != "closed"
				if (probe && !at.ok()) || at.step == step410 {
					excused++ // a failed probe is the breaker's; a 410 pauses
				}
				steps = append(steps, fmt.Sprintf("%s@%s(breaker %s)", at.step, at.start.Format("05.000"), at.breaker))
			}
			for _, r := range m.restarts {
				if !r.Before(from) && r.Before(to) {
					excused++ // at least once across a stop
				}
			}
			if made-excused > most+1 {
				fail("at most schedule+1 attempts per run", "%s (%s) run %d: %d attempts (%d excused as probes, 410s or restarts), schedule of at most %d delays: %v",
					a.id, a.beh.name, i+1, made, excused, most, steps)
			}
		}
	}

	// The breaker, as polled.
	for pi, p := range m.polls {
		samples := p.all()
		var openSince time.Time
		for i, s := range samples {
			open := s.breaker == "open" || s.breaker == "half_open"
			if !open {
				openSince = time.Time{}
				continue
			}
			if i == 0 || openSince.IsZero() {
				openSince = s.end
			}
			if i == 0 {
				continue
			}
			prev := samples[i-1]
			prevOpen := prev.breaker == "open" || prev.breaker == "half_open"
			if prevOpen && prev.at.Sub(openSince) > mTimeout+300*time.Millisecond && s.dead > prev.dead && s.replayed == prev.replayed {
				fail("never a dead letter while the breaker is open", "process %d: dead letters went from %d to %d between %s and %s, the breaker %s since %s",
					pi+1, prev.dead, s.dead, prev.at.Format("15:04:05.000"), s.at.Format("15:04:05.000"), s.breaker, openSince.Format("15:04:05.000"))
			}
			if prev.breaker == "closed" {
				m.checkOpening(prev.at, s.at, all, fail)
			}
		}
	}

	m.checkIntervals(all, fail)

	// Pending and dead letters as the API says, against the receiver.
	if st.Pending != 0 {
		fail("pending agrees with the receiver", "pending %d once settled", st.Pending)
	}
	if st.DeadLettered != len(dls) {
		fail("dead_lettered agrees with the dead letters", "dead_lettered %d, %d listed", st.DeadLettered, len(dls))
	}
	m.checkTraces(by, dls, records, fail)
	m.checkOrder(by, dls, fail)

	if len(bad) > 0 {
		m.fatalf("%d invariants failed:\n%s", len(bad), strings.Join(bad, "\n"))
	}
	rt.Logf("checked: %d activities, %d requests, %d dead letters, %d records", len(m.acts), len(all), len(dls), len(records))
}

// checkOpening: the breaker, seen closed at prev and open at cur, opened
// only as DESIGN §12 says: every attempt of its window failed, and they
// were attempts of at least `failures` different activities (a receiver
// that refuses some payloads is not down, and the retries of a few
// refused ones do not add up to one that is). Attempts settle in the
// engine a little after the receiver answers, so a success ending within
// 100ms of prev, and failures ending up to then after cur, are not judged.
func (m *mModel) checkOpening(prev, cur time.Time, all []mAttempt, fail func(string, string, ...any)) {
	c := m.cfgAt(prev)
	if c.Kind != "webhook" || c.Breaker == 0 || m.cfgAt(cur) != c {
		return
	}
	b := mBreakers[c.Breaker]
	for _, r := range m.restarts {
		if r.After(prev.Add(-b.window)) && r.Before(cur) {
			return // a process's counts start again with it
		}
	}
	slack := 100 * time.Millisecond
	failed := func(at mAttempt) bool { return !at.ok() || at.end.Sub(at.start) >= mTimeout-slack }
	for _, at := range all {
		if !at.end.IsZero() && !failed(at) && at.end.After(prev.Add(-b.window+slack)) && at.end.Before(prev.Add(-slack)) {
			fail("the breaker opens only when every attempt of its window failed", "opened between %s and %s although %s succeeded at %s, within the window (%s)",
				prev.Format("15:04:05.000"), cur.Format("15:04:05.000"), at.id, at.end.Format("15:04:05.000"), b.window)
			return
		}
	}
	if m.rcv.downBetween(cur.Add(-b.window), cur) {
		return // attempts cut by the receiver going down are not all seen
	}
	distinct := map[string]bool{}
	for _, at := range all {
		if !at.end.IsZero() && failed(at) && !at.end.Before(prev.Add(-b.window-slack)) && !at.end.After(cur.Add(slack)) {
			distinct[at.id] = true
		}
	}
	if len(distinct) < b.failures {
		fail("the breaker opens only after failures of `failures` different activities", "opened between %s and %s with failed attempts of %d activities in its window (failures: %d)",
			prev.Format("15:04:05.000"), cur.Format("15:04:05.000"), len(distinct), b.failures)
	}
}

// checkTraces: each activity's trace agrees with what the receiver saw
// (the delivery log is written asynchronously: wait for it a little).
func (m *mModel) checkTraces(by map[string][]mAttempt, dls map[string]mDeadLetter, records map[string]bool, fail func(string, string, ...any)) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		var wrong []string
		for _, a := range m.acts {
			if exp, _ := m.selection(a, time.Now()); !exp {
				continue // the trace judges by today's rules
			}
			want := ""
			switch {
			case dls[a.id].ID != "":
				want = "dead_letter"
			case delivered(by[a.id]) || records[a.id]:
				want = "delivered"
			default:
				continue
			}
			if want == "dead_letter" && delivered(by[a.id]) {
				continue // both: reported elsewhere if it matters
			}
			got, attempts, err := m.node.trace(a.id, mDest)
			if err != nil {
				wrong = append(wrong, err.Error())
				continue
			}
			if got != want {
				wrong = append(wrong, fmt.Sprintf("%s: trace says %q, want %q", a.id, got, want))
			}
			if seen := countUncut(by[a.id]); attempts < seen && !m.everWebhook("salesforce") {
				wrong = append(wrong, fmt.Sprintf("%s: trace lists %d attempts, the receiver saw %d", a.id, attempts, seen))
			}
		}
		if len(wrong) == 0 {
			return
		}
		if time.Now().After(deadline) {
			fail("the trace agrees with the receiver", "%s", strings.Join(wrong, "; "))
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// checkOrder: with order: contact on throughout (a webhook all along), a
// contact's activities are attempted one at a time in the order stored:
// none is attempted before the one stored before it was delivered. Checked
// up to a contact's first dead letter or replay.
func (m *mModel) checkOrder(by map[string][]mAttempt, dls map[string]mDeadLetter, fail func(string, string, ...any)) {
	for _, c := range m.cfgs {
		if !c.cfg.Order || c.cfg.Kind != "webhook" {
			return
		}
	}
	replayed := map[string]bool{}
	for _, r := range m.replays {
		for id := range r.ids {
			replayed[id] = true
		}
	}
	now := time.Now()
	for _, contact := range mContacts {
		var prev *mActivity
		for _, a := range m.acts {
			if a.contact != contact {
				continue
			}
			if exp, _ := m.selection(a, now); !exp {
				continue
			}
			if dls[a.id].ID != "" || replayed[a.id] || !delivered(by[a.id]) {
				break
			}
			if prev != nil {
				var done time.Time
				for _, at := range by[prev.id] {
					if at.ok() {
						done = at.end
						break
					}
				}
				first := by[a.id][0].start
				if first.Before(done.Add(-5 * time.Millisecond)) {
					fail("order per contact", "contact %s: %s first attempted at %s, before %s (stored before it) was delivered at %s",
						contact, a.id, first.Format("15:04:05.000"), prev.id, done.Format("15:04:05.000"))
				}
			}
			prev = a
		}
	}
}

// checkIntervals: while the destination was seen paused throughout, the
// receiver got no request; while the breaker was seen open throughout, at
// most one probe each probe_every (attempts in flight when either began
// finish first).
func (m *mModel) checkIntervals(all []mAttempt, fail func(string, string, ...any)) {
	type interval struct{ from, to time.Time }
	spans := func(samples []mSample, in func(mSample) bool) []interval {
		var out []interval
		var cur *interval
		for _, s := range samples {
			switch {
			case in(s) && cur == nil:
				cur = &interval{s.end, s.at}
			case in(s):
				cur.to = s.at
			case cur != nil:
				out = append(out, *cur)
				cur = nil
			}
		}
		if cur != nil {
			out = append(out, *cur)
		}
		return out
	}
	count := func(from, to time.Time) (n int, list []string) {
		for _, at := range all {
			if at.start.After(from) && at.start.Before(to) {
				n++
				list = append(list, fmt.Sprintf("%s %s@%s", at.id, at.step, at.start.Format("05.000")))
			}
		}
		return n, list
	}
	for _, p := range m.polls {
		samples := p.all()
		for _, iv := range spans(samples, func(s mSample) bool { return s.state == "paused" }) {
			// Seen paused from iv.from at the latest to iv.to at the
			// earliest; attempts in flight when it paused finish first.
			// A resume the model sent ends it, though no poll saw the
			// destination active before a 410 paused it again.
			from := iv.from.Add(mTimeout + 200*time.Millisecond)
			to := iv.to
			for _, r := range m.resumes {
				if r.After(iv.from) && r.Before(to) {
					to = r
				}
			}
			if n, list := count(from, to); n > 0 {
				fail("nothing is attempted while paused", "%d requests while the destination was paused from %s to %s: %v",
					n, iv.from.Format("15:04:05.000"), iv.to.Format("15:04:05.000"), list)
			}
		}
		for _, iv := range spans(samples, func(s mSample) bool { return s.breaker == "open" || s.breaker == "half_open" }) {
			c := m.cfgAt(iv.from)
			if c.Kind != "webhook" || c.Breaker == 0 || m.cfgAt(iv.to) != c || len(m.cfgsDuring(iv.from, iv.to)) > 1 {
				continue
			}
			from := iv.from.Add(mTimeout + 200*time.Millisecond)
			if !iv.to.After(from) {
				continue
			}
			probe := mBreakers[c.Breaker].probe
			most := int(iv.to.Sub(from)/probe) + 2
			if n, list := count(from, iv.to); n > most {
				fail("one probe each probe_every while the breaker is open", "%d requests in the %s the breaker was open (from %s), at most %d probes: %v",
					n, iv.to.Sub(from).Round(time.Millisecond), iv.from.Format("15:04:05.000"), most, list)
			}
		}
	}
}

func countUncut(list []mAttempt) int {
	n := 0
	for _, at := range list {
		if !at.cut {
			n++
		}
	}
	return n
}
