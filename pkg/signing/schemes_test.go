package signing_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/pkg/signing"
)

// Published and computed vectors for every scheme. "Published" vectors are
// the providers' own documentation examples; "computed" ones were produced
// with openssl (HMAC) or Python's cryptography package (ed25519), outside
// this code, so that a test agreeing with itself cannot pass.
const (
	// GitHub's documentation ("Validating webhook deliveries").
	githubSecret    = "It's a Secret to Everybody"
	githubBody      = "Hello, World!"
	githubSignature = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"

	// Slack's documentation ("Verifying requests from Slack"): a slash
	// command.
	slackSecret    = "8f742231b10e8888abcd99yyyzzz85a5"
	slackTimestamp = "1531420618"
	slackBody      = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
	slackSignature = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"

	// Computed: printf '%s' "1686089970.$body" | openssl dgst -sha256 -hmac "$secret".
	stripeSecret    = "whsec_d6a3f4b1c8e2907d5a6b3c1e4f8a9d2b"
	stripeTimestamp = 1686089970
	stripeBody      = `{"id":"evt_1NG8Du2eZvKYlo2CUI79vXWy","object":"event","type":"payment_intent.succeeded","data":{"object":{"id":"pi_3NG8Dt2eZvKYlo2C0d2bsdEC","amount":2000}}}`
	stripeV1        = "4e240b337d58580d71d4f31c449feac13418e3f7578734b3da0c81d4a8819e50"

	// Computed: printf '%s' "$body" | openssl dgst -sha256 -hmac "$secret" -binary | base64.
	shopifySecret    = "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"
	shopifyBody      = `{"id":820982911946154500,"email":"jon@example.com","closed_at":null,"total_price":"598.94"}`
	shopifySignature = "U1UgZjCQHjBfwDUCfYvnQTy1zvJTsNyrjNdtx+4GKw4="

	// Computed with Python's cryptography: the ed25519 key from the seed
	// sha256("switchyard standard webhooks v1a test key") signing the
	// Standard Webhooks libraries' vector (vectorB).
	v1aPublicKey = "whpk_y4DRUY/ld5iC69e6AMIgP4Xrg4/GCQYjBxGJJPL05eY="
	v1aSignature = "v1a,WEa8iUG7XgbaDcilavQl6bVUlvFEoIm/TXqPEigtsrojX3H5RQ60MWb3jdtVayWUB5ONTaZ52oaWuv9yO0HeBQ=="

	// Computed: a partner's HMAC-SHA512, base64, over "<timestamp>.<body>".
	hmacSecret    = "partner-secret-1"
	hmacTimestamp = 1700000000
	hmacBody      = `{"type":"invoice.paid","id":"inv_1"}`
	hmacSHA512    = "e9wjacLmWnBYaCRict0wwd00z2mQsnFcgAOZIqmdyJTTkxPTV+Fbwnn6x7AMv1wTXVxrEY4mATTjHdYbR5Yi4A=="
	// Computed: HMAC-SHA1, hex, over the body alone.
	hmacSHA1Body = `{"type":"invoice.paid"}`
	hmacSHA1     = "03d13dd60bfd1d63838fd669a63a18ea98aba61f"

	otherSecret = "whsec_YW5vdGhlci0yNC1ieXRlLXNlY3JldCE="
)

// fixture is one scheme's valid request and the ways to break it.
type fixture struct {
	scheme string
	opts   signing.Options
	req    func() signing.Request
	want   signing.Verified
	// sigHeader is where the signature (or credentials) travel.
	sigHeader string
	// bad are signature header values that must fail, by name, with the
	// error each must wrap.
	bad map[string]badValue
	// timestamped schemes refuse stale and future requests.
	timestamped bool
	// missingErr is the error for a request without sigHeader.
	missingErr error
	// wrongSecretErr is the error with only another secret configured.
	wrongSecretErr error
}

type badValue struct {
	value   string
	wantErr error
}

func header(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return h
}

func fixtures() []fixture {
	stripeHeader := "t=1686089970,v1=" + stripeV1
	basicCred := "Basic " + base64.StdEncoding.EncodeToString([]byte("acme:correct horse battery"))
	return []fixture{
		{
			scheme: "standard-webhooks v1",
			opts:   signing.Options{Secrets: []string{vectorB.secret}, Tolerance: tolerance},
			req:    vectorB.request,
			want:   signing.Verified{DeliveryID: vectorB.id, Timestamp: time.Unix(vectorB.timestamp, 0), DeliveryIDSigned: true, EventTypeSigned: true},
			bad: map[string]badValue{
				"empty signature":      {"v1,", signing.ErrBadSignature},
				"truncated signature":  {vectorB.signature[:len(vectorB.signature)-6], signing.ErrBadSignature},
				"wrong version prefix": {"v2," + strings.TrimPrefix(vectorB.signature, "v1,"), signing.ErrBadSignature},
				"no version":           {strings.TrimPrefix(vectorB.signature, "v1,"), signing.ErrMalformed},
			},
			sigHeader: signing.HeaderWebhookSignature, timestamped: true,
			missingErr: signing.ErrMissingSignature, wrongSecretErr: signing.ErrBadSignature,
		},
		{
			scheme: "standard-webhooks v1a",
			opts:   signing.Options{Secrets: []string{v1aPublicKey}, Tolerance: tolerance},
			req: func() signing.Request {
				r := vectorB.request()
				r.Header.Set(signing.HeaderWebhookSignature, v1aSignature)
				return r
			},
			want: signing.Verified{DeliveryID: vectorB.id, Timestamp: time.Unix(vectorB.timestamp, 0), DeliveryIDSigned: true, EventTypeSigned: true},
			bad: map[string]badValue{
				"empty signature":      {"v1a,", signing.ErrBadSignature},
				"truncated signature":  {v1aSignature[:len(v1aSignature)-8], signing.ErrBadSignature},
				"wrong version prefix": {"v1," + strings.TrimPrefix(v1aSignature, "v1a,"), signing.ErrBadSignature},
				"v1 HMAC only":         {vectorB.signature, signing.ErrBadSignature},
			},
			sigHeader: signing.HeaderWebhookSignature, timestamped: true,
			missingErr: signing.ErrMissingSignature, wrongSecretErr: signing.ErrBadSignature,
		},
		{
			scheme: "github",
			opts:   signing.Options{Secrets: []string{githubSecret}},
			req: func() signing.Request {
				return signing.Request{Header: header(
					signing.HeaderGitHubSignature256, githubSignature,
					signing.HeaderGitHubDelivery, "72d3162e-cc78-11e3-81ab-4c9367dc0958",
					signing.HeaderGitHubEvent, "issues",
					"X-Hub-Signature", "sha1=aaaa", // the legacy header is ignored
				), Body: []byte(githubBody), Now: time.Unix(1_700_000_000, 0)}
			},
			want: signing.Verified{DeliveryID: "72d3162e-cc78-11e3-81ab-4c9367dc0958", EventType: "issues"},
			bad: map[string]badValue{
				"empty signature":      {"sha256=", signing.ErrBadSignature},
				"truncated signature":  {githubSignature[:len(githubSignature)-2], signing.ErrBadSignature},
				"wrong version prefix": {"sha1=" + strings.TrimPrefix(githubSignature, "sha256="), signing.ErrBadSignature},
				"odd hex":              {githubSignature[:len(githubSignature)-1], signing.ErrBadSignature},
				"upper-case prefix":    {"SHA256=" + strings.TrimPrefix(githubSignature, "sha256="), signing.ErrBadSignature},
			},
			sigHeader:  signing.HeaderGitHubSignature256,
			missingErr: signing.ErrMissingSignature, wrongSecretErr: signing.ErrBadSignature,
		},
		{
			scheme: "stripe",
			opts:   signing.Options{Secrets: []string{stripeSecret}, Tolerance: 300 * time.Second},
			req: func() signing.Request {
				return signing.Request{Header: header(signing.HeaderStripeSignature, stripeHeader+",v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39"),
					Body: []byte(stripeBody), Now: time.Unix(stripeTimestamp+30, 0)}
			},
			want: signing.Verified{DeliveryID: "evt_1NG8Du2eZvKYlo2CUI79vXWy", EventType: "payment_intent.succeeded", Timestamp: time.Unix(stripeTimestamp, 0), DeliveryIDSigned: true, EventTypeSigned: true},
			bad: map[string]badValue{
				"empty signature":      {"t=1686089970,v1=", signing.ErrBadSignature},
				"truncated signature":  {stripeHeader[:len(stripeHeader)-4], signing.ErrBadSignature},
				"wrong version prefix": {"t=1686089970,v0=" + stripeV1, signing.ErrBadSignature},
				"no timestamp":         {"v1=" + stripeV1, signing.ErrMalformed},
				"two timestamps":       {"t=1686089970,t=1686089970,v1=" + stripeV1, signing.ErrMalformed},
				"not key=value":        {"t=1686089970," + stripeV1, signing.ErrMalformed},
				"timestamp changed":    {"t=1686089971,v1=" + stripeV1, signing.ErrBadSignature},
			},
			sigHeader: signing.HeaderStripeSignature, timestamped: true,
			missingErr: signing.ErrMissingSignature, wrongSecretErr: signing.ErrBadSignature,
		},
		{
			scheme: "shopify",
			opts:   signing.Options{Secrets: []string{shopifySecret}},
			req: func() signing.Request {
				return signing.Request{Header: header(signing.HeaderShopifyHmac, shopifySignature,
					signing.HeaderShopifyWebhookID, "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
					signing.HeaderShopifyEventID, "98880550-7158-44d4-b7cd-2c97c8a091b5",
					signing.HeaderShopifyTopic, "orders/create"),
					Body: []byte(shopifyBody), Now: time.Unix(1_700_000_000, 0)}
			},
			want: signing.Verified{DeliveryID: "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043", EventType: "orders/create"},
			bad: map[string]badValue{
				"empty signature":      {" ", signing.ErrBadSignature},
				"truncated signature":  {shopifySignature[:len(shopifySignature)-4], signing.ErrBadSignature},
				"wrong version prefix": {"sha256=" + shopifySignature, signing.ErrBadSignature},
				"hex instead":          {"5355206630901e305fc035027d8be7413cb5cef253b0dcab8cd76dc7ee062b0e", signing.ErrBadSignature},
			},
			sigHeader:  signing.HeaderShopifyHmac,
			missingErr: signing.ErrMissingSignature, wrongSecretErr: signing.ErrBadSignature,
		},
		{
			scheme: "slack",
			opts:   signing.Options{Secrets: []string{slackSecret}, Tolerance: 300 * time.Second},
			req: func() signing.Request {
				return signing.Request{Header: header(signing.HeaderSlackSignature, slackSignature, signing.HeaderSlackTimestamp, slackTimestamp),
					Body: []byte(slackBody), Now: time.Unix(1531420618+60, 0)}
			},
			want: signing.Verified{EventType: "/webhook-collect", Timestamp: time.Unix(1531420618, 0), DeliveryIDSigned: true, EventTypeSigned: true},
			bad: map[string]badValue{
				"empty signature":      {"v0=", signing.ErrBadSignature},
				"truncated signature":  {slackSignature[:len(slackSignature)-2], signing.ErrBadSignature},
				"wrong version prefix": {"v1=" + strings.TrimPrefix(slackSignature, "v0="), signing.ErrBadSignature},
			},
			sigHeader: signing.HeaderSlackSignature, timestamped: true,
			missingErr: signing.ErrMissingSignature, wrongSecretErr: signing.ErrBadSignature,
		},
		{
			scheme: "hmac sha512 base64 with a timestamp",
			opts: signing.Options{Secrets: []string{hmacSecret}, Tolerance: tolerance, IDHeader: "X-Partner-Delivery",
				HMAC: signing.HMACOptions{Header: "X-Partner-Signature", Algorithm: "sha512", Encoding: "base64", Prefix: "v1=", TimestampHeader: "X-Partner-Timestamp"}},
			req: func() signing.Request {
				return signing.Request{Header: header("X-Partner-Signature", "v1="+hmacSHA512, "X-Partner-Timestamp", "1700000000", "X-Partner-Delivery", "d-77"),
					Body: []byte(hmacBody), Now: time.Unix(hmacTimestamp, 0)}
			},
			want: signing.Verified{DeliveryID: "d-77", EventType: "invoice.paid", Timestamp: time.Unix(hmacTimestamp, 0), EventTypeSigned: true},
			bad: map[string]badValue{
				"empty signature":      {"v1=", signing.ErrBadSignature},
				"truncated signature":  {"v1=" + hmacSHA512[:len(hmacSHA512)-4], signing.ErrBadSignature},
				"wrong version prefix": {"v2=" + hmacSHA512, signing.ErrBadSignature},
				"sha256-sized":         {"v1=" + base64.StdEncoding.EncodeToString(make([]byte, 32)), signing.ErrBadSignature},
			},
			sigHeader: "X-Partner-Signature", timestamped: true,
			missingErr: signing.ErrMissingSignature, wrongSecretErr: signing.ErrBadSignature,
		},
		{
			scheme: "hmac sha1 hex",
			opts: signing.Options{Secrets: []string{hmacSecret}, TypeHeader: "X-Event",
				HMAC: signing.HMACOptions{Header: "X-Signature", Algorithm: "sha1", Encoding: "hex", Prefix: "sha1="}},
			req: func() signing.Request {
				return signing.Request{Header: header("X-Signature", "sha1="+hmacSHA1, "X-Event", "invoice/paid"),
					Body: []byte(hmacSHA1Body), Now: time.Unix(1, 0)}
			},
			want: signing.Verified{EventType: "invoice/paid", DeliveryIDSigned: true},
			bad: map[string]badValue{
				"empty signature":      {"sha1=", signing.ErrBadSignature},
				"truncated signature":  {"sha1=" + hmacSHA1[:30], signing.ErrBadSignature},
				"wrong version prefix": {"sha256=" + hmacSHA1, signing.ErrBadSignature},
				"only separators":      {", ,", signing.ErrMissingSignature},
			},
			sigHeader:  "X-Signature",
			missingErr: signing.ErrMissingSignature, wrongSecretErr: signing.ErrBadSignature,
		},
		{
			scheme: "basic",
			opts:   signing.Options{Secrets: []string{"acme:correct horse battery"}, IDHeader: "X-Request-Id"},
			req: func() signing.Request {
				return signing.Request{Header: header("Authorization", basicCred, "X-Request-Id", "r-1"),
					Body: []byte(`{"type":"shipment.sent"}`), Now: time.Unix(1, 0)}
			},
			want: signing.Verified{DeliveryID: "r-1", EventType: "shipment.sent"},
			bad: map[string]badValue{
				"empty credentials":    {"Basic ", signing.ErrMissingCredentials},
				"truncated":            {basicCred[:len(basicCred)-4], signing.ErrBadCredentials},
				"wrong version prefix": {"Bearer " + strings.TrimPrefix(basicCred, "Basic "), signing.ErrMissingCredentials},
				"not base64":           {"Basic acme:correct horse battery", signing.ErrMalformed},
				"other password":       {"Basic " + base64.StdEncoding.EncodeToString([]byte("acme:wrong")), signing.ErrBadCredentials},
				"lower-case scheme":    {"basic " + strings.TrimPrefix(basicCred, "Basic "), nil},
			},
			sigHeader:  "Authorization",
			missingErr: signing.ErrMissingCredentials, wrongSecretErr: signing.ErrBadCredentials,
		},
		{
			scheme: "bearer",
			opts:   signing.Options{Secrets: []string{"tok_9f8e7d6c5b4a3928"}, TypeHeader: "X-Event-Type"},
			req: func() signing.Request {
				return signing.Request{Header: header("Authorization", "Bearer tok_9f8e7d6c5b4a3928", "X-Event-Type", "ping"),
					Body: []byte(`{"type":"ignored"}`), Now: time.Unix(1, 0)}
			},
			want: signing.Verified{EventType: "ping", DeliveryIDSigned: true},
			bad: map[string]badValue{
				"empty token":          {"Bearer", signing.ErrMissingCredentials},
				"truncated":            {"Bearer tok_9f8e7d6c5b4a392", signing.ErrBadCredentials},
				"wrong version prefix": {"Token tok_9f8e7d6c5b4a3928", signing.ErrMissingCredentials},
				"longer":               {"Bearer tok_9f8e7d6c5b4a39280", signing.ErrBadCredentials},
			},
			sigHeader:  "Authorization",
			missingErr: signing.ErrMissingCredentials, wrongSecretErr: signing.ErrBadCredentials,
		},
	}
}

// schemeName is the fixture's scheme as New knows it.
func (f fixture) schemeName() string {
	name, _, _ := strings.Cut(f.scheme, " ")
	return name
}

func (f fixture) verifier(t *testing.T, secrets ...string) signing.Verifier {
	t.Helper()
	o := f.opts
	if secrets != nil {
		o.Secrets = secrets
	}
	v, err := signing.New(f.schemeName(), o)
	if err != nil {
		t.Fatalf("New(%s): %v", f.schemeName(), err)
	}
	return v
}

// wrongSecret is a secret of the fixture's kind that is not its own.
func (f fixture) wrongSecret() string {
	switch {
	case strings.HasPrefix(f.opts.Secrets[0], "whpk_"):
		return "whpk_" + base64.StdEncoding.EncodeToString(make([]byte, 32))
	case strings.Contains(f.opts.Secrets[0], ":"):
		return "acme:another password"
	default:
		return otherSecret
	}
}

func TestSchemeVectors(t *testing.T) {
	t.Parallel()
	for _, f := range fixtures() {
		t.Run(f.scheme, func(t *testing.T) {
			t.Parallel()
			got, err := f.verifier(t).Verify(f.req())
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if got != f.want {
				t.Errorf("Verify = %+v, want %+v", got, f.want)
			}
			for _, h := range f.verifier(t).ProviderHeaders() {
				l := strings.ToLower(h)
				if strings.Contains(l, "signature") || strings.Contains(l, "hmac") || l == "authorization" || strings.Contains(l, "timestamp") {
					t.Errorf("ProviderHeaders keeps %s, a signature, credential or signed timestamp", h)
				}
			}
		})
	}
}

func TestSchemeRejections(t *testing.T) {
	t.Parallel()
	for _, f := range fixtures() {
		t.Run(f.scheme, func(t *testing.T) {
			t.Parallel()
			check := func(t *testing.T, v signing.Verifier, r signing.Request, want error) {
				t.Helper()
				got, err := v.Verify(r)
				checkVerifyErr(t, err, want)
				for _, s := range append([]string{f.opts.Secrets[0]}, f.wrongSecret()) {
					// What the error says is under test: never a secret.
					if err != nil && strings.Contains(err.Error(), s) {
						t.Errorf("error reveals a secret: %v", err)
					}
				}
				if err != nil && got != (signing.Verified{}) {
					t.Errorf("Verify failed but returned %+v", got)
				}
			}
			t.Run("missing header", func(t *testing.T) {
				r := f.req()
				r.Header.Del(f.sigHeader)
				check(t, f.verifier(t), r, f.missingErr)
			})
			t.Run("no headers at all", func(t *testing.T) {
				r := f.req()
				r.Header = nil
				check(t, f.verifier(t), r, f.missingErr)
			})
			for name, bad := range f.bad {
				t.Run(name, func(t *testing.T) {
					r := f.req()
					r.Header.Set(f.sigHeader, bad.value)
					check(t, f.verifier(t), r, bad.wantErr)
				})
			}
			t.Run("wrong secret", func(t *testing.T) {
				check(t, f.verifier(t, f.wrongSecret()), f.req(), f.wrongSecretErr)
			})
			t.Run("rotation: the right secret second", func(t *testing.T) {
				check(t, f.verifier(t, f.wrongSecret(), f.opts.Secrets[0]), f.req(), nil)
			})
			t.Run("body changed", func(t *testing.T) {
				r := f.req()
				r.Body = append(append([]byte{}, r.Body...), ' ')
				want := f.wrongSecretErr
				if f.missingErr == signing.ErrMissingCredentials {
					want = nil // tokens do not cover the body
				}
				check(t, f.verifier(t), r, want)
			})
			tol := f.opts.Tolerance
			for _, tt := range []struct {
				name string
				skew time.Duration
			}{{"stale timestamp", tol + time.Second}, {"future timestamp", -tol - time.Second}, {"a day later", 24 * time.Hour}} {
				t.Run(tt.name, func(t *testing.T) {
					r := f.req()
					r.Now = r.Now.Add(tt.skew)
					var want error
					if f.timestamped {
						r.Now = f.want.Timestamp.Add(tt.skew)
						want = signing.ErrStaleTimestamp
					}
					check(t, f.verifier(t), r, want)
				})
			}
			if f.timestamped {
				t.Run("at the tolerance", func(t *testing.T) {
					r := f.req()
					r.Now = f.want.Timestamp.Add(tol)
					check(t, f.verifier(t), r, nil)
					r.Now = f.want.Timestamp.Add(-tol)
					check(t, f.verifier(t), r, nil)
				})
			}
		})
	}
}

// TestTimestampHeaderProblems covers the schemes whose timestamp travels in
// its own header.
func TestTimestampHeaderProblems(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		f        fixture
		tsHeader string
	}{
		{fixtures()[5], signing.HeaderSlackTimestamp},
		{fixtures()[6], "X-Partner-Timestamp"},
	} {
		t.Run(tt.f.scheme, func(t *testing.T) {
			t.Parallel()
			r := tt.f.req()
			r.Header.Del(tt.tsHeader)
			_, err := tt.f.verifier(t).Verify(r)
			checkVerifyErr(t, err, signing.ErrMissingSignature)
			for _, bad := range []string{"yesterday", "-1", "1.5e9", "0x10"} {
				r := tt.f.req()
				r.Header.Set(tt.tsHeader, bad)
				_, err := tt.f.verifier(t).Verify(r)
				checkVerifyErr(t, err, signing.ErrMalformed)
			}
			// The timestamp is signed: another value fails the MAC, even
			// within the tolerance.
			r = tt.f.req()
			r.Header.Set(tt.tsHeader, "1700000001")
			r.Now = time.Unix(1700000001, 0)
			if strings.HasPrefix(tt.f.scheme, "slack") {
				r.Header.Set(tt.tsHeader, "1531420619")
				r.Now = time.Unix(1531420619, 0)
			}
			_, err = tt.f.verifier(t).Verify(r)
			checkVerifyErr(t, err, signing.ErrBadSignature)
		})
	}
}

func TestSlackIDAndType(t *testing.T) {
	t.Parallel()
	v, err := signing.NewSlack([]string{slackSecret}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, body, wantID, wantType string
	}{
		{"event callback", `{"type":"event_callback","event_id":"Ev08MFMKH6","event":{"type":"app_mention","text":"hi"}}`, "Ev08MFMKH6", "app_mention"},
		{"event callback without inner type", `{"type":"event_callback","event_id":"Ev1","event":{}}`, "Ev1", "event_callback"},
		{"url verification", `{"type":"url_verification","challenge":"3eZbrw1aBm"}`, "", "url_verification"},
		{"slash command", slackBody, "", "/webhook-collect"},
		{"interaction payload", "payload=" + `%7B%22type%22%3A%22block_actions%22%7D`, "", "block_actions"},
		{"neither", "hello", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ts := "1700000000"
			h := header(signing.HeaderSlackTimestamp, ts, signing.HeaderSlackSignature,
				"v0="+hexMAC(slackSecret, "v0:"+ts+":"+tt.body))
			got, err := v.Verify(signing.Request{Header: h, Body: []byte(tt.body), Now: time.Unix(1700000000, 0)})
			if err != nil {
				t.Fatal(err)
			}
			if got.DeliveryID != tt.wantID || got.EventType != tt.wantType {
				t.Errorf("Verify = id %q type %q, want %q %q", got.DeliveryID, got.EventType, tt.wantID, tt.wantType)
			}
		})
	}
}

func TestShopifyEventIDFallback(t *testing.T) {
	t.Parallel()
	f := fixtures()[4]
	r := f.req()
	r.Header.Del(signing.HeaderShopifyWebhookID)
	got, err := f.verifier(t).Verify(r)
	if err != nil || got.DeliveryID != "98880550-7158-44d4-b7cd-2c97c8a091b5" {
		t.Errorf("Verify without X-Shopify-Webhook-Id = %+v, %v; want the event id", got, err)
	}
}

func TestStandardWebhooksMixedKeys(t *testing.T) {
	t.Parallel()
	// A source holding a v1 secret and a v1a public key accepts either
	// kind of signature, and a header carrying both.
	v := newVerifier(t, vectorA.secret, v1aPublicKey)
	for name, sig := range map[string]string{
		"v1a":         v1aSignature,
		"v1 of B":     "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= " + v1aSignature,
		"unknown v9":  "v9,abc " + v1aSignature,
		"both, wrong": "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
	} {
		r := vectorB.request()
		r.Header.Set(signing.HeaderWebhookSignature, sig)
		_, err := v.Verify(r)
		var want error
		if name == "both, wrong" {
			want = signing.ErrBadSignature
		}
		if (err == nil) != (want == nil) || (want != nil && !errors.Is(err, want)) {
			t.Errorf("%s: Verify = %v, want %v", name, err, want)
		}
	}
	if got := newVerifier(t, v1aPublicKey).Sign("x", time.Unix(1, 0), nil); got != "" {
		t.Errorf("Sign with only a public key = %q, want empty", got)
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	t.Parallel()
	hm := func(mod func(*signing.HMACOptions)) signing.Options {
		o := signing.Options{Secrets: []string{hmacSecret}, HMAC: signing.HMACOptions{Header: "X-Sig"}}
		mod(&o.HMAC)
		return o
	}
	tests := []struct {
		name   string
		scheme string
		opts   signing.Options
	}{
		{"unknown scheme", "carrier-pigeon", signing.Options{Secrets: []string{"x"}}},
		{"no secrets", "github", signing.Options{}},
		{"empty secret", "stripe", signing.Options{Secrets: []string{"whsec_x", ""}}},
		{"bad public key", "standard-webhooks", signing.Options{Secrets: []string{"whpk_AAAA"}}},
		{"public key not base64", "standard-webhooks", signing.Options{Secrets: []string{"whpk_%%%"}}},
		{"basic without colon", "basic", signing.Options{Secrets: []string{"acme"}}},
		{"basic without password", "basic", signing.Options{Secrets: []string{"acme:"}}},
		{"bearer empty", "bearer", signing.Options{Secrets: []string{""}}},
		{"hmac without header", "hmac", hm(func(o *signing.HMACOptions) { o.Header = "" })},
		{"hmac md5", "hmac", hm(func(o *signing.HMACOptions) { o.Algorithm = "md5" })},
		{"hmac base32", "hmac", hm(func(o *signing.HMACOptions) { o.Encoding = "base32" })},
		{"hmac unknown placeholder", "hmac", hm(func(o *signing.HMACOptions) { o.SignedContent = "{ts}.{body}" })},
		{"hmac without body", "hmac", hm(func(o *signing.HMACOptions) { o.SignedContent = "static" })},
		{"hmac timestamp not signed", "hmac", hm(func(o *signing.HMACOptions) { o.TimestampHeader = "X-Ts"; o.SignedContent = "{body}" })},
		{"hmac timestamp without header", "hmac", hm(func(o *signing.HMACOptions) { o.SignedContent = "{timestamp}{body}" })},
		{"hmac id without header", "hmac", hm(func(o *signing.HMACOptions) { o.SignedContent = "{id}.{body}" })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := signing.New(tt.scheme, tt.opts)
			if !errors.Is(err, signing.ErrBadSecret) {
				t.Fatalf("New = %v, want ErrBadSecret", err)
			}
			for _, s := range tt.opts.Secrets {
				// What the error says is under test: never a secret.
				if len(s) > 4 && strings.Contains(err.Error(), s) {
					t.Errorf("error reveals a secret: %v", err)
				}
			}
		})
	}
	for _, scheme := range signing.Schemes {
		if _, err := signing.New(scheme, signing.Options{}); !errors.Is(err, signing.ErrBadSecret) {
			t.Errorf("New(%s) without secrets = %v, want ErrBadSecret", scheme, err)
		}
	}
}

func TestHMACSignedContentWithID(t *testing.T) {
	t.Parallel()
	v, err := signing.NewHMAC([]string{hmacSecret}, signing.HMACOptions{
		Header: "X-Sig", TimestampHeader: "X-Ts", SignedContent: "{id}:{timestamp}:{body}", Encoding: "base64",
	}, time.Minute, "X-Id", "")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1700000000, 0)
	body := []byte(`{"type":"a.b"}`)
	h := header("X-Sig", v.Sign("id-1", now, body), "X-Ts", "1700000000", "X-Id", "id-1")
	got, err := v.Verify(signing.Request{Header: h, Body: body, Now: now})
	if err != nil || got.DeliveryID != "id-1" || got.EventType != "a.b" {
		t.Fatalf("Verify = %+v, %v", got, err)
	}
	// The id is signed: changing it breaks the signature; removing it is a
	// missing part of the signature.
	h.Set("X-Id", "id-2")
	_, err = v.Verify(signing.Request{Header: h, Body: body, Now: now})
	checkVerifyErr(t, err, signing.ErrBadSignature)
	h.Del("X-Id")
	_, err = v.Verify(signing.Request{Header: h, Body: body, Now: now})
	checkVerifyErr(t, err, signing.ErrMissingSignature)
	// The reference MAC, computed independently.
	want := base64.StdEncoding.EncodeToString(rawMAC(hmacSecret, "id-1:1700000000:"+string(body)))
	if got := v.Sign("id-1", now, body); got != want {
		t.Errorf("Sign = %q, want %q", got, want)
	}
}

func TestParseSignedContent(t *testing.T) {
	t.Parallel()
	for tmpl, ok := range map[string]bool{
		"{body}": true, "{timestamp}.{body}": true, "v0:{timestamp}:{body}": true, "{id}.{timestamp}.{body}": true,
		"": false, "body": false, "{body}{body}": false, "{Body}": false, "{body": false, "{timestamp}": false, "{{body}}": false,
	} {
		_, err := signing.ParseSignedContent(tmpl)
		if (err == nil) != ok {
			t.Errorf("ParseSignedContent(%q) = %v, want ok=%v", tmpl, err, ok)
		}
	}
}

// rawMAC is HMAC-SHA256, computed here independently of the package.
func rawMAC(secret, msg string) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(msg))
	return m.Sum(nil)
}

func hexMAC(secret, msg string) string { return hex.EncodeToString(rawMAC(secret, msg)) }
