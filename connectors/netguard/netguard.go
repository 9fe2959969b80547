// Package netguard refuses connections to private, loopback, link-local and
// other internal addresses, checked on the resolved IP at dial time, so a DNS
// name that resolves there (or rebinds there) is caught too.
package netguard

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/relaydev/relay/iprange"
)

// BlockedError is a refused connection: Host is what was dialed, IP the
// address it resolved to.
type BlockedError struct {
	Host string
	IP   netip.Addr
}

func (e *BlockedError) Error() string {
	addr := e.IP.String()
	if e.Host != "" && e.Host != addr {
		addr += " (" + e.Host + ")"
	}
	return fmt.Sprintf("destination address %s is %s; set allow_private_network: true to allow it", addr, iprange.Reason(e.IP))
}

// DialContext returns a dial function that refuses, with a *BlockedError,
// any connection to an address iprange.IsBlocked, unless allowPrivate. The
// check runs on the address actually being connected to (net.Dialer's
// Control hook), so DNS rebinding cannot slip past it. A nil resolver is the
// system's.
func DialContext(allowPrivate bool, resolver *net.Resolver) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second, Resolver: resolver}
	if allowPrivate {
		return d.DialContext
	}
	d.Control = control
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := d.DialContext(ctx, network, addr)
		var be *BlockedError
		if errors.As(err, &be) {
			be.Host, _, _ = net.SplitHostPort(addr)
		}
		return conn, err
	}
}

// control refuses a blocked address just before connecting to it.
func control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return &BlockedError{Host: address}
	}
	if iprange.IsBlocked(ap.Addr()) {
		return &BlockedError{IP: ap.Addr().Unmap()}
	}
	return nil
}
