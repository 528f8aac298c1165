package signing_test

import (
	"errors"
	"testing"
	"time"

	"github.com/switchyard/switchyard/pkg/signing"
)

// TestHMACWithIDSignsIt: the generic hmac scheme reports its delivery id
// as signed only when {id} is in the signed content.
func TestHMACWithIDSignsIt(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		content string
		want    bool
	}{{"{id}.{body}", true}, {"{body}", false}} {
		v, err := signing.NewHMAC([]string{hmacSecret}, signing.HMACOptions{Header: "X-Sig", SignedContent: tc.content}, 0, "X-Id", "")
		if err != nil {
			t.Fatal(err)
		}
		body := []byte(`{"type":"invoice.paid"}`)
		got, err := v.Verify(signing.Request{Header: header("X-Sig", v.Sign("d-1", time.Unix(1, 0), body), "X-Id", "d-1"), Body: body})
		if err != nil {
			t.Fatal(err)
		}
		if got.DeliveryID != "d-1" || got.DeliveryIDSigned != tc.want || !got.EventTypeSigned {
			t.Errorf("signed content %s: Verify = %+v, want the id signed: %v", tc.content, got, tc.want)
		}
	}
}

// TestTypeField: with Options.TypeField the event type is the body's
// field, not the scheme's header, and it is signed where the body is.
func TestTypeField(t *testing.T) {
	t.Parallel()
	body := `{"kind":"issue.opened","type":"ignored"}`
	for _, tc := range []struct {
		scheme     string
		opts       signing.Options
		req        signing.Request
		wantSigned bool
	}{
		{scheme: "github", opts: signing.Options{Secrets: []string{githubSecret}, TypeField: "kind"},
			req: signing.Request{Header: header(signing.HeaderGitHubSignature256, "sha256="+hexMAC(githubSecret, body),
				signing.HeaderGitHubDelivery, "d-1", signing.HeaderGitHubEvent, "push"), Body: []byte(body)},
			wantSigned: true},
		{scheme: "bearer", opts: signing.Options{Secrets: []string{"tok_9f8e7d6c5b4a3928"}, TypeField: "kind"},
			req: signing.Request{Header: header("Authorization", "Bearer tok_9f8e7d6c5b4a3928"), Body: []byte(body)}},
	} {
		v, err := signing.New(tc.scheme, tc.opts)
		if err != nil {
			t.Fatal(err)
		}
		got, err := v.Verify(tc.req)
		if err != nil {
			t.Fatalf("%s: %v", tc.scheme, err)
		}
		if got.EventType != "issue.opened" || got.EventTypeSigned != tc.wantSigned {
			t.Errorf("%s: Verify = %+v, want type issue.opened, signed %v", tc.scheme, got, tc.wantSigned)
		}
	}
	if _, err := signing.New("standard-webhooks", signing.Options{Secrets: []string{vectorA.secret}, TypeField: "kind"}); !errors.Is(err, signing.ErrBadSecret) {
		t.Errorf("a type field on standard-webhooks: %v, want ErrBadSecret", err)
	}
	if _, err := signing.New("bearer", signing.Options{Secrets: []string{"tok_9f8e7d6c5b4a3928"}, TypeField: "kind", TypeHeader: "X-Type"}); !errors.Is(err, signing.ErrBadSecret) {
		t.Errorf("type field and type header: %v, want ErrBadSecret", err)
	}
}
