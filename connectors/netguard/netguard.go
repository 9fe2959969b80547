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
	return fmt.Sprintf("destination address %s is %s; set allow_private_network: true to allow it", addr, Reason(e.IP))
}

// blockedRange is a range of addresses and what it is, for the error.
type blockedRange struct {
	prefix netip.Prefix
	what   string
}

var blocked = []blockedRange{
	{netip.MustParsePrefix("0.0.0.0/8"), "unspecified"},
	{netip.MustParsePrefix("10.0.0.0/8"), "private"},
	{netip.MustParsePrefix("100.64.0.0/10"), "private (carrier-grade NAT)"},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local (cloud metadata)"},
	{netip.MustParsePrefix("172.16.0.0/12"), "private"},
	{netip.MustParsePrefix("192.0.0.0/24"), "reserved"},
	{netip.MustParsePrefix("192.168.0.0/16"), "private"},
	{netip.MustParsePrefix("198.18.0.0/15"), "reserved (benchmarking)"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
	{netip.MustParsePrefix("255.255.255.255/32"), "broadcast"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved"},
	{netip.MustParsePrefix("::/128"), "unspecified"},
	{netip.MustParsePrefix("::1/128"), "loopback"},
	{netip.MustParsePrefix("::/96"), "reserved (IPv4-compatible)"},
	{netip.MustParsePrefix("64:ff9b:1::/48"), "private (local NAT64)"},
	{netip.MustParsePrefix("fc00::/7"), "private"},
	{netip.MustParsePrefix("fe80::/10"), "link-local"},
	{netip.MustParsePrefix("fec0::/10"), "private (site-local)"},
	{netip.MustParsePrefix("ff00::/8"), "multicast"},
}

// Prefixes under which an IPv6 address carries an IPv4 one a gateway
// reaches: NAT64 (its last 4 bytes) and 6to4 (bytes 2 to 5).
var (
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour = netip.MustParsePrefix("2002::/16")
)

// IsBlocked reports whether ip is an address a destination may not reach
// without allow_private_network. IPv4-mapped IPv6 addresses, and NAT64 and
// 6to4 ones, are judged as the IPv4 address they carry.
func IsBlocked(ip netip.Addr) bool { return Reason(ip) != "" }

// Reason says why ip is blocked ("private", "loopback", …), or "" when it
// is not.
func Reason(ip netip.Addr) string {
	ip = embeddedIPv4(ip.Unmap().WithZone("")) // a zoned address matches no prefix
	if !ip.IsValid() {
		return "not a valid address"
	}
	for _, r := range blocked {
		if r.prefix.Contains(ip) {
			return r.what
		}
	}
	return ""
}

// embeddedIPv4 is the IPv4 address a NAT64 or 6to4 address leads to, or ip.
func embeddedIPv4(ip netip.Addr) netip.Addr {
	b := ip.As16()
	switch {
	case !ip.Is6():
		return ip
	case nat64.Contains(ip):
		return netip.AddrFrom4([4]byte(b[12:16]))
	case sixToFour.Contains(ip):
		return netip.AddrFrom4([4]byte(b[2:6]))
	}
	return ip
}

// DialContext returns a dial function that refuses, with a *BlockedError,
// any connection whose resolved address IsBlocked, unless allowPrivate. The
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
	if IsBlocked(ap.Addr()) {
		return &BlockedError{IP: ap.Addr().Unmap()}
	}
	return nil
}
