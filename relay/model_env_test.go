package relay_test

// The world TestModel (model_test.go) drives: a webhook receiver whose
// answer to each attempt the model scripts per activity and which can be
// taken down (connections refused) and brought back on the same port, a
// Relay started from a config file on disk (so reloads and restarts use
// the same file and data directory) and a poller of GET /v1/destinations
// recording the breaker's state and the dead letters over time.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"pgregory.net/rapid"

	"github.com/relaydev/relay/config"
	"github.com/relaydev/relay/connectors/salesforce"
	"github.com/relaydev/relay/connectors/webhook"
	"github.com/relaydev/relay/relay"
	"github.com/relaydev/relay/relay/api"
	"github.com/relaydev/relay/relay/sink"
)

// mStep is how the receiver answers one attempt.
type mStep int

const (
	stepOK        mStep = iota // 204
	step500                    // 500
	step429                    // 429 with Retry-After: 1
	step410                    // 410 Gone: pauses the destination
	stepHang                   // no answer until the attempt times out
	stepRefuse422              // 422: this payload is refused
)

func (s mStep) String() string {
	return [...]string{"204", "500", "429", "410", "hang", "422"}[s]
}

// mBehaviour is an activity's script: the answer to attempt n (counted
// from 1 by the receiver) is steps[min(n, len)-1].
type mBehaviour struct {
	name  string
	steps []mStep
}

var mBehaviours = []mBehaviour{
	{"ok", []mStep{stepOK}},
	{"ok", []mStep{stepOK}},
	{"500-once", []mStep{step500, stepOK}},
	{"500-twice", []mStep{step500, step500, stepOK}},
	{"429-once", []mStep{step429, stepOK}},
	{"410-once", []mStep{step410, stepOK}},
	{"hang-once", []mStep{stepHang, stepOK}},
	{"refused", []mStep{stepRefuse422}},
	{"500-4x", []mStep{step500, step500, step500, step500, stepOK}},
}

// mAttempt is one request the receiver got.
type mAttempt struct {
	id         string
	contact    string
	start, end time.Time
	step       mStep
	// breaker is the destination's breaker as last polled when the
	// request arrived: a request made while it is not closed may be a probe.
	breaker string
	// cut: the receiver went down while it was in flight; the connection
	// broke without an answer and the client may retry it within the same
	// attempt (transport retries), so it is not counted as an attempt.
	cut bool
}

func (a mAttempt) ok() bool { return a.step == stepOK }

// mReceiver is the model's webhook endpoint.
type mReceiver struct {
	addr    string
	breaker func() string // the poller's latest breaker state

	mu       sync.Mutex
	srv      *http.Server
	up       bool
	script   map[string]mBehaviour
	attempts map[string][]mAttempt
	all      []mAttempt
	inFlight int
	open     map[int][2]int // index in all -> index of the activity's attempt (and 0), in flight
	bad      []string
	downs    [][2]time.Time // intervals the receiver was down ([1] zero: still down)
	quit     chan struct{}  // closed when the receiver goes away: hung requests end
}

func newMReceiver() (*mReceiver, error) {
	r := &mReceiver{script: map[string]mBehaviour{}, attempts: map[string][]mAttempt{}, open: map[int][2]int{}, quit: make(chan struct{})}
	r.breaker = func() string { return "" }
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r.addr = ln.Addr().String()
	r.serve(ln)
	return r, nil
}

func (r *mReceiver) url() string { return "http://" + r.addr }

func (r *mReceiver) serve(ln net.Listener) {
	srv := &http.Server{Handler: http.HandlerFunc(r.handle), ReadHeaderTimeout: 10 * time.Second}
	r.srv, r.up = srv, true
	go func() { _ = srv.Serve(ln) }()
}

// setUp brings the receiver up (on the same port) or takes it down:
// every connection is closed and new ones are refused.
func (r *mReceiver) setUp(up bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if up == r.up {
		return nil
	}
	if !up {
		r.up = false
		r.downs = append(r.downs, [2]time.Time{time.Now()})
		for idx, pos := range r.open {
			r.all[idx].cut = true
			r.attempts[r.all[idx].id][pos[0]].cut = true
		}
		srv := r.srv
		r.mu.Unlock()
		err := srv.Close()
		r.mu.Lock()
		return err
	}
	var ln net.Listener
	var err error
	for range 50 { // the port is ours; a moment may pass before it binds again
		if ln, err = net.Listen("tcp", r.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("receiver back on %s: %w", r.addr, err)
	}
	r.downs[len(r.downs)-1][1] = time.Now()
	r.serve(ln)
	return nil
}

// downBetween reports whether the receiver was down at any time in [a, b].
func (r *mReceiver) downBetween(a, b time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, d := range r.downs {
		end := d[1]
		if end.IsZero() {
			end = time.Now()
		}
		if !d[0].After(b) && !end.Before(a) {
			return true
		}
	}
	return false
}

func (r *mReceiver) close() {
	r.mu.Lock()
	srv := r.srv
	r.up = false
	select {
	case <-r.quit:
	default:
		close(r.quit)
	}
	r.mu.Unlock()
	_ = srv.Close()
}

func (r *mReceiver) setScript(id string, b mBehaviour) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.script[id] = b
}

func (r *mReceiver) handle(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	id := req.Header.Get("webhook-id")
	verr := webhook.VerifyRequest(secretA, req.Header, body, time.Now())
	var msg struct {
		Data struct {
			ID      string `json:"id"`
			Contact struct {
				ID string `json:"id"`
			} `json:"contact"`
		} `json:"data"`
	}
	_ = json.Unmarshal(body, &msg)
	at := mAttempt{id: id, contact: msg.Data.Contact.ID, start: time.Now(), breaker: r.breaker()}
	r.mu.Lock()
	if verr != nil || msg.Data.ID != id {
		r.bad = append(r.bad, fmt.Sprintf("%s: signature %v, body id %q", id, verr, msg.Data.ID))
		r.mu.Unlock()
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	n := len(r.attempts[id]) + 1
	script, ok := r.script[id]
	if !ok {
		script = mBehaviour{"unknown", []mStep{stepOK}}
	}
	at.step = script.steps[min(n, len(script.steps))-1]
	idx := len(r.all)
	r.all = append(r.all, at)
	r.attempts[id] = append(r.attempts[id], at)
	r.open[idx] = [2]int{len(r.attempts[id]) - 1}
	r.inFlight++
	quit := r.quit
	r.mu.Unlock()

	switch at.step {
	case stepOK:
		w.WriteHeader(http.StatusNoContent)
	case step500:
		w.WriteHeader(http.StatusInternalServerError)
	case step429:
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusTooManyRequests)
	case step410:
		w.WriteHeader(http.StatusGone)
	case stepHang:
		select {
		case <-req.Context().Done():
		case <-quit:
		case <-time.After(30 * time.Second):
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	case stepRefuse422:
		w.WriteHeader(http.StatusUnprocessableEntity)
	}
	end := time.Now()
	r.mu.Lock()
	r.inFlight--
	r.all[idx].end = end
	r.attempts[id][r.open[idx][0]].end = end
	delete(r.open, idx)
	r.mu.Unlock()
}

// snapshot is every attempt so far, by activity and in arrival order.
func (r *mReceiver) snapshot() (map[string][]mAttempt, []mAttempt, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	by := make(map[string][]mAttempt, len(r.attempts))
	for id, list := range r.attempts {
		by[id] = append([]mAttempt(nil), list...)
	}
	return by, append([]mAttempt(nil), r.all...), r.inFlight
}

func (r *mReceiver) requests() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.all)
}

func (r *mReceiver) badSignatures() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.bad...)
}

// mNode is one running Relay of a sequence.
type mNode struct {
	relay  *relay.Relay
	ingest string
	admin  string
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	poll   *mPoller
}

var mClient = &http.Client{Timeout: 20 * time.Second}

// startModelNode runs Relay from the config file, making webhook and
// Salesforce connectors the way relay serve does, so reloads can switch a
// destination between them.
func startModelNode(file string, log *slog.Logger) (*mNode, error) {
	cfg, err := relay.LoadConfig(file)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	conns := webhook.NewTransports(cfg.Engine.MaxInFlight, nil) // as relay serve shares them
	newSink := func(d config.Destination) (sink.Connector, error) {
		if d.Type == "salesforce" {
			s, err := salesforce.New(d, salesforce.Options{})
			if err != nil {
				return sink.Connector{}, err
			}
			return sink.Connector{Batch: s, Close: s.Close}, nil
		}
		s, err := webhook.New(d, webhook.Options{Transports: conns})
		if err != nil {
			return sink.Connector{}, err
		}
		return sink.Connector{Sink: s, Close: s.Close}, nil
	}
	r, err := relay.New(cfg, relay.Options{Logger: log, NewSink: newSink})
	if err != nil {
		return nil, fmt.Errorf("relay.New: %w", err)
	}
	if err := r.Listen(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &mNode{relay: r, ingest: "http://" + r.IngestAddr(), admin: "http://" + r.AdminAddr(), cancel: cancel, done: make(chan error, 1)}
	go func() { n.done <- r.Run(ctx) }()
	select {
	case <-r.Started():
		return n, nil
	case err := <-n.done:
		cancel()
		return nil, fmt.Errorf("relay stopped at start: %w", err)
	case <-time.After(30 * time.Second):
		n.stop()
		return nil, errors.New("relay did not start in 30s")
	}
}

// stop ends the relay and waits for it (calling it again does nothing);
// crash closes its connection to NATS first, so nothing more is acked.
func (n *mNode) stop(crash ...bool) error {
	var err error
	n.once.Do(func() {
		if n.poll != nil {
			n.poll.stop()
		}
		if len(crash) > 0 && crash[0] {
			n.relay.CloseBus()
		}
		n.cancel()
		select {
		case <-n.done:
		case <-time.After(30 * time.Second):
			err = errors.New("relay did not stop in 30s")
		}
	})
	return err
}

// do sends a request to the admin API and decodes the JSON answer.
func (n *mNode) do(method, path string, body any) (int, map[string]any, error) {
	return mDo(method, n.admin+path, adminToken, body)
}

func mDo(method, url, token string, body any) (int, map[string]any, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, rd)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := mClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if len(bytes.TrimSpace(data)) > 0 && data[0] == '{' {
		_ = json.Unmarshal(data, &out)
	}
	return resp.StatusCode, out, nil
}

func (n *mNode) status(dest string) (api.DestinationStatus, error) {
	req, _ := http.NewRequest("GET", n.admin+"/v1/destinations", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := mClient.Do(req)
	if err != nil {
		return api.DestinationStatus{}, err
	}
	defer resp.Body.Close()
	var out struct {
		Destinations []api.DestinationStatus `json:"destinations"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return api.DestinationStatus{}, err
	}
	for _, d := range out.Destinations {
		if d.Name == dest {
			return d, nil
		}
	}
	return api.DestinationStatus{}, fmt.Errorf("no destination %s", dest)
}

// mDeadLetter is an entry of GET /v1/deadletters.
type mDeadLetter struct {
	ID       string    `json:"id"`
	DeadAt   time.Time `json:"dead_at"`
	Attempts []struct {
		Status int    `json:"status"`
		Error  string `json:"error"`
	} `json:"attempts"`
}

func (n *mNode) deadLetters(dest string) (map[string]mDeadLetter, error) {
	out := map[string]mDeadLetter{}
	cursor := ""
	for range 100 {
		req, _ := http.NewRequest("GET", n.admin+"/v1/deadletters?limit=1000&destination="+dest+"&cursor="+cursor, nil)
		req.Header.Set("Authorization", "Bearer "+adminToken)
		resp, err := mClient.Do(req)
		if err != nil {
			return nil, err
		}
		var page struct {
			DeadLetters []mDeadLetter `json:"deadletters"`
			Next        string        `json:"next_cursor"`
		}
		if resp.StatusCode != http.StatusOK {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
			resp.Body.Close()
			return nil, fmt.Errorf("GET /v1/deadletters: %d %s", resp.StatusCode, body)
		}
		err = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		if err != nil {
			return nil, err
		}
		for _, dl := range page.DeadLetters {
			out[dl.ID] = dl
		}
		if page.Next == "" {
			return out, nil
		}
		cursor = page.Next
	}
	return out, nil
}

// trace is GET /v1/activities/{id}: the destination's status there.
func (n *mNode) trace(id, dest string) (string, int, error) {
	code, out, err := n.do("GET", "/v1/activities/"+id, nil)
	if err != nil || code != http.StatusOK {
		return "", 0, fmt.Errorf("trace %s: %d %v %v", id, code, out, err)
	}
	ds, _ := out["destinations"].([]any)
	for _, d := range ds {
		m, _ := d.(map[string]any)
		if m["name"] == dest {
			s, _ := m["status"].(string)
			at, _ := m["attempts"].([]any)
			return s, len(at), nil
		}
	}
	return "", 0, fmt.Errorf("trace %s: no destination %s: %v", id, dest, out)
}

// mSample is one poll of GET /v1/destinations.
type mSample struct {
	at       time.Time // when the request was made: the state held at some time in [at, end]
	end      time.Time
	breaker  string
	state    string
	dead     int
	pending  uint64
	replayed int64 // replays asked so far (the model's count)
}

// mPoller polls the destination's status every 50ms while its node runs.
type mPoller struct {
	n       *mNode
	dest    string
	latest  atomic.Pointer[mSample]
	replays *atomic.Int64
	quit    chan struct{}
	done    chan struct{}

	mu      sync.Mutex
	samples []mSample
}

func startPoller(n *mNode, dest string, replays *atomic.Int64) *mPoller {
	p := &mPoller{n: n, dest: dest, replays: replays, quit: make(chan struct{}), done: make(chan struct{})}
	n.poll = p
	go p.run()
	return p
}

func (p *mPoller) run() {
	defer close(p.done)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		r := p.replays.Load()
		at := time.Now()
		st, err := p.n.status(p.dest)
		if err == nil {
			s := mSample{at: at, end: time.Now(), breaker: st.Breaker, state: st.State, dead: st.DeadLettered, pending: st.Pending, replayed: r}
			p.latest.Store(&s)
			p.mu.Lock()
			p.samples = append(p.samples, s)
			p.mu.Unlock()
		}
		select {
		case <-p.quit:
			return
		case <-tick.C:
		}
	}
}

func (p *mPoller) stop() {
	select {
	case <-p.quit:
	default:
		close(p.quit)
	}
	<-p.done
}

func (p *mPoller) breaker() string {
	if s := p.latest.Load(); s != nil {
		return s.breaker
	}
	return ""
}

func (p *mPoller) all() []mSample {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]mSample(nil), p.samples...)
}

// mLog keeps the engine's last log lines, shown when a sequence fails.
type mLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *mLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		l.lines = append(l.lines, line)
	}
	if len(l.lines) > 400 {
		l.lines = append([]string(nil), l.lines[len(l.lines)-300:]...)
	}
	return len(p), nil
}

func (l *mLog) dump(t *rapid.T, last int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	from := max(0, len(l.lines)-last)
	t.Logf("engine log (last %d lines):\n%s", len(l.lines)-from, strings.Join(l.lines[from:], "\n"))
}
