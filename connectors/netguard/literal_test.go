package netguard

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync/atomic"
	"testing"

	"github.com/relaydev/relay/connectors/netguard/dnstest"
	"github.com/relaydev/relay/iprange"
)

// TestDialRefusesLegacyIPForms: a host written as 2130706433, 0x7f000001,
// 0177.0.0.1 or 127.1 reaches nothing, whichever way it resolves. A C
// resolver (GODEBUG=netdns=cgo) reads them as 127.0.0.1 and the guard
// refuses that; Go's own resolver refuses all-numeric names, and a DNS
// server may answer them with anything: the guard judges the answer. The
// listener behind 127.0.0.1 is never reached; allowed, it is.
func TestDialRefusesLegacyIPForms(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	resolvers := []struct {
		name string
		r    *net.Resolver
	}{
		{"system resolver", nil},
		{"DNS answering 127.0.0.1", dnstest.Resolver(t, "127.0.0.1")},
		{"DNS answering 169.254.169.254", dnstest.Resolver(t, "169.254.169.254")},
		{"DNS answering ::1", dnstest.Resolver(t, "::1")},
	}
	hosts := []string{"2130706433", "0x7f000001", "0177.0.0.1", "127.1", "0x7f.1", "017700000001", "127.0.0.1.", "localhost", "rebind.example"}
	for _, res := range resolvers {
		for _, host := range hosts {
			t.Run(res.name+"/"+host, func(t *testing.T) {
				conn, err := DialContext(false, res.r)(context.Background(), "tcp", net.JoinHostPort(host, port))
				if err == nil {
					conn.Close()
					t.Fatalf("dial %s connected", host)
				}
				var be *BlockedError
				var dnsErr *net.DNSError
				switch {
				case errors.As(err, &be):
					if !iprange.IsBlocked(be.IP) || be.Host != host {
						t.Errorf("refused with %+v", be)
					}
					t.Logf("refused: %v", be)
				case errors.As(err, &dnsErr):
					t.Logf("not resolved: %v", dnsErr) // nothing to connect to
				default:
					t.Errorf("dial %s = %v, want a BlockedError or a DNS error", host, err)
				}
			})
		}
	}
	if n := conns.Load(); n != 0 {
		t.Fatalf("the loopback listener got %d connections", n)
	}
	t.Run("a DNS answer is what the guard judges", func(t *testing.T) {
		_, err := DialContext(false, dnstest.Resolver(t, "127.0.0.1"))(context.Background(), "tcp", net.JoinHostPort("0x7f000001", port))
		var be *BlockedError
		if !errors.As(err, &be) || be.IP != netip.MustParseAddr("127.0.0.1") {
			t.Fatalf("dial = %v, want refused as 127.0.0.1", err)
		}
	})
	t.Run("allowed, the same name connects", func(t *testing.T) {
		conn, err := DialContext(true, dnstest.Resolver(t, "127.0.0.1"))(context.Background(), "tcp", net.JoinHostPort("0x7f000001", port))
		if err != nil {
			t.Fatalf("allowed dial: %v", err)
		}
		conn.Close()
	})
}
