// Package clientlimit bounds what one client address may do at a rate:
// sign-ins on the dashboard's form, and requests with a wrong bearer token
// on the APIs, so a token cannot be guessed at the speed of the network.
package clientlimit

import (
	"net"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// maxClients bounds the addresses remembered; a flood of addresses starts
// the count over rather than grow it.
const maxClients = 10000

// PerClient is a token bucket per client address (the host of a
// RemoteAddr, without its port).
type PerClient struct {
	r     rate.Limit
	burst int
	mu    sync.Mutex
	m     map[string]*rate.Limiter
}

// New allows each client burst events at once and r a second after that.
func New(r rate.Limit, burst int) *PerClient {
	return &PerClient{r: r, burst: burst, m: map[string]*rate.Limiter{}}
}

func (p *PerClient) limiter(addr string) *rate.Limiter {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	lim, ok := p.m[host]
	if !ok {
		if len(p.m) >= maxClients {
			clear(p.m)
		}
		lim = rate.NewLimiter(p.r, p.burst)
		p.m[host] = lim
	}
	return lim
}

// Allow takes one event of the client's allowance, if it has one left.
func (p *PerClient) Allow(addr string) bool { return p.limiter(addr).Allow() }

// Wait is how long the client must wait before its next event is allowed
// (0 when it may go on), without taking one.
func (p *PerClient) Wait(addr string) time.Duration {
	tokens := p.limiter(addr).Tokens()
	if tokens >= 1 || p.r <= 0 {
		return 0
	}
	return time.Duration(float64(time.Second) * (1 - tokens) / float64(p.r))
}
