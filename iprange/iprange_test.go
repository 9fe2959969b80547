package iprange

import (
	"net/netip"
	"testing"
)

func TestIsBlocked(t *testing.T) {
	tests := []struct {
		ip     string
		reason string // "" = allowed
	}{
		{"127.0.0.1", "loopback"},
		{"127.255.0.9", "loopback"},
		{"10.1.2.3", "private"},
		{"172.16.0.1", "private"},
		{"172.31.255.255", "private"},
		{"192.168.1.1", "private"},
		{"100.64.0.1", "private (carrier-grade NAT)"},
		{"169.254.169.254", "link-local (cloud metadata)"},
		{"0.0.0.0", "unspecified"},
		{"224.0.0.1", "multicast"},
		{"255.255.255.255", "broadcast"},
		{"::1", "loopback"},
		{"::", "unspecified"},
		{"fe80::1", "link-local"},
		{"fe80::1%eth0", "link-local"},
		{"febf:ffff::1", "link-local"}, // the top of fe80::/10
		{"fec0::1", "private (site-local)"},
		{"fd00:ec2::254", "private"}, // the IPv6 cloud metadata address
		{"::7f00:1", "reserved (IPv4-compatible)"},
		{"::ffff:a9fe:a9fe", "link-local (cloud metadata)"},
		{"169.254.0.1", "link-local (cloud metadata)"},
		{"fc00::1", "private"},
		{"fd12:3456::1", "private"},
		{"ff02::1", "multicast"},
		{"::ffff:127.0.0.1", "loopback"},
		{"::ffff:10.0.0.1", "private"},
		{"::ffff:169.254.169.254", "link-local (cloud metadata)"},
		{"64:ff9b::a9fe:a9fe", "link-local (cloud metadata)"}, // NAT64 of 169.254.169.254
		{"2002:7f00:1::", "loopback"},                         // 6to4 of 127.0.0.1
		{"8.8.8.8", ""},
		{"172.32.0.1", ""},
		{"100.128.0.1", ""},
		{"93.184.216.34", ""},
		{"2606:4700::1111", ""},
		{"::ffff:8.8.8.8", ""},
		{"fe7f:ffff::1", ""}, // just below fe80::/10
		{"2001:db8::1", ""},
		{"64:ff9b::808:808", ""},
	}
	for _, tc := range tests {
		t.Run(tc.ip, func(t *testing.T) {
			ip := netip.MustParseAddr(tc.ip)
			if got := Reason(ip); got != tc.reason {
				t.Errorf("Reason(%s) = %q, want %q", tc.ip, got, tc.reason)
			}
			if got, want := IsBlocked(ip), tc.reason != ""; got != want {
				t.Errorf("IsBlocked(%s) = %v, want %v", tc.ip, got, want)
			}
		})
	}
	if !IsBlocked(netip.Addr{}) {
		t.Error("the zero Addr is not blocked")
	}
}
