package config

import (
	"strings"
	"testing"
)

// TestURLPrivateHosts: validate refuses a destination URL whose host is an
// internal address however it is written, and says what it is; names are
// left to the dial-time guard, and allow_private_network allows them all.
func TestURLPrivateHosts(t *testing.T) {
	tests := []struct {
		host string
		want string // "" = accepted
	}{
		{"127.0.0.1", "host 127.0.0.1 is a loopback address"},
		{"2130706433", "host 2130706433 is 127.0.0.1, a loopback address"},
		{"0x7f000001", "host 0x7f000001 is 127.0.0.1, a loopback address"},
		{"0177.0.0.1", "host 0177.0.0.1 is 127.0.0.1, a loopback address"},
		{"127.1", "host 127.1 is 127.0.0.1, a loopback address"},
		{"127.0.0.1.", "host 127.0.0.1. is 127.0.0.1, a loopback address"},
		{"0", "host 0 is 0.0.0.0, an unspecified address"},
		{"169.254.169.254", "host 169.254.169.254 is a link-local (cloud metadata) address"},
		{"2852039166", "host 2852039166 is 169.254.169.254, a link-local (cloud metadata) address"},
		{"0xa9.0xfe.0xa9.0xfe", "host 0xa9.0xfe.0xa9.0xfe is 169.254.169.254, a link-local (cloud metadata) address"},
		{"10.0.0.5", "host 10.0.0.5 is a private address"},
		{"012.1", "host 012.1 is 10.0.0.1, a private address"},
		{"100.64.0.1", "host 100.64.0.1 is a private (carrier-grade NAT) address"},
		{"198.18.0.1", "host 198.18.0.1 is a reserved (benchmarking) address"},
		{"[::1]", "host ::1 is a loopback address"},
		{"[::ffff:169.254.169.254]", "host ::ffff:169.254.169.254 is a link-local (cloud metadata) address"},
		{"[fe80::1]", "host fe80::1 is a link-local address"},
		{"[fe80::1%25eth0]", "host fe80::1%eth0 is a link-local address"},
		{"[febf::1]", "host febf::1 is a link-local address"},
		{"[fd00:ec2::254]", "host fd00:ec2::254 is a private address"},
		{"[64:ff9b::a9fe:a9fe]", "host 64:ff9b::a9fe:a9fe is a link-local (cloud metadata) address"},
		{"[2002:7f00:1::]", "host 2002:7f00:1:: is a loopback address"},
		{"localhost", "host localhost is a loopback address"},
		{"LocalHost.", "host LocalHost. is a loopback address"},
		{"api.localhost", "host api.localhost is a loopback address"},
		{"hooks.example.com", ""},
		{"8.8.8.8", ""},
		{"134744072", ""}, // 8.8.8.8
		{"[2606:4700::1111]", ""},
		{"0x7f000001.example.com", ""},
	}
	for _, tc := range tests {
		t.Run(tc.host, func(t *testing.T) {
			for _, allow := range []bool{false, true} {
				yaml := "ingest: {tokens: [t]}\nadmin: {token: a}\ndestinations: [{name: a, type: webhook, url: 'http://" + tc.host + ":8080/x', secrets: ['whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'], allow_private_network: " + map[bool]string{false: "false", true: "true"}[allow] + "}]\n"
				_, err := Parse("x.yaml", []byte(yaml), env(nil))
				want := tc.want
				if allow {
					want = ""
				}
				switch {
				case want == "" && err != nil:
					t.Errorf("allow_private_network: %v: error = %v, want none", allow, err)
				case want != "" && (err == nil || !strings.HasSuffix(err.Error(), "destinations[0].url: "+want+"; set allow_private_network: true to allow it")):
					t.Errorf("error = %v\nwant    %q", err, want)
				}
			}
		})
	}
}

// TestURLErrorsHideCredentials: a URL that is refused is not repeated
// with its user, password or query, which may carry a token.
func TestURLErrorsHideCredentials(t *testing.T) {
	for _, url := range []string{"ftp://user:hunter2-pw@x.example/?token=hunter2-tok", "hooks.example.com/x?token=hunter2-tok", "http://[::1/?token=hunter2-tok"} {
		yaml := "ingest: {tokens: [t]}\nadmin: {token: a}\ndestinations: [{name: a, type: webhook, url: '" + url + "', secrets: ['whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw']}]\n"
		_, err := Parse("x.yaml", []byte(yaml), env(nil))
		if err == nil || !strings.Contains(err.Error(), "want an absolute http:// or https:// URL") {
			t.Fatalf("%s: error = %v", url, err)
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("error leaks a credential: %v", err)
		}
	}
}
