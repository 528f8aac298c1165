// Package netaddr holds the network address rules that the configuration's
// validation and the services share, so that both read an address the same
// way: whether a listen host accepts only local connections, and what an
// ingress.trusted_proxies entry means.
package netaddr

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// IsLoopback reports whether a listen host only accepts local connections.
// An empty host listens on every interface.
func IsLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ParseTrustedProxy parses one ingress.trusted_proxies entry: a CIDR
// (10.0.0.0/8, fd00::/8) or a single address (a /32 or /128).
func ParseTrustedProxy(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR such as 10.0.0.0/8 or an address such as 10.0.0.7", s)
		}
		if pfx.Masked() != pfx {
			return netip.Prefix{}, fmt.Errorf("%q has host bits set; did you mean %s?", s, pfx.Masked())
		}
		return pfx, nil
	}
	addr, err := netip.ParseAddr(s)
	if err != nil || addr.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR such as 10.0.0.0/8 or an address such as 10.0.0.7", s)
	}
	return netip.PrefixFrom(addr, addr.BitLen()), nil
}
