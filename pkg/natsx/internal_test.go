package natsx

import (
	"strings"
	"testing"
)

func TestParseVersion(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    [3]int
		wantErr bool
	}{
		{in: "2.11.0", want: [3]int{2, 11, 0}},
		{in: "2.9.10", want: [3]int{2, 9, 10}},
		{in: "v2.12.3", want: [3]int{2, 12, 3}},
		{in: "2.11.0-beta.2", want: [3]int{2, 11, 0}},
		{in: "2.11.0-RC.1+build.5", want: [3]int{2, 11, 0}},
		{in: "2.11.1+20250101", want: [3]int{2, 11, 1}},
		{in: "10.0.0", want: [3]int{10, 0, 0}},
		{in: "", wantErr: true},
		{in: "2", wantErr: true},
		{in: "2.11", wantErr: true},
		{in: "2.11.0.1", wantErr: true},
		{in: "2.x.0", wantErr: true},
		{in: "2..0", wantErr: true},
		{in: " 2.11.0", wantErr: true},
		{in: "-2.11.0", wantErr: true},
		{in: "2.-1.0", wantErr: true},
		{in: "v", wantErr: true},
		{in: "nats-server 2.11.0", wantErr: true},
	}
	for _, tt := range tests {
		got, err := parseVersion(tt.in)
		if tt.wantErr {
			if err == nil {
				t.Errorf("parseVersion(%q) = %v, want an error", tt.in, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("parseVersion(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestVersionAtLeast(t *testing.T) {
	t.Parallel()
	tests := []struct {
		have, want string
		ok         bool
		wantErr    bool
	}{
		{have: "2.11.0", want: "2.11.0", ok: true},
		{have: "2.11.1", want: "2.11.0", ok: true},
		{have: "2.12.0", want: "2.11.0", ok: true},
		{have: "3.0.0", want: "2.11.0", ok: true},
		{have: "2.15.3", want: MinServerVersion, ok: true},
		// Numeric, not lexical: 2.9 < 2.11 although "9" > "1".
		{have: "2.9.10", want: "2.11.0", ok: false},
		{have: "2.10.99", want: "2.11.0", ok: false},
		{have: "1.99.99", want: "2.11.0", ok: false},
		{have: "2.10.0", want: "2.9.0", ok: true},
		// A pre-release counts as its release.
		{have: "2.11.0-beta", want: "2.11.0", ok: true},
		{have: "2.11.0-dev+abc", want: "2.11.0", ok: true},
		{have: "v2.11.0", want: "2.11.0", ok: true},
		{have: "2.11", want: "2.11.0", wantErr: true},
		{have: "", want: "2.11.0", wantErr: true},
		{have: "2.11.0", want: "latest", wantErr: true},
	}
	for _, tt := range tests {
		ok, err := versionAtLeast(tt.have, tt.want)
		if (err != nil) != tt.wantErr {
			t.Errorf("versionAtLeast(%q, %q) error = %v, want error %v", tt.have, tt.want, err, tt.wantErr)
			continue
		}
		if ok != tt.ok {
			t.Errorf("versionAtLeast(%q, %q) = %v, want %v", tt.have, tt.want, ok, tt.ok)
		}
	}
}

func TestRedactURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want string
	}{
		{"nats://127.0.0.1:4222", "nats://127.0.0.1:4222"},
		{"nats://user:hunter2@127.0.0.1:4222", "nats://[redacted]@127.0.0.1:4222"},
		{"tls://token-s3cr3t@nats.example.com:4222", "tls://[redacted]@nats.example.com:4222"},
		{"nats://user:p@ss@w0rd@host:4222", "nats://[redacted]@host:4222"},
		{"nats://user:pw@host", "nats://[redacted]@host"},
		{"ws://u:pw@host:443", "ws://[redacted]@host:443"},
		// nats.go accepts URLs without a scheme.
		{"user:hunter2@127.0.0.1:4222", "[redacted]@127.0.0.1:4222"},
		{"127.0.0.1:4222", "127.0.0.1:4222"},
		// A list of servers: each is redacted and kept.
		{"nats://a:pw1@n1:4222,nats://b:pw2@n2:4222", "nats://[redacted]@n1:4222,nats://[redacted]@n2:4222"},
		{"nats://a:pw1@n1:4222, nats://n2:4222", "nats://[redacted]@n1:4222, nats://n2:4222"},
		{"nats://n1:4222, b:pw2@n2:4222", "nats://n1:4222, [redacted]@n2:4222"},
		{"", ""},
	}
	for _, tt := range tests {
		got := redactURL(tt.in)
		if got != tt.want {
			t.Errorf("redactURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
		for _, secret := range []string{"hunter2", "s3cr3t", "w0rd", "pw1", "pw2", ":pw"} {
			if strings.Contains(got, secret) {
				t.Errorf("redactURL(%q) = %q still shows %q", tt.in, got, secret)
			}
		}
	}
}

func TestSplitHostPort(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in       string
		host     string
		port     int
		wantFail bool
	}{
		{in: "127.0.0.1:4222", host: "127.0.0.1", port: 4222},
		{in: "127.0.0.1:0", host: "127.0.0.1", port: 0},
		{in: ":4222", host: "0.0.0.0", port: 4222},
		{in: "[::1]:4222", host: "::1", port: 4222},
		{in: "localhost:65535", host: "localhost", port: 65535},
		{in: "localhost", wantFail: true},
		{in: "localhost:", wantFail: true},
		{in: "localhost:http", wantFail: true},
		{in: "localhost:65536", wantFail: true},
		{in: "localhost:-1", wantFail: true},
	}
	for _, tt := range tests {
		host, port, err := splitHostPort(tt.in)
		if tt.wantFail {
			if err == nil {
				t.Errorf("splitHostPort(%q) = %q, %d; want an error", tt.in, host, port)
			}
			continue
		}
		if err != nil || host != tt.host || port != tt.port {
			t.Errorf("splitHostPort(%q) = %q, %d, %v; want %q, %d", tt.in, host, port, err, tt.host, tt.port)
		}
	}
}
