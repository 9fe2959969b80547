package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// producer posts batches of activities with ids of its own, retrying a
// refused batch with the same ids (on the next ingest URL, if it has
// several) until ingest answers 202. It keeps every id ingest acknowledged.
type producer struct {
	urls    []string // ingest base URLs; a refused batch moves on to the next
	payload int      // bytes of attribute text per activity
	client  *http.Client

	mu       sync.Mutex
	accepted []string
	statuses map[int]int // ingest answers by status; 0 = no answer
	// onAnswer, when set, sees every answer (status 0: none) as it arrives.
	onAnswer func(status int)
}

func newProducer(payload int, urls ...string) *producer {
	return &producer{urls: urls, payload: payload, statuses: map[int]int{},
		client: &http.Client{Timeout: 30 * time.Second}}
}

// body is batch seq's JSON: size activities with ids "a-<seq>-<i>".
func (p *producer) body(seq, size int) []byte {
	items := make([]map[string]any, size)
	pad := strings.Repeat("x", p.payload)
	for i := range items {
		items[i] = map[string]any{
			"id": fmt.Sprintf("a-%d-%d", seq, i), "type": "email", "action": "open",
			"contact":    map[string]any{"email": fmt.Sprintf("p%d@example.com", i)},
			"attributes": map[string]any{"campaign": "fault-suite", "pad": pad},
		}
	}
	body, _ := json.Marshal(items)
	return body
}

// post sends batch seq once, to url; it returns nil only on a 202.
func (p *producer) post(ctx context.Context, url string, seq, size int) error {
	req, _ := http.NewRequestWithContext(ctx, "POST", url+"/v1/activities", bytes.NewReader(p.body(seq, size)))
	req.Header.Set("Authorization", "Bearer "+ingestToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.client.Do(req)
	if err != nil {
		p.answered(0, nil)
		return err
	}
	defer resp.Body.Close()
	var out struct {
		IDs []string `json:"ids"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&out)
	// A 503 lists what was persisted: those are accepted too.
	p.answered(resp.StatusCode, out.IDs)
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("ingest answered %d", resp.StatusCode)
	}
	if len(out.IDs) != size {
		return fmt.Errorf("ingest answered 202 with %d ids for %d activities", len(out.IDs), size)
	}
	return nil
}

func (p *producer) answered(status int, ids []string) {
	p.mu.Lock()
	p.statuses[status]++
	p.accepted = append(p.accepted, ids...)
	f := p.onAnswer
	p.mu.Unlock()
	if f != nil {
		f(status)
	}
}

// send posts batch seq until it is accepted or ctx ends, moving to the
// next ingest URL after each refusal.
func (p *producer) send(ctx context.Context, seq, size int) error {
	for try := 0; ; try++ {
		err := p.post(ctx, p.urls[(seq+try)%len(p.urls)], seq, size)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("batch %d never accepted: %w", seq, err)
		case <-time.After(min(time.Duration(try+1)*50*time.Millisecond, time.Second)):
		}
	}
}

// run posts batches 0…batches-1 from workers goroutines, each batch until
// accepted; wait returns once every batch was (or ctx ended).
func (p *producer) run(ctx context.Context, batches, size, workers int) (wait func() error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				seq := int(next.Add(1)) - 1
				if seq >= batches {
					return
				}
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

func (p *producer) ids() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return unique(p.accepted)
}

// count is how many ids ingest has acknowledged so far.
func (p *producer) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.accepted)
}

// refusals sums the answers other than 202, and requests without one.
func (p *producer) refusals() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for status, c := range p.statuses {
		if status != http.StatusAccepted {
			n += c
		}
	}
	return n
}

// tally is a scenario's accounting for one destination.
type tally struct {
	accepted, delivered, deadLettered, duplicates int
	missing, phantom                              []string
}

func (t tally) String() string {
	return fmt.Sprintf("%d accepted, %d delivered, %d dead letters, %d duplicate deliveries, %d lost",
		t.accepted, t.delivered, t.deadLettered, t.duplicates, len(t.missing))
}

// reckon compares what ingest accepted with what the sink received and
// the destination's dead letters. Missing ids are losses; phantom ones
// arrived without ever being accepted.
func reckon(s *sink, accepted, dead []string) tally {
	got := s.snapshot()
	t := tally{accepted: len(accepted), deadLettered: len(dead)}
	isDead := make(map[string]bool, len(dead))
	for _, id := range dead {
		isDead[id] = true
	}
	isAccepted := make(map[string]bool, len(accepted))
	for _, id := range accepted {
		isAccepted[id] = true
		switch c := got[id]; {
		case c > 0:
			t.delivered++
			t.duplicates += c - 1
		case !isDead[id]:
			t.missing = append(t.missing, id)
		}
	}
	for id := range got {
		if !isAccepted[id] {
			t.phantom = append(t.phantom, id)
		}
	}
	return t
}

// settle waits until every accepted activity was delivered or dead
// lettered, then fails the test on any loss or phantom and returns the
// tally. dead reads the destination's dead letters.
func settle(t *testing.T, name string, s *sink, accepted []string, dead func() []string, within time.Duration) tally {
	t.Helper()
	deadline := time.Now().Add(within)
	var tl tally
	for {
		var dl []string
		if dead != nil {
			dl = dead()
		}
		tl = reckon(s, accepted, dl)
		if len(tl.missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("%s: %s", name, tl)
	if len(tl.missing) > 0 {
		t.Errorf("%s: %d accepted activities neither delivered nor dead letters after %s, e.g. %v", name, len(tl.missing), within, tl.missing[:min(5, len(tl.missing))])
	}
	if len(tl.phantom) > 0 {
		t.Errorf("%s: %d deliveries of activities ingest never accepted, e.g. %v", name, len(tl.phantom), tl.phantom[:min(5, len(tl.phantom))])
	}
	if bad := s.badSignatures(); bad > 0 {
		t.Errorf("%s: %d deliveries failed signature verification", name, bad)
	}
	return tl
}

// deadLetters lists a destination's dead-letter ids through the admin API,
// page by page. A page the API cannot serve for now (503: a stream of a
// cluster electing its leader after a node came back) is asked again,
// for up to 30 seconds.
func deadLetters(t *testing.T, admin, dest string) []string {
	t.Helper()
	var ids []string
	cursor := ""
	deadline := time.Now().Add(30 * time.Second)
	for range 10_000 {
		page, next, status, err := deadLetterPage(admin, dest, cursor)
		switch {
		case status == http.StatusServiceUnavailable && time.Now().Before(deadline):
			t.Logf("dead letters of %s not listable yet, asking again: %v", dest, err)
			time.Sleep(200 * time.Millisecond)
			continue
		case err != nil:
			t.Fatalf("list dead letters: %v", err)
		}
		if ids = append(ids, page...); next == "" {
			return ids
		}
		cursor = next
	}
	t.Fatal("dead-letter pages never ended")
	return nil
}

// deadLetterPage reads one page of GET /v1/deadletters.
func deadLetterPage(admin, dest, cursor string) (ids []string, next string, status int, err error) {
	req, _ := http.NewRequest("GET", fmt.Sprintf("%s/v1/deadletters?destination=%s&limit=1000&cursor=%s", admin, dest, cursor), nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, "", 0, err
	}
	defer resp.Body.Close()
	var out struct {
		DeadLetters []struct {
			ID string `json:"id"`
		} `json:"deadletters"`
		NextCursor string `json:"next_cursor"`
		Error      string `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, "", resp.StatusCode, fmt.Errorf("status %d: %v", resp.StatusCode, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, "", resp.StatusCode, fmt.Errorf("status %d: %s", resp.StatusCode, out.Error)
	}
	for _, dl := range out.DeadLetters {
		ids = append(ids, dl.ID)
	}
	return ids, out.NextCursor, resp.StatusCode, nil
}

// report prints a scenario's figures in one greppable line:
// go test ./relay/e2e -v | grep FAULT.
func report(t *testing.T, scenario string, tl tally, more ...string) {
	t.Helper()
	line := fmt.Sprintf("FAULT %-24s pushed=%d delivered=%d dead_letters=%d duplicates=%d lost=%d",
		scenario, tl.accepted, tl.delivered, tl.deadLettered, tl.duplicates, len(tl.missing))
	t.Log(strings.Join(append([]string{line}, more...), " "))
}

func unique(ids []string) []string {
	seen := make(map[string]bool, len(ids))
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}
