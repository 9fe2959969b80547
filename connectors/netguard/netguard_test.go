package netguard

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/relaydev/relay/connectors/netguard/dnstest"
)

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
			dial := DialContext(false, dnstest.Resolver(t, tc.resolvesTo))
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
		dial := DialContext(true, dnstest.Resolver(t, "127.0.0.1"))
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
