// Package netguard refuses connections to private, loopback, link-local and
// other internal addresses, checked on the resolved IP at dial time, so a DNS
// name that resolves there (or rebinds there) is caught too.
package netguard

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"
)

// BlockedError is a refused connection.
type BlockedError struct {
	Host string
	IP   netip.Addr
}

func (e *BlockedError) Error() string {
	return fmt.Sprintf("destination address %s (%s) is private, loopback, link-local or otherwise internal; set allow_private_network: true to allow it", e.IP, e.Host)
}

var blocked = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),      // "this network"
	netip.MustParsePrefix("10.0.0.0/8"),     // private
	netip.MustParsePrefix("100.64.0.0/10"),  // carrier-grade NAT
	netip.MustParsePrefix("127.0.0.0/8"),    // loopback
	netip.MustParsePrefix("169.254.0.0/16"), // link-local, cloud metadata
	netip.MustParsePrefix("172.16.0.0/12"),  // private
	netip.MustParsePrefix("192.0.0.0/24"),   // IETF protocol assignments
	netip.MustParsePrefix("192.168.0.0/16"), // private
	netip.MustParsePrefix("198.18.0.0/15"),  // benchmarking
	netip.MustParsePrefix("224.0.0.0/4"),    // multicast
	netip.MustParsePrefix("240.0.0.0/4"),    // reserved, broadcast
	netip.MustParsePrefix("::/128"),         // unspecified
	netip.MustParsePrefix("::1/128"),        // loopback
	netip.MustParsePrefix("64:ff9b:1::/48"), // local-use NAT64
	netip.MustParsePrefix("fc00::/7"),       // unique local
	netip.MustParsePrefix("fe80::/10"),      // link-local
	netip.MustParsePrefix("ff00::/8"),       // multicast
}

// IsBlocked reports whether ip is an address a destination may not reach
// without allow_private_network. IPv4-mapped IPv6 addresses are judged as
// the IPv4 address they carry.
func IsBlocked(ip netip.Addr) bool {
	ip = ip.Unmap()
	if !ip.IsValid() {
		return true
	}
	for _, p := range blocked {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// Dialer returns a net.Dialer whose Control hook refuses blocked addresses
// (unless allowPrivate) on the address actually being connected to.
func Dialer(allowPrivate bool, resolver *net.Resolver) *net.Dialer {
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second, Resolver: resolver}
	if !allowPrivate {
		d.Control = control
	}
	return d
}

// DialContext is Dialer(...).DialContext, wrapping refusals as *BlockedError.
func DialContext(allowPrivate bool, resolver *net.Resolver) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return Dialer(allowPrivate, resolver).DialContext
}

func control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return &BlockedError{Host: address}
	}
	if IsBlocked(ap.Addr()) {
		return &BlockedError{Host: address, IP: ap.Addr().Unmap()}
	}
	return nil
}
