package iprange

import (
	"net/netip"
	"testing"
)

func TestLiteralIP(t *testing.T) {
	tests := []struct {
		host string
		want string // "" = not a literal: it needs resolving
	}{
		{"127.0.0.1", "127.0.0.1"},
		{"2130706433", "127.0.0.1"},
		{"0x7f000001", "127.0.0.1"},
		{"0X7F000001", "127.0.0.1"},
		{"0177.0.0.1", "127.0.0.1"},
		{"0177.0.0.01", "127.0.0.1"},
		{"127.1", "127.0.0.1"},
		{"127.0.1", "127.0.0.1"},
		{"0x7f.1", "127.0.0.1"},
		{"127.0.0.1.", "127.0.0.1"},
		{"0", "0.0.0.0"},
		{"0x", "0.0.0.0"},
		{"2852039166", "169.254.169.254"},
		{"0xa9fea9fe", "169.254.169.254"},
		{"0251.0376.0251.0376", "169.254.169.254"},
		{"169.254.43518", "169.254.169.254"},
		{"10.1", "10.0.0.1"},
		{"4294967295", "255.255.255.255"},
		{"::1", "::1"},
		{"[::1]", "::1"},
		{"fe80::1%eth0", "fe80::1%eth0"},
		{"::ffff:127.0.0.1", "::ffff:127.0.0.1"},
		{"hooks.example.com", ""},
		{"4294967296", ""},     // more than 32 bits
		{"256.0.0.1", ""},      // a part over 255 before the last
		{"127.0.0.256", ""},    // the last of four parts over 255
		{"127.0.65536", ""},    // the last of three parts over 16 bits
		{"1.2.3.4.5", ""},      // five parts
		{"08.0.0.1", ""},       // 8 is not an octal digit
		{"0x7g000001", ""},     // g is not hex
		{"127..1", ""},         // an empty part
		{"+127.0.0.1", ""},     // a sign
		{"1_000", ""},          // an underscore
		{"", ""},               // nothing
		{"example.127", ""},    // a name ending in a number
		{"0x7f000001.com", ""}, // a name starting with one
	}
	for _, tc := range tests {
		t.Run(tc.host, func(t *testing.T) {
			ip, ok := LiteralIP(tc.host)
			if tc.want == "" {
				if ok {
					t.Fatalf("LiteralIP(%q) = %s, want no literal", tc.host, ip)
				}
				return
			}
			if !ok || ip != netip.MustParseAddr(tc.want) {
				t.Fatalf("LiteralIP(%q) = %s %v, want %s", tc.host, ip, ok, tc.want)
			}
		})
	}
}
