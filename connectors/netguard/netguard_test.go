package netguard

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

func TestIsBlocked(t *testing.T) {
	tests := []struct {
		ip   string
		want bool
	}{
		{"127.0.0.1", true}, {"127.255.0.9", true}, {"10.1.2.3", true}, {"172.16.0.1", true}, {"172.31.255.255", true},
		{"192.168.1.1", true}, {"169.254.169.254", true}, {"100.64.0.1", true}, {"0.0.0.0", true},
		{"224.0.0.1", true}, {"255.255.255.255", true}, {"::1", true}, {"::", true}, {"fe80::1", true},
		{"fc00::1", true}, {"fd12:3456::1", true}, {"ff02::1", true},
		{"::ffff:127.0.0.1", true}, {"::ffff:10.0.0.1", true}, {"::ffff:169.254.169.254", true},
		{"8.8.8.8", false}, {"172.32.0.1", false}, {"93.184.216.34", false}, {"2606:4700::1111", false}, {"::ffff:8.8.8.8", false},
	}
	for _, tc := range tests {
		if got := IsBlocked(netip.MustParseAddr(tc.ip)); got != tc.want {
			t.Errorf("IsBlocked(%s) = %v, want %v", tc.ip, got, tc.want)
		}
	}
}

// fakeResolver answers every name with the given address, through a DNS
// server of its own on loopback, so the dial-time check sees a name resolve.
func fakeResolver(t *testing.T, ip string) *net.Resolver {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go serveDNS(pc, netip.MustParseAddr(ip))
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", pc.LocalAddr().String())
	}}
}

// serveDNS answers A queries with ip and everything else with no records.
func serveDNS(pc net.PacketConn, ip netip.Addr) {
	buf := make([]byte, 512)
	for {
		n, addr, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		q := buf[:n]
		if n < 12 {
			continue
		}
		// question ends after the name's zero byte and 4 bytes of type/class
		end := 12
		for end < n && q[end] != 0 {
			end += int(q[end]) + 1
		}
		end += 5
		if end > n {
			continue
		}
		qtype := int(q[end-4])<<8 | int(q[end-3])
		resp := append([]byte{}, q[:end]...)
		resp[2] |= 0x84 // response, authoritative
		resp[3] = 0x80  // recursion available
		resp[6], resp[7] = 0, 0
		if qtype == 1 && ip.Is4() {
			resp[7] = 1
			a := ip.As4()
			resp = append(resp, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, a[0], a[1], a[2], a[3])
		}
		resp[8], resp[9], resp[10], resp[11] = 0, 0, 0, 0
		_, _ = pc.WriteTo(resp, addr)
	}
}

func TestDialRefusesNameResolvingToPrivate(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	resolver := fakeResolver(t, "127.0.0.1")

	dial := DialContext(false, resolver)
	_, err := dial(context.Background(), "tcp", net.JoinHostPort("hooks.example.com", port))
	var be *BlockedError
	if !errors.As(err, &be) || be.IP.String() != "127.0.0.1" {
		t.Fatalf("dial = %v, want a BlockedError for 127.0.0.1", err)
	}
	if !strings.Contains(err.Error(), "allow_private_network") {
		t.Errorf("error %q does not say how to allow it", err)
	}

	conn, err := DialContext(true, resolver)(context.Background(), "tcp", net.JoinHostPort("hooks.example.com", port))
	if err != nil {
		t.Fatalf("allowed dial: %v", err)
	}
	conn.Close()
}

func TestDialRefusesLiteralAddresses(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:1", "[::1]:1", "[::ffff:127.0.0.1]:1", "169.254.169.254:80", "10.0.0.1:80"} {
		_, err := DialContext(false, nil)(context.Background(), "tcp", addr)
		var be *BlockedError
		if !errors.As(err, &be) {
			t.Errorf("dial %s = %v, want BlockedError", addr, err)
		}
	}
}
