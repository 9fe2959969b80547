package webhook

import (
	"net"
	"net/http"
	"sync"

	"github.com/relaydev/relay/connectors/netguard"
)

// Transports is the connection pool a process's webhook destinations
// share: one per kind of dialing (internal addresses refused or allowed),
// keeping at most conns connections idle in all. Destinations on the same
// receiver share its connections, and how many stay open is a matter of
// configuration (engine.max_in_flight), not of how many destinations
// there are or how far their deliveries lag.
type Transports struct {
	conns    int
	resolver *net.Resolver

	mu      sync.Mutex
	byGuard [2]*http.Transport // [0] refuses internal addresses, [1] allows them
}

// NewTransports is a pool keeping up to conns connections idle; resolver
// nil is the system's.
func NewTransports(conns int, resolver *net.Resolver) *Transports {
	return &Transports{conns: max(1, conns), resolver: resolver}
}

// For is the transport of destinations with allow_private_network set as
// allowPrivate; nil for a nil pool.
func (t *Transports) For(allowPrivate bool) *http.Transport {
	if t == nil {
		return nil
	}
	i := 0
	if allowPrivate {
		i = 1
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.byGuard[i] == nil {
		t.byGuard[i] = newTransport(t.conns, netguard.DialContext(allowPrivate, t.resolver))
	}
	return t.byGuard[i]
}

// Close drops the idle connections.
func (t *Transports) Close() {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, tr := range t.byGuard {
		if tr != nil {
			tr.CloseIdleConnections()
		}
	}
}
