package outbound

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
)

// ErrBlockedAddress means a partner's URL resolved to an address that
// Switchyard may not reach unless allow_private_network is set: loopback,
// private, link-local (cloud metadata services live there), unspecified or
// multicast. It is checked on the resolved address at dial time, so a DNS
// name that points inward is caught too.
var ErrBlockedAddress = errors.New("partner address is not allowed")

// blockPrivate is a net.Dialer Control function that refuses internal
// addresses.
func blockPrivate(network, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Errorf("%w: %s", ErrBlockedAddress, address)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("%w: %s", ErrBlockedAddress, address)
	}
	if !PublicAddr(ip) {
		return fmt.Errorf("%w: %s is a loopback, private or link-local address (set allow_private_network on the destination or polling source to permit it)", ErrBlockedAddress, ip)
	}
	return nil
}

// PublicAddr reports whether ip is a globally routable unicast address.
func PublicAddr(ip netip.Addr) bool {
	ip = ip.Unmap()
	if ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsUnspecified() || ip.IsMulticast() || ip.IsInterfaceLocalMulticast() {
		return false
	}
	for _, p := range blockedPrefixes {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

var blockedPrefixes = []netip.Prefix{
	netip.MustParsePrefix("100.64.0.0/10"),     // carrier-grade NAT
	netip.MustParsePrefix("192.0.0.0/24"),      // IETF protocol assignments
	netip.MustParsePrefix("198.18.0.0/15"),     // benchmarking
	netip.MustParsePrefix("240.0.0.0/4"),       // reserved
	netip.MustParsePrefix("64:ff9b::/96"),      // NAT64 can reach IPv4 internals
	netip.MustParsePrefix("fd00:ec2::254/128"), // AWS metadata over IPv6
}
