package webhook

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relaydev/relay/config"
	"github.com/relaydev/relay/connectors/netguard"
	"github.com/relaydev/relay/connectors/netguard/dnstest"
	"github.com/relaydev/relay/relay/sink"
)

// TestRedirectsNeverFollowed: whatever redirect a receiver answers, the
// attempt fails on the 3xx and the Location target gets no request, not
// even on the retries inside an attempt.
func TestRedirectsNeverFollowed(t *testing.T) {
	var elsewhere atomic.Int32
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { elsewhere.Add(1) }))
	defer target.Close()
	for _, code := range []int{301, 302, 303, 307, 308} {
		t.Run(http.StatusText(code), func(t *testing.T) {
			var calls atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				calls.Add(1)
				http.Redirect(w, r, target.URL+"/stolen", code)
			}))
			defer srv.Close()
			at := newSink(t, dest(srv.URL, vectorSecret), Options{}).Deliver(context.Background(), delivery(t, 1))
			if kind, _ := sink.Classify(at.Err); at.Status != code || kind != sink.Retry {
				t.Fatalf("attempt = %+v, want a retried %d", at, code)
			}
			if !strings.Contains(at.Error, "redirect to "+target.URL+"/stolen not followed") {
				t.Errorf("error = %q", at.Error)
			}
			if calls.Load() != 1 {
				t.Errorf("the receiver got %d requests, want 1", calls.Load())
			}
		})
	}
	if n := elsewhere.Load(); n != 0 {
		t.Fatalf("the redirect target got %d requests", n)
	}
}

// TestDeliverRefusesLegacyIPHosts: a webhook URL written with a decimal,
// hex, octal or short IPv4 host, or a name a DNS server answers with an
// internal address, is refused at dial time for good: the receiver
// listening there is never reached.
func TestDeliverRefusesLegacyIPHosts(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { calls.Add(1) }))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	resolvers := []struct {
		name string
		r    *net.Resolver
	}{
		{"system", nil},
		{"answering 127.0.0.1", dnstest.Resolver(t, "127.0.0.1")},
		{"answering 169.254.169.254", dnstest.Resolver(t, "169.254.169.254")},
		{"answering fe80::1", dnstest.Resolver(t, "fe80::1")},
	}
	for _, res := range resolvers {
		for _, host := range []string{"2130706433", "0x7f000001", "0177.0.0.1", "127.1", "rebind.invalid"} {
			t.Run(res.name+"/"+host, func(t *testing.T) {
				d := dest("http://"+host+":"+port+"/hook", vectorSecret)
				d.AllowPrivateNetwork = false
				d.Timeout = config.Duration(5 * time.Second)
				at := newSink(t, d, Options{Resolver: res.r}).Deliver(context.Background(), delivery(t, 1))
				if at.Err == nil || at.Status != 0 {
					t.Fatalf("attempt = %+v, want it refused", at)
				}
				var blocked *netguard.BlockedError
				resolves := res.r != nil && (host == "0x7f000001" || host == "rebind.invalid") // Go's resolver asks DNS only for these
				switch {
				case errors.As(at.Err, &blocked):
					if kind, _ := sink.Classify(at.Err); kind != sink.Permanent {
						t.Errorf("a refused address is retried: %v", at.Err)
					}
				case resolves:
					t.Errorf("err = %v, want the resolved address refused", at.Err)
				}
			})
		}
	}
	if n := calls.Load(); n != 0 {
		t.Fatalf("the receiver on 127.0.0.1 was reached %d times", n)
	}
}
