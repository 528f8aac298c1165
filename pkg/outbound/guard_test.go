package outbound

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// errConnectReached stops a dial the guard let through, so that the test
// never connects anywhere.
var errConnectReached = errors.New("the guard let the address through")

// blockedRanges lists every range the guard refuses, with addresses inside
// it and addresses just outside it that the guard lets through. A range
// whose neighbours are blocked too has no outside address here; its
// neighbours' rows have them.
var blockedRanges = []struct {
	prefix  string
	inside  []string
	outside []string
}{
	{"0.0.0.0/8 (this network)", []string{"0.0.0.0", "0.0.0.1", "0.1.2.3", "0.255.255.255"}, []string{"1.0.0.0", "1.1.1.1"}},
	{"10.0.0.0/8 (private)", []string{"10.0.0.0", "10.255.255.255"}, []string{"9.255.255.255", "11.0.0.0"}},
	{"100.64.0.0/10 (carrier-grade NAT)", []string{"100.64.0.0", "100.127.255.255"}, []string{"100.63.255.255", "100.128.0.0"}},
	{"127.0.0.0/8 (loopback)", []string{"127.0.0.1", "127.255.255.255"}, []string{"126.255.255.255", "128.0.0.0"}},
	{"169.254.0.0/16 (link-local, metadata)", []string{"169.254.0.0", "169.254.169.254"}, []string{"169.253.255.255", "169.255.0.0"}},
	{"172.16.0.0/12 (private)", []string{"172.16.0.0", "172.31.255.255"}, []string{"172.15.255.255", "172.32.0.0"}},
	{"192.0.0.0/24 (IETF protocol assignments)", []string{"192.0.0.0", "192.0.0.255"}, []string{"191.255.255.255", "192.0.1.0"}},
	{"192.168.0.0/16 (private)", []string{"192.168.0.0", "192.168.255.255"}, []string{"192.167.255.255", "192.169.0.0"}},
	{"198.18.0.0/15 (benchmarking)", []string{"198.18.0.0", "198.19.255.255"}, []string{"198.17.255.255", "198.20.0.0"}},
	{"224.0.0.0/4 (multicast)", []string{"224.0.0.1", "239.255.255.250"}, []string{"223.255.255.255"}},
	{"240.0.0.0/4 (reserved)", []string{"240.0.0.0", "254.255.255.255"}, nil},
	{"255.255.255.255/32 (broadcast)", []string{"255.255.255.255"}, nil},

	{"::/96 (unspecified, loopback, IPv4-compatible)", []string{"::", "::1", "::2", "::a00:1", "::808:808", "::ffff:ffff"}, []string{"::1:0:0"}},
	{"::ffff:0:0/96 (IPv4-mapped)", []string{"::ffff:127.0.0.1", "::ffff:10.1.2.3", "::ffff:0.1.2.3"}, []string{"::ffff:8.8.8.8"}},
	{"64:ff9b::/96 (NAT64) embedding an internal IPv4", []string{"64:ff9b::", "64:ff9b::a00:1", "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "64:ff9b::c0a8:101", "64:ff9b::e000:1", "64:ff9b::ffff:ffff"}, []string{"64:ff9b::808:808", "64:ff9b::101:101", "64:ff9b::1:0:0"}},
	{"64:ff9b:1::/48 (local-use NAT64)", []string{"64:ff9b:1::", "64:ff9b:1::808:808", "64:ff9b:1:ffff:ffff:ffff:ffff:ffff"}, []string{"64:ff9b:0:ffff::1", "64:ff9b:2::"}},
	{"2001::/32 (Teredo)", []string{"2001::", "2001::1", "2001:0:4136:e378:8000:63bf:3fff:fdd2", "2001:0:ffff:ffff:ffff:ffff:ffff:ffff"}, []string{"2000:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "2001:1::", "2001:4860:4860::8888"}},
	{"2002::/16 (6to4) embedding an internal IPv4", []string{"2002::1", "2002:a00:1::1", "2002:7f00:1::1", "2002:a9fe:a9fe::1", "2002:c0a8:101:1::1", "2002:ac10::1", "2002:6440::1", "2002:ffff:ffff::1"}, []string{"2002:808:808::1", "2002:101:101:ffff::1", "2003::"}},
	{"fc00::/7 (unique local)", []string{"fc00::", "fd12:3456::1", "fd00:ec2::254", "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"}, []string{"fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "fe00::"}},
	{"fe80::/10 (link-local)", []string{"fe80::", "fe80::1", "febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff"}, []string{"fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff"}},
	{"fec0::/10 (site-local)", []string{"fec0::", "fec0::1", "feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"}, nil},
	{"ff00::/8 (multicast)", []string{"ff00::", "ff01::1", "ff02::1", "ff05::1:3", "ff0e::101", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"}, nil},
}

// TestSendRefusesEveryBlockedRangeAtDialTime sends a request through the
// partner's HTTP client to an address inside and just outside each
// blocked range. The dialer's guard must refuse every inside address before
// the connection is made (the hook behind the guard never sees it) and let
// every outside address through to the connect step (where the hook stops
// it, so nothing leaves the machine).
func TestSendRefusesEveryBlockedRangeAtDialTime(t *testing.T) {
	t.Parallel()
	for _, r := range blockedRanges {
		t.Run(r.prefix, func(t *testing.T) {
			t.Parallel()
			var (
				mu   sync.Mutex
				seen []string
			)
			hc := NewHTTPClient(HTTPConfig{Timeout: 5 * time.Second, afterGuard: func(address string) error {
				mu.Lock()
				defer mu.Unlock()
				seen = append(seen, address)
				return errConnectReached
			}})
			c := &Client{HTTP: hc}
			send := func(addr string) error {
				ip := netip.MustParseAddr(addr)
				resp, err := c.Do(context.Background(), get("http://"+net.JoinHostPort(ip.String(), "80")+"/hook"))
				if err == nil {
					Drain(resp.Body)
				}
				return err
			}
			for _, addr := range r.inside {
				mu.Lock()
				before := len(seen)
				mu.Unlock()
				err := send(addr)
				if !errors.Is(err, ErrBlockedAddress) {
					t.Errorf("%s: %v, want ErrBlockedAddress", addr, err)
				}
				mu.Lock()
				if len(seen) != before {
					t.Errorf("%s: the dial reached the connect step (%v) before it was refused", addr, seen[before:])
				}
				mu.Unlock()
			}
			for _, addr := range r.outside {
				err := send(addr)
				if !errors.Is(err, errConnectReached) {
					t.Errorf("%s (just outside): %v, want the guard to let it through", addr, err)
				}
			}
			if len(r.outside) > 0 {
				mu.Lock()
				defer mu.Unlock()
				if len(seen) != len(r.outside) {
					t.Errorf("the connect step saw %v, want only the %d outside addresses", seen, len(r.outside))
				}
			}
		})
	}
}

// TestAllowPrivateNetworkLiftsEveryRange: with allow_private_network, every
// blocked address reaches the connect step.
func TestAllowPrivateNetworkLiftsEveryRange(t *testing.T) {
	t.Parallel()
	var reached atomic.Int64
	hc := NewHTTPClient(HTTPConfig{Timeout: 5 * time.Second, AllowPrivateNetwork: true, afterGuard: func(string) error {
		reached.Add(1)
		return errConnectReached
	}})
	c := &Client{HTTP: hc}
	for _, r := range blockedRanges {
		for _, addr := range r.inside {
			before := reached.Load()
			ip := netip.MustParseAddr(addr)
			_, err := c.Do(context.Background(), get("http://"+net.JoinHostPort(ip.String(), "80")+"/"))
			if !errors.Is(err, errConnectReached) || reached.Load() == before {
				t.Errorf("%s with allow_private_network: %v, want it let through to the connect step", addr, err)
			}
		}
	}
}

// TestBlockedErrorNamesTheRange: the refusal says what the address is, so
// that an operator knows whether allow_private_network is what they want.
func TestBlockedErrorNamesTheRange(t *testing.T) {
	t.Parallel()
	tests := []struct{ address, want string }{
		{"0.1.2.3:80", "0.1.2.3 is in 0.0.0.0/8"},
		{"[2002:a00:1::1]:443", "2002:a00:1::1 is a 6to4 address embedding 10.0.0.1"},
		{"[64:ff9b::7f00:1]:443", "64:ff9b::7f00:1 is a NAT64 address embedding 127.0.0.1"},
		{"[2001:0:4136:e378:8000:63bf:3fff:fdd2]:443", "is in 2001::/32 (Teredo)"},
		{"[fec0::1]:443", "fec0::1 is in fec0::/10"},
	}
	for _, tt := range tests {
		err := blockPrivate("tcp", tt.address, nil)
		if !errors.Is(err, ErrBlockedAddress) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("blockPrivate(%s) = %v, want ErrBlockedAddress saying %q", tt.address, err, tt.want)
		}
	}
}
