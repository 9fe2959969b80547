// Package iprange names the addresses a destination may not reach without
// allow_private_network (private, loopback, link-local and other internal
// ranges) and reads a URL host written as an address. config checks a
// destination's URL against them, and netguard each address it dials.
package iprange

import "net/netip"

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
