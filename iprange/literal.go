package iprange

import (
	"net/netip"
	"strconv"
	"strings"
)

// LiteralIP is the address a URL host denotes without any DNS lookup, in
// every form a C resolver's inet_aton or a browser accepts besides the
// usual ones: one to four parts, each decimal, hex (0x7f) or octal (0177),
// the last filling the remaining bytes ("2130706433", "0x7f000001",
// "0177.0.0.1" and "127.1" are all 127.0.0.1). A trailing dot is ignored.
// ok is false for anything that needs resolving.
func LiteralIP(host string) (ip netip.Addr, ok bool) {
	host = strings.TrimSuffix(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"), ".")
	if ip, err := netip.ParseAddr(host); err == nil {
		return ip, true
	}
	parts := strings.Split(host, ".")
	if len(parts) > 4 {
		return netip.Addr{}, false
	}
	var v uint64
	for i, p := range parts {
		n, ok := parsePart(p)
		last := i == len(parts)-1
		if !ok || (!last && n > 0xff) || (last && n >= 1<<(8*(4-i))) {
			return netip.Addr{}, false
		}
		if last {
			v |= n
		} else {
			v |= n << (8 * (3 - i))
		}
	}
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), true
}

// parsePart reads one part of an inet_aton address: 0x-prefixed hex,
// 0-prefixed octal or decimal, at most 32 bits.
func parsePart(p string) (uint64, bool) {
	base, digits := 10, p
	switch {
	case len(p) > 1 && (p[:2] == "0x" || p[:2] == "0X"):
		base, digits = 16, p[2:]
		if digits == "" { // inet_aton reads a bare 0x as 0
			return 0, true
		}
	case len(p) > 1 && p[0] == '0':
		base, digits = 8, p[1:]
	}
	if digits == "" || digits[0] == '+' || digits[0] == '-' {
		return 0, false
	}
	n, err := strconv.ParseUint(digits, base, 32)
	return n, err == nil
}
