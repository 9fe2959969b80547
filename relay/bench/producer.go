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
)

// producer pushes the bench's activities through the ingest API.
type producer struct {
	o          Options
	url, token string
	client     *http.Client
	acceptedAt []int64 // unix nanos of the ingest request, by activity index
	pad        string
}

func newProducer(o Options, url, token string, _ *receiver) *producer {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = o.Producers
	// The rest of an activity is about 200 bytes of JSON.
	pad := strings.Repeat("x", max(0, o.PayloadBytes-200))
	return &producer{o: o, url: url, token: token, client: &http.Client{Transport: t, Timeout: time.Minute}, acceptedAt: make([]int64, o.Activities), pad: pad}
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

func (p *producer) post(ctx context.Context, lo, hi int) error {
	var buf bytes.Buffer
	buf.WriteByte('[')
	for i := lo; i < hi; i++ {
		if i > lo {
			buf.WriteByte(',')
		}
		contact := i
		if p.o.Contacts > 0 {
			contact = i % p.o.Contacts
		}
		fmt.Fprintf(&buf, `{"id":"bench-%d","type":"email","action":"open","contact":{"email":"c%d@example.com"},"attributes":{"campaign":"bench","pad":%q}}`, i, contact, p.pad)
	}
	buf.WriteByte(']')
	req, err := http.NewRequestWithContext(ctx, "POST", p.url, &buf)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+p.token)
	req.Header.Set("Content-Type", "application/json")
	sent := time.Now().UnixNano()
	resp, err := p.client.Do(req)
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&e)
		return fmt.Errorf("ingest answered %d: %s", resp.StatusCode, e.Error)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	// Latency runs from the ingest request: Relay may deliver before the
	// 202 reaches the producer.
	for i := lo; i < hi; i++ {
		p.acceptedAt[i] = sent
	}
	return nil
}
