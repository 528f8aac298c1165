package outbound

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
)

// ErrBlockedAddress means a partner's URL resolved to an address that
// Switchyard may not reach unless allow_private_network is set: one of
// internalRanges (loopback, private, link-local where cloud metadata
// services live, multicast, broadcast, reserved, the transition ranges
// that reach them), or a 6to4 or NAT64 address embedding such an IPv4. It
// is checked on the resolved address at dial time, so a DNS name that
// points inward is caught too.
var ErrBlockedAddress = errors.New("partner address is not allowed")

// blockPrivate is a net.Dialer Control function that refuses internal
// addresses. It runs after the socket is made and before it connects.
func blockPrivate(network, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Errorf("%w: %s", ErrBlockedAddress, address)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("%w: %s", ErrBlockedAddress, address)
	}
	if why := blockedReason(ip); why != "" {
		return fmt.Errorf("%w: %s is %s (set allow_private_network on the destination or polling source to permit it)", ErrBlockedAddress, ip.Unmap(), why)
	}
	return nil
}

// PublicAddr reports whether ip is an address the guard lets a partner's
// client reach: not in internalRanges, and not a 6to4 or NAT64 address
// whose embedded IPv4 is.
func PublicAddr(ip netip.Addr) bool { return blockedReason(ip) == "" }

// blockedReason says why ip may not be reached ("in 10.0.0.0/8
// (private)"), or "" when it may.
func blockedReason(ip netip.Addr) string {
	ip = ip.Unmap()
	for _, r := range internalRanges {
		if r.prefix.Contains(ip) {
			return "in " + r.prefix.String() + " (" + r.name + ")"
		}
	}
	// The two translation ranges whose IPv4 is at a fixed place: the
	// packet ends up at that IPv4, so it is judged as that IPv4 would be
	// (decision 0406).
	if !ip.Is6() {
		return ""
	}
	b := ip.As16()
	switch {
	case sixToFour.Contains(ip): // 2002:AABB:CCDD::/48 routes to AA.BB.CC.DD
		v4 := netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]})
		if why := blockedReason(v4); why != "" {
			return fmt.Sprintf("a 6to4 address embedding %s, which is %s", v4, why)
		}
	case nat64WellKnown.Contains(ip): // 64:ff9b::AABB:CCDD translates to AA.BB.CC.DD
		v4 := netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
		if why := blockedReason(v4); why != "" {
			return fmt.Sprintf("a NAT64 address embedding %s, which is %s", v4, why)
		}
	}
	return ""
}

var (
	sixToFour      = netip.MustParsePrefix("2002::/16")    // RFC 3056
	nat64WellKnown = netip.MustParsePrefix("64:ff9b::/96") // RFC 6052
)

// internalRanges are refused whole. IPv4-mapped addresses (::ffff:0:0/96)
// are judged as their IPv4.
var internalRanges = []struct {
	prefix netip.Prefix
	name   string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "this network"}, // Linux connects 0.0.0.0 to the local host
	{netip.MustParsePrefix("10.0.0.0/8"), "private"},
	{netip.MustParsePrefix("100.64.0.0/10"), "carrier-grade NAT"},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local, where cloud metadata services answer"},
	{netip.MustParsePrefix("172.16.0.0/12"), "private"},
	{netip.MustParsePrefix("192.0.0.0/24"), "IETF protocol assignments"},
	{netip.MustParsePrefix("192.168.0.0/16"), "private"},
	{netip.MustParsePrefix("198.18.0.0/15"), "benchmarking"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
	{netip.MustParsePrefix("255.255.255.255/32"), "broadcast"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved"},

	{netip.MustParsePrefix("::/96"), "unspecified, loopback or IPv4-compatible"}, // ::, ::1 and the deprecated ::a.b.c.d
	{netip.MustParsePrefix("64:ff9b:1::/48"), "local-use NAT64"},                 // the IPv4's place is the operator's choice (decision 0406)
	{netip.MustParsePrefix("2001::/32"), "Teredo"},                               // the client's IPv4 is obfuscated and the relay is anyone's
	{netip.MustParsePrefix("fc00::/7"), "unique local"},                          // fd00:ec2::254 is AWS's metadata service
	{netip.MustParsePrefix("fe80::/10"), "link-local"},
	{netip.MustParsePrefix("fec0::/10"), "site-local"},
	{netip.MustParsePrefix("ff00::/8"), "multicast"},
}
