package netguard

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
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

// fakeResolver answers every name with ip, through a DNS server of its own
// on loopback, so the dial-time check sees a name resolve.
func fakeResolver(t *testing.T, ip string) *net.Resolver {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		serveDNS(pc, netip.MustParseAddr(ip))
	}()
	t.Cleanup(func() {
		pc.Close()
		<-done
	})
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", pc.LocalAddr().String())
	}}
}

// serveDNS answers A queries with ip when it is IPv4, AAAA queries with ip
// when it is IPv6, and everything else with no records, until pc closes.
func serveDNS(pc net.PacketConn, ip netip.Addr) {
	buf := make([]byte, 512)
	for {
		n, addr, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		if resp := answer(buf[:n], ip); resp != nil {
			_, _ = pc.WriteTo(resp, addr)
		}
	}
}

// answer builds the response to one DNS query, nil if it is malformed.
func answer(q []byte, ip netip.Addr) []byte {
	if len(q) < 12 {
		return nil
	}
	end := 12 // the question's name, then 2 bytes of type and 2 of class
	for end < len(q) && q[end] != 0 {
		end += int(q[end]) + 1
	}
	end += 5
	if end > len(q) {
		return nil
	}
	qtype := int(q[end-4])<<8 | int(q[end-3])
	resp := append([]byte{}, q[:end]...)
	resp[2] |= 0x84 // response, authoritative
	resp[3] = 0x80  // recursion available
	resp[6], resp[7], resp[8], resp[9], resp[10], resp[11] = 0, 0, 0, 0, 0, 0
	switch {
	case qtype == 1 && ip.Is4():
		resp[7] = 1
		a := ip.As4()
		resp = append(resp, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4)
		resp = append(resp, a[:]...)
	case qtype == 28 && ip.Is6():
		resp[7] = 1
		a := ip.As16()
		resp = append(resp, 0xc0, 12, 0, 28, 0, 1, 0, 0, 0, 60, 0, 16)
		resp = append(resp, a[:]...)
	}
	return resp
}

func TestDialRefusesNameResolvingToPrivate(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	tests := []struct {
		resolvesTo string
		wantErr    string
	}{
		{"127.0.0.1", "destination address 127.0.0.1 (hooks.example.com) is loopback; set allow_private_network: true to allow it"},
		{"::1", "destination address ::1 (hooks.example.com) is loopback; set allow_private_network: true to allow it"},
		{"10.0.0.1", "destination address 10.0.0.1 (hooks.example.com) is private; set allow_private_network: true to allow it"},
	}
	for _, tc := range tests {
		t.Run(tc.resolvesTo, func(t *testing.T) {
			dial := DialContext(false, fakeResolver(t, tc.resolvesTo))
			conn, err := dial(context.Background(), "tcp", net.JoinHostPort("hooks.example.com", port))
			if err == nil {
				conn.Close()
			}
			var be *BlockedError
			if !errors.As(err, &be) || be.IP != netip.MustParseAddr(tc.resolvesTo) || be.Host != "hooks.example.com" {
				t.Fatalf("dial = %v, want a BlockedError for %s", err, tc.resolvesTo)
			}
			if be.Error() != tc.wantErr {
				t.Errorf("error = %q\nwant    %q", be.Error(), tc.wantErr)
			}
		})
	}
	t.Run("allowed", func(t *testing.T) {
		dial := DialContext(true, fakeResolver(t, "127.0.0.1"))
		conn, err := dial(context.Background(), "tcp", net.JoinHostPort("hooks.example.com", port))
		if err != nil {
			t.Fatalf("allowed dial: %v", err)
		}
		conn.Close()
	})
}

func TestDialRefusesLiteralAddresses(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:1", "[::1]:1", "[::ffff:127.0.0.1]:1", "169.254.169.254:80", "10.0.0.1:80", "[fe80::1%lo]:80"} {
		t.Run(addr, func(t *testing.T) {
			conn, err := DialContext(false, nil)(context.Background(), "tcp", addr)
			if err == nil {
				conn.Close()
			}
			var be *BlockedError
			if !errors.As(err, &be) {
				t.Errorf("dial %s = %v, want BlockedError", addr, err)
			}
		})
	}
}
