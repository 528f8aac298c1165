package netaddr_test

import (
	"net/netip"
	"testing"

	"github.com/switchyard/switchyard/pkg/netaddr"
)

func TestIsLoopback(t *testing.T) {
	t.Parallel()
	tests := []struct {
		host string
		want bool
	}{
		{"127.0.0.1", true},
		{"127.1.2.3", true},
		{"::1", true},
		{"localhost", true},
		{"", false}, // every interface
		{"0.0.0.0", false},
		{"10.0.0.7", false},
		{"example.com", false},
	}
	for _, tt := range tests {
		if got := netaddr.IsLoopback(tt.host); got != tt.want {
			t.Errorf("IsLoopback(%q) = %v, want %v", tt.host, got, tt.want)
		}
	}
}

func TestParseTrustedProxy(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    netip.Prefix
		wantErr bool
	}{
		{in: "10.0.0.0/8", want: netip.MustParsePrefix("10.0.0.0/8")},
		{in: "fd00::/8", want: netip.MustParsePrefix("fd00::/8")},
		{in: "10.0.0.7", want: netip.MustParsePrefix("10.0.0.7/32")},
		{in: "::1", want: netip.MustParsePrefix("::1/128")},
		{in: "10.0.0.1/8", wantErr: true}, // host bits set
		{in: "lb.internal", wantErr: true},
		{in: "fe80::1%eth0", wantErr: true},
		{in: "10.0.0.0/33", wantErr: true},
	}
	for _, tt := range tests {
		got, err := netaddr.ParseTrustedProxy(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseTrustedProxy(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}
