package server

import (
	"errors"
	"net/http"
	"testing"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/testing/natstest"
	"github.com/switchyard/switchyard/pkg/testing/waitfor"
)

// TestTrustedProxies: behind a load balancer listed in
// ingress.trusted_proxies, a rejection's remote address is the client the
// balancer names (X-Forwarded-For: the rightmost address that is not a
// trusted proxy; else X-Real-IP), not the balancer. From any other peer
// those headers are the sender's to forge, and are ignored. The requests go
// through the real HTTP server, whose peer is 127.0.0.1.
func TestTrustedProxies(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	tests := []struct {
		name    string
		trusted []string
		header  http.Header
		want    string
	}{
		{"no proxies configured", nil, http.Header{"X-Forwarded-For": {"198.51.100.1"}}, "127.0.0.1"},
		{"peer trusted, X-Forwarded-For", []string{"127.0.0.1"}, http.Header{"X-Forwarded-For": {"198.51.100.1"}}, "198.51.100.1"},
		{"peer trusted by CIDR, X-Real-IP", []string{"10.0.0.0/8", "127.0.0.0/8"}, http.Header{"X-Real-Ip": {"198.51.100.2"}}, "198.51.100.2"},
		{"client forges a hop", []string{"127.0.0.1/32"}, http.Header{"X-Forwarded-For": {"192.0.2.66, 198.51.100.3"}}, "198.51.100.3"},
		{"chain of trusted proxies", []string{"127.0.0.1", "10.0.0.0/8"}, http.Header{"X-Forwarded-For": {"198.51.100.4, 10.1.2.3"}}, "198.51.100.4"},
		{"peer not trusted", []string{"10.0.0.0/8"}, http.Header{"X-Forwarded-For": {"198.51.100.5"}, "X-Real-Ip": {"198.51.100.6"}}, "127.0.0.1"},
		{"no header from a trusted peer", []string{"127.0.0.1"}, http.Header{}, "127.0.0.1"},
		{"garbage from a trusted peer", []string{"127.0.0.1"}, http.Header{"X-Forwarded-For": {"not-an-ip"}}, "127.0.0.1"},
		{"private ranges are not trusted unless listed", []string{"192.0.2.0/24"}, http.Header{"X-Forwarded-For": {"198.51.100.7"}}, "127.0.0.1"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnvOn(t, ns, js, func(c *Config) {
				c.Sources[0].Name = "proxy" + string(rune('a'+i))
				c.TrustedProxies = tt.trusted
			})
			src := e.srv.cfg.Sources[0].Name
			url := e.serve(t) + "/webhooks/" + src
			h := tt.header.Clone()
			h.Set("Content-Type", "application/json")
			if a := send(t, http.MethodPost, url, h, []byte(vecBody)); a.code != http.StatusUnauthorized {
				t.Fatalf("status %d, want 401 (unsigned)", a.code)
			}
			var got string
			waitfor.True(t, "the rejection record", func() bool {
				recs := natstest.AuditRecords(t, js, "audit.rejected."+src)
				if len(recs) == 0 {
					return false
				}
				got = recs[0].GetWebhookRejected().RemoteAddr
				return true
			})
			if got != tt.want {
				t.Errorf("remote address = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestTrustedProxiesInvalid(t *testing.T) {
	t.Parallel()
	_, err := New(nil, nil, Config{Logger: natstest.Logger(t), TrustedProxies: []string{"10.0.0.0/8", "lb.internal"}})
	var fe config.FieldError
	if !errors.As(err, &fe) || fe.Field != "ingress.trusted_proxies[1]" {
		t.Fatalf("New with a bad proxy: %v, want an error naming ingress.trusted_proxies[1]", err)
	}
}
