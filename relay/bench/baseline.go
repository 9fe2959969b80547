package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/relaydev/relay/connectors/webhook"
	"github.com/relaydev/relay/relay/activity"
)

// baseline POSTs the same webhook bodies, signed, to the same receiver at the
// same concurrency without Relay, and returns POSTs per second: the
// machine's own limit for this work.
func baseline(ctx context.Context, o Options, recv *receiver, key []byte) (float64, error) {
	pad := strings.Repeat("x", max(0, o.PayloadBytes-200))
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = o.Concurrency
	client := &http.Client{Transport: t, Timeout: 30 * time.Second}
	defer t.CloseIdleConnections()
	url := recv.url() + "/base"
	now := time.Now().UTC()
	var next atomic.Int64
	var failed atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for range o.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= o.Activities {
					return
				}
				a := &activity.Activity{ID: fmt.Sprintf("bench-%d", i), Name: "email.open", Type: "email", Action: "open", Activity: "Opened email",
					OccurredAt: now, ReceivedAt: now, Contact: activity.MustObject(map[string]any{"email": fmt.Sprintf("c%d@example.com", i)}),
					Attributes: activity.MustObject(map[string]any{"campaign": "bench", "pad": pad})}
				raw := mustJSON(a)
				body := webhook.Body(a, raw)
				if err := postSigned(ctx, client, url, key, a.ID, body); err != nil {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if n := failed.Load(); n > 0 {
		return 0, fmt.Errorf("baseline: %d of %d POSTs failed", n, o.Activities)
	}
	return float64(o.Activities) / elapsed.Seconds(), nil
}

func postSigned(ctx context.Context, client *http.Client, url string, key []byte, id string, body []byte) error {
	ts := time.Now()
	req, err := http.NewRequestWithContext(ctx, "POST", url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("content-type", "application/json")
	req.Header.Set("webhook-id", id)
	req.Header.Set("webhook-timestamp", fmt.Sprint(ts.Unix()))
	req.Header.Set("webhook-signature", webhook.Sign([][]byte{key}, id, ts, body))
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}
