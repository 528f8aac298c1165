package delivery

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchyard/switchyard/pkg/outbound"
	"github.com/switchyard/switchyard/pkg/signing"
	"github.com/switchyard/switchyard/pkg/testing/oauthtest"
)

func TestPolicyRetryOnStatus(t *testing.T) {
	t.Parallel()
	now := time.Now()
	p := Policy{RetryOnStatus: []int{404, 423, 410}}
	h := http.Header{"Retry-After": {"7"}}
	for _, tt := range []struct {
		status         int
		want           bool // retryable
		wantRetryAfter time.Duration
	}{
		{404, true, 7 * time.Second},
		{423, true, 7 * time.Second},
		{410, false, 0}, // Gone stays permanent whatever the list says
		{400, false, 0},
		{409, true, 0},
		{429, true, 7 * time.Second},
		{500, true, 0},
	} {
		res := p.Classify(tt.status, h, "", now)
		if res.Retryable() != tt.want || res.RetryAfter != tt.wantRetryAfter {
			t.Errorf("status %d: retryable %v retry-after %v, want %v %v", tt.status, res.Retryable(), res.RetryAfter, tt.want, tt.wantRetryAfter)
		}
	}
	if Classify(404, nil, "", now).Retryable() {
		t.Error("404 retryable under the default policy")
	}
}

func TestStaticAuth(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		auth outbound.Authenticator
		want string
	}{
		{"bearer", outbound.Bearer{Token: "t0ken"}, "Bearer t0ken"},
		{"basic", outbound.Basic{Username: "sy", Password: "pw"}, "Basic c3k6cHc="},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var calls int
			p := newPartner(t, func(w http.ResponseWriter, r *http.Request) {
				calls++
				w.WriteHeader(http.StatusUnauthorized)
			})
			c := NewClient(Target{URL: p.URL, Timeout: 2 * time.Second, AllowPrivateNetwork: true, Auth: tt.auth}, nil)
			res := c.Send(context.Background(), Request{EventID: "ev-1", Body: []byte("{}"), Attempt: 1})
			if got := p.last.Load().header.Get("Authorization"); got != tt.want {
				t.Errorf("Authorization = %q, want %q", got, tt.want)
			}
			// Static credentials cannot be renewed: one request, permanent.
			if calls != 1 || res.Outcome != permanent || res.StatusCode != 401 {
				t.Errorf("%d requests, result %v %d; want one permanent 401", calls, res.Outcome, res.StatusCode)
			}
		})
	}
}

func TestSigningStandardWebhooks(t *testing.T) {
	t.Parallel()
	const oldSecret, newSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_dGhpcyBpcyBhIG5ldyBzZWNyZXQh"
	signer, err := signing.NewStandardWebhooks([]string{oldSecret, newSecret}, 0)
	if err != nil {
		t.Fatal(err)
	}
	p := newPartner(t, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	c := NewClient(Target{URL: p.URL, Timeout: 2 * time.Second, AllowPrivateNetwork: true, Signer: signer}, nil)
	body := []byte(`{"order":42}`)
	before := time.Now().Truncate(time.Second)
	if res := c.Send(context.Background(), Request{EventID: "ev-42", Body: body, Attempt: 2}); !res.Delivered() {
		t.Fatalf("result %+v", res)
	}
	got := p.last.Load()
	if id := got.header.Get(signing.HeaderWebhookID); id != "ev-42" {
		t.Errorf("webhook-id = %q, want the event id", id)
	}
	ts, err := signing.ParseUnixTimestamp(got.header.Get(signing.HeaderWebhookTimestamp))
	if err != nil || ts.Before(before) {
		t.Errorf("webhook-timestamp %v (%v): want the send time", ts, err)
	}
	// A partner holding either secret alone accepts it: rotation.
	for _, secret := range []string{oldSecret, newSecret} {
		v, err := signing.NewStandardWebhooks([]string{secret}, 5*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(signing.Request{Header: got.header, Body: got.body, Now: time.Now()}); err != nil {
			t.Errorf("a partner with one of the secrets refuses the signature: %v", err)
		}
	}
	if n := len(strings.Fields(got.header.Get(signing.HeaderWebhookSignature))); n != 2 {
		t.Errorf("%d signatures, want one per secret", n)
	}
	if string(got.body) != string(body) {
		t.Errorf("body changed by signing: %q", got.body)
	}
}

func newTokenServer(t *testing.T, lifetime time.Duration) *oauthtest.Server {
	t.Helper()
	return oauthtest.Start(t, "switchyard", "s3cret", lifetime)
}

func oauthClient(t *testing.T, ts *oauthtest.Server, partnerURL, secret string) *Client {
	t.Helper()
	target := Target{URL: partnerURL, Timeout: 2 * time.Second, AllowPrivateNetwork: true}
	hc := outbound.NewHTTPClient(target.HTTPConfig())
	target.Auth = outbound.NewClientCredentials(outbound.ClientCredentialsConfig{
		TokenURL: ts.URL, ClientID: "switchyard", ClientSecret: secret, Scopes: []string{"orders:write"},
		ClientAuth: "auto", HTTPClient: hc,
	})
	return NewClient(target, hc)
}

func TestClientCredentialsCachesAndRefreshesBeforeExpiry(t *testing.T) {
	t.Parallel()
	ts := newTokenServer(t, 2*time.Second)
	var mu sync.Mutex
	var expiredSeen int
	p := newPartner(t, func(w http.ResponseWriter, r *http.Request) {
		if !ts.Valid(r.Header.Get("Authorization")) {
			mu.Lock()
			expiredSeen++
			mu.Unlock()
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	c := oauthClient(t, ts, p.URL, "s3cret")

	// Many requests at once share one token request.
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			if res := c.Send(context.Background(), Request{EventID: fmt.Sprint("ev-", i), Body: []byte("{}"), Attempt: 1}); !res.Delivered() {
				t.Errorf("request %d: %v %v", i, res.Outcome, res.Err)
			}
		})
	}
	wg.Wait()
	if n := ts.Requests(); n != 1 {
		t.Errorf("%d token requests for 20 deliveries, want 1 (cached, shared)", n)
	}

	// Keep sending, paced, until the third token was issued (two renewals
	// of 2s tokens): each is replaced before it expires, so the partner
	// never sees an expired one.
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	sent := 0
	for ts.Requests() < 3 {
		if res := c.Send(context.Background(), Request{EventID: "ev-loop", Body: []byte("{}"), Attempt: 1}); !res.Delivered() {
			t.Fatalf("delivery %d failed: %v %v", sent, res.Outcome, res.Err)
		}
		sent++
		<-tick.C
	}
	mu.Lock()
	defer mu.Unlock()
	if expiredSeen != 0 {
		t.Errorf("the partner saw %d requests with an expired token", expiredSeen)
	}
	// A token request per 1.6s, not one per delivery.
	if n := ts.Requests(); n >= sent/4 {
		t.Errorf("%d token requests for %d deliveries: the token is not cached", n, sent)
	}
}

func TestClientCredentialsRenewsOnceOn401(t *testing.T) {
	t.Parallel()
	ts := newTokenServer(t, time.Hour)
	p := newPartner(t, func(w http.ResponseWriter, r *http.Request) {
		if !ts.Valid(r.Header.Get("Authorization")) {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	c := oauthClient(t, ts, p.URL, "s3cret")
	if res := c.Send(context.Background(), Request{EventID: "ev-1", Body: []byte("{}"), Attempt: 1}); !res.Delivered() {
		t.Fatalf("first delivery: %v %v", res.Outcome, res.Err)
	}
	// The partner revokes the token long before its expiry: the next
	// attempt gets a 401, renews the token and succeeds in the same attempt.
	ts.RevokeAll()
	before := p.hits.Load()
	res := c.Send(context.Background(), Request{EventID: "ev-2", Body: []byte("{}"), Attempt: 1})
	if !res.Delivered() {
		t.Fatalf("delivery after revocation: %v %v", res.Outcome, res.Err)
	}
	if n := p.hits.Load() - before; n != 2 {
		t.Errorf("%d requests for the attempt, want 2 (401, then renewed)", n)
	}
	if n := ts.Requests(); n != 2 {
		t.Errorf("%d token requests, want 2", n)
	}

	// A partner that refuses every token: renewed once, then permanent.
	never := newPartner(t, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusUnauthorized) })
	c2 := oauthClient(t, ts, never.URL, "s3cret")
	res = c2.Send(context.Background(), Request{EventID: "ev-3", Body: []byte("{}"), Attempt: 1})
	if res.Outcome != permanent || res.StatusCode != 401 || !errors.Is(res.Err, outbound.ErrCredentials) {
		t.Errorf("result %v %d %v, want permanent 401 ErrCredentials", res.Outcome, res.StatusCode, res.Err)
	}
	if n := never.hits.Load(); n != 2 {
		t.Errorf("%d requests to the refusing partner, want 2 (one renewal, not a loop)", n)
	}
}

func TestClientCredentialsRefusedOrUnreachable(t *testing.T) {
	t.Parallel()
	ts := newTokenServer(t, time.Hour)
	p := newPartner(t, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })

	// Wrong secret: the token endpoint refuses; no retry fixes that.
	res := oauthClient(t, ts, p.URL, "wrong-secret").Send(context.Background(), Request{EventID: "ev-1", Body: []byte("{}"), Attempt: 1})
	if res.Outcome != permanent || !errors.Is(res.Err, outbound.ErrCredentials) || res.StatusCode != 0 {
		t.Errorf("refused credentials: %v %d %v, want permanent ErrCredentials", res.Outcome, res.StatusCode, res.Err)
	}
	// What the error says is under test: never the secret.
	if strings.Contains(res.ErrorString(), "wrong-secret") {
		t.Errorf("error %q reveals the client secret", res.ErrorString())
	}
	if p.hits.Load() != 0 {
		t.Error("the partner was called without credentials")
	}

	// Token endpoint down: retryable.
	down := newTokenServer(t, time.Hour)
	down.Close()
	res = oauthClient(t, down, p.URL, "s3cret").Send(context.Background(), Request{EventID: "ev-2", Body: []byte("{}"), Attempt: 1})
	if res.Outcome != retryable || !errors.Is(res.Err, outbound.ErrToken) || errors.Is(res.Err, outbound.ErrCredentials) {
		t.Errorf("token endpoint down: %v %v, want retryable naming the token", res.Outcome, res.Err)
	}
}
