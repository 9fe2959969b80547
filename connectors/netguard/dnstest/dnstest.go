// Package dnstest is a DNS server for tests, on loopback, that answers
// every name with one address: what a hostile or rebinding DNS name does.
package dnstest

import (
	"context"
	"net"
	"net/netip"
	"testing"
)

// Resolver answers every name with ip, through a DNS server of its own
// on loopback, so the dial-time check sees a name resolve.
func Resolver(t *testing.T, ip string) *net.Resolver {
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
