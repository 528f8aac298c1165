package outbound

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/testing/oauthtest"
)

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		in   string
		want time.Duration
	}{
		{"empty", "", 0},
		{"spaces", "   ", 0},
		{"seconds", "120", 2 * time.Minute},
		{"zero", "0", 0},
		{"padded", " 7 ", 7 * time.Second},
		{"negative", "-5", 0},
		{"fraction", "1.5", 0},
		{"garbage", "soon", 0},
		{"seconds over a day capped", "999999", 24 * time.Hour},
		{"huge seconds capped", "9223372036854775807", 24 * time.Hour},
		{"overflowing number", "99999999999999999999999", 0},
		{"HTTP date", now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{"RFC 850 date", now.Add(time.Hour).Format(time.RFC850), time.Hour},
		{"asctime date", now.Add(time.Minute).Format(time.ANSIC), time.Minute},
		{"date in the past", now.Add(-time.Hour).Format(http.TimeFormat), 0},
		{"date far ahead capped", now.Add(72 * time.Hour).Format(http.TimeFormat), 24 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := ParseRetryAfter(tt.in, now); got != tt.want {
				t.Errorf("ParseRetryAfter(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

// FuzzParseRetryAfter: whatever a partner sends, the pause is within [0, 24h].
// The seed corpus is in testdata/fuzz/FuzzParseRetryAfter.
func FuzzParseRetryAfter(f *testing.F) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, v string) {
		if d := ParseRetryAfter(v, now); d < 0 || d > 24*time.Hour {
			t.Fatalf("ParseRetryAfter(%q) = %v", v, d)
		}
	})
}

func TestPublicAddr(t *testing.T) {
	t.Parallel()
	tests := []struct {
		addr string
		want bool
	}{
		{"8.8.8.8", true},
		{"1.1.1.1", true},
		{"93.184.216.34", true},
		{"2606:4700:4700::1111", true},
		{"2a00:1450:4001:80b::200e", true},
		{"::ffff:8.8.8.8", true},

		{"127.0.0.1", false},
		{"127.1.2.3", false},
		{"::1", false},
		{"::ffff:127.0.0.1", false},
		{"10.0.0.1", false},
		{"10.255.255.255", false},
		{"::ffff:10.1.2.3", false},
		{"172.16.0.1", false},
		{"172.31.255.254", false},
		{"192.168.1.1", false},
		{"169.254.169.254", false}, // cloud metadata
		{"fe80::1", false},
		{"fc00::1", false},
		{"fd12:3456::1", false},
		{"fd00:ec2::254", false}, // AWS metadata over IPv6
		{"0.0.0.0", false},
		{"::", false},
		{"224.0.0.1", false},
		{"239.255.255.250", false},
		{"ff02::1", false},
		{"ff01::1", false},
		{"100.64.0.1", false},
		{"100.127.255.254", false},
		{"192.0.0.8", false},
		{"198.18.0.1", false},
		{"198.19.255.254", false},
		{"240.0.0.1", false},
		{"255.255.255.255", false},
		{"64:ff9b::a00:1", false},
		{"64:ff9b::808:808", true}, // NAT64 of a public IPv4 (decision 0406)
		{"64:ff9b:1::808:808", false},
		{"2002:808:808::1", true},
		{"2002:a00:1::1", false},
		{"2001::1", false},
		{"fec0::1", false},
		{"0.1.2.3", false},
		{"::a00:1", false},

		{"172.32.0.1", true},
		{"100.128.0.1", true},
		{"198.20.0.1", true},
	}
	for _, tt := range tests {
		ip := netip.MustParseAddr(tt.addr)
		if got := PublicAddr(ip); got != tt.want {
			t.Errorf("PublicAddr(%s) = %v, want %v", tt.addr, got, tt.want)
		}
	}
}

func TestBlockPrivate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		address string
		wantErr error
	}{
		{"8.8.8.8:443", nil},
		{"[2606:4700:4700::1111]:443", nil},
		{"127.0.0.1:80", ErrBlockedAddress},
		{"[::1]:80", ErrBlockedAddress},
		{"169.254.169.254:80", ErrBlockedAddress},
		{"not-an-address", ErrBlockedAddress},
		{"example.com:443", ErrBlockedAddress}, // the dialer passes resolved addresses only
	}
	for _, tt := range tests {
		err := blockPrivate("tcp", tt.address, nil)
		if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
			t.Errorf("blockPrivate(%s) = %v, want %v", tt.address, err, tt.wantErr)
		}
	}
}

func TestRefreshBefore(t *testing.T) {
	t.Parallel()
	for lifetime, want := range map[time.Duration]time.Duration{
		2 * time.Second: 400 * time.Millisecond,
		time.Minute:     12 * time.Second,
		time.Hour:       time.Minute,
	} {
		if got := RefreshBefore(lifetime); got != want {
			t.Errorf("RefreshBefore(%v) = %v, want %v", lifetime, got, want)
		}
	}
}

// partner counts requests and answers with h.
func partner(t *testing.T, hits *atomic.Int64, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		h(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func get(url string) func(context.Context) (*http.Request, error) {
	return func(ctx context.Context) (*http.Request, error) {
		return http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	}
}

func localClient() *http.Client {
	return NewHTTPClient(HTTPConfig{Timeout: 2 * time.Second, AllowPrivateNetwork: true})
}

func TestClientRenewsOnceThenRefused(t *testing.T) {
	t.Parallel()
	ts := oauthtest.Start(t, "switchyard", "s3cret", time.Hour)
	hc := localClient()
	auth := FromConfig(config.Auth{Type: config.AuthOAuth2ClientCredentials, TokenURL: ts.URL,
		ClientID: "switchyard", ClientSecret: "s3cret", ClientAuth: "auto"}, hc)
	for _, tt := range []struct {
		name    string
		renewOn []int
		refuse  int // the status the partner answers an invalid token with
	}{
		{"401 by default", nil, http.StatusUnauthorized},
		{"403 when named", []int{http.StatusUnauthorized, http.StatusForbidden}, http.StatusForbidden},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var hits atomic.Int64
			p := partner(t, &hits, func(w http.ResponseWriter, r *http.Request) {
				if !ts.Valid(r.Header.Get("Authorization")) {
					w.WriteHeader(tt.refuse)
					return
				}
				w.WriteHeader(http.StatusOK)
			})
			c := &Client{HTTP: hc, Auth: auth, RenewOn: tt.renewOn}
			resp, err := c.Do(context.Background(), get(p.URL))
			if err != nil || resp.StatusCode != http.StatusOK || resp.Renewed {
				t.Fatalf("first request: %v %v", resp, err)
			}
			Drain(resp.Body)

			// The token is revoked: one refusal, a renewal, then accepted.
			ts.RevokeAll()
			before := hits.Load()
			resp, err = c.Do(context.Background(), get(p.URL))
			if err != nil || resp.StatusCode != http.StatusOK || !resp.Renewed {
				t.Fatalf("after revocation: %+v %v, want 200 renewed", resp, err)
			}
			Drain(resp.Body)
			if n := hits.Load() - before; n != 2 {
				t.Errorf("%d requests, want 2", n)
			}
			if c.Refused(resp) {
				t.Error("an accepted answer counted as refused")
			}
		})
	}

	// A partner that refuses every token: renewed once, not in a loop.
	var hits atomic.Int64
	never := partner(t, &hits, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusForbidden) })
	c := &Client{HTTP: hc, Auth: auth, RenewOn: []int{http.StatusUnauthorized, http.StatusForbidden}}
	resp, err := c.Do(context.Background(), get(never.URL))
	if err != nil || !resp.Renewed || !c.Refused(resp) {
		t.Fatalf("refusing partner: %+v %v, want a refusal after the renewal", resp, err)
	}
	Drain(resp.Body)
	if n := hits.Load(); n != 2 {
		t.Errorf("%d requests to the refusing partner, want 2", n)
	}
}

func TestClientStaticCredentialsAndHeaders(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		auth config.Auth
		want string
	}{
		{"bearer", config.Auth{Type: config.AuthBearer, Token: "t0ken"}, "Bearer t0ken"},
		{"basic", config.Auth{Type: config.AuthBasic, Username: "sy", Password: "pw"}, "Basic c3k6cHc="},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var hits atomic.Int64
			var got atomic.Pointer[http.Header]
			p := partner(t, &hits, func(w http.ResponseWriter, r *http.Request) {
				h := r.Header.Clone()
				got.Store(&h)
				w.WriteHeader(http.StatusUnauthorized)
			})
			c := &Client{HTTP: localClient(), Auth: FromConfig(tt.auth, nil),
				Headers: map[string]string{"X-Tenant": "acme", "Accept": "text/plain"}}
			resp, err := c.Do(context.Background(), func(ctx context.Context) (*http.Request, error) {
				req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL, nil)
				if err == nil {
					req.Header.Set("Accept", "application/json")
				}
				return req, err
			})
			if err != nil {
				t.Fatal(err)
			}
			Drain(resp.Body)
			h := *got.Load()
			if h.Get("Authorization") != tt.want || h.Get("X-Tenant") != "acme" || h.Get("Accept") != "application/json" {
				t.Errorf("headers %v: want the credentials, the static header, and the request's own Accept", h)
			}
			// Static credentials cannot be renewed: one request, refused.
			if hits.Load() != 1 || resp.Renewed || !c.Refused(resp) {
				t.Errorf("%d requests, renewed %v, refused %v; want one refused request", hits.Load(), resp.Renewed, c.Refused(resp))
			}
		})
	}
	if FromConfig(config.Auth{}, nil) != nil {
		t.Error("no auth configured gave an Authenticator")
	}
}

func TestClientNoCredentials(t *testing.T) {
	t.Parallel()
	var hits atomic.Int64
	p := partner(t, &hits, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	hc := localClient()

	ts := oauthtest.Start(t, "switchyard", "s3cret", time.Hour)
	refused := &Client{HTTP: hc, Auth: FromConfig(config.Auth{Type: config.AuthOAuth2ClientCredentials, TokenURL: ts.URL,
		ClientID: "switchyard", ClientSecret: "wrong-secret", ClientAuth: "auto"}, hc)}
	_, err := refused.Do(context.Background(), get(p.URL))
	var ae *AuthError
	if !errors.As(err, &ae) || !errors.Is(err, ErrCredentials) {
		t.Errorf("refused client: %v, want an AuthError wrapping ErrCredentials", err)
	}
	if strings.Contains(err.Error(), "wrong-secret") {
		t.Errorf("error %q reveals the client secret", err)
	}

	down := oauthtest.Start(t, "switchyard", "s3cret", time.Hour)
	down.Close()
	unreachable := &Client{HTTP: hc, Auth: FromConfig(config.Auth{Type: config.AuthOAuth2ClientCredentials, TokenURL: down.URL,
		ClientID: "switchyard", ClientSecret: "s3cret", ClientAuth: "auto"}, hc)}
	_, err = unreachable.Do(context.Background(), get(p.URL))
	if !errors.As(err, &ae) || errors.Is(err, ErrCredentials) {
		t.Errorf("unreachable token endpoint: %v, want an AuthError that is not ErrCredentials", err)
	}
	if hits.Load() != 0 {
		t.Error("the partner was called without credentials")
	}
}

func TestHTTPClientGuardsAndDoesNotRedirect(t *testing.T) {
	t.Parallel()
	var hits atomic.Int64
	p := partner(t, &hits, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/elsewhere", http.StatusFound)
	})
	guarded := &Client{HTTP: NewHTTPClient(HTTPConfig{Timeout: time.Second})}
	if _, err := guarded.Do(context.Background(), get(p.URL)); !errors.Is(err, ErrBlockedAddress) {
		t.Errorf("loopback partner: %v, want ErrBlockedAddress", err)
	}
	if hits.Load() != 0 {
		t.Error("the guarded client reached a loopback address")
	}
	resp, err := (&Client{HTTP: localClient()}).Do(context.Background(), get(p.URL))
	if err != nil || resp.StatusCode != http.StatusFound {
		t.Fatalf("redirect: %+v %v, want the 302 itself", resp, err)
	}
	Drain(resp.Body)
}

func TestIsTimeout(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	<-ctx.Done()
	if !IsTimeout(ctx.Err()) || IsTimeout(errors.New("connection refused")) {
		t.Error("IsTimeout misclassifies")
	}
}
