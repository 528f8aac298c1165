package outbound

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/testing/oauthtest"
)

func TestRedact(t *testing.T) {
	t.Parallel()
	secrets := []string{"tok-7f3a9c/2b+x", "hunter22"}
	tests := []struct {
		name, in, want string
	}{
		{"nothing to redact", "upstream timeout, try later", "upstream timeout, try later"},
		{"a secret", "you sent tok-7f3a9c/2b+x", "you sent [REDACTED]"},
		{"escaped slashes", `{"h":"tok-7f3a9c\/2b+x"}`, `{"h":"[REDACTED]"}`},
		{"URL-escaped", "next=?t=tok-7f3a9c%2F2b%2Bx", "next=?t=[REDACTED]"},
		{"bearer shape", "Authorization: Bearer abcdefgh123", "Authorization: Bearer [REDACTED]"},
		{"basic shape", `"authorization":"Basic dXNlcjpwYXNz"`, `"authorization":"Basic [REDACTED]"`},
		{"jwt", "token eyJhbGciOi.eyJzdWIiOiIx.sig_part-1 end", "token [REDACTED] end"},
		{"named in JSON", `{"access_token": "zz9-qq8", "ok": true}`, `{"access_token": "[REDACTED]", "ok": true}`},
		{"named in a form", "client_secret=abcd1234&grant_type=x", "client_secret=[REDACTED]&grant_type=x"},
		{"api key header line", "X-Api-Key: k-12345678", "X-Api-Key: [REDACTED]"},
		{"short words kept", "bearer of bad news: no", "bearer of bad news: no"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := Redact(tt.in, secrets); got != tt.want {
				t.Errorf("Redact(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// FuzzRedact: whatever the text, no secret survives redaction.
func FuzzRedact(f *testing.F) {
	for _, s := range []string{"", "x", "Bearer s3cr3t-v4lue", "<<s3cr3t-v4lue>>", "s3cr3t-v4lues3cr3t-v4lue"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		in := s + "s3cr3t-v4lue" + s
		if got := Redact(in, []string{"s3cr3t-v4lue"}); strings.Contains(got, "s3cr3t-v4lue") {
			t.Fatalf("Redact(%q) = %q keeps the secret", in, got)
		}
	})
}

// echo answers with the request's headers as JSON, as some partners'
// error pages and debugging endpoints do.
func echo(status int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Echo-Authorization", r.Header.Get("Authorization"))
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(r.Header)
	}
}

// TestResponseRedactsTheCredentialsSent sends bearer, basic, OAuth2 (also
// after a renewal) and static-header credentials to a partner that echoes
// them: nothing read through the Response's redacting readers keeps them.
func TestResponseRedactsTheCredentialsSent(t *testing.T) {
	t.Parallel()
	ts := oauthtest.Start(t, "switchyard", "s3cret-client", time.Hour)
	hc := localClient()
	oauth := FromConfig(config.Auth{Type: config.AuthOAuth2ClientCredentials, TokenURL: ts.URL,
		ClientID: "switchyard", ClientSecret: "s3cret-client", ClientAuth: "auto"}, hc)
	var hits atomic.Int64
	p := partner(t, &hits, echo(http.StatusBadRequest))
	for _, tt := range []struct {
		name    string
		auth    Authenticator
		headers map[string]string
		secrets func() []string
	}{
		{"bearer", Bearer{Token: "static-bearer-0042"}, nil, func() []string { return []string{"static-bearer-0042"} }},
		{"basic", Basic{Username: "erp", Password: "pw-basic-77"}, nil, func() []string { return []string{"pw-basic-77", "ZXJwOnB3LWJhc2ljLTc3"} }},
		{"static header", nil, map[string]string{"X-Partner-Key": "pk_live_5566"}, func() []string { return []string{"pk_live_5566"} }},
		{"oauth2", oauth, nil, func() []string { return ts.Issued() }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := &Client{HTTP: hc, Auth: tt.auth, Headers: tt.headers, RenewOn: []int{http.StatusBadRequest}}
			resp, err := c.Do(context.Background(), get(p.URL))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := resp.ReadBody(64 << 10)
			Drain(resp.Body)
			kept := string(body) + " " + strings.Join(resp.RedactedHeader().Values("X-Echo-Authorization"), " ")
			secrets := tt.secrets()
			if len(secrets) == 0 {
				t.Fatal("no credentials were sent")
			}
			for _, s := range secrets {
				if strings.Contains(kept, s) {
					t.Errorf("the answer kept %q: %s", s, kept)
				}
			}
			if !strings.Contains(kept, Redacted) {
				t.Errorf("nothing redacted in %s", kept)
			}
		})
	}
}

// BenchmarkSnippet measures what redaction adds to every attempt: a 5 KiB
// answer (an HTML error page) redacted and cut to the 1 KiB snippet.
func BenchmarkSnippet(b *testing.B) {
	body := []byte(strings.Repeat("<p>upstream said: nothing to see, try again later</p>\n", 95))
	r := &Response{sent: []string{"static-bearer-0042", "Bearer static-bearer-0042"}}
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		_ = r.Snippet(body, 1024)
	}
}
