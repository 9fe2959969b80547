package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/relaydev/relay/connectors/webhook"
	"github.com/relaydev/relay/relay/telemetry"
)

// receiver is the loopback webhook endpoint of the bench. It verifies every
// signature and records when each activity arrived at each destination.
type receiver struct {
	secret string
	ln     net.Listener
	srv    *http.Server

	mu       sync.Mutex
	arrived  map[int][]int64 // destination -> unix nanos of first arrival, by activity index
	n        atomic.Int64
	last     atomic.Int64
	bad      atomic.Int64
	dups     atomic.Int64
	traced   atomic.Int64 // deliveries that carried a valid traceparent
	capacity int
	// failing, once set, answers 500 to every delivery, counted in failed.
	failing atomic.Bool
	failed  atomic.Int64
}

func newReceiver(secret string, capacity int) (*receiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("bench receiver: %w", err)
	}
	r := &receiver{secret: secret, ln: ln, arrived: map[int][]int64{}, capacity: capacity}
	r.srv = &http.Server{Handler: http.HandlerFunc(r.handle), ReadHeaderTimeout: 5 * time.Second}
	go r.srv.Serve(ln)
	return r, nil
}

func (r *receiver) url() string { return "http://" + r.ln.Addr().String() }

func (r *receiver) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = r.srv.Shutdown(ctx)
}

func (r *receiver) handle(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	now := time.Now()
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if err := webhook.VerifyRequest(r.secret, req.Header, body, now); err != nil {
		r.bad.Add(1)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if r.failing.Load() && req.URL.Path != "/base" {
		r.failed.Add(1)
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusNoContent)
	if req.URL.Path == "/base" { // the baseline's POSTs are timed by the baseline itself
		return
	}
	dest, err1 := strconv.Atoi(strings.TrimPrefix(req.URL.Path, "/d"))
	idx, err2 := strconv.Atoi(strings.TrimPrefix(req.Header.Get("webhook-id"), "bench-"))
	if err1 != nil || err2 != nil {
		r.bad.Add(1)
		return
	}
	if _, _, _, ok := telemetry.ParseTraceParent(req.Header.Get("traceparent")); ok {
		r.traced.Add(1)
	}
	r.mu.Lock()
	times := r.arrived[dest]
	if times == nil {
		times = make([]int64, r.capacity)
		r.arrived[dest] = times
	}
	first := idx < len(times) && times[idx] == 0
	if first {
		times[idx] = now.UnixNano()
	}
	r.mu.Unlock()
	if !first {
		r.dups.Add(1)
		return
	}
	r.n.Add(1)
	r.last.Store(now.UnixNano())
}

func (r *receiver) count() int         { return int(r.n.Load()) }
func (r *receiver) badSignatures() int { return int(r.bad.Load()) }
func (r *receiver) lastAt() time.Time  { return time.Unix(0, r.last.Load()) }

// wait blocks until want deliveries arrived.
func (r *receiver) wait(ctx context.Context, want int, within time.Duration) error {
	deadline := time.Now().Add(within)
	for r.count() < want {
		if time.Now().After(deadline) {
			return fmt.Errorf("bench: %d of %d deliveries after %s", r.count(), want, within)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

// latencies returns p50, p99 and max of arrival minus acceptance, in ms.
func (r *receiver) latencies(acceptedAt []int64) (p50, p99, maxMs float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var all []float64
	for _, times := range r.arrived {
		for i, at := range times {
			if at == 0 || i >= len(acceptedAt) || acceptedAt[i] == 0 {
				continue
			}
			all = append(all, max(0, float64(at-acceptedAt[i])/1e6))
		}
	}
	if len(all) == 0 {
		return 0, 0, 0
	}
	slices.Sort(all)
	pick := func(q float64) float64 { return all[min(len(all)-1, int(q*float64(len(all))))] }
	return pick(0.50), pick(0.99), all[len(all)-1]
}
