package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/relaydev/relay/relay/activity"
)

// producer pushes the bench's activities through the ingest API.
type producer struct {
	o          Options
	url, token string
	client     *http.Client
	acceptedAt []int64 // unix nanos of the ingest request, by activity index
	pad        string
	names      []activity.Entry // activity i is names[i%len(names)]
	idPrefix   string           // activity i's id is idPrefix + i
	retries    atomic.Int64     // requests sent again after a 503
}

func newProducer(o Options, names []activity.Entry, url, token string) *producer {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = o.Producers
	// The rest of an activity is about 200 bytes of JSON.
	pad := strings.Repeat("x", max(0, o.PayloadBytes-200))
	return &producer{o: o, url: url, token: token, client: &http.Client{Transport: t, Timeout: time.Minute}, acceptedAt: make([]int64, o.Activities), pad: pad, names: names, idPrefix: "bench-"}
}

func (p *producer) batchSize() int {
	if p.o.Rate > 0 {
		return max(1, min(p.o.BatchSize, int(p.o.Rate/200)))
	}
	return p.o.BatchSize
}

// run sends every activity and returns how long ingest took.
func (p *producer) run(ctx context.Context) (time.Duration, error) {
	size := p.batchSize()
	batches := (p.o.Activities + size - 1) / size
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var tick <-chan time.Time
	if p.o.Rate > 0 {
		t := time.NewTicker(time.Duration(float64(size) / p.o.Rate * float64(time.Second)))
		defer t.Stop()
		tick = t.C
	}
	start := time.Now()
	var wg sync.WaitGroup
	for range p.o.Producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				if tick != nil {
					select {
					case <-tick:
					case <-ctx.Done():
						return
					}
				}
				b := int(next.Add(1)) - 1
				if b >= batches || ctx.Err() != nil {
					return
				}
				lo, hi := b*size, min((b+1)*size, p.o.Activities)
				if err := p.post(ctx, lo, hi); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	return time.Since(start), firstErr
}

// post sends activities lo to hi-1 in one request. A 503 (the bus did not
// confirm every activity in time) is sent again with the same ids, as a
// producer should, a bounded number of times.
func (p *producer) post(ctx context.Context, lo, hi int) error {
	var buf bytes.Buffer
	buf.WriteByte('[')
	for i := lo; i < hi; i++ {
		if i > lo {
			buf.WriteByte(',')
		}
		e := p.names[i%len(p.names)]
		contact := i
		if p.o.Contacts > 0 {
			contact = i % p.o.Contacts
		}
		fmt.Fprintf(&buf, `{"id":"%s%d","type":%q,"action":%q,"contact":{"email":"c%d@example.com"},"attributes":{"campaign":"bench","pad":%q}}`, p.idPrefix, i, e.Type, e.Action, contact, p.pad)
	}
	buf.WriteByte(']')
	sent := time.Now().UnixNano()
	for try := 1; ; try++ {
		retry, err := p.send(ctx, buf.Bytes())
		if err == nil {
			break
		}
		if !retry || try == maxTries {
			return err
		}
		p.retries.Add(1)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(try) * 100 * time.Millisecond):
		}
	}
	// Latency runs from the first ingest request: Relay may deliver before
	// the 202 reaches the producer.
	for i := lo; i < hi; i++ {
		p.acceptedAt[i] = sent
	}
	return nil
}

// maxTries bounds the sends of one request answered 503.
const maxTries = 10

func (p *producer) send(ctx context.Context, body []byte) (retry bool, err error) {
	req, err := http.NewRequestWithContext(ctx, "POST", p.url, bytes.NewReader(body))
	if err != nil {
		return false, err
	}
	req.Header.Set("Authorization", "Bearer "+p.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.client.Do(req)
	if err != nil {
		return false, fmt.Errorf("ingest: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&e)
		return resp.StatusCode == http.StatusServiceUnavailable, fmt.Errorf("ingest answered %d: %s", resp.StatusCode, e.Error)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return false, nil
}
