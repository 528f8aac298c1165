package signing

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// GitHub header names.
const (
	HeaderGitHubSignature256 = "X-Hub-Signature-256"
	HeaderGitHubDelivery     = "X-GitHub-Delivery"
	HeaderGitHubEvent        = "X-GitHub-Event"
)

// GitHub verifies GitHub webhooks: X-Hub-Signature-256 is "sha256=" and
// the hex HMAC-SHA256 of the raw body, keyed by the secret as bytes. The
// delivery id is X-GitHub-Delivery, the type X-GitHub-Event. GitHub signs no
// timestamp: a replayed request is recognised by its delivery id within the
// idempotency horizon.
type GitHub struct{ keys [][]byte }

// NewGitHub returns a GitHub verifier for the webhook secrets.
func NewGitHub(secrets []string) (*GitHub, error) {
	keys, err := rawSecrets("github", secrets)
	if err != nil {
		return nil, err
	}
	return &GitHub{keys: keys}, nil
}

// ProviderHeaders implements Verifier.
func (g *GitHub) ProviderHeaders() []string {
	return []string{HeaderGitHubDelivery, HeaderGitHubEvent, "X-GitHub-Hook-Id",
		"X-GitHub-Hook-Installation-Target-Type", "X-GitHub-Hook-Installation-Target-Id"}
}

// Verify implements Verifier.
func (g *GitHub) Verify(r Request) (Verified, error) {
	h := r.Header.Get(HeaderGitHubSignature256)
	if h == "" {
		return Verified{}, fmt.Errorf("%w: need the %s header (the SHA-1 X-Hub-Signature is not accepted)", ErrMissingSignature, HeaderGitHubSignature256)
	}
	sig, err := ParseGitHubSignature(h)
	if err != nil {
		return Verified{}, err
	}
	if !anyMAC(g.keys, [][]byte{sig}, func(key []byte) []byte { return bodyMAC(key, r.Body) }) {
		return Verified{}, fmt.Errorf("%w: the sha256 signature matches no active secret", ErrBadSignature)
	}
	return Verified{DeliveryID: r.Header.Get(HeaderGitHubDelivery), EventType: r.Header.Get(HeaderGitHubEvent)}, nil
}

// ParseGitHubSignature parses "sha256=<64 hex digits>". Another algorithm
// prefix, or a digest of the wrong length, is ErrBadSignature: it cannot
// match.
func ParseGitHubSignature(h string) ([]byte, error) {
	return parsePrefixedHex(HeaderGitHubSignature256, "sha256=", h)
}

// parsePrefixedHex parses "<prefix><64 hex digits>"; anything else cannot
// match and is ErrBadSignature.
func parsePrefixedHex(header, prefix, h string) ([]byte, error) {
	hexSig, ok := strings.CutPrefix(strings.TrimSpace(h), prefix)
	if !ok {
		return nil, fmt.Errorf("%w: %s must start with %s", ErrBadSignature, header, prefix)
	}
	sig, err := hex.DecodeString(hexSig)
	if err != nil || len(sig) != sha256.Size {
		return nil, fmt.Errorf("%w: %s must be %s and 64 hex digits", ErrBadSignature, header, prefix)
	}
	return sig, nil
}

// HeaderStripeSignature is Stripe's signature header.
const HeaderStripeSignature = "Stripe-Signature"

// Stripe verifies Stripe webhooks: Stripe-Signature is
// "t=<unix>,v1=<hex>[,v1=<hex>...]" (other schemes such as v0 are ignored),
// each v1 the HMAC-SHA256 of "<t>.<body>" keyed by the whole whsec_ string
// as bytes (not base64-decoded). The event id and type are the body's "id"
// and "type".
type Stripe struct {
	keys      [][]byte
	tolerance time.Duration
}

// NewStripe returns a Stripe verifier for the endpoint secrets.
func NewStripe(secrets []string, tolerance time.Duration) (*Stripe, error) {
	keys, err := rawSecrets("stripe", secrets)
	if err != nil {
		return nil, err
	}
	return &Stripe{keys: keys, tolerance: tolerance}, nil
}

// ProviderHeaders implements Verifier: Stripe puts ids and type in the body.
func (s *Stripe) ProviderHeaders() []string { return nil }

// StripeSignature is a parsed Stripe-Signature header.
type StripeSignature struct {
	// TimestampRaw is t as sent, Timestamp its value.
	TimestampRaw string
	Timestamp    time.Time
	// V1 are the 32-byte v1 signatures; garbled ones are left out.
	V1 [][]byte
}

// ParseStripeSignature parses a Stripe-Signature header. A header without
// exactly one numeric t is ErrMalformed; one with no usable v1 signature is
// ErrBadSignature (wrong scheme or truncated).
func ParseStripeSignature(h string) (StripeSignature, error) {
	var out StripeSignature
	items := strings.Split(h, ",")
	if len(items) > MaxSignatures+1 {
		return StripeSignature{}, fmt.Errorf("%w: %s has more than %d items", ErrMalformed, HeaderStripeSignature, MaxSignatures+1)
	}
	seenT := false
	for _, item := range items {
		k, v, ok := strings.Cut(strings.TrimSpace(item), "=")
		if !ok {
			return StripeSignature{}, fmt.Errorf("%w: %s items are key=value", ErrMalformed, HeaderStripeSignature)
		}
		switch k {
		case "t":
			ts, err := ParseUnixTimestamp(v)
			if err != nil || seenT {
				return StripeSignature{}, fmt.Errorf("%w: %s needs one t=<unix seconds>", ErrMalformed, HeaderStripeSignature)
			}
			seenT, out.TimestampRaw, out.Timestamp = true, v, ts
		case "v1":
			if sig, err := hex.DecodeString(v); err == nil && len(sig) == sha256.Size {
				out.V1 = append(out.V1, sig)
			}
		}
	}
	if !seenT {
		return StripeSignature{}, fmt.Errorf("%w: %s has no t=<unix seconds>", ErrMalformed, HeaderStripeSignature)
	}
	if len(out.V1) == 0 {
		return StripeSignature{}, fmt.Errorf("%w: %s has no well-formed v1 signature", ErrBadSignature, HeaderStripeSignature)
	}
	return out, nil
}

// Verify implements Verifier.
func (s *Stripe) Verify(r Request) (Verified, error) {
	h := r.Header.Get(HeaderStripeSignature)
	if h == "" {
		return Verified{}, fmt.Errorf("%w: need the %s header", ErrMissingSignature, HeaderStripeSignature)
	}
	sig, err := ParseStripeSignature(h)
	if err != nil {
		return Verified{}, err
	}
	if checkTolerance(sig.Timestamp, r.Now, s.tolerance) != nil {
		return Verified{}, staleError(sig.Timestamp, r.Now, s.tolerance)
	}
	mac := func(key []byte) []byte {
		m := hmac.New(sha256.New, key)
		m.Write([]byte(sig.TimestampRaw))
		m.Write([]byte{'.'})
		m.Write(r.Body)
		return m.Sum(nil)
	}
	if !anyMAC(s.keys, sig.V1, mac) {
		return Verified{}, fmt.Errorf("%w: no v1 signature matches an active secret", ErrBadSignature)
	}
	id := JSONString(r.Body, "id")
	return Verified{DeliveryID: id, EventType: JSONString(r.Body, "type"), Timestamp: sig.Timestamp,
		DeliveryIDSigned: true, EventTypeSigned: true}, nil
}

// Shopify header names.
const (
	HeaderShopifyHmac      = "X-Shopify-Hmac-Sha256"
	HeaderShopifyWebhookID = "X-Shopify-Webhook-Id"
	HeaderShopifyEventID   = "X-Shopify-Event-Id"
	HeaderShopifyTopic     = "X-Shopify-Topic"
)

// Shopify verifies Shopify webhooks: X-Shopify-Hmac-Sha256 is the base64
// HMAC-SHA256 of the raw body keyed by the app's client secret. The
// delivery id is X-Shopify-Webhook-Id (else X-Shopify-Event-Id), the type
// X-Shopify-Topic (orders/create). Shopify signs no timestamp.
type Shopify struct{ keys [][]byte }

// NewShopify returns a Shopify verifier for the client secrets.
func NewShopify(secrets []string) (*Shopify, error) {
	keys, err := rawSecrets("shopify", secrets)
	if err != nil {
		return nil, err
	}
	return &Shopify{keys: keys}, nil
}

// ProviderHeaders implements Verifier.
func (s *Shopify) ProviderHeaders() []string {
	return []string{HeaderShopifyTopic, HeaderShopifyWebhookID, HeaderShopifyEventID,
		"X-Shopify-Shop-Domain", "X-Shopify-Api-Version", "X-Shopify-Triggered-At"}
}

// ParseShopifySignature decodes the base64 digest; a wrong length or
// encoding is ErrBadSignature.
func ParseShopifySignature(h string) ([]byte, error) {
	sig, err := base64.StdEncoding.DecodeString(strings.TrimSpace(h))
	if err != nil || len(sig) != sha256.Size {
		return nil, fmt.Errorf("%w: %s must be the base64 of a 32-byte HMAC-SHA256", ErrBadSignature, HeaderShopifyHmac)
	}
	return sig, nil
}

// Verify implements Verifier.
func (s *Shopify) Verify(r Request) (Verified, error) {
	h := r.Header.Get(HeaderShopifyHmac)
	if h == "" {
		return Verified{}, fmt.Errorf("%w: need the %s header", ErrMissingSignature, HeaderShopifyHmac)
	}
	sig, err := ParseShopifySignature(h)
	if err != nil {
		return Verified{}, err
	}
	if !anyMAC(s.keys, [][]byte{sig}, func(key []byte) []byte { return bodyMAC(key, r.Body) }) {
		return Verified{}, fmt.Errorf("%w: the HMAC matches no active secret", ErrBadSignature)
	}
	id := r.Header.Get(HeaderShopifyWebhookID)
	if id == "" {
		id = r.Header.Get(HeaderShopifyEventID)
	}
	return Verified{DeliveryID: id, EventType: r.Header.Get(HeaderShopifyTopic)}, nil
}

// Slack header names.
const (
	HeaderSlackSignature = "X-Slack-Signature"
	HeaderSlackTimestamp = "X-Slack-Request-Timestamp"
)

// Slack verifies requests from Slack: X-Slack-Signature is "v0=" and the
// hex HMAC-SHA256 of "v0:<X-Slack-Request-Timestamp>:<body>" keyed by the
// app's signing secret. The delivery id is the Events API's "event_id";
// the type is the inner event's type for event callbacks, else the
// payload's "type", or a slash command's name.
type Slack struct {
	keys      [][]byte
	tolerance time.Duration
}

// NewSlack returns a Slack verifier for the signing secrets.
func NewSlack(secrets []string, tolerance time.Duration) (*Slack, error) {
	keys, err := rawSecrets("slack", secrets)
	if err != nil {
		return nil, err
	}
	return &Slack{keys: keys, tolerance: tolerance}, nil
}

// ProviderHeaders implements Verifier.
func (s *Slack) ProviderHeaders() []string {
	return []string{"X-Slack-Retry-Num", "X-Slack-Retry-Reason"}
}

// ParseSlackSignature parses "v0=<64 hex digits>"; another version or a
// garbled digest is ErrBadSignature.
func ParseSlackSignature(h string) ([]byte, error) {
	return parsePrefixedHex(HeaderSlackSignature, "v0=", h)
}

// Verify implements Verifier.
func (s *Slack) Verify(r Request) (Verified, error) {
	h, tsRaw := r.Header.Get(HeaderSlackSignature), r.Header.Get(HeaderSlackTimestamp)
	if h == "" || tsRaw == "" {
		return Verified{}, fmt.Errorf("%w: need the %s and %s headers", ErrMissingSignature, HeaderSlackSignature, HeaderSlackTimestamp)
	}
	ts, err := parseTimestampHeader(HeaderSlackTimestamp, tsRaw)
	if err != nil {
		return Verified{}, err
	}
	sig, err := ParseSlackSignature(h)
	if err != nil {
		return Verified{}, err
	}
	if checkTolerance(ts, r.Now, s.tolerance) != nil {
		return Verified{}, staleError(ts, r.Now, s.tolerance)
	}
	mac := func(key []byte) []byte {
		m := hmac.New(sha256.New, key)
		m.Write([]byte("v0:"))
		m.Write([]byte(tsRaw))
		m.Write([]byte{':'})
		m.Write(r.Body)
		return m.Sum(nil)
	}
	if !anyMAC(s.keys, [][]byte{sig}, mac) {
		return Verified{}, fmt.Errorf("%w: the v0 signature matches no active signing secret", ErrBadSignature)
	}
	id, typ := slackIDAndType(r.Body)
	return Verified{DeliveryID: id, EventType: typ, Timestamp: ts, DeliveryIDSigned: true, EventTypeSigned: true}, nil
}

// slackIDAndType reads an Events API JSON body, or a form-encoded slash
// command or interaction payload.
func slackIDAndType(body []byte) (id, typ string) {
	b := body[skipSpace(body, 0):]
	if len(b) > 0 && b[0] == '{' {
		typ = JSONString(b, "type")
		if typ == "event_callback" {
			if ev, ok := JSONMember(b, "event"); ok {
				if inner := JSONString(ev, "type"); inner != "" {
					typ = inner
				}
			}
		}
		return JSONString(b, "event_id"), typ
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return "", ""
	}
	if p := form.Get("payload"); p != "" {
		return "", JSONString([]byte(p), "type")
	}
	return "", form.Get("command")
}

// bodyMAC is HMAC-SHA256 of the body.
func bodyMAC(key, body []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(body)
	return m.Sum(nil)
}

// anyMAC reports whether one of sigs equals mac(key) for one of keys,
// comparing in constant time.
func anyMAC(keys, sigs [][]byte, mac func(key []byte) []byte) bool {
	for _, key := range keys {
		want := mac(key)
		for _, s := range sigs {
			if equal(s, want) {
				return true
			}
		}
	}
	return false
}
